"""JSON encoding of messages, with the checks every backend applies before it writes.

JSON only, never pickle: a stored session can be read with ``cat`` and cannot run code.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from pydantic import ValidationError

from aixgo.errors import CorruptedData, InvalidMessage
from aixgo.message import Message

__all__ = ["MAX_MESSAGE_BYTES", "check_batch", "decode_message", "encode_message", "with_seq"]

#: The largest message (as UTF-8 JSON) any backend must accept.
MAX_MESSAGE_BYTES = 16 * 1024 * 1024

# "\u0000" preceded by an even number of backslashes is an escaped NUL character; with an odd
# number it is the literal text "\u0000", which is fine.
_NUL = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")


def encode_message(message: Message) -> bytes:
    """The message as compact UTF-8 JSON, or :class:`InvalidMessage` if no backend may store
    it: larger than :data:`MAX_MESSAGE_BYTES`, or holding NUL characters (which PostgreSQL
    and many tools cannot keep).

    >>> encode_message(Message.user("hi", id="m1"))[:40]
    b'{"id":"m1","role":"user","content":"hi",'
    """
    data = message.__pydantic_serializer__.to_json(message)
    if len(data) > MAX_MESSAGE_BYTES:
        raise InvalidMessage(
            f"message {message.id!r} is {len(data):,} bytes as JSON; the limit is "
            f"{MAX_MESSAGE_BYTES:,}. Store large payloads elsewhere and keep a reference"
        )
    if b"\\u0000" in data and _NUL.search(data):
        raise InvalidMessage(
            f"message {message.id!r} contains a NUL character; remove it or encode the data "
            "(for example as base64)"
        )
    return data


def with_seq(message: Message, seq: int | None) -> Message:
    """``message.model_copy(update={"seq": seq})`` at about half the cost, for backends to
    stamp a stored message on their hot paths. ``seq`` is not validated: pass what the store
    assigned (an int from 1 up) or ``None``.

    >>> m = Message.user("hi")
    >>> with_seq(m, 7).seq, m.seq, with_seq(m, 7) == m.model_copy(update={"seq": 7})
    (7, None, True)
    """
    # What model_copy does for a model without extra fields or private attributes (a
    # shallow __copy__, then the update), minus its generic update handling.
    out = message.__copy__()
    out.__dict__["seq"] = seq
    out.__pydantic_fields_set__.add("seq")
    return out


def decode_message(data: bytes | str, where: str = "") -> Message:
    """The message stored as ``data``; :class:`CorruptedData` naming ``where`` if it is not a
    valid message."""
    try:
        return Message.model_validate_json(data)
    except ValidationError as exc:
        at = f" at {where}" if where else ""
        raise CorruptedData(f"stored message{at} is not valid: {exc.errors()[0]['msg']}") from exc


def check_batch(messages: Sequence[Message] | Message) -> list[bytes]:
    """Validate a batch for appending and return each message encoded.

    Refuses (with :class:`InvalidMessage`, before anything is written) an empty batch,
    non-messages, repeated ids within the batch, and messages :func:`encode_message` refuses.
    """
    if isinstance(messages, Message):
        raise InvalidMessage("append_messages takes a list of messages; use append_message()")
    if not messages:
        raise InvalidMessage("cannot append an empty list of messages")
    seen: set[str] = set()
    encoded: list[bytes] = []
    for i, m in enumerate(messages):
        if not isinstance(m, Message):
            raise InvalidMessage(
                f"item {i} is a {type(m).__name__}, not a Message; build one with "
                "Message.user(...) and friends"
            )
        if m.id in seen:
            raise InvalidMessage(f"message id {m.id!r} appears twice in one batch")
        seen.add(m.id)
        encoded.append(encode_message(m))
    return encoded
