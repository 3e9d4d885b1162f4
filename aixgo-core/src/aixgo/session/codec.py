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
    """``message.model_copy(update={"seq": seq})`` at under half the cost, for backends to
    stamp a stored message on their hot paths. ``seq`` is not validated: pass what the store
    assigned (an int from 1 up) or ``None``.

    >>> m = Message.user("hi")
    >>> with_seq(m, 7).seq, m.seq, with_seq(m, 7) == m.model_copy(update={"seq": 7})
    (7, None, True)
    """
    if message.__pydantic_extra__ is not None or message.__pydantic_private__ is not None:
        return message.model_copy(update={"seq": seq})  # a subclass with extras: the slow way
    # What pydantic's __copy__ does (a new instance with copies of __dict__ and of the set of
    # fields set), with the update folded in and none of model_copy's generic handling.
    out = _new(type(message))
    data = message.__dict__.copy()
    data["seq"] = seq
    _set(out, "__dict__", data)
    _set(out, "__pydantic_fields_set__", message.__pydantic_fields_set__ | {"seq"})
    _set(out, "__pydantic_extra__", None)
    _set(out, "__pydantic_private__", None)
    return out


_new = object.__new__
_set = object.__setattr__


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
    if len(messages) == 1 and isinstance(messages[0], Message):
        return [encode_message(messages[0])]  # the common call: nothing to compare ids with
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
