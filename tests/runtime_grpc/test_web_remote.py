"""aixgo-web in front of a remote agent: the session work is the node's (real ``aixgo serve``
processes on 127.0.0.1). Calls pass the user and the session id through, the node refuses
another user's session, and the replies name the session on the node; nothing is made in the
web app's own store."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from aixgo import Runtime
from aixgo.session import SessionManager, open_backend
from aixgo_runtime_grpc import RemoteAgent
from aixgo_web import create_app, header_user

from .conftest import NodeFactory

pytestmark = pytest.mark.asyncio

ALICE = {"X-User": "alice"}
BOB = {"X-User": "bob"}


@asynccontextmanager
async def web(address: str, store: str) -> AsyncIterator[httpx.AsyncClient]:
    """The app over a runtime whose ``assistant`` is the node's ``echo``, its own store at
    ``store``; called as alice unless a request says otherwise."""
    rt = Runtime(session_manager=store, timeout=60.0)
    rt.register("assistant", RemoteAgent(f"grpc://{address}", agent="echo", insecure=True))
    app = create_app(rt, authenticate=header_user("X-User"))
    transport = httpx.ASGITransport(app=app)
    async with (
        rt,
        httpx.AsyncClient(transport=transport, base_url="http://test", headers=ALICE) as c,
    ):
        yield c


async def _sessions(url: str, user: str) -> list[str]:
    async with SessionManager(open_backend(url)) as mgr:
        page = await mgr.list(user_id=user)
    return [info.id for info in page.items]


def _sse(body: str) -> list[tuple[str, dict[str, object]]]:
    out = []
    for block in body.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        out.append((fields["event"], json.loads(fields["data"])))
    return out


async def test_a_call_continues_its_session_on_the_node_by_id(
    nodes: NodeFactory, tmp_path: Path
) -> None:
    node_store, here = (tmp_path / "node").as_uri(), (tmp_path / "web").as_uri()
    (node,) = nodes(node_store, args=["--insecure"])
    async with web(node.address, here) as c:
        agents = (await c.get("/api/agents")).json()["items"]
        assert agents == [{"name": "assistant", "session_mode": "enabled", "hosted": True}]

        first = await c.post("/api/agents/assistant/call", json={"content": "one"})
        assert first.status_code == 200, first.text
        sid = first.json()["session_id"]
        assert first.json()["message"]["content"] == "You said: one"
        assert first.json()["message"]["seq"] == 2
        # Without an id: alice's latest session on the node, the same one.
        other = await c.post("/api/agents/assistant/call", json={"content": "elsewhere"})
        assert other.json()["session_id"] == sid
        assert await _sessions(node_store, "alice") == [sid]

        again = await c.post(
            "/api/agents/assistant/call", json={"content": "two", "session_id": sid}
        )
        assert again.status_code == 200, again.text
        assert again.json() == {"session_id": sid, "message": again.json()["message"]}
        assert again.json()["message"]["seq"] == 6

        history = await c.get(f"/api/sessions/{sid}/messages",
                              params={"agent": "assistant", "last": 1000})  # fmt: skip
        assert history.status_code == 200, history.text
        texts = [m["content"] for m in history.json()["items"]]
        assert texts == ["one", "You said: one", "elsewhere", "You said: elsewhere",
                         "two", "You said: two"]  # fmt: skip
        last2 = await c.get(f"/api/sessions/{sid}/messages",
                            params={"agent": "assistant", "last": 2})  # fmt: skip
        assert [m["content"] for m in last2.json()["items"]] == ["two", "You said: two"]
        none = await c.get(f"/api/sessions/{sid}/messages",
                           params={"agent": "assistant", "last": 0})  # fmt: skip
        assert none.status_code == 200 and none.json()["items"] == []

        # Bob names alice's session: the node refuses it, as a local session would be (404),
        # and nothing is stored in it.
        stolen = await c.post("/api/agents/assistant/call", headers=BOB,
                              json={"content": "mine now", "session_id": sid})  # fmt: skip
        assert stolen.status_code == 404, stolen.text
        assert stolen.json()["error"]["type"] == "SessionNotFound"
        peek = await c.get(f"/api/sessions/{sid}/messages", headers=BOB,
                           params={"agent": "assistant"})  # fmt: skip
        assert peek.status_code == 404 and peek.json()["error"]["type"] == "SessionNotFound"
        peek0 = await c.get(f"/api/sessions/{sid}/messages", headers=BOB,
                            params={"agent": "assistant", "last": 0})  # fmt: skip
        assert peek0.status_code == 404
        stream = await c.post("/api/agents/assistant/stream", headers=BOB,
                              json={"content": "mine now", "session_id": sid})  # fmt: skip
        assert stream.status_code == 404
        after = await c.get(f"/api/sessions/{sid}/messages", params={"agent": "assistant"})
        assert len(after.json()["items"]) == 6

        # Bob's own first call starts his own session on the node.
        his = await c.post("/api/agents/assistant/call", headers=BOB, json={"content": "hi"})
        assert his.status_code == 200 and his.json()["session_id"] not in (None, sid)
        assert await _sessions(node_store, "bob") == [his.json()["session_id"]]
    # Nothing was made in the web app's own store.
    assert await _sessions(here, "alice") == []
    assert await _sessions(here, "bob") == []


async def test_the_stream_route_names_the_session_on_the_node(
    nodes: NodeFactory, tmp_path: Path
) -> None:
    node_store, here = (tmp_path / "node").as_uri(), (tmp_path / "web").as_uri()
    (node,) = nodes(node_store, args=["--insecure"])
    async with web(node.address, here) as c:
        first = await c.post("/api/agents/assistant/stream", json={"content": "one"})
        assert first.status_code == 200, first.text
        events = _sse(first.text)
        assert events[0][0] == "session"
        sid = events[0][1]["session_id"]
        assert await _sessions(node_store, "alice") == [sid]
        assert [name for name, _ in events].count("session") == 1
        assert events[-1][0] == "reply"
        assert events[-1][1]["message"]["content"] == "You said: one"  # type: ignore[index]

        second = await c.post("/api/agents/assistant/stream",
                              json={"content": "two", "session_id": sid})  # fmt: skip
        events = _sse(second.text)
        assert events[0] == ("session", {"session_id": sid})
        assert events[-1][1]["message"]["seq"] == 4  # type: ignore[index]
    assert await _sessions(here, "alice") == []


async def test_routes_the_node_does_not_offer_say_where_the_sessions_are(
    nodes: NodeFactory, tmp_path: Path
) -> None:
    (node,) = nodes((tmp_path / "node").as_uri(), args=["--insecure"])
    here = (tmp_path / "web").as_uri()
    async with web(node.address, here) as c:
        listed = await c.get("/api/sessions", params={"agent": "assistant"})
        made = await c.post("/api/sessions", json={"agent": "assistant"})
        for r in (listed, made):
            assert r.status_code == 422, r.text
            assert r.json()["error"]["type"] == "InvalidArgument"
            assert "keeps its sessions on the node that runs it" in r.json()["error"]["message"]
        # A session of the node is not one of this app's: the local routes do not find it.
        sid = (await c.post("/api/agents/assistant/call", json={"content": "x"})).json()[
            "session_id"
        ]
        info = await c.get(f"/api/sessions/{sid}")
        assert info.status_code == 404
        unknown = await c.get("/api/sessions/" + "0" * 32 + "/messages",
                              params={"agent": "assistant"})  # fmt: skip
        assert unknown.status_code == 404
    assert await _sessions(here, "alice") == []
