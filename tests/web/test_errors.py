"""Every error mapping: aixgo's errors by class, invalid requests, authentication, the body
size limit, the turn policy, and CORS (off unless configured)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import httpx
import pytest
from aixgo import Runtime, errors
from aixgo_web import ERROR_STATUS, bearer_user, create_app
from aixgo_web._errors import error_response

from .conftest import Client, sse_events

pytestmark = pytest.mark.asyncio


def _error(r: httpx.Response, status: int, kind: str) -> str:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error"} and body["error"]["type"] == kind, body
    return str(body["error"]["message"])


@pytest.mark.parametrize(
    ("exc", "status"),
    [
        (errors.InvalidIdentifier("bad id"), 422),
        (errors.InvalidArgument("bad limit"), 422),
        (errors.InvalidMessage("too big"), 422),
        (errors.ConfigError("bad option"), 422),
        (errors.NotStarted("not running"), 503),
        (errors.SessionNotFound("abc"), 404),
        (errors.CheckpointNotFound("c", "s"), 404),
        (errors.AgentNotFound("x", []), 404),
        (errors.ConflictError("raced"), 409),
        (errors.MessageIdConflict("reused"), 409),
        (errors.BackendUnavailable("redis://db:6379 is down"), 503),
        (errors.BackendClosed(), 503),
        (errors.BackendTimeout("postgres://db slow"), 504),
        (errors.CallTimeout("slow", agent="a", session_id=None), 504),
        (errors.AgentError("failed", agent="a", session_id=None), 502),
        (errors.CorruptedData("/var/lib/x line 3"), 500),
        (errors.PluginError("broken plugin"), 500),
    ],
)
async def test_each_error_class_has_its_status(exc: errors.AixgoError, status: int) -> None:
    r = error_response(exc)
    body = json.loads(bytes(r.body))
    assert r.status_code == status and body["error"]["type"] == type(exc).__name__
    if status < 500:  # the message, without a hint meant for Python callers where it has one
        assert body["error"]["message"] == getattr(exc, "problem", str(exc))
        assert "SessionManager" not in body["error"]["message"]
        assert "Session.list_checkpoints" not in body["error"]["message"]
    else:  # server-side detail (hosts, paths) stays in the server's log
        assert str(exc) not in body["error"]["message"]
        assert "db" not in body["error"]["message"] and "/var" not in body["error"]["message"]
    assert any(isinstance(exc, cls) for cls, _ in ERROR_STATUS)


async def test_invalid_requests_are_422_with_the_type(client: Client) -> None:
    async with client() as (c, _):
        sid = (await c.post("/api/sessions", json={"agent": "echo"})).json()["id"]
        _error(await c.get("/api/sessions/not-an-id"), 422, "InvalidIdentifier")
        _error(await c.get("/api/sessions", params={"cursor": "garbage"}), 422, "InvalidArgument")
        _error(await c.get("/api/sessions", params={"limit": 0}), 422, "InvalidArgument")
        _error(await c.get(f"/api/sessions/{sid}/messages", params={"last": -1}), 422,
               "InvalidArgument")  # fmt: skip
        _error(await c.post("/api/sessions", json={"agent": "echo", "owner": "x"}), 422,
               "InvalidArgument")  # fmt: skip
        _error(await c.post("/api/sessions", content=b"{not json",
                            headers={"Content-Type": "application/json"}), 422,
               "InvalidArgument")  # fmt: skip
        _error(await c.post("/api/agents/bad%07name/call", json={"content": "x"}), 422,
               "InvalidIdentifier")  # fmt: skip
        _error(await c.post("/api/agents/echo/call", json={"content": "nul \x00 here"}), 422,
               "InvalidMessage")  # fmt: skip
        _error(await c.post("/api/agents/echo/call", json={"content": [{"no": "type"}]}), 422,
               "InvalidMessage")  # fmt: skip
        _error(await c.post(f"/api/sessions/{sid}/checkpoints", json={"label": "a\nb"}), 422,
               "InvalidIdentifier")  # fmt: skip
        _error(await c.post("/api/agents/stateless/call", json={"content": "x", "session_id": sid}),
               422, "InvalidArgument")  # fmt: skip
        # Nothing of that was stored.
        assert (await c.get(f"/api/sessions/{sid}")).json()["message_count"] == 0
        assert (await c.get("/api/sessions")).json()["items"][0]["id"] == sid


async def test_what_does_not_exist_is_404(client: Client) -> None:
    async with client() as (c, _):
        sid = (await c.post("/api/sessions", json={"agent": "echo"})).json()["id"]
        _error(await c.post("/api/agents/nobody/call", json={"content": "x"}), 404, "AgentNotFound")
        _error(await c.post("/api/agents/nobody/stream", json={"content": "x"}), 404,
               "AgentNotFound")  # fmt: skip
        _error(await c.post("/api/sessions", json={"agent": "nobody"}), 404, "AgentNotFound")
        _error(await c.post(f"/api/sessions/{sid}/checkpoints/{'0' * 32}/restore"), 404,
               "CheckpointNotFound")  # fmt: skip
        _error(await c.get("/api/no/such/route"), 404, "NotFound")
        _error(await c.put("/api/sessions"), 405, "MethodNotAllowed")
        assert (await c.get("/api/sessions")).json()["items"][0]["message_count"] == 0


async def test_a_failing_agent_is_502_without_its_internals(client: Client) -> None:
    async with client() as (c, _):
        message = _error(await c.post("/api/agents/broken/call", json={"content": "x"}), 502,
                         "AgentError")  # fmt: skip
        assert "db.internal" not in message
        r = await c.post("/api/agents/broken/stream", json={"content": "x"})
        assert "db.internal" not in _error(r, 502, "AgentError")


async def test_a_failure_after_the_first_event_ends_the_stream_with_an_error_event(
    client: Client,
) -> None:
    async with client() as (c, _):
        r = await c.post("/api/agents/stumble/stream", json={"content": "x"})
        assert r.status_code == 200
        events = sse_events(r.text)
        assert [name for name, _ in events] == ["session", "delta", "error"]
        error = json.loads(events[-1][1])["error"]
        assert error["type"] == "AgentError" and error["status"] == 502
        assert "db.internal" not in error["message"]
        # The input is stored, the turn resumable; no reply was.
        sid = json.loads(events[0][1])["session_id"]
        history = (await c.get(f"/api/sessions/{sid}/messages")).json()["items"]
        assert [m["content"] for m in history] == ["x"]


async def test_an_agent_over_its_time_is_504(client: Client) -> None:
    async with client(timeout=0.05) as (c, _):
        _error(await c.post("/api/agents/slow/call", json={"content": "x"}), 504, "CallTimeout")


async def test_a_runtime_not_started_or_a_closed_store_is_503(client: Client) -> None:
    async with client(start=False) as (c, _):
        _error(await c.get("/api/sessions"), 503, "NotStarted")
        _error(await c.post("/api/agents/echo/call", json={"content": "x"}), 503, "NotStarted")
    async with client() as (c, rt):
        await rt.session_manager.close()
        _error(await c.get("/api/sessions"), 503, "BackendClosed")


async def test_without_credentials_every_route_is_401(client: Client) -> None:
    async with client() as (c, _):
        for method, url in [("GET", "/api/agents"), ("GET", "/api/sessions"),
                            ("POST", "/api/agents/echo/call")]:  # fmt: skip
            r = await c.request(method, url, json={"content": "x"}, headers={"X-User": ""})
            _error(r, 401, "Unauthorized")
        r = await c.get("/api/sessions", headers={"X-User": "not a valid\x07user"})
        _error(r, 401, "Unauthorized")
        assert (await c.get("/api/sessions")).json()["items"] == []


async def test_bearer_tokens_name_their_user() -> None:
    tokens = {"token-a": "alice", "token-b": "bob"}

    async def user_of(token: str) -> str | None:
        return tokens.get(token)

    rt = Runtime(session_manager="memory://")
    app = create_app(rt, authenticate=bearer_user(user_of))
    async with rt, httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://t") as c:  # fmt: skip
        a = {"Authorization": "Bearer token-a"}
        await rt.session_manager.create("echo", user_id="alice")
        await rt.session_manager.create("echo", user_id="bob")
        mine = (await c.get("/api/sessions", headers=a)).json()["items"]
        assert [s["user_id"] for s in mine] == ["alice"]
        r = await c.get("/api/sessions", headers={"Authorization": "Bearer wrong"})
        _error(r, 401, "Unauthorized")
        assert r.headers["www-authenticate"] == "Bearer"
        _error(await c.get("/api/sessions"), 401, "Unauthorized")


async def test_a_body_over_the_limit_is_413_before_it_is_read_whole(client: Client) -> None:
    async with client(app_options={"max_body_bytes": 1000}) as (c, _):
        big = {"content": "x" * 2000}
        _error(await c.post("/api/agents/echo/call", json=big), 413, "ContentTooLarge")

        chunks_sent = 0

        async def chunked() -> AsyncIterator[bytes]:
            # No Content-Length: the limit counts what arrives and stops reading.
            nonlocal chunks_sent
            yield b'{"content": "'
            for _ in range(100):
                chunks_sent += 1
                yield b"y" * 100
            yield b'"}'

        r = await c.post("/api/agents/echo/call", content=chunked(),
                         headers={"Content-Type": "application/json"})  # fmt: skip
        _error(r, 413, "ContentTooLarge")
        assert chunks_sent < 100
        # Nothing was stored; a small body still goes through.
        assert (await c.get("/api/sessions")).json()["items"] == []
        ok = await c.post("/api/agents/echo/call", json={"content": "small"})
        assert ok.status_code == 200


@pytest.mark.parametrize("route", ["call", "stream"])
async def test_turn_policy_reject_refuses_a_second_turn_with_409(
    client: Client, route: str
) -> None:
    async with client(turn_policy="reject") as (c, _):
        sid = (await c.post("/api/sessions", json={"agent": "slow"})).json()["id"]
        body = {"session_id": sid}
        first, second = await asyncio.gather(
            c.post(f"/api/agents/slow/{route}", json={**body, "content": "one"}),
            c.post(f"/api/agents/slow/{route}", json={**body, "content": "two"}),
        )
        statuses = sorted([first.status_code, second.status_code])
        assert statuses == [200, 409]
        refused = first if first.status_code == 409 else second
        _error(refused, 409, "ConflictError")
        history = (await c.get(f"/api/sessions/{sid}/messages")).json()["items"]
        assert len(history) == 2  # the refused turn wrote nothing


async def test_turn_policy_queue_runs_turns_one_after_another(client: Client) -> None:
    async with client(turn_policy="queue") as (c, _):
        sid = (await c.post("/api/sessions", json={"agent": "slow"})).json()["id"]
        rs = await asyncio.gather(*(
            c.post("/api/agents/slow/stream", json={"session_id": sid, "content": f"m{i}"})
            for i in range(3)
        ))  # fmt: skip
        assert [r.status_code for r in rs] == [200, 200, 200]
        assert all(sse_events(r.text)[-1][0] == "reply" for r in rs)
        history = (await c.get(f"/api/sessions/{sid}/messages")).json()["items"]
        # Turns never interleave: each input is followed by its own reply.
        pairs = [(history[i]["content"], history[i + 1]["content"]) for i in range(0, 6, 2)]
        assert all(reply == "slowly: " + asked for asked, reply in pairs)


async def test_cors_is_off_by_default_and_on_for_the_given_origins(client: Client) -> None:
    preflight = {"Origin": "https://app.example", "Access-Control-Request-Method": "POST"}
    async with client() as (c, _):
        r = await c.options("/api/agents/echo/call", headers=preflight)
        assert "access-control-allow-origin" not in r.headers
        r = await c.get("/api/agents", headers={"Origin": "https://app.example"})
        assert "access-control-allow-origin" not in r.headers
    async with client(app_options={"cors_origins": ["https://app.example"]}) as (c, _):
        r = await c.options("/api/agents/echo/call", headers=preflight)
        assert r.headers["access-control-allow-origin"] == "https://app.example"
        r = await c.get("/api/agents", headers={"Origin": "https://app.example"})
        assert r.headers["access-control-allow-origin"] == "https://app.example"
        r = await c.get("/api/agents", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in r.headers
