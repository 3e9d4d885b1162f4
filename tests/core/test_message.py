"""Message: its constructors, fields, UTC times and what it refuses."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from aixgo import Message, ToolCall
from pydantic import ValidationError


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
