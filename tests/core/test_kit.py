"""The backend toolkit: strict URL options, the retry policy, stale_seq and seq stamping."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aixgo import Message
from aixgo.errors import BackendError, ConfigError, ConflictError, CorruptedData
from aixgo.session.codec import decode_batch, decode_message, encode_message
from aixgo.session.kit import (
    Option,
    Recent,
    RetryPolicy,
    boolean,
    choice,
    decode_at,
    integer,
    matching,
    parse_options,
    path,
    seconds,
    stale_seq,
    stamp_seq,
    text,
)
from aixgo.session.kit import recent as recent_module
from aixgo.session.kit.recent import OVERHEAD

TABLE = (
    Option("ttl", integer(0, 100), None, "expiry"),
    Option("fast", boolean, False, "skip flushing"),
    Option("timeout", seconds(0.001, 60), 5.0, "per command"),
    Option("mode", choice("a", "b"), "a", "how"),
    Option("name", matching(r"[a-z]{1,8}", "must be 1-8 lowercase letters"), "x", "a name"),
    Option("password", text, None, "a secret"),
    Option("ca", path, None, "a file"),
)


def test_given_options_are_parsed_and_the_rest_default() -> None:
    found = parse_options("s://h/db?ttl=7&fast=YES&timeout=0.5&mode=b&name=abc&ca=/c.pem", TABLE)
    assert found.values == {
        "ttl": 7, "fast": True, "timeout": 0.5, "mode": "b", "name": "abc", "ca": "/c.pem",
    }  # fmt: skip
    assert parse_options("s://h", TABLE).with_defaults(TABLE)["timeout"] == 5.0
    assert parse_options("s://h?password=a+b", TABLE).values["password"] == "a b"
    assert parse_options("s://h?password=a+b", TABLE, form=False).values["password"] == "a+b"


@pytest.mark.parametrize(
    ("query", "says"),
    [
        ("tll=1", "unknown option 'tll'"),
        ("tll=1", "valid options: ttl, fast, timeout"),
        ("ttl=1&ttl=1", "option 'ttl' is given twice"),
        ("mode=a&mode=b", "given twice"),
        ("ttl=101", "ttl in 's://u:***@h?ttl=101' must be a whole number from 0 to 100"),
        ("ttl=x", "whole number"),
        ("fast=maybe", "must be true or false"),
        ("timeout=nan", "number of seconds from 0.001 to 60"),
        ("timeout=0", "number of seconds"),
        ("mode=c", "choose one of a, b"),
        ("name=ABC", "1-8 lowercase letters"),
        ("ca=", "file path"),
    ],
)
def test_unknown_repeated_and_bad_options_are_config_errors(query: str, says: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_options(f"s://u:hunter2@h?{query}", TABLE)
    assert says in str(err.value)
    assert "hunter2" not in str(err.value)


def test_a_bad_secret_value_is_not_repeated_in_the_error() -> None:
    table = (Option("ssl_password", choice("x"), None),)
    with pytest.raises(ConfigError) as err:
        parse_options("s://h?ssl_password=hunter2", table)
    assert "hunter2" not in str(err.value)


def test_passthrough_items_come_back_as_written() -> None:
    found = parse_options(
        "pg://h/db?sslmode=require&ttl=3&application_name=a+b%20c&sslmode=disable",
        TABLE,
        passthrough={"sslmode", "application_name"},
        form=False,
    )
    assert found.values == {"ttl": 3}
    assert found.passed == ("sslmode=require", "application_name=a+b%20c", "sslmode=disable")
    with pytest.raises(ConfigError, match="passed on to the driver: application_name, sslmode"):
        parse_options("pg://h?colour=red", TABLE, passthrough={"sslmode", "application_name"})


def test_a_raw_password_with_a_question_mark_in_a_query_value_is_not_the_query() -> None:
    assert parse_options("s://u:p@ss@h?ttl=3", TABLE).values == {"ttl": 3}
    assert parse_options("s://h?ttl=3#frag", TABLE).values == {"ttl": 3}


class Flaky(Exception):
    pass


def test_pauses_grow_with_jitter_up_to_the_cap() -> None:
    policy = RetryPolicy(base=0.1, cap=1.0, jitter=0.5)
    for n in range(6):
        assert min(1.0, 0.05 * 2**n) <= policy.pause(n) <= min(1.0, 0.1 * 2**n)
    assert policy.pause(10_000) == 1.0  # no float overflow however long it retries


@pytest.mark.asyncio
async def test_transient_failures_are_retried_until_success() -> None:
    seen: list[int] = []

    async def op(attempt: int) -> str:
        seen.append(attempt)
        if attempt < 3:
            raise Flaky
        return "done"

    policy = RetryPolicy(deadline=5, base=0.001, cap=0.01)
    assert await policy.run(op, lambda e: isinstance(e, Flaky)) == "done"
    assert seen == [0, 1, 2, 3]


@pytest.mark.asyncio
async def test_on_retry_hears_of_each_retry_but_not_the_last_failure() -> None:
    heard: list[tuple[object, int]] = []

    async def op(attempt: int) -> None:
        raise Flaky(attempt)

    policy = RetryPolicy(deadline=None, attempts=2, base=0.001)
    with pytest.raises(Flaky):
        await policy.run(op, lambda e: True, lambda e, n: heard.append((e.args[0], n)))
    assert heard == [(0, 0), (1, 1)]


@pytest.mark.asyncio
async def test_other_failures_are_raised_at_once() -> None:
    calls = 0

    async def op(attempt: int) -> None:
        nonlocal calls
        calls += 1
        raise BackendError("refused")

    with pytest.raises(BackendError):
        await RetryPolicy(deadline=5).run(op, lambda e: isinstance(e, Flaky))
    assert calls == 1


@pytest.mark.asyncio
async def test_the_deadline_and_the_attempt_count_end_retrying() -> None:
    async def op(attempt: int) -> None:
        raise Flaky(attempt)

    started = time.monotonic()
    with pytest.raises(Flaky):
        await RetryPolicy(deadline=0.3, base=0.05, cap=0.1).run(op, lambda e: True)
    assert 0.25 < time.monotonic() - started < 1.0  # the last attempt is at the deadline
    with pytest.raises(Flaky) as err:
        await RetryPolicy(deadline=None, attempts=2, base=0.001).run(op, lambda e: True)
    assert err.value.args == (2,)
    with pytest.raises(Flaky) as err:
        await RetryPolicy(deadline=0, base=0.001).run(op, lambda e: True)
    assert err.value.args == (0,)


@pytest.mark.asyncio
async def test_cancellation_is_never_retried_or_swallowed() -> None:
    attempts = 0

    async def op(attempt: int) -> None:
        nonlocal attempts
        attempts += 1
        await asyncio.sleep(10)

    task = asyncio.create_task(RetryPolicy(deadline=5).run(op, lambda e: True))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert attempts == 1


def test_stale_seq_is_a_conflict_with_both_numbers() -> None:
    err = stale_seq("s1", 2, 5)
    assert isinstance(err, ConflictError)
    assert (err.expected_seq, err.actual_seq) == (2, 5)
    assert "has 5 messages, not 2" in str(err) and "re-read the history" in str(err)


def test_stamp_seq_writes_seq_into_the_encoders_json() -> None:
    m = Message.user('ends like "seq":null}', metadata={"seq": None})
    data = encode_message(m)
    assert data.endswith(b',"seq":null}')
    stamped = stamp_seq(data, 42)
    assert decode_at(data, 42) == m.model_copy(update={"seq": 42})
    assert stamped.endswith(b',"seq":42}')
    stored = encode_message(m.model_copy(update={"seq": 3}))
    assert stamp_seq(stored, 9) is stored  # not the encoder's unstored form: untouched
    assert decode_at(stored, 9).seq == 9


@pytest.mark.asyncio
async def test_a_wrapper_answers_for_the_capabilities_of_the_store_it_wraps(
    tmp_path: Path,
) -> None:

    from aixgo.session import Migratable, SessionManager, TurnLeases, open_backend
    from aixgo.session.kit import BackendWrapper

    class Counting(BackendWrapper):
        calls = 0

        def optional(self, name: str, method: Any) -> Any:
            if name != "acquire_turn":
                return method

            async def counted(*args: Any) -> Any:
                Counting.calls += 1
                return await method(*args)

            return counted

    leased = Counting(open_backend(f"file://{tmp_path}"))
    plain = Counting(open_backend("memory://"))
    assert isinstance(leased, TurnLeases) and isinstance(plain, TurnLeases)
    assert not isinstance(leased, Migratable)  # the file store has no schema to migrate
    assert leased.capabilities == leased.inner.capabilities
    with pytest.raises(AttributeError):
        leased._private_of_the_store  # noqa: B018  (never passes through)
    async with SessionManager(leased) as mgr:
        s = await mgr.create("assistant")
        assert await leased.acquire_turn(s.id, "me", 5.0) is not None
        assert Counting.calls == 1


def _stored(texts: str, first: int = 1) -> list[bytes]:
    return [stamp_seq(encode_message(Message.user(t)), i) for i, t in enumerate(texts, first)]


def _careful(records: list[bytes], called: list[int]) -> Callable[[int], Message]:
    def careful(i: int) -> Message:
        called.append(i)
        return decode_message(records[i], f"record {i}")

    return careful


def test_recent_reuses_only_byte_identical_records_at_the_same_place(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    validated: list[int] = []

    def counting(records: Any, careful: Any, *, first_seq: int | None = None) -> list[Message]:
        validated.append(len(records))
        return decode_batch(records, careful, first_seq=first_seq)

    monkeypatch.setattr(recent_module, "decode_batch", counting)
    recent = Recent()
    records = _stored("abc")
    first = recent.decode("s", records, [1, 2, 3], _careful(records, []))
    again = recent.decode("s", records, [1, 2, 3], _careful(records, []))
    assert validated == [3]  # the second read validated nothing
    assert again == first and all(a is not b for a, b in zip(again, first, strict=True))
    grown = [*records, *_stored("d", 4)]
    assert [m.text for m in recent.decode("s", grown, [1, 2, 3, 4], _careful(grown, []))] == [
        "a",
        "b",
        "c",
        "d",
    ]
    assert validated == [3, 1]  # only the new record
    kept = recent.of("s")
    assert [kept[k][1] is m for k, m in zip((1, 2, 3), again, strict=True)] == [False] * 3
    # Copies: changing what a read returned reaches neither the store nor the next read.
    again[0].metadata["x"] = 1
    assert recent.decode("s", records, [1, 2, 3], _careful(records, []))[0].metadata == {}
    # A record changed at its place is validated again, and refused if it is not a message.
    damaged = [records[0], records[1][:-3] + b"[]}", records[2]]
    called: list[int] = []
    with pytest.raises(CorruptedData, match="record 1"):
        recent.decode("s", damaged, [1, 2, 3], _careful(damaged, called))
    assert 1 in called
    # A valid record written in its place reads as itself, never as the kept message.
    changed = [records[0], _stored("B", 2)[0], records[2]]
    assert [m.text for m in recent.decode("s", changed, [1, 2, 3], _careful(changed, []))] == [
        "a",
        "B",
        "c",
    ]
    # The same bytes at another place are compared with what is kept there: not reused.
    moved = recent.decode("s", records[:2], [2, 3], _careful(records, []))
    assert [m.text for m in moved] == ["a", "b"]


def test_recent_keeps_numbered_and_unnumbered_reads_apart() -> None:
    recent = Recent()
    records = _stored("ab", first=5)  # the records say seq 5 and 6
    numbered = recent.decode("s", records, [1, 2], _careful(records, []), first_seq=1)
    assert [m.seq for m in numbered] == [1, 2]
    assert [m.seq for m in recent.decode("s", records, [1, 2], _careful(records, []))] == [5, 6]
    again = recent.decode("s", records, [1, 2], _careful(records, []), first_seq=1)
    assert [m.seq for m in again] == [1, 2]
    # Numbered from elsewhere: the kept message is not that seq, so it is not reused.
    moved = recent.decode("s", records, [1, 2], _careful(records, []), first_seq=3)
    assert [m.seq for m in moved] == [3, 4]


def _upper(made: list[tuple[str, list[str]]]) -> Callable[[str, list[Message]], list[Message]]:
    """A ``make`` that upper-cases texts and records what it was given."""

    def make(session_id: str, messages: list[Message]) -> list[Message]:
        made.append((session_id, [m.text for m in messages]))
        return [m.model_copy(update={"content": m.text.upper()}) for m in messages]

    return make


def test_recent_with_make_keeps_and_reuses_what_make_turned_records_into() -> None:
    made: list[tuple[str, list[str]]] = []
    recent = Recent(make=_upper(made))
    records = _stored("abc")
    first = recent.decode("s", records, [1, 2, 3], _careful(records, []))
    assert [(m.seq, m.text) for m in first] == [(1, "A"), (2, "B"), (3, "C")]
    again = recent.decode("s", records, [1, 2, 3], _careful(records, []))
    assert again == first and made == [("s", ["a", "b", "c"])]  # nothing made again
    first[0].metadata["x"] = 1  # copies: reaches neither what is kept nor the next read
    grown = [*records[1:], *_stored("d", 4)]
    tail = recent.decode("s", grown, [2, 3, 4], _careful(grown, []))
    assert [m.text for m in tail] == ["B", "C", "D"] and made[-1] == ("s", ["d"])
    assert recent.decode("s", records, [1, 2, 3], _careful(records, []))[0].metadata == {}
    # Another session never reuses these records, whatever their bytes.
    assert [m.text for m in recent.decode("t", records, [1, 2, 3], _careful(records, []))] == [
        "A",
        "B",
        "C",
    ]
    assert made[-1] == ("t", ["a", "b", "c"])


def test_recent_keeps_nothing_of_a_read_whose_make_fails() -> None:
    records = _stored("ab")

    def failing(session_id: str, messages: list[Message]) -> list[Message]:
        raise RuntimeError("cannot")

    recent = Recent(make=failing)
    with pytest.raises(RuntimeError, match="cannot"):
        recent.decode("s", records, [1, 2], _careful(records, []))
    assert recent.of("s") == {}
    made: list[tuple[str, list[str]]] = []
    recent.make = _upper(made)
    recent.decode("s", records, [1, 2], _careful(records, []))
    recent.make = failing
    grown = [*records, *_stored("c", 3)]
    with pytest.raises(RuntimeError):  # fails on the new record: the kept ones stay as they were
        recent.decode("s", grown, [1, 2, 3], _careful(grown, []))
    assert [m.text for _, m in recent.of("s").values()] == ["A", "B"]


def test_recent_keeps_within_its_budget() -> None:
    records = _stored("abc")
    weight = sum(map(len, records)) + 3 * OVERHEAD
    recent = Recent(budget=4 * weight)
    for name in "abcde":
        recent.decode(name, records, [1, 2, 3], _careful(records, []))
    assert recent.of("a") == {} and all(len(recent.of(n)) == 3 for n in "bcde")
    small = Recent(budget=4 * weight - 4)  # one read of three is more than a quarter
    small.decode("a", records, [1, 2, 3], _careful(records, []))
    assert small.of("a") == {}
    recent.drop("b")
    assert recent.of("b") == {}
    recent.clear()
    assert all(recent.of(n) == {} for n in "cde")
