"""Conformance of checkpoints and restore: what a checkpoint names, how restore moves the
history without destroying any of it, and how history, tails and retries behave after."""

from __future__ import annotations

import pytest

from aixgo.errors import CheckpointNotFound, ConflictError, InvalidIdentifier
from aixgo.identifiers import is_id, new_id
from aixgo.message import Message
from aixgo.session import Backend, SessionManager
from aixgo.testing.base import (
    ConformanceBase,
    assert_utc,
    listed,
    new_session,
    snapshot,
    texts,
    tick,
    unique,
)
from aixgo.testing.samples import at, numbered

__all__ = ["CheckpointsConformance"]

_UNDO_LABEL = "before-restore"


class CheckpointsConformance(ConformanceBase):
    """Checkpoints and restore."""

    @pytest.mark.asyncio
    async def test_a_checkpoint_names_the_current_head(self, backend: Backend) -> None:
        s = await new_session(SessionManager(backend), 2)
        cp = await s.checkpoint(label="before-tool")
        assert is_id(cp.id)
        assert (cp.session_id, cp.seq, cp.label) == (s.id, 2, "before-tool")
        assert_utc(cp.created_at)
        assert await s.list_checkpoints() == [cp]
        assert await texts(s) == ["m1", "m2"]

    @pytest.mark.asyncio
    async def test_list_checkpoints_is_oldest_first(self, backend: Backend) -> None:
        mgr = SessionManager(backend)
        s, other = await new_session(mgr), await new_session(mgr)
        made = []
        for i in range(4):
            made.append(await s.checkpoint(label=f"cp{i} 🛠 名前" if i % 2 else None))
            await s.append_message(Message.user(f"m{i + 1}"))
            await tick()
        assert await s.list_checkpoints() == made
        assert [cp.seq for cp in made] == [0, 1, 2, 3]
        assert [cp.label for cp in made] == [None, "cp1 🛠 名前", None, "cp3 🛠 名前"]
        assert await other.list_checkpoints() == []

    @pytest.mark.asyncio
    async def test_restore_brings_back_the_checkpoint_history(self, backend: Backend) -> None:
        s = await new_session(SessionManager(backend), 3)
        cp = await s.checkpoint()
        kept = await s.get_messages()
        await s.append_messages(numbered(2, start=4))
        await s.restore(cp.id)
        assert await s.get_messages() == kept
        assert (await s.info()).message_count == 3
        assert (await s.append_message(Message.user("next"))).seq == 4

    @pytest.mark.asyncio
    async def test_restore_to_an_empty_checkpoint_empties_history(self, backend: Backend) -> None:
        s = await new_session(SessionManager(backend))
        cp = await s.checkpoint()
        assert cp.seq == 0
        await s.append_messages(numbered(3))
        await s.restore(cp.id)
        assert await s.get_messages() == []
        assert await s.get_messages(last=2) == []
        assert (await s.info()).message_count == 0
        fresh = Message.user("a fresh start")
        assert await s.append_message(fresh) == at(fresh, 1)

    @pytest.mark.asyncio
    async def test_restore_returns_an_undo_checkpoint(self, backend: Backend) -> None:
        s = await new_session(SessionManager(backend), 2)
        cp = await s.checkpoint(label="two")
        await s.append_messages(numbered(2, start=3))
        full = await s.get_messages()
        undo = await s.restore(cp.id)
        assert is_id(undo.id)
        assert undo.id != cp.id
        assert (undo.session_id, undo.seq, undo.label) == (s.id, 4, _UNDO_LABEL)
        assert_utc(undo.created_at)
        assert await s.list_checkpoints() == [cp, undo]
        await s.restore(undo.id)
        assert await s.get_messages() == full

    @pytest.mark.asyncio
    async def test_a_checkpoint_survives_restore_and_divergence(self, backend: Backend) -> None:
        s = await new_session(SessionManager(backend), 2)
        cp1 = await s.checkpoint()
        await s.append_messages(numbered(2, start=3))
        cp2 = await s.checkpoint()
        at_cp2 = await s.get_messages()
        await s.restore(cp1.id)
        await s.append_messages(numbered(3, start=3, prefix="x"))
        cp3 = await s.checkpoint()
        diverged = await s.get_messages()
        await s.restore(cp2.id)
        assert await s.get_messages() == at_cp2
        await s.restore(cp3.id)
        assert await s.get_messages() == diverged
        await s.restore(cp1.id)
        assert await texts(s) == ["m1", "m2"]

    @pytest.mark.asyncio
    async def test_restoring_twice_to_one_checkpoint(self, backend: Backend) -> None:
        s = await new_session(SessionManager(backend), 2)
        cp = await s.checkpoint()
        await s.append_message(Message.user("m3"))
        first = await s.restore(cp.id)
        second = await s.restore(cp.id)
        assert await texts(s) == ["m1", "m2"]
        assert (first.seq, second.seq) == (3, 2)
        assert first.id != second.id
        assert first.label == second.label == _UNDO_LABEL
        assert await s.list_checkpoints() == [cp, first, second]
        await s.restore(first.id)
        assert await texts(s) == ["m1", "m2", "m3"]

    @pytest.mark.asyncio
    async def test_another_sessions_checkpoint_is_not_found(self, backend: Backend) -> None:
        mgr = SessionManager(backend)
        mine, theirs = await new_session(mgr, 2), await new_session(mgr, 3)
        foreign = await theirs.checkpoint()
        before = await snapshot(mine), await snapshot(theirs)
        with pytest.raises(CheckpointNotFound):
            await mine.restore(foreign.id)
        assert (await snapshot(mine), await snapshot(theirs)) == before

    @pytest.mark.asyncio
    async def test_an_unknown_checkpoint_is_not_found(self, backend: Backend) -> None:
        s = await new_session(SessionManager(backend), 2)
        await s.checkpoint()
        before = await snapshot(s)
        with pytest.raises(CheckpointNotFound):
            await s.restore(new_id())
        assert await snapshot(s) == before

    @pytest.mark.asyncio
    async def test_a_malformed_checkpoint_id_is_invalid(self, backend: Backend) -> None:
        s = await new_session(SessionManager(backend), 2)
        before = await snapshot(s)
        for bad in ("../etc/passwd", "", "A" * 32, "a" * 33):
            with pytest.raises(InvalidIdentifier):
                await s.restore(bad)
        assert await snapshot(s) == before

    @pytest.mark.asyncio
    async def test_restore_updates_count_updated_at_and_listing(self, backend: Backend) -> None:
        mgr, agent = SessionManager(backend), unique("agent")
        s = await new_session(mgr, 1, agent=agent)
        cp = await s.checkpoint()
        await s.append_messages(numbered(2, start=2))
        await tick()
        other = await new_session(mgr, agent=agent)
        before = await s.info()
        await tick()
        await s.restore(cp.id)
        after = await s.info()
        assert after.message_count == 1
        assert after.updated_at > before.updated_at
        assert await listed(mgr, agent=agent) == [s.id, other.id]

    @pytest.mark.asyncio
    async def test_get_messages_last_across_restores(self, backend: Backend) -> None:
        s = await new_session(SessionManager(backend), 1)
        one = await s.checkpoint()
        await s.append_messages(numbered(2, start=2))
        three = await s.checkpoint()
        await s.append_messages(numbered(2, start=4))
        await s.restore(three.id)
        await s.append_messages(numbered(3, start=4, prefix="x"))
        six = await s.checkpoint()
        await s.restore(one.id)
        await s.append_messages(numbered(2, start=2, prefix="y"))
        await s.restore(six.id)
        await s.append_message(Message.user("z7"))
        full = await s.get_messages()
        assert [m.text for m in full] == ["m1", "m2", "m3", "x4", "x5", "x6", "z7"]
        assert [m.seq for m in full] == list(range(1, 8))
        for n in range(len(full) + 2):
            tail = full[len(full) - min(n, len(full)) :]
            assert await s.get_messages(last=n) == tail, f"last={n}"
            assert await backend.get_messages(s.id, last=n) == tail, f"last={n}"

    @pytest.mark.asyncio
    async def test_expected_seq_counts_the_restored_history(self, backend: Backend) -> None:
        s = await new_session(SessionManager(backend), 2)
        cp = await s.checkpoint()
        await s.append_messages(numbered(2, start=3))
        await s.restore(cp.id)
        with pytest.raises(ConflictError):
            await s.append_message(Message.user("stale"), expected_seq=4)
        assert (await s.append_message(Message.user("m3"), expected_seq=2)).seq == 3

    @pytest.mark.asyncio
    async def test_a_discarded_message_can_be_appended_again(self, backend: Backend) -> None:
        s = await new_session(SessionManager(backend))
        a, b, c = Message.user("a"), Message.user("b"), Message.user("c")
        await s.append_message(a)
        cp = await s.checkpoint()
        await s.append_messages([b, c])
        await s.restore(cp.id)
        # c is no longer in the current history, so it is new again (and a is still known).
        assert await s.append_messages([c, a]) == [at(c, 2), at(a, 1)]
        assert await s.get_messages() == [at(a, 1), at(c, 2)]

    @pytest.mark.asyncio
    async def test_a_message_brought_back_is_not_stored_twice(self, backend: Backend) -> None:
        s = await new_session(SessionManager(backend))
        a, b = Message.user("a"), Message.user("b")
        await s.append_message(a)
        cp = await s.checkpoint()
        await s.append_message(b)
        undo = await s.restore(cp.id)
        await s.append_message(b)  # stored anew after the restore discarded it
        await s.restore(undo.id)  # the first b is current again
        assert await s.append_message(b) == at(b, 2)
        assert await s.get_messages() == [at(a, 1), at(b, 2)]
