"""The message codec: round trips, refusals, the size limit, batches, damage reports, and the
stored copies with_seq makes."""

from __future__ import annotations

import pytest
from aixgo import Message, ToolCall
from aixgo.errors import CorruptedData, InvalidMessage
from aixgo.session.codec import (
    MAX_MESSAGE_BYTES,
    check_batch,
    decode_message,
    encode_message,
    stored_copy,
    with_seq,
)


def test_codec_round_trips_every_field() -> None:
    m = Message.assistant(
        [{"type": "text", "text": "héllo 🌍"}],
        tool_calls=[ToolCall(name="f", arguments={"a": [1, 2.5, None, True]})],
        name="bot",
        metadata={"k": {"nested": ["x"]}},
    )
    assert decode_message(encode_message(m)) == m


def test_codec_refuses_nul_but_not_an_escaped_backslash_u0000() -> None:
    with pytest.raises(InvalidMessage, match="NUL character"):
        encode_message(Message.user("a\x00b"))
    with pytest.raises(InvalidMessage, match="NUL character"):
        encode_message(Message.user("x", metadata={"k": "\\\x00"}))
    assert b"u0000" in encode_message(Message.user("the text \\u0000 is harmless"))


def test_codec_size_limit_is_16_mib() -> None:
    overhead = len(encode_message(Message.user("", id="m")))
    assert len(encode_message(Message.user("x" * (MAX_MESSAGE_BYTES - overhead), id="m")))
    with pytest.raises(InvalidMessage, match="the limit is 16,777,216"):
        encode_message(Message.user("x" * (MAX_MESSAGE_BYTES - overhead + 1), id="m"))


def test_check_batch_refuses_bad_batches() -> None:
    m = Message.user("x")
    for bad, why in [([], "empty list"), ([m, m], "appears twice"), (["x"], "not a Message")]:
        with pytest.raises(InvalidMessage, match=why):
            check_batch(bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidMessage, match="use append_message"):
        check_batch(m)


def test_decode_names_where_the_damage_is() -> None:
    with pytest.raises(CorruptedData, match="at sessions/x.jsonl line 7"):
        decode_message(b'{"role": "robot"}', where="sessions/x.jsonl line 7")


def test_with_seq_is_what_model_copy_makes_and_leaves_the_message_alone() -> None:
    m = Message.user("hi", metadata={"k": [1]})
    stored = with_seq(m, 7)
    assert stored == m.model_copy(update={"seq": 7})
    assert stored.seq == 7 and m.seq is None
    assert "seq" in stored.model_fields_set and "seq" not in m.model_fields_set
    assert stored.model_dump() == {**m.model_dump(), "seq": 7}
    assert type(stored) is Message and stored is not m
    assert with_seq(stored, None) == m  # and back


@pytest.mark.parametrize(
    "text",
    ["NaN and Infinity are words here", "\ufffd replacement", "[" * 100 + "{" * 100, "\\u0000"],
)
def test_text_that_looks_like_what_the_checks_refuse_is_stored_and_read_back(text: str) -> None:
    """A plain message with text content skips the byte prefilters (nothing in it can nest,
    be a number or an object key); its text is stored whatever it says."""
    m = Message.user(text)
    assert decode_message(encode_message(m)) == m


@pytest.mark.parametrize(
    "meta",
    [
        {"k": "NaN and Infinity", "r": "\ufffd", "d": "[" * 100 + "{" * 100},
        {"k": "\\u0000"},
        {"é": "a non-ASCII key takes the careful way, and is kept"},
    ],
)
def test_flat_text_metadata_that_looks_refused_is_stored_and_read_back(
    meta: dict[str, str],
) -> None:
    """Metadata of text under ASCII keys skips the byte prefilters too (an encrypted store's
    sealed records): whatever its text says, it reads back as it was."""
    m = Message.user("NaN [[[ {", metadata=meta)  # type: ignore[arg-type]
    assert decode_message(encode_message(m)) == m


class Scored(Message):
    score: float = 0.0


def test_what_the_checks_refuse_is_still_refused_outside_plain_text() -> None:
    nan = float("nan")
    deep: dict[str, object] = {}
    for _ in range(70):
        deep = {"k": deep}
    refused = [
        Message.user("x", metadata={"k": nan}),
        Message.user([{"type": "text", "text": "x", "v": nan}]),
        Message.assistant("x", tool_calls=[ToolCall(name="f", arguments={"a": nan})]),
        Message.user("x", metadata=deep),  # type: ignore[arg-type]
        Message.user("x", metadata={"\ud800": 1}),
        Message.user("x", metadata={"\ud800": "text"}),  # flat text, but not an ASCII key
        Message.user("x", metadata={"k": "text", "n": nan}),
        Message.user("x", metadata={"k": "a\x00b"}),
        Scored(role="user", content="x", metadata={"k": float("inf")}),
        Message.user("a\x00b"),
    ]
    for m in refused:
        with pytest.raises(InvalidMessage):
            encode_message(m)


def test_stored_copy_is_what_model_copy_makes_and_shares_nothing() -> None:
    for m in [
        Message.user("hi"),
        Message.user("hi", metadata={"k": [1]}),
        Message.user([{"type": "text", "text": "x"}]),
        Scored(role="user", content="x", score=1.5),
    ]:
        out = stored_copy(m, 3)
        assert out == m.model_copy(update={"seq": 3})
        assert type(out) is type(m) and out is not m and m.seq is None
        assert out.model_fields_set == m.model_fields_set | {"seq"}
        assert out.__pydantic_extra__ is None and out.__pydantic_private__ is None
        assert out.metadata is not m.metadata
        assert out.model_dump() == {**m.model_dump(), "seq": 3}
