"""Identifiers, messages, the message codec, cursors, URL redaction and the error tree."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from aixgo import Message, ToolCall
from aixgo.errors import (
    AixgoError,
    BackendClosed,
    BackendUnavailable,
    CheckpointNotFound,
    ConfigError,
    ConflictError,
    CorruptedData,
    InvalidArgument,
    InvalidIdentifier,
    InvalidMessage,
    PluginError,
    SessionNotFound,
    UsageError,
)
from aixgo.identifiers import MAX_NAME_LENGTH, is_id, new_id, validate_id, validate_name
from aixgo.session.codec import (
    MAX_MESSAGE_BYTES,
    check_batch,
    decode_message,
    encode_message,
    with_seq,
)
from aixgo.session.cursor import decode_cursor, encode_cursor
from aixgo.session.url import default_session_url, redact_url
from pydantic import ValidationError


def test_ids_are_random_26_char_base32() -> None:
    ids = {new_id() for _ in range(10_000)}
    assert len(ids) == 10_000
    assert all(is_id(i) and i == i.lower() and len(i) == 32 for i in ids)


@pytest.mark.parametrize(
    "bad", ["", "../etc/passwd", "A" * 32, "a" * 31, "a" * 33, "a" * 31 + "g", None, 7]
)
def test_malformed_ids_are_refused(bad: object) -> None:
    with pytest.raises(InvalidIdentifier, match="ids are 32 characters"):
        validate_id(bad)


@pytest.mark.parametrize(
    "name",
    ["alice@example.com", "auth0|123", "../escape", "foo..bar", "C:\\x", "名前", " sp ", "x" * 256],
)
def test_free_text_names_are_valid(name: str) -> None:
    assert validate_name(name, "user id") == name


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("", "must not be empty"),
        ("x" * (MAX_NAME_LENGTH + 1), "257 characters long"),
        ("a\x00b", "control or invalid character"),
        ("a\nb", "control or invalid character"),
        ("a\u2028b", "control or invalid character"),
        ("\ud800", "control or invalid character"),
        (b"bytes", "must be a string"),
    ],
)
def test_bad_names_are_refused(name: object, why: str) -> None:
    with pytest.raises(InvalidIdentifier, match=why):
        validate_name(name, "user id")


def test_message_constructors_and_fields() -> None:
    call = ToolCall(name="weather", arguments={"city": "Oslo"})
    a = Message.assistant("", tool_calls=[call])
    t = Message.tool("12°C", tool_call_id=call.id, name="weather")
    assert (Message.system("s").role, Message.user("u").role, a.role, t.role) == (
        "system",
        "user",
        "assistant",
        "tool",
    )
    assert a.tool_calls == [call] and t.tool_call_id == call.id
    assert Message.user([{"type": "text", "text": "a"}, {"type": "image", "url": "x"}]).text == "a"
    assert Message.user("x").created_at.tzinfo is UTC


def test_message_times_become_utc() -> None:
    naive = Message.user("x", created_at=datetime(2026, 1, 1, 12))
    cet = Message.user(
        "x", created_at=datetime(2026, 1, 1, 13, tzinfo=timezone(timedelta(hours=1)))
    )
    assert naive.created_at == cet.created_at == datetime(2026, 1, 1, 12, tzinfo=UTC)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"role": "robot", "content": "x"},
        {"role": "tool", "content": "x"},  # a tool result must name its call
        {"role": "user", "content": [{"text": "no type"}]},
        {"role": "user", "content": "x", "surprise": 1},
        {"role": "user", "content": "x", "seq": 0},
    ],
)
def test_invalid_messages_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        Message(**kwargs)  # type: ignore[arg-type]


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


def test_cursor_round_trip_and_refusals() -> None:
    key = (datetime(2026, 11, 21, 12, 0, 0, 123456, tzinfo=UTC), new_id())
    assert decode_cursor(encode_cursor(*key)) == key
    for bad in ["", "garbage!", encode_cursor(key[0], "x"), "W10", "WzEsMl0"]:
        with pytest.raises(InvalidArgument, match="invalid cursor"):
            decode_cursor(bad)


def test_cursor_keeps_microsecond_order() -> None:
    t = datetime(2026, 1, 1, tzinfo=UTC)
    a, b = (
        decode_cursor(encode_cursor(t, "a" * 32)),
        decode_cursor(encode_cursor(t + timedelta(microseconds=1), "a" * 32)),
    )
    assert a < b


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:hunter2@h:6379/0", "redis://:***@h:6379/0"),
        (
            "postgresql://bob:s3cr%40t@db/x?sslmode=require",
            "postgresql://bob:***@db/x?sslmode=require",
        ),
        (
            "rediss://h/0?password=hunter2&ssl_cert_reqs=required",
            "rediss://h/0?password=***&ssl_cert_reqs=required",
        ),
        ("file:///var/lib/x?durability=fsync", "file:///var/lib/x?durability=fsync"),
        ("postgresql:///db?host=/run/pg", "postgresql:///db?host=/run/pg"),
        ("postgresql://u:pw@/db", "postgresql://u:***@/db"),
        ("unix:///tmp/redis.sock?db=0", "unix:///tmp/redis.sock?db=0"),
        ("memory://", "memory://"),
    ],
)
def test_redact_url_hides_passwords(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_default_session_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIXGO_SESSION_URL", raising=False)
    monkeypatch.delenv("AIXGO_HOME", raising=False)
    assert default_session_url() == "file://~/.aixgo/sessions"
    monkeypatch.setenv("AIXGO_HOME", "/srv/aixgo")
    assert default_session_url() == "file:///srv/aixgo/sessions"
    monkeypatch.setenv("AIXGO_SESSION_URL", "memory://")
    assert default_session_url() == "memory://"


def test_error_tree_separates_mistakes_from_failures() -> None:
    for mistake in (InvalidIdentifier, InvalidArgument, InvalidMessage, ConfigError):
        assert issubclass(mistake, UsageError) and issubclass(mistake, ValueError)
    for failure in (
        SessionNotFound,
        CheckpointNotFound,
        ConflictError,
        BackendUnavailable,
        BackendClosed,
        CorruptedData,
        PluginError,
    ):
        assert issubclass(failure, AixgoError) and not issubclass(failure, UsageError)
    assert issubclass(SessionNotFound, LookupError)
    assert issubclass(BackendUnavailable, ConnectionError)
    err = ConflictError("x", expected_seq=1, actual_seq=2)
    assert (err.expected_seq, err.actual_seq) == (1, 2)
    assert "list_checkpoints" in str(CheckpointNotFound("c", "s"))
    assert json.dumps(str(SessionNotFound("s")))


def test_with_seq_is_what_model_copy_makes_and_leaves_the_message_alone() -> None:
    m = Message.user("hi", metadata={"k": [1]})
    stored = with_seq(m, 7)
    assert stored == m.model_copy(update={"seq": 7})
    assert stored.seq == 7 and m.seq is None
    assert "seq" in stored.model_fields_set and "seq" not in m.model_fields_set
    assert stored.model_dump() == {**m.model_dump(), "seq": 7}
    assert type(stored) is Message and stored is not m
    assert with_seq(stored, None) == m  # and back
