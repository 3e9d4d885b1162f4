"""Conformance of the optional :class:`~aixgo.session.ReadThrough`: a tail read through the
caller's :class:`~aixgo.session.kit.Recent` reads what ``get_messages`` reads, reuses and keeps
records in that ``Recent`` only, turns what it decodes afresh with its ``make``, and hands out
copies. A backend without it skips these tests (wrappers such as encryption at rest then read
through ``get_messages``)."""

from __future__ import annotations

import pytest

from aixgo.errors import SessionNotFound
from aixgo.message import Message
from aixgo.session import Backend, ReadThrough, SessionManager
from aixgo.session.kit.recent import Recent
from aixgo.testing.base import ConformanceBase, new_session

__all__ = ["ReadThroughConformance"]


def _through(backend: Backend) -> ReadThrough:
    if not isinstance(backend, ReadThrough):
        pytest.skip(f"{type(backend).__name__} has no get_messages_through(): nothing to check")
    return backend


class _Upper:
    """A ``make`` that upper-cases texts and counts the messages it was given."""

    def __init__(self) -> None:
        self.given = 0

    def __call__(self, session_id: str, messages: list[Message]) -> list[Message]:
        self.given += len(messages)
        return [m.model_copy(update={"content": m.text.upper()}) for m in messages]


class ReadThroughConformance(ConformanceBase):
    """Reads through the caller's ``Recent`` (optional)."""

    @pytest.mark.asyncio
    async def test_reading_through_reads_what_get_messages_reads(self, backend: Backend) -> None:
        reader = _through(backend)
        s = await new_session(SessionManager(backend), 5)
        cp = await s.checkpoint()
        await s.append_messages([Message.user("gone 6"), Message.user("gone 7")])
        await s.restore(cp.id)
        await s.append_messages([Message.user("m6"), Message.user("m7")])
        recent = Recent()
        for _ in range(2):  # the second time from what the first kept
            for last in (None, 0, 1, 3, 7, 50):
                through = await reader.get_messages_through(s.id, recent, last=last)
                assert through == await backend.get_messages(s.id, last=last)
        with pytest.raises(SessionNotFound):
            await reader.get_messages_through("0" * 32, recent)

    @pytest.mark.asyncio
    async def test_reading_through_keeps_records_in_the_callers_recent_only(
        self, backend: Backend
    ) -> None:
        reader = _through(backend)
        s = await new_session(SessionManager(backend), 3)
        make = _Upper()
        recent = Recent(make=make)
        first = await reader.get_messages_through(s.id, recent)
        assert [m.text for m in first] == ["M1", "M2", "M3"]
        assert make.given == 3
        # The store's own reads never see what make made, and never feed the caller's.
        assert [m.text for m in await backend.get_messages(s.id)] == ["m1", "m2", "m3"]
        again = await reader.get_messages_through(s.id, recent)
        assert again == first
        assert make.given == 3  # reused: nothing made again
        assert all(a is not b for a, b in zip(again, first, strict=True))
        await s.append_message(Message.user("m4"))
        tail = await reader.get_messages_through(s.id, recent, last=2)
        assert [m.text for m in tail] == ["M3", "M4"]
        assert make.given == 4
        # Copies: changing a returned message reaches neither what is kept nor the next read.
        tail[0].metadata["changed"] = True
        assert (await reader.get_messages_through(s.id, recent, last=2))[0].metadata == {}

    @pytest.mark.asyncio
    async def test_a_failing_make_fails_the_read_unchanged(self, backend: Backend) -> None:
        reader = _through(backend)
        s = await new_session(SessionManager(backend), 2)

        class Refused(Exception):
            pass

        def refuse(session_id: str, messages: list[Message]) -> list[Message]:
            raise Refused(session_id)

        recent = Recent(make=refuse)
        with pytest.raises(Refused):
            await reader.get_messages_through(s.id, recent)
        make = _Upper()
        recent.make = make  # nothing was kept by the failed read: everything is made now
        assert [m.text for m in await reader.get_messages_through(s.id, recent)] == ["M1", "M2"]
        assert make.given == 2
