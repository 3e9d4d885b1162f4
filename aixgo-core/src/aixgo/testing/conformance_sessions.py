"""Conformance of sessions as a whole: create, get, list, get-or-create, ownership, delete,
and the names and ids that are accepted or refused."""

from __future__ import annotations

import base64

import pytest

from aixgo.errors import ConflictError, InvalidArgument, InvalidIdentifier, SessionNotFound
from aixgo.identifiers import is_id, new_id
from aixgo.message import Message
from aixgo.session import Backend, SessionInfo, SessionManager
from aixgo.testing.base import (
    ConformanceBase,
    assert_utc,
    backend_calls,
    each_raises,
    listed,
    new_session,
    snapshot,
    texts,
    tick,
    unique,
)
from aixgo.testing.samples import BAD_NAMES, BAD_SESSION_IDS, METADATA, ODD_NAMES

__all__ = ["SessionsConformance"]

# Not base64; base64 of '{"x":1}', 'null', '[1,"../x"]' and '[true,"aaa...a"]'; empty.
_BAD_CURSORS = (
    "not a cursor",
    "%%%",
    "eyJ4IjoxfQ",
    "bnVsbA",
    "WzEsIi4uL3giXQ",
    "W3RydWUsImFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhIl0",
    "",
    # JSON nested 100,000 deep, and the same nested just under the length a cursor may have.
    base64.urlsafe_b64encode(b"[" * 100_000).decode(),
    base64.urlsafe_b64encode(b"[" * 180).decode(),
)


class SessionsConformance(ConformanceBase):
    """Sessions: their summaries, listing, scoping by user, and deletion."""

    @pytest.mark.asyncio
    async def test_create_then_get_round_trips_the_summary(self, backend: Backend) -> None:
        mgr = SessionManager(backend)
        agent, user = unique("agent"), unique("user")
        made = await mgr.create(agent, user_id=user, metadata=METADATA)
        assert is_id(made.id)
        got = await mgr.get(made.id)
        assert (got.id, got.agent, got.user_id, got.metadata) == (made.id, agent, user, METADATA)
        assert got.created_at == made.created_at
        info = await got.info()
        assert (info.id, info.agent, info.user_id) == (made.id, agent, user)
        assert (info.metadata, info.message_count, info.created_at) == (
            METADATA,
            0,
            made.created_at,
        )
        assert_utc(info.created_at)
        assert_utc(info.updated_at)
        assert info.updated_at >= info.created_at

    @pytest.mark.asyncio
    async def test_a_session_without_user_or_metadata(self, backend: Backend) -> None:
        mgr = SessionManager(backend)
        made = await mgr.create(unique("agent"))
        info = await (await mgr.get(made.id)).info()
        assert (info.user_id, info.metadata) == (None, {})
        assert await listed(mgr, agent=made.agent) == [made.id]

    @pytest.mark.asyncio
    async def test_appends_move_message_count_and_updated_at(self, backend: Backend) -> None:
        s = await new_session(SessionManager(backend))
        before = await s.info()
        for count, batch in ((1, [Message.user("a")]), (4, [Message.user(c) for c in "bcd"])):
            await tick()
            await s.append_messages(batch)
            after = await s.info()
            assert after.message_count == count
            assert after.updated_at > before.updated_at
            assert after.created_at == before.created_at
            assert_utc(after.updated_at)
            before = after

    @pytest.mark.asyncio
    async def test_a_missing_session_is_session_not_found(self, backend: Backend) -> None:
        missing = new_id()
        with pytest.raises(SessionNotFound):
            await SessionManager(backend).get(missing)
        await each_raises(SessionNotFound, backend_calls(backend, missing))

    @pytest.mark.asyncio
    async def test_creating_an_existing_session_id_conflicts(self, backend: Backend) -> None:
        s = await new_session(SessionManager(backend), 2)
        before = await snapshot(s)
        with pytest.raises(ConflictError):
            await backend.create_session(before[0].model_copy(update={"message_count": 0}))
        assert await snapshot(s) == before

    @pytest.mark.asyncio
    async def test_list_is_most_recently_updated_first(self, backend: Backend) -> None:
        mgr, agent = SessionManager(backend), unique("agent")
        made = []
        for _ in range(4):
            made.append((await mgr.create(agent)).id)
            await tick()
        assert await listed(mgr, agent=agent) == made[::-1]

    @pytest.mark.asyncio
    async def test_appending_moves_a_session_to_the_front(self, backend: Backend) -> None:
        mgr, agent = SessionManager(backend), unique("agent")
        old = await new_session(mgr, 1, agent=agent)
        await tick()
        new = await new_session(mgr, 1, agent=agent)
        await tick()
        await old.append_message(Message.user("back again"))
        assert await listed(mgr, agent=agent) == [old.id, new.id]

    @pytest.mark.asyncio
    async def test_list_filters_by_agent_user_or_both(self, backend: Backend) -> None:
        mgr = SessionManager(backend)
        a1, a2, u1, u2 = unique("a1"), unique("a2"), unique("u1"), unique("u2")
        made = {(a, u): (await mgr.create(a, user_id=u)).id for a in (a1, a2) for u in (u1, u2)}
        anonymous = (await mgr.create(a1)).id
        assert set(await listed(mgr, agent=a1)) == {made[a1, u1], made[a1, u2], anonymous}
        assert set(await listed(mgr, user_id=u1)) == {made[a1, u1], made[a2, u1]}
        assert await listed(mgr, agent=a2, user_id=u2) == [made[a2, u2]]
        assert await listed(mgr, agent=a2, user_id=unique("nobody")) == []

    @pytest.mark.asyncio
    async def test_listed_rows_are_current_summaries(self, backend: Backend) -> None:
        mgr = SessionManager(backend)
        s = await mgr.create(unique("agent"), user_id=unique("user"), metadata=METADATA)
        await s.append_messages([Message.user("a"), Message.assistant("b")])
        page = await mgr.list(agent=s.agent, user_id=s.user_id)
        assert page.items == [await s.info()]
        assert page.next_cursor is None

    @pytest.mark.asyncio
    async def test_list_pages_without_gaps_or_duplicates(self, backend: Backend) -> None:
        mgr, agent = SessionManager(backend), unique("agent")
        made = {(await mgr.create(agent)).id for _ in range(23)}
        rows: list[SessionInfo] = []
        sizes: list[int] = []
        cursor: str | None = None
        while len(sizes) < 10:
            page = await mgr.list(agent=agent, limit=5, cursor=cursor)
            rows.extend(page.items)
            sizes.append(len(page.items))
            if (cursor := page.next_cursor) is None:
                break
        assert sizes == [5, 5, 5, 5, 3]
        assert len(rows) == 23
        assert {r.id for r in rows} == made
        keys = [(r.updated_at, r.id) for r in rows]
        assert keys == sorted(keys, reverse=True)
        whole = await mgr.list(agent=agent, limit=23)
        assert [r.id for r in whole.items] == [r.id for r in rows]
        assert whole.next_cursor is None

    @pytest.mark.asyncio
    async def test_a_cursor_outlives_the_row_it_points_at(self, backend: Backend) -> None:
        mgr, agent = SessionManager(backend), unique("agent")
        for _ in range(5):
            await mgr.create(agent)
        everything = await listed(mgr, agent=agent)
        first = await mgr.list(agent=agent, limit=2)
        assert first.next_cursor is not None
        # The cursor holds a position in the order, not a reference to a row that must exist.
        await mgr.delete(first.items[-1].id)
        rest = await listed(mgr, agent=agent, limit=2, cursor=first.next_cursor)
        assert rest == everything[2:]

    @pytest.mark.asyncio
    @pytest.mark.parametrize("cursor", _BAD_CURSORS, ids=lambda c: c[:40])
    async def test_a_bad_cursor_is_invalid_argument(self, backend: Backend, cursor: str) -> None:
        mgr = SessionManager(backend)
        await mgr.create(unique("agent"))
        with pytest.raises(InvalidArgument):
            await mgr.list(cursor=cursor)

    @pytest.mark.asyncio
    async def test_a_limit_out_of_range_is_invalid_argument(self, backend: Backend) -> None:
        mgr = SessionManager(backend)
        s = await new_session(mgr)
        for limit in (0, -1, 1001, True):
            with pytest.raises(InvalidArgument):
                await mgr.list(limit=limit)
        assert [i.id for i in (await mgr.list(agent=s.agent, limit=1000)).items] == [s.id]

    @pytest.mark.asyncio
    async def test_get_or_create_returns_the_users_latest_session(self, backend: Backend) -> None:
        mgr = SessionManager(backend)
        agent, user = unique("agent"), unique("user")
        first = await mgr.create(agent, user_id=user)
        await tick()
        await mgr.create(agent, user_id=user)
        await tick()
        await first.append_message(Message.user("still talking"))
        await tick()
        await mgr.create(unique("other-agent"), user_id=user)
        await mgr.create(agent, user_id=unique("other-user"))
        await mgr.create(agent)
        assert (await mgr.get_or_create(agent, user)).id == first.id

    @pytest.mark.asyncio
    async def test_get_or_create_creates_when_the_user_has_none(self, backend: Backend) -> None:
        mgr = SessionManager(backend)
        agent, user = unique("agent"), unique("user")
        others = {
            (await mgr.create(agent, user_id=unique("other-user"))).id,
            (await mgr.create(unique("other-agent"), user_id=user)).id,
        }
        made = await mgr.get_or_create(agent, user)
        assert made.id not in others
        assert (made.agent, made.user_id) == (agent, user)
        assert (await mgr.get_or_create(agent, user)).id == made.id
        assert await listed(mgr, agent=agent, user_id=user) == [made.id]

    @pytest.mark.asyncio
    async def test_another_users_session_looks_missing(self, backend: Backend) -> None:
        mgr = SessionManager(backend)
        owned, anonymous = await new_session(mgr, 1), await mgr.create(unique("agent"))
        missing, intruder = new_id(), unique("intruder")
        with pytest.raises(SessionNotFound) as absent:
            await mgr.get(missing, user_id=intruder)
        for s in (owned, anonymous):
            with pytest.raises(SessionNotFound) as hidden:
                await mgr.get(s.id, user_id=intruder)
            assert str(hidden.value).replace(s.id, "<id>") == str(absent.value).replace(
                missing, "<id>"
            )
        assert (await mgr.get(owned.id, user_id=owned.user_id)).id == owned.id

    @pytest.mark.asyncio
    async def test_only_the_owner_can_delete_with_a_user_id(self, backend: Backend) -> None:
        mgr = SessionManager(backend)
        s = await new_session(mgr, 2)
        await s.checkpoint()
        before = await snapshot(s)
        with pytest.raises(SessionNotFound):
            await mgr.delete(s.id, user_id=unique("intruder"))
        assert await snapshot(s) == before
        await mgr.delete(s.id, user_id=s.user_id)
        with pytest.raises(SessionNotFound):
            await mgr.get(s.id)

    @pytest.mark.asyncio
    async def test_delete_removes_messages_checkpoints_and_listing(self, backend: Backend) -> None:
        mgr = SessionManager(backend)
        s = await new_session(mgr, 3)
        await s.checkpoint(label="doomed")
        await mgr.delete(s.id)
        assert await listed(mgr, agent=s.agent) == []
        assert await listed(mgr, user_id=s.user_id) == []
        with pytest.raises(SessionNotFound):
            await mgr.get(s.id)
        with pytest.raises(SessionNotFound):
            await s.append_message(Message.user("too late"))
        await each_raises(SessionNotFound, backend_calls(backend, s.id))

    @pytest.mark.asyncio
    async def test_delete_leaves_other_sessions_alone(self, backend: Backend) -> None:
        mgr, agent, user = SessionManager(backend), unique("agent"), unique("user")
        kept = await new_session(mgr, 2, agent=agent, user_id=user)
        await kept.checkpoint()
        before = await snapshot(kept)
        doomed = await new_session(mgr, 3, agent=agent, user_id=user)
        await doomed.checkpoint()
        await tick()
        await mgr.delete(doomed.id)
        assert await snapshot(kept) == before
        await tick()
        fresh = await mgr.create(agent, user_id=user)
        assert (await fresh.get_messages(), await fresh.list_checkpoints()) == ([], [])
        assert await listed(mgr, agent=agent, user_id=user) == [fresh.id, kept.id]

    @pytest.mark.asyncio
    @pytest.mark.parametrize("name", BAD_NAMES)
    async def test_a_bad_agent_name_is_invalid_identifier(
        self, backend: Backend, name: str
    ) -> None:
        mgr, user = SessionManager(backend), unique("user")
        with pytest.raises(InvalidIdentifier):
            await mgr.create(name, user_id=user)
        with pytest.raises(InvalidIdentifier):
            await mgr.get_or_create(name, user)
        with pytest.raises(InvalidIdentifier):
            await mgr.list(agent=name)
        assert await listed(mgr, user_id=user) == []

    @pytest.mark.asyncio
    @pytest.mark.parametrize("name", BAD_NAMES)
    async def test_a_bad_user_id_is_invalid_identifier(self, backend: Backend, name: str) -> None:
        mgr = SessionManager(backend)
        s = await new_session(mgr)
        with pytest.raises(InvalidIdentifier):
            await mgr.create(s.agent, user_id=name)
        with pytest.raises(InvalidIdentifier):
            await mgr.get_or_create(s.agent, name)
        with pytest.raises(InvalidIdentifier):
            await mgr.get(s.id, user_id=name)
        with pytest.raises(InvalidIdentifier):
            await mgr.list(user_id=name)
        assert await listed(mgr, agent=s.agent) == [s.id]

    @pytest.mark.asyncio
    @pytest.mark.parametrize("session_id", BAD_SESSION_IDS)
    async def test_a_malformed_session_id_is_invalid_identifier(
        self, backend: Backend, session_id: str
    ) -> None:
        mgr = SessionManager(backend)
        s = await new_session(mgr, 1)
        for call in (mgr.get, mgr.delete):
            with pytest.raises(InvalidIdentifier):
                await call(session_id)
        assert await texts(s) == ["m1"]

    @pytest.mark.asyncio
    @pytest.mark.parametrize("name", ODD_NAMES)
    async def test_odd_but_valid_names_work(self, backend: Backend, name: str) -> None:
        mgr, other = SessionManager(backend), unique("other")
        as_agent = await mgr.create(name, user_id=other)
        as_user = await mgr.create(other, user_id=name)
        assert await listed(mgr, agent=name, user_id=other) == [as_agent.id]
        assert await listed(mgr, agent=other, user_id=name) == [as_user.id]
        got = await mgr.get(as_agent.id, user_id=other)
        assert (got.agent, got.user_id) == (name, other)
        got = await mgr.get(as_user.id, user_id=name)
        assert (got.agent, got.user_id) == (other, name)
        assert (await mgr.get_or_create(name, other)).id == as_agent.id

    @pytest.mark.asyncio
    async def test_similar_names_stay_distinct(self, backend: Backend) -> None:
        mgr, tag = SessionManager(backend), new_id()[:8]
        # Case, surrounding space and Unicode normalization must not merge names.
        names = [f"alice{tag}", f"Alice{tag}", f" alice{tag}", f"alice{tag} ", f"alice{tag}\u00e9"]
        names.append(f"alice{tag}e\u0301")
        made = {name: (await mgr.create(name, user_id=name)).id for name in names}
        for name, sid in made.items():
            assert await listed(mgr, agent=name) == [sid]
            assert await listed(mgr, user_id=name) == [sid]
