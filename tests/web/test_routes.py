"""Every route of the API through the ASGI app: what it returns, what it stores, and that
another user's session is not found on any of them."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aixgo import Message

from .conftest import BOB, Client, sse_events

pytestmark = pytest.mark.asyncio


async def test_agents_are_listed(client: Client) -> None:
    async with client() as (c, _):
        r = await c.get("/api/agents")
    assert r.status_code == 200
    assert {a["name"]: a["session_mode"] for a in r.json()["items"]} == {
        "broken": "enabled",
        "echo": "enabled",
        "slow": "enabled",
        "spell": "enabled",
        "stumble": "enabled",
        "stateless": "disabled",
    }


async def test_a_session_is_created_listed_read_and_deleted(client: Client) -> None:
    async with client() as (c, rt):
        r = await c.post("/api/sessions", json={"agent": "echo", "metadata": {"title": "trip"}})
        assert r.status_code == 201
        info = r.json()
        assert info["agent"] == "echo" and info["user_id"] == "alice"
        assert info["metadata"] == {"title": "trip"} and info["message_count"] == 0
        sid = info["id"]
        assert (await rt.session_manager.get(sid)).user_id == "alice"

        listed = (await c.get("/api/sessions")).json()
        assert [s["id"] for s in listed["items"]] == [sid] and listed["next_cursor"] is None
        assert (await c.get(f"/api/sessions/{sid}")).json()["id"] == sid

        r = await c.delete(f"/api/sessions/{sid}")
        assert r.status_code == 204 and r.content == b""
        assert (await c.get(f"/api/sessions/{sid}")).status_code == 404
        assert (await c.get("/api/sessions")).json()["items"] == []


async def test_sessions_are_paged_by_cursor_and_filtered_by_agent(client: Client) -> None:
    async with client() as (c, rt):
        made = [(await c.post("/api/sessions", json={"agent": "echo"})).json()["id"]
                for _ in range(5)]  # fmt: skip
        await rt.session_manager.create("slow", user_id="alice")
        await rt.session_manager.create("echo", user_id="bob")  # not alice's: never listed
        seen: list[str] = []
        cursor = None
        while True:
            params: dict[str, Any] = {"agent": "echo", "limit": 2}
            if cursor:
                params["cursor"] = cursor
            page = (await c.get("/api/sessions", params=params)).json()
            assert len(page["items"]) <= 2
            seen += [s["id"] for s in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert sorted(seen) == sorted(made)
        everything = (await c.get("/api/sessions")).json()["items"]
        assert len(everything) == 6


async def test_a_call_replies_in_json_and_stores_both_messages(client: Client) -> None:
    async with client() as (c, rt):
        r = await c.post("/api/agents/echo/call", json={"content": "hello"})
        assert r.status_code == 200
        body = r.json()
        assert body["message"]["role"] == "assistant"
        assert body["message"]["content"] == "echo: hello" and body["message"]["seq"] == 2
        sid = body["session_id"]
        s = await rt.session_manager.get(sid, user_id="alice")
        assert [m.text for m in await s.get_messages()] == ["hello", "echo: hello"]

        # Without a session id the user's latest session with the agent goes on.
        again = (await c.post("/api/agents/echo/call", json={"content": "more"})).json()
        assert again["session_id"] == sid and again["message"]["seq"] == 4

        tail = (await c.get(f"/api/sessions/{sid}/messages", params={"last": 3})).json()
        assert [m["content"] for m in tail["items"]] == ["echo: hello", "more", "echo: more"]
        everything = (await c.get(f"/api/sessions/{sid}/messages")).json()["items"]
        assert [m["seq"] for m in everything] == [1, 2, 3, 4]


async def test_a_call_continues_the_named_session(client: Client) -> None:
    async with client() as (c, _):
        first = (await c.post("/api/sessions", json={"agent": "echo"})).json()["id"]
        second = (await c.post("/api/sessions", json={"agent": "echo"})).json()["id"]
        r = await c.post("/api/agents/echo/call", json={"content": "hi", "session_id": first})
        assert r.json()["session_id"] == first
        assert (await c.get(f"/api/sessions/{first}")).json()["message_count"] == 2
        assert (await c.get(f"/api/sessions/{second}")).json()["message_count"] == 0


async def test_a_repeated_call_with_the_same_id_is_answered_once(client: Client) -> None:
    async with client() as (c, _):
        body = {"content": "once", "id": "msg-1"}
        one = (await c.post("/api/agents/echo/call", json=body)).json()
        two = (await c.post("/api/agents/echo/call", json=body)).json()
        assert one["message"]["id"] == two["message"]["id"]
        sid = one["session_id"]
        assert (await c.get(f"/api/sessions/{sid}")).json()["message_count"] == 2


async def test_a_stateless_agent_touches_no_session(client: Client) -> None:
    async with client() as (c, _):
        r = await c.post("/api/agents/stateless/call", json={"content": "hi"})
        assert r.status_code == 200
        assert r.json() == {"session_id": None, "message": r.json()["message"]}
        assert r.json()["message"]["content"] == "echo: hi"
        assert (await c.get("/api/sessions")).json()["items"] == []


async def test_the_stream_carries_the_session_then_the_reply(client: Client) -> None:
    async with client() as (c, rt):
        r = await c.post("/api/agents/echo/stream", json={"content": "streamed"})
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        events = sse_events(r.text)
        assert events[0][0] == "session"
        sid = json.loads(events[0][1])["session_id"]
        assert events[-1][0] == "reply"
        reply = json.loads(events[-1][1])
        assert reply["type"] == "reply" and reply["message"]["content"] == "echo: streamed"
        s = await rt.session_manager.get(sid, user_id="alice")
        assert [m.text for m in await s.get_messages()] == ["streamed", "echo: streamed"]


async def test_the_stream_carries_deltas_and_steps_as_they_happen(client: Client) -> None:
    async with client() as (c, rt):
        r = await c.post("/api/agents/spell/stream", json={"content": "abc"})
        events = sse_events(r.text)
        assert [name for name, _ in events] == ["session", "step", "delta", "delta", "delta",
                                                "reply"]  # fmt: skip
        data = [json.loads(d) for _, d in events]
        assert [d["text"] for d in data[2:5]] == ["A", "B", "C"]
        assert data[1]["message"]["content"] == "spelling abc" and data[1]["message"]["seq"] == 2
        assert data[-1]["message"]["content"] == "ABC" and data[-1]["message"]["seq"] == 3
        s = await rt.session_manager.get(data[0]["session_id"])
        assert [m.text for m in await s.get_messages()] == ["abc", "spelling abc", "ABC"]


async def test_checkpoints_are_made_listed_and_restored(client: Client) -> None:
    async with client() as (c, _):
        sid = (await c.post("/api/agents/echo/call", json={"content": "one"})).json()["session_id"]
        r = await c.post(f"/api/sessions/{sid}/checkpoints", json={"label": "after-one"})
        assert r.status_code == 201
        cp = r.json()
        assert cp["seq"] == 2 and cp["label"] == "after-one" and cp["session_id"] == sid
        await c.post("/api/agents/echo/call", json={"content": "two", "session_id": sid})
        # A checkpoint without a body (no label) is fine too.
        bare = await c.post(f"/api/sessions/{sid}/checkpoints")
        assert bare.status_code == 201 and bare.json()["label"] is None

        listed = (await c.get(f"/api/sessions/{sid}/checkpoints")).json()["items"]
        assert [x["id"] for x in listed] == [cp["id"], bare.json()["id"]]

        r = await c.post(f"/api/sessions/{sid}/checkpoints/{cp['id']}/restore")
        assert r.status_code == 200
        undo = r.json()["undo"]
        assert undo["label"] == "before-restore" and undo["seq"] == 4
        history = (await c.get(f"/api/sessions/{sid}/messages")).json()["items"]
        assert [m["content"] for m in history] == ["one", "echo: one"]

        await c.post(f"/api/sessions/{sid}/checkpoints/{undo['id']}/restore")
        history = (await c.get(f"/api/sessions/{sid}/messages")).json()["items"]
        assert len(history) == 4


async def test_another_users_session_is_not_found_on_every_route(client: Client) -> None:
    async with client() as (c, rt):
        sid = (await c.post("/api/agents/echo/call", json={"content": "mine"})).json()["session_id"]
        cp = (await c.post(f"/api/sessions/{sid}/checkpoints")).json()["id"]
        routes = [
            ("GET", f"/api/sessions/{sid}", None),
            ("DELETE", f"/api/sessions/{sid}", None),
            ("GET", f"/api/sessions/{sid}/messages", None),
            ("GET", f"/api/sessions/{sid}/checkpoints", None),
            ("POST", f"/api/sessions/{sid}/checkpoints", {"label": "x"}),
            ("POST", f"/api/sessions/{sid}/checkpoints/{cp}/restore", None),
            ("POST", "/api/agents/echo/call", {"content": "hi", "session_id": sid}),
            ("POST", "/api/agents/echo/stream", {"content": "hi", "session_id": sid}),
        ]
        missing = ("1" if sid[0] == "0" else "0") + sid[1:]
        for method, url, body in routes:
            theirs = await c.request(method, url, json=body, headers=BOB)
            elsewhere = json.loads(json.dumps(body).replace(sid, missing))
            nobody = await c.request(method, url.replace(sid, missing), json=elsewhere)
            assert theirs.status_code == nobody.status_code == 404, (url, theirs.text, nobody.text)
            assert theirs.json()["error"]["type"] == "SessionNotFound"
            assert "SessionManager" not in theirs.text  # no hint meant for Python callers
            # Indistinguishable from a session that does not exist.
            assert (
                theirs.json()["error"]["message"].replace(sid, missing)
                == (nobody.json()["error"]["message"])
            )
        assert (await c.get("/api/sessions", headers=BOB)).json()["items"] == []
        # Nothing of bob's calls reached alice's session.
        s = await rt.session_manager.get(sid, user_id="alice")
        assert [m.text for m in await s.get_messages()] == ["mine", "echo: mine"]
        assert len(await s.list_checkpoints()) == 1


async def test_a_message_content_can_be_parts(client: Client) -> None:
    async with client() as (c, rt):
        parts = [{"type": "text", "text": "from parts"}]
        r = await c.post("/api/agents/echo/call", json={"content": parts})
        assert r.json()["message"]["content"] == "echo: from parts"
        s = await rt.session_manager.get(r.json()["session_id"])
        first = (await s.get_messages())[0]
        assert first == Message.user(parts, id=first.id, created_at=first.created_at, seq=1)
