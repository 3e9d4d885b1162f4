"""The batch read path (aixgo.session.codec.decode_batch): it reads exactly what the model
reads, in one validation; a damaged or hostile record is a typed error naming it, never part
of a message; and no message returned shares a list or dict with another or with the store."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import timedelta

import pytest
from aixgo import Message, ToolCall
from aixgo.errors import CorruptedData
from aixgo.session import SessionManager
from aixgo.session.codec import MAX_DEPTH, decode_batch, decode_message, encode_message, stamp_seq
from aixgo.testing.samples import AWKWARD_TEXTS, every_field, nested
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter


def stored(messages: Sequence[Message], first: int = 1) -> list[bytes]:
    return [stamp_seq(encode_message(m), first + i) for i, m in enumerate(messages)]


def careful(records: Sequence[bytes | str]) -> Callable[[int], Message]:
    return lambda i: decode_message(records[i], f"record {i}")


def never(i: int) -> Message:
    raise AssertionError(f"record {i} was read the careful way")


def deep_and_large() -> list[Message]:
    deep = nested(MAX_DEPTH - 1)  # inside metadata or arguments (level 1): MAX_DEPTH in all
    return [
        Message.user([{"type": "data", "v": nested(MAX_DEPTH - 2)}], metadata={"d": deep}),
        Message.assistant(tool_calls=[ToolCall(name="f", arguments={"q": deep})]),
        Message.user("x" * (4 * 1024 * 1024)),
        *(Message.user(t) for t in AWKWARD_TEXTS),
    ]


@pytest.mark.parametrize("messages", [every_field(), deep_and_large()], ids=["fields", "deep"])
def test_a_batch_reads_what_the_model_reads_in_one_validation(messages: list[Message]) -> None:
    records = stored(messages, first=5)
    got = decode_batch(records, never)
    want = [Message.model_validate_json(r) for r in records]
    assert got == want
    assert [m.seq for m in got] == [5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15][: len(got)]
    for g, w in zip(got, want, strict=True):
        assert type(g) is Message
        assert g.model_fields_set == w.model_fields_set
        assert g.model_dump_json() == w.model_dump_json()
        assert g.created_at.utcoffset() == timedelta(0)
        for c in g.tool_calls or []:
            assert type(c) is ToolCall
    # Text records (as PostgreSQL returns jsonb: spaced, keys in its own order) read alike.
    texts = [json.dumps(json.loads(r), sort_keys=True) for r in records]
    assert decode_batch(texts, never) == want


def test_first_seq_numbers_the_records_whatever_seq_they_carry() -> None:
    messages = [Message.user("a"), Message.user("b")]
    plain = [encode_message(m) for m in messages]  # "seq":null, as the local stores keep them
    assert [m.seq for m in decode_batch(plain, never, first_seq=7)] == [7, 8]
    other = stored(messages, first=1)  # a seq from another branch of the history
    assert [m.seq for m in decode_batch(other, never, first_seq=3)] == [3, 4]


def test_records_in_another_valid_form_read_as_the_model_reads_them() -> None:
    m = Message.user("hi")
    canonical = stored([m])[0]
    offset = canonical.replace(b'Z","seq"', b'+02:00","seq"')  # another valid time offset
    data = json.loads(canonical)
    del data["name"], data["metadata"]  # fields with defaults left out (written by hand)
    sparse = json.dumps(data).encode()
    records = [canonical, offset, sparse]
    got = decode_batch(records, careful(records))
    assert got == [Message.model_validate_json(r) for r in records]
    assert got[1].created_at == m.created_at - timedelta(hours=2)
    assert got[1].created_at.utcoffset() == timedelta(0)
    assert got[2].metadata == {} and got[2].model_fields_set == set(data)


def _without(record: bytes, key: str) -> bytes:
    data = json.loads(record)
    data.pop(key)
    return json.dumps(data).encode()


GOOD = stored([Message.user("a"), Message.user("b"), Message.user("c")])
TOOL = stored([Message.tool("r", tool_call_id="c1")], first=2)[0]
BAD = {
    "not json": b"{not json",
    "empty": b"",
    "a list": b"[]",
    "a number": b"1",
    "two values": GOOD[1] + b" " + GOOD[1],
    "unknown role": GOOD[1].replace(b'"user"', b'"robot"'),
    "tool without call id": _without(TOOL, "tool_call_id"),
    "tool with empty call id": TOOL.replace(b'"c1"', b'""'),
    "part without type": stored([Message.user([{"type": "t"}])], 2)[0].replace(
        b'"type"', b'"kind"'
    ),
    "extra field": GOOD[1].replace(b'{"id"', b'{"evil":1,"id"'),
    "seq 0": GOOD[1].replace(b'"seq":2', b'"seq":0'),
    "long id": GOOD[1].replace(b'"id":"', b'"id":"' + b"x" * 300),
}


@pytest.mark.parametrize("bad", BAD.values(), ids=BAD.keys())
def test_a_damaged_record_is_a_typed_error_naming_it(bad: bytes) -> None:
    records = [GOOD[0], bad, GOOD[2]]
    with pytest.raises(CorruptedData, match="at record 1"):
        decode_batch(records, careful(records))


def _spliced() -> tuple[bytes, bytes]:
    """Two records, neither a message, that joined by a plain comma read as two messages: the
    first closes a whole message and opens the next, which the second record finishes."""
    whole = stored([Message.user([{"type": "t"}, {"type": "u"}], id="x")], first=2)[0]
    cut = whole.index(b',{"type":"u"}')
    return GOOD[0] + b"," + whole[:cut], whole[cut + 1 :]


def test_a_record_cannot_carry_part_of_itself_into_the_next_message() -> None:
    first, second = _spliced()
    plain_join = b"[" + first + b"," + second + b"]"
    assert len(TypeAdapter(list[Message]).validate_json(plain_join)) == 2  # what it would read
    with pytest.raises(CorruptedData, match="at record 0"):
        decode_batch([first, second], careful([first, second]))
    # Not even with a guess at the separator between records.
    guessed = GOOD[0] + b',"n0"],[' + first[len(GOOD[0]) + 1 :]
    with pytest.raises(CorruptedData, match="at record 0"):
        decode_batch([guessed, second], careful([guessed, second]))


def test_messages_share_no_list_or_dict_with_each_other() -> None:
    m = Message.user(
        [{"type": "text", "text": "a", "extra": [1]}],
        metadata={"k": [1], "d": {}},
    )
    call = ToolCall(name="f", arguments={"a": [1]})
    a = Message.assistant(tool_calls=[call], metadata={"k": [1]})
    records = stored([m, m, a, a])
    got = decode_batch(records, never)
    assert got[0].content[0]["extra"] is not got[1].content[0]["extra"]  # type: ignore[index]
    got[0].metadata["k"].append(2)  # type: ignore[union-attr]
    got[0].content[0]["extra"].append(2)  # type: ignore[index,union-attr]
    got[2].tool_calls[0].arguments["a"].append(2)  # type: ignore[index,union-attr]
    assert got[1].metadata == {"k": [1], "d": {}}
    assert got[1].content == [{"type": "text", "text": "a", "extra": [1]}]
    assert got[3].tool_calls[0].arguments == {"a": [1]}  # type: ignore[index]
    fresh = decode_batch(records, never)
    assert [x.metadata for x in fresh] == [{"k": [1], "d": {}}] * 2 + [{"k": [1]}] * 2


@pytest.mark.asyncio
async def test_reads_share_nothing_with_the_store_or_each_other() -> None:
    async with SessionManager("memory://") as mgr:
        s = await mgr.create("bot")
        sent = Message.user([{"type": "t", "v": [1]}], metadata={"k": [1]})
        await s.append_messages([sent, Message.user("b")])
        cp = await s.checkpoint()
        await s.append_message(Message.user("gone"))
        await s.restore(cp.id)  # two branches: the read spans both
        await s.append_message(Message.user("c"))
        first = await s.get_messages()
        first[0].metadata["k"].append(2)  # type: ignore[union-attr]
        first[0].content[0]["v"].append(2)  # type: ignore[index,union-attr]
        again = await s.get_messages()
        assert again[0].metadata == {"k": [1]} and again[0].content == [{"type": "t", "v": [1]}]
        assert [(m.seq, m.text) for m in again] == [(1, ""), (2, "b"), (3, "c")]
        assert [m.seq for m in await s.get_messages(last=2)] == [2, 3]


def _model(record: bytes) -> Message:
    return Message.model_validate_json(record)  # the model's own validation: the oracle


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 3),
            st.integers(0, 10_000),
            st.sampled_from(list(b'{}[],:"\\ 0Zt+-.')),
            st.sampled_from(["replace", "insert", "delete"]),
        ),
        min_size=1,
        max_size=3,
    )
)
def test_a_changed_record_is_read_as_the_model_reads_it_or_refused(
    changes: list[tuple[int, int, int, str]],
) -> None:
    records = stored(every_field())
    for which, pos, byte, how in changes:
        r = records[which]
        at = pos % (len(r) + 1)
        if how == "replace" and at < len(r):
            r = r[:at] + bytes([byte]) + r[at + 1 :]
        elif how == "insert":
            r = r[:at] + bytes([byte]) + r[at:]
        else:
            r = r[:at] + r[at + 1 :]
        records[which] = r
    try:
        want = [_model(r) for r in records]
    except ValueError:
        with pytest.raises((CorruptedData, ValueError)):
            decode_batch(records, lambda i: _model(records[i]))
        return
    assert decode_batch(records, lambda i: _model(records[i])) == want
