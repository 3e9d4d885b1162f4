"""Conformance with the event loop: every operation suspends at least once.

An ``async`` method that finishes without ever suspending never lets another task run: a
loop of calls to it (a busy request in a web server) starves every other task, timers
included. A backend whose work is local (memory, files) must still give the loop a turn.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

import pytest

from aixgo.identifiers import new_id
from aixgo.message import Message
from aixgo.session import Backend, SessionInfo, SessionManager
from aixgo.testing.base import ConformanceBase, new_session, unique

__all__ = ["EventLoopConformance"]


async def _suspended(what: str, call: Awaitable[object]) -> None:
    """Await ``call``; fail naming ``what`` unless the loop got a turn meanwhile."""
    turns: list[None] = []
    asyncio.get_running_loop().call_soon(turns.append, None)
    await call
    if not turns:
        pytest.fail(f"{what} returned without ever suspending: no other task could run")


class EventLoopConformance(ConformanceBase):
    """Every protocol method gives other tasks a turn."""

    @pytest.mark.asyncio
    async def test_every_operation_lets_other_tasks_run(self, backend: Backend) -> None:
        s = await new_session(SessionManager(backend), 2)
        sid = s.id
        info = (await backend.get_session(sid)).model_copy(update={"id": new_id()})
        cp = await backend.create_checkpoint(sid, new_id())
        await _suspended("create_session", backend.create_session(_fresh(info)))
        await _suspended("get_session", backend.get_session(sid))
        await _suspended("list_sessions", backend.list_sessions(agent=s.agent))
        await _suspended("append_messages", backend.append_messages(sid, [Message.user("x")]))
        await _suspended("get_messages", backend.get_messages(sid))
        await _suspended("get_messages(last=1)", backend.get_messages(sid, last=1))
        await _suspended("create_checkpoint", backend.create_checkpoint(sid, new_id()))
        await _suspended("list_checkpoints", backend.list_checkpoints(sid))
        await _suspended(
            "restore_checkpoint", backend.restore_checkpoint(sid, cp.id, undo_id=new_id())
        )
        await _suspended("delete_session", backend.delete_session(sid))


def _fresh(info: SessionInfo) -> SessionInfo:
    return info.model_copy(update={"agent": unique("agent"), "message_count": 0})
