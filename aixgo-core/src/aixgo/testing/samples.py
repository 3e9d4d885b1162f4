"""What the conformance kit stores: numbered turns, messages with every field set, awkward
text, odd but valid names, and inputs every backend must refuse."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from pydantic import JsonValue

from aixgo.message import Message, ToolCall
from aixgo.session.codec import MAX_DEPTH, MAX_MESSAGE_BYTES

__all__ = [
    "AWKWARD_TEXTS",
    "BAD_NAMES",
    "BAD_SESSION_IDS",
    "METADATA",
    "nested",
    "ODD_NAMES",
    "REFUSED_BATCHES",
    "as_stored",
    "at",
    "every_field",
    "numbered",
]

#: Session metadata that exercises JSON nesting, every scalar type and non-ASCII text.
METADATA: dict[str, JsonValue] = {
    "title": "Trip ✈️ to Zürich",
    "count": 3,
    "ratio": 2.5,
    "flags": [True, False, None],
    "nested": {"list": [1, "שלום", {"deep": ["𝄞"]}], "empty": {}, "none": None},
}

#: Text that trips up encoders, collations and byte-length arithmetic.
AWKWARD_TEXTS = (
    "emoji 👩‍👩‍👧‍👦 🎉 🏳️‍🌈",
    "RTL שלום עולם · مرحبا بالعالم",
    "combining e\u0301 n\u0303 Z\u0324\u0354\u0367\u0311",
    "astral 𝄞 𐍈 🜚 \U0010fffd",
    "a literal backslash-u escape: \\u0000 and \\\\u0000",
    "separators\u2028\u2029 tab\t newline\n cr\r",
    'quotes " \' ` and {"json": "lookalike"}',
    "",
)

#: Agent names and user ids that are valid, and must be stored and listed exactly as given.
ODD_NAMES = (
    "alice@example.com",
    "auth0|123",
    "../escape",
    "foo..bar",
    "C:\\x",
    "名前",
    " spaced ",
    "a" * 256,
    "%2e%2e%2f",
    "CON",
    "x/y\\z*?<>|\"'",
    "émoji 🎉",
)

#: Names the manager refuses with InvalidIdentifier (empty, too long, control characters).
BAD_NAMES = ("", "x" * 257, "nul\x00byte", "new\nline", "tab\there", "bell\x07", "line\u2028sep")

#: Session ids that are not ids: paths, wrong length, wrong alphabet.
BAD_SESSION_IDS = ("../etc/passwd", "", "A" * 32, "a" * 31, "a" * 33, "g" * 32, "a/" * 16)

_ODD_TIME = datetime(2001, 2, 3, 4, 5, 6, 789012, tzinfo=timezone(timedelta(hours=5, minutes=30)))


def numbered(count: int, *, start: int = 1, prefix: str = "m") -> list[Message]:
    """``count`` user messages with the texts ``m<start>``, ``m<start+1>`` ..."""
    return [Message.user(f"{prefix}{i}") for i in range(start, start + count)]


def at(message: Message, seq: int) -> Message:
    """``message`` as a backend returns it once stored at ``seq``."""
    return message.model_copy(update={"seq": seq})


def as_stored(messages: Sequence[Message], first_seq: int = 1) -> list[Message]:
    """``messages`` as stored one after the other from ``first_seq``."""
    return [at(m, seq) for seq, m in enumerate(messages, first_seq)]


def every_field() -> list[Message]:
    """One message of each role, between them setting every field of :class:`Message`."""
    call = ToolCall(
        name="get_weather",
        arguments={"city": "Zürich", "days": [1, 2], "options": {"metric": True, "none": None}},
    )
    return [
        Message.system("Be brief.", metadata={"source": "config"}, created_at=_ODD_TIME),
        Message.user(
            [
                {"type": "text", "text": "What is in this picture?"},
                {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
            ],
            name="alice",
            metadata={"tags": ["a", "b"], "score": 1.5, "ok": False, "none": None},
            created_at=datetime(1999, 12, 31, 23, 59, 59, tzinfo=UTC),
        ),
        Message.assistant("", tool_calls=[call], name="planner", metadata={"step": 1}),
        Message.tool("12°C, clear", tool_call_id=call.id, name="get_weather"),
    ]


def _nul_in_tool_call() -> list[Any]:
    call = ToolCall(name="lookup", arguments={"query": "a\x00b"})
    return [Message.user("fine"), Message.assistant(tool_calls=[call])]


def nested(levels: int, leaf: JsonValue = "leaf") -> JsonValue:
    """``leaf`` inside ``levels`` nested lists and objects (alternating, a list outermost)."""
    value = leaf
    for i in range(levels):
        value = [value] if i % 2 == 0 else {"k": value}
    return value


def _deep_tool_call() -> list[Any]:
    call = ToolCall(name="lookup", arguments={"q": nested(MAX_DEPTH)})  # the dict is level 1
    return [Message.user("fine"), Message.assistant(tool_calls=[call])]


def _non_finite_tool_call() -> list[Any]:
    call = ToolCall(name="lookup", arguments={"x": float("-inf")})
    return [Message.user("fine"), Message.assistant(tool_calls=[call])]


#: Batches a backend must refuse with InvalidMessage, storing none of their messages. Each is
#: made on demand (one is over 16 MiB). Most start with a valid message, to prove atomicity.
REFUSED_BATCHES: dict[str, Callable[[], list[Any]]] = {
    "over-the-size-limit": lambda: [Message.user("fine"), Message.user("x" * MAX_MESSAGE_BYTES)],
    "nul-in-content": lambda: [Message.user("fine"), Message.user("a\x00b")],
    "nul-in-a-content-part": lambda: [Message.user([{"type": "text", "text": "\x00"}])],
    "nul-in-metadata": lambda: [Message.user("fine"), Message.user("x", metadata={"k\x00": 1})],
    "nul-in-name": lambda: [Message.user("x", name="al\x00ice")],
    "nul-in-a-tool-call": _nul_in_tool_call,
    "empty-batch": list,
    "duplicate-ids": lambda: [Message.user("twice", id="same-id"), Message.user("x", id="same-id")],
    "not-a-message": lambda: [Message.user("fine"), {"role": "user", "content": "a dict"}],
    "too-deep-content": lambda: [
        Message.user("fine"),
        Message.user([{"type": "data", "v": nested(MAX_DEPTH - 1)}]),
    ],
    "too-deep-metadata": lambda: [Message.user("fine", metadata={"k": nested(MAX_DEPTH)})],
    "too-deep-tool-arguments": _deep_tool_call,
    "nan-in-metadata": lambda: [Message.user("fine"), Message.user("x", metadata={"r": math.nan})],
    "infinity-in-tool-arguments": _non_finite_tool_call,
    "lone-surrogate-in-content": lambda: [Message.user("fine"), Message.user("a\ud800b")],
    "lone-surrogate-in-a-metadata-key": lambda: [Message.user("x", metadata={"\udc80": 1})],
}
