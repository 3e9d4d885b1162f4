"""Conformance of a session's history: appends and their ``seq``, reading the tail,
idempotent retries, optimistic concurrency, concurrent writers, and what content is stored
or refused."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import JsonValue

from aixgo.errors import ConflictError, InvalidArgument, InvalidMessage
from aixgo.message import Message, ToolCall, utc_now
from aixgo.session import Backend, SessionManager, codec
from aixgo.session.codec import MAX_DEPTH
from aixgo.session.session import MAX_SEQ
from aixgo.testing.base import ConformanceBase, new_session, texts
from aixgo.testing.samples import (
    AWKWARD_TEXTS,
    REFUSED_BATCHES,
    as_stored,
    at,
    every_field,
    nested,
    numbered,
)

__all__ = ["HistoryConformance"]


class HistoryConformance(ConformanceBase):
    """Messages: ordering, round trips, tails, idempotence, concurrency and limits."""

    @pytest.mark.asyncio
    async def test_append_message_returns_it_stored_with_seq(self, backend: Backend) -> None:
        s = await new_session(SessionManager(backend))
        first, second = Message.user("one"), Message.assistant("two")
        assert await s.append_message(first) == at(first, 1)
        assert await s.append_message(second) == at(second, 2)
        assert await s.get_messages() == [at(first, 1), at(second, 2)]

    @pytest.mark.asyncio
    async def test_append_messages_returns_the_stored_batch(self, backend: Backend) -> None:
        s = await new_session(SessionManager(backend), 2)
        batch = numbered(3, start=3)
        assert await s.append_messages(batch) == as_stored(batch, 3)
        history = await s.get_messages()
        assert [m.seq for m in history] == [1, 2, 3, 4, 5]
        assert [m.text for m in history] == ["m1", "m2", "m3", "m4", "m5"]
        assert (await s.info()).message_count == 5

    @pytest.mark.asyncio
    async def test_every_message_field_round_trips(self, backend: Backend) -> None:
        mgr = SessionManager(backend)
        s = await new_session(mgr)
        sent = every_field()
        assert await s.append_messages(sent) == as_stored(sent)
        again = await mgr.get(s.id)
        assert await again.get_messages() == as_stored(sent)
        assert await again.get_messages(last=2) == as_stored(sent)[-2:]

    @pytest.mark.asyncio
    @pytest.mark.parametrize("last", [0, 1, 3, 5, 8])
    async def test_get_messages_last_is_the_tail(self, backend: Backend, last: int) -> None:
        s = await new_session(SessionManager(backend))
        stored = await s.append_messages(numbered(5))
        tail = stored[len(stored) - min(last, len(stored)) :]
        assert await s.get_messages(last=last) == tail
        assert await backend.get_messages(s.id, last=last) == tail

    @pytest.mark.asyncio
    async def test_an_empty_session_has_no_messages(self, backend: Backend) -> None:
        s = await new_session(SessionManager(backend))
        assert await s.get_messages() == []
        assert await s.get_messages(last=3) == []
        assert await backend.get_messages(s.id, last=0) == []

    @pytest.mark.asyncio
    async def test_reappending_a_message_returns_the_stored_copy(self, backend: Backend) -> None:
        s = await new_session(SessionManager(backend))
        msg = Message.user("once")
        stored = await s.append_message(msg)
        assert await s.append_message(msg) == stored
        # A retry may rebuild the message: other metadata or created_at is still a repeat.
        rebuilt = msg.model_copy(update={"metadata": {"retry": 1}, "created_at": utc_now()})
        assert await s.append_message(rebuilt) == stored
        assert await s.append_messages([msg]) == [stored]
        assert await s.get_messages() == [stored]
        assert (await s.info()).message_count == 1

    @pytest.mark.asyncio
    @pytest.mark.parametrize(
        "change",
        [
            {"content": "changed"},
            {"role": "assistant"},
            {"name": "mallory"},
            {"content": [{"type": "text", "text": "once"}]},
        ],
    )
    async def test_reusing_a_stored_id_for_other_content_conflicts(
        self, backend: Backend, change: dict[str, object]
    ) -> None:
        s = await new_session(SessionManager(backend))
        msg = Message.user("once")
        stored = [await s.append_message(msg), await s.append_message(Message.assistant("ok"))]
        other = msg.model_copy(update=change)
        with pytest.raises(ConflictError, match="different role or content"):
            await s.append_message(other)
        with pytest.raises(ConflictError):
            await backend.append_messages(s.id, [other])
        # In a batch, the new messages beside it are not stored either.
        with pytest.raises(ConflictError):
            await s.append_messages([Message.user("new"), other, Message.user("newer")])
        assert await s.get_messages() == stored
        assert (await s.info()).message_count == 2

    @pytest.mark.asyncio
    async def test_nesting_up_to_the_limit_round_trips(self, backend: Backend) -> None:
        s = await new_session(SessionManager(backend))
        call = ToolCall(name="t", arguments={"q": nested(MAX_DEPTH - 1)})
        sent = [
            Message.user(
                [{"type": "data", "v": nested(MAX_DEPTH - 2)}],
                metadata={"k": nested(MAX_DEPTH - 1)},
            ),
            Message.assistant(tool_calls=[call]),
        ]
        assert await s.append_messages(sent) == as_stored(sent)
        assert await s.get_messages() == as_stored(sent)
        assert await s.get_messages(last=1) == as_stored(sent)[1:]

    @pytest.mark.asyncio
    async def test_a_message_stored_deeper_than_today_s_limit_stays_readable(
        self, backend: Backend, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # Older versions accepted nesting that JSON parsers refuse to read back (~200 levels);
        # a store holding such a message must still read, list and export, never brick.
        s = await new_session(SessionManager(backend), 1)
        deep = Message.user("deep", metadata={"k": nested(220)})
        with monkeypatch.context() as patched:
            patched.setattr(codec, "MAX_DEPTH", 1000)
            stored = await s.append_message(deep)
        after = await s.append_message(Message.assistant("after"))
        assert (await s.get_messages())[1:] == [stored, after]
        assert await s.get_messages(last=2) == [stored, after]
        assert await backend.get_messages(s.id, last=1) == [after]

    @pytest.mark.asyncio
    async def test_a_batch_of_known_messages_is_a_no_op(self, backend: Backend) -> None:
        s = await new_session(SessionManager(backend))
        batch = numbered(3)
        stored = await s.append_messages(batch)
        later = await s.append_message(Message.user("later"))
        # A retry is recognised whatever expected_seq says: it changes nothing.
        assert await s.append_messages(batch, expected_seq=0) == stored
        assert await s.append_messages(batch[1:], expected_seq=1) == stored[1:]
        assert await s.get_messages() == [*stored, later]

    @pytest.mark.asyncio
    async def test_a_mixed_batch_appends_only_new_messages(self, backend: Backend) -> None:
        s = await new_session(SessionManager(backend))
        old, new = numbered(2), numbered(2, start=3)
        stored = await s.append_messages(old)
        out = await s.append_messages([new[0], old[1], new[1], old[0]], expected_seq=2)
        assert out == [at(new[0], 3), stored[1], at(new[1], 4), stored[0]]
        assert await s.get_messages() == [*stored, at(new[0], 3), at(new[1], 4)]

    @pytest.mark.asyncio
    async def test_a_mixed_batch_with_stale_expected_seq_conflicts(self, backend: Backend) -> None:
        s = await new_session(SessionManager(backend))
        stored = await s.append_messages(numbered(2))
        with pytest.raises(ConflictError):
            await s.append_messages([stored[0], Message.user("new")], expected_seq=1)
        assert await s.get_messages() == stored

    @pytest.mark.asyncio
    async def test_concurrent_retries_store_a_message_once(self, backend: Backend) -> None:
        s = await new_session(SessionManager(backend))
        msg = Message.user("retry storm")
        results = await asyncio.gather(*(s.append_message(msg) for _ in range(20)))
        assert results == [at(msg, 1)] * 20
        assert await s.get_messages() == [at(msg, 1)]

    @pytest.mark.asyncio
    async def test_expected_seq_that_matches_appends(self, backend: Backend) -> None:
        s = await new_session(SessionManager(backend))
        with pytest.raises(ConflictError):
            await s.append_message(Message.user("a"), expected_seq=1)
        first = await s.append_message(Message.user("a"), expected_seq=0)
        more = await s.append_messages(numbered(2), expected_seq=1)
        assert [first.seq] + [m.seq for m in more] == [1, 2, 3]

    @pytest.mark.asyncio
    async def test_counts_beyond_64_bits_are_invalid_argument(self, backend: Backend) -> None:
        s = await new_session(SessionManager(backend), 1)
        for huge in (2**63, 2**64, 10**30):
            with pytest.raises(InvalidArgument):
                await s.append_message(Message.user("x"), expected_seq=huge)
            with pytest.raises(InvalidArgument):
                await s.append_messages(numbered(2, prefix="y"), expected_seq=huge)
            with pytest.raises(InvalidArgument):
                await s.get_messages(last=huge)
        # The largest accepted is an ordinary stale expected_seq, and the whole history.
        with pytest.raises(ConflictError):
            await s.append_message(Message.user("x"), expected_seq=MAX_SEQ)
        assert await texts(s, last=MAX_SEQ) == ["m1"]

    @pytest.mark.asyncio
    async def test_stale_expected_seq_conflicts_and_writes_nothing(self, backend: Backend) -> None:
        s = await new_session(SessionManager(backend), 2)
        before = await s.info()
        for stale in (0, 1, 3, 10):
            with pytest.raises(ConflictError):
                await s.append_message(Message.user("x"), expected_seq=stale)
            with pytest.raises(ConflictError):
                await s.append_messages(numbered(2, prefix="y"), expected_seq=stale)
        assert await s.info() == before
        assert await texts(s) == ["m1", "m2"]

    @pytest.mark.asyncio
    async def test_concurrent_appends_get_seqs_one_to_n(self, backend: Backend) -> None:
        s = await new_session(SessionManager(backend))
        sent = numbered(200)
        stored = await asyncio.gather(*(s.append_message(m) for m in sent))
        assert sorted(m.seq or 0 for m in stored) == list(range(1, 201))
        history = await s.get_messages()
        assert [m.seq for m in history] == list(range(1, 201))
        assert {m.id for m in history} == {m.id for m in sent}
        assert all(history[(m.seq or 0) - 1] == m for m in stored)
        assert (await s.info()).message_count == 200

    @pytest.mark.asyncio
    async def test_concurrent_batches_never_interleave(self, backend: Backend) -> None:
        s = await new_session(SessionManager(backend))
        batches = [numbered(5, prefix=f"b{i}.") for i in range(20)]
        results = await asyncio.gather(*(s.append_messages(b) for b in batches))
        for batch, out in zip(batches, results, strict=True):
            assert out == as_stored(batch, out[0].seq or 0)
        assert [m.seq for m in await s.get_messages()] == list(range(1, 101))

    @pytest.mark.asyncio
    async def test_one_expected_seq_writer_wins_per_round(self, backend: Backend) -> None:
        s = await new_session(SessionManager(backend))
        for seen in range(5):
            outcomes = await asyncio.gather(
                *(
                    s.append_message(Message.user(f"{seen}.{w}"), expected_seq=seen)
                    for w in range(8)
                ),
                return_exceptions=True,
            )
            wins = [o for o in outcomes if isinstance(o, Message)]
            assert [m.seq for m in wins] == [seen + 1]
            losses = [o for o in outcomes if not isinstance(o, Message)]
            assert all(isinstance(o, ConflictError) for o in losses), losses
        assert (await s.info()).message_count == 5

    @pytest.mark.asyncio
    async def test_awkward_unicode_round_trips(self, backend: Backend) -> None:
        s = await new_session(SessionManager(backend))
        sent = [
            Message.user(text, name=text or None, metadata={"text": text, text: [text]})
            for text in AWKWARD_TEXTS
        ]
        assert await s.append_messages(sent) == as_stored(sent)
        assert await s.get_messages() == as_stored(sent)

    @pytest.mark.asyncio
    async def test_a_one_mebibyte_message_round_trips(self, backend: Backend) -> None:
        s = await new_session(SessionManager(backend), 1)
        big = Message.user("é" * (512 * 1024) + "🎉 the end")
        assert await s.append_message(big) == at(big, 2)
        assert await s.get_messages(last=1) == [at(big, 2)]
        assert (await s.get_messages())[1] == at(big, 2)

    @pytest.mark.asyncio
    @pytest.mark.parametrize("case", sorted(REFUSED_BATCHES))
    async def test_a_refused_batch_stores_nothing(self, backend: Backend, case: str) -> None:
        s = await new_session(SessionManager(backend), 1)
        before = await s.info()
        with pytest.raises(InvalidMessage):
            await s.append_messages(REFUSED_BATCHES[case]())
        assert await s.info() == before
        assert await texts(s) == ["m1"]

    @pytest.mark.asyncio
    async def test_returned_messages_share_no_state_with_the_caller(self, backend: Backend) -> None:
        s = await new_session(SessionManager(backend))
        parts: list[dict[str, JsonValue]] = [{"type": "text", "text": "hi"}]
        sent = [Message.user(parts, metadata={"tags": ["a"]}).model_copy(deep=True) for _ in "ab"]
        expected = as_stored([m.model_copy(deep=True) for m in sent])
        returned = await s.append_messages(sent)
        repeated = await s.append_messages([m.model_copy(deep=True) for m in sent])
        whole, tail = await s.get_messages(), await s.get_messages(last=2)
        # Messages are frozen, but their metadata dicts and content lists are not: changing
        # the caller's message or a returned one must change no other copy.
        for m in sent:
            _scribble(m)
        assert (returned, repeated, whole, tail) == (expected, expected, expected, expected)
        for m in (*returned, *repeated, whole[0], tail[0]):
            _scribble(m)
        assert (whole[1], tail[1]) == (expected[1], expected[1])
        assert await s.get_messages() == expected
        assert await s.get_messages(last=2) == expected


def _scribble(message: Message) -> None:
    """Change every mutable container a message holds, in place."""
    assert isinstance(message.content, list)
    message.content[0]["text"] = "changed"
    message.content.append({"type": "text", "text": "more"})
    tags = message.metadata["tags"]
    assert isinstance(tags, list)
    tags.append("b")
    message.metadata["new"] = True
