"""``agent=`` on a session's messages: the session must be that agent's (a remote agent's is
read from its node, tests/runtime_grpc/test_web_remote.py); ``GET /agents`` says which agents
keep their sessions elsewhere."""

from __future__ import annotations

import pytest

from .conftest import Client

pytestmark = pytest.mark.asyncio


async def test_messages_of_a_session_of_the_named_agent(client: Client) -> None:
    async with client() as (c, _):
        sid = (await c.post("/api/agents/echo/call", json={"content": "hi"})).json()["session_id"]
        mine = await c.get(f"/api/sessions/{sid}/messages", params={"agent": "echo"})
        assert [m["content"] for m in mine.json()["items"]] == ["hi", "echo: hi"]

        other = await c.get(f"/api/sessions/{sid}/messages", params={"agent": "spell"})
        assert other.status_code == 422
        assert other.json()["error"]["type"] == "InvalidArgument"
        assert "belongs to agent 'echo'" in other.json()["error"]["message"]
        unknown = await c.get(f"/api/sessions/{sid}/messages", params={"agent": "nobody"})
        assert unknown.status_code == 404
        assert unknown.json()["error"]["type"] == "AgentNotFound"

        # Listing by an agent not served here is still just what the store holds: none.
        listed = await c.get("/api/sessions", params={"agent": "nobody"})
        assert listed.status_code == 200 and listed.json()["items"] == []


async def test_local_agents_are_not_hosted(client: Client) -> None:
    async with client() as (c, _):
        agents = (await c.get("/api/agents")).json()["items"]
    assert agents and all(a["hosted"] is False for a in agents)
