"""JSON encoding of messages, with the checks every backend applies before it writes.

JSON only, never pickle: a stored session can be read with ``cat`` and cannot run code.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from typing import Any, cast

from pydantic import ValidationError
from pydantic_core import PydanticSerializationError

from aixgo.errors import CorruptedData, InvalidMessage, MessageIdConflict
from aixgo.message import Message
from aixgo.session._stored import BATCH, JOIN_BYTES, JOIN_TEXT, NUMBERED, ONE

__all__ = [
    "MAX_DEPTH",
    "MAX_MESSAGE_BYTES",
    "check_batch",
    "check_json_value",
    "check_repeat",
    "decode_at",
    "decode_batch",
    "decode_message",
    "encode_message",
    "same_message",
    "stamp_seq",
    "stored_copy",
    "with_seq",
]

#: The largest message (as UTF-8 JSON) any backend must accept.
MAX_MESSAGE_BYTES = 16 * 1024 * 1024
#: How deeply lists and objects may nest in a message's content, in each tool call's
#: arguments, and in metadata (the value itself is level 1). JSON parsers, ours included,
#: refuse to read very deep documents back, so deeper data is refused before it is stored.
MAX_DEPTH = 64

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
    try:
        data = message.__pydantic_serializer__.to_json(message)
    except PydanticSerializationError as exc:
        # The only way a valid Message fails to serialize: text that is not Unicode
        # (a lone surrogate such as "\ud800" from a bad decode), which UTF-8 cannot carry.
        raise InvalidMessage(
            f"message {message.id!r} holds text that cannot be stored as UTF-8 (a lone "
            f"surrogate?): {exc}"
        ) from None
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
    # The checks below walk the message; these byte tests (C speed) rule out nearly every
    # message first. Non-finite floats are written as NaN/Infinity (Message's config), which
    # is not JSON: they would not read back, or would read back as null. A lone surrogate in
    # an object key is written as U+FFFD, so the key would read back changed. Only content
    # parts, tool-call arguments and metadata hold numbers, object keys or nesting: a plain
    # Message with text content and neither of the others (most messages) skips the tests,
    # as does one whose metadata is flat text under ASCII keys (an encrypted store's sealed
    # records: nothing there can nest, be a number, or be a changed key).
    if (
        type(message) is Message
        and type(message.content) is str
        and not message.tool_calls
        and (not (meta := message.metadata) or _flat_text(meta))
    ):
        return data
    if (
        data.count(b"[") + data.count(b"{") > MAX_DEPTH
        or b"NaN" in data
        or b"Infinity" in data
        or b"\xef\xbf\xbd" in data
    ):
        _check_values(message)
    return data


def _flat_text(meta: dict[str, Any]) -> bool:
    """Whether ``meta`` maps ASCII keys to text only: the JSON the checks look for (numbers,
    nesting, keys written changed) cannot be in it."""
    return all(type(v) is str and k.isascii() for k, v in meta.items())


def _check_values(message: Message) -> None:
    where = f"message {message.id!r}"
    check_json_value(message.content, f"the content of {where}", InvalidMessage)
    for call in message.tool_calls or ():
        check_json_value(call.arguments, f"the arguments of tool call {call.id!r} in {where}",
                         InvalidMessage)  # fmt: skip
    check_json_value(message.metadata, f"the metadata of {where}", InvalidMessage)


def check_json_value(value: object, what: str, error: type[Exception]) -> None:
    """Raise ``error`` if ``value`` nests lists and objects more than :data:`MAX_DEPTH` deep,
    holds a float that is NaN or infinite, or text with a NUL character or that is not
    Unicode (a lone surrogate); the rules for everything a store keeps as JSON.

    >>> check_json_value({"a": [1.5, {"b": float("nan")}]}, "metadata", ValueError)
    Traceback (most recent call last):
    ...
    ValueError: metadata holds a non-finite number (nan) at a.1.b; JSON has no NaN or Infinity
    """
    # Iterative, so a hostile depth cannot exhaust the interpreter's stack.
    stack: list[tuple[object, int, tuple[str | int, ...]]] = [(value, 1, ())]
    while stack:
        item, depth, path = stack.pop()
        if isinstance(item, dict | list):
            if depth > MAX_DEPTH:
                raise error(
                    f"{what} nests lists and objects more than {MAX_DEPTH} levels deep (at "
                    f"{_path(path)}); flatten it or store it as a string"
                )
            pairs = item.items() if isinstance(item, dict) else enumerate(item)
            stack.extend((v, depth + 1, (*path, k)) for k, v in pairs)
            if isinstance(item, dict):
                stack.extend((k, depth, path) for k in item)  # keys: checked as text
        elif isinstance(item, str):
            if "\x00" in item:
                raise error(
                    f"{what} holds a NUL character at {_path(path)}; remove it or encode the "
                    "data (for example as base64)"
                )
            try:
                item.encode()
            except UnicodeEncodeError:
                raise error(
                    f"{what} holds text that is not valid Unicode (a lone surrogate) at "
                    f"{_path(path)}; decode the source text properly"
                ) from None
        elif isinstance(item, float) and (item != item or item in (_INF, -_INF)):
            raise error(
                f"{what} holds a non-finite number ({item}) at {_path(path)}; JSON has no NaN "
                "or Infinity"
            )


_INF = float("inf")


def _path(path: tuple[str | int, ...]) -> str:
    return ".".join(str(p) for p in path[:8]) + (".…" if len(path) > 8 else "") or "the top"


def same_message(stored: Message, given: Message) -> bool:
    """Whether ``given`` repeats ``stored``: the same id, role, content, name, tool calls and
    ``tool_call_id``. Metadata and ``created_at`` may differ (a retry may rebuild the message);
    an id stored with other content is a different message, and appending it is a conflict.
    """
    return (
        stored.id == given.id
        and stored.role == given.role
        and stored.content == given.content
        and stored.name == given.name
        and stored.tool_calls == given.tool_calls
        and stored.tool_call_id == given.tool_call_id
    )


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
_SEQ = frozenset({"seq"})


def stored_copy(message: Message, seq: int) -> Message:
    """:func:`with_seq` for a message the caller still holds: what an append returns for a
    message it just stored. Its content parts, metadata and tool-call arguments are fresh
    containers, so neither the caller's later changes nor changes to the returned copy reach
    the other (messages are frozen; their dicts and lists are not).

    >>> m = Message.user("hi", metadata={"tags": ["a"]})
    >>> out = stored_copy(m, 1)
    >>> out.metadata["tags"].append("b"); m.metadata
    {'tags': ['a']}
    """
    if type(message) is Message:
        # with_seq inlined (a plain Message has no extras or private attributes to carry):
        # this runs once per stored message on every backend's append.
        data = message.__dict__.copy()
        data["seq"] = seq
        out = _new(Message)
        _set(out, "__dict__", data)
        _set(out, "__pydantic_fields_set__", message.__pydantic_fields_set__ | _SEQ)
        _set(out, "__pydantic_extra__", None)
        _set(out, "__pydantic_private__", None)
    else:
        out = with_seq(message, seq)
        data = out.__dict__
    # Text content, no metadata and no tool calls (most messages) cost one empty dict.
    data["metadata"] = _copy_json(message.metadata) if message.metadata else {}
    if type(message.content) is list:
        data["content"] = _copy_json(message.content)
    if message.tool_calls:
        data["tool_calls"] = [
            call.model_copy(update={"arguments": _copy_json(call.arguments)})
            for call in message.tool_calls
        ]
    return out


def _copy_json(value: Any) -> Any:
    # Stored values are bounded by MAX_DEPTH, so recursion is safe here.
    if type(value) is dict:
        return {k: _copy_json(v) for k, v in value.items()}
    if type(value) is list:
        return [_copy_json(v) for v in value]
    return value


def check_repeat(session_id: str, stored: Message, given: Message) -> Message:
    """``stored`` if ``given`` repeats it (:func:`same_message`), else
    :class:`~aixgo.errors.MessageIdConflict` (a :class:`~aixgo.errors.ConflictError`):
    a backend calls this for every message of a batch whose id is already in the history,
    before it writes anything, so a batch that reuses an id for other content stores nothing.
    """
    if same_message(stored, given):
        return stored
    raise MessageIdConflict(
        f"message id {given.id!r} is already stored in session {session_id!r} as message "
        f"{stored.seq} with a different role or content; a repeated append must send the "
        "same message (give a new message a new id)"
    )


def decode_message(data: bytes | str, where: str = "") -> Message:
    """The message stored as ``data``; :class:`CorruptedData` naming ``where`` if it is not a
    valid message."""
    try:
        out: Message = ONE.validate_json(data)  # the stored form, checked natively
        return out
    except ValueError:
        pass  # not the canonical form: the model's own validation decides, and explains
    try:
        return Message.model_validate_json(data)
    except ValidationError as exc:
        error = exc
        if exc.errors()[0]["type"] == "json_invalid" and "recursion" in str(exc):
            # Stored before MAX_DEPTH existed: deeper than pydantic's JSON parser reads, but
            # within what the standard library's parser and pydantic's validator handle.
            try:
                return Message.model_validate(json.loads(data))
            except (ValueError, RecursionError) as deeper:
                error = deeper if isinstance(deeper, ValidationError) else exc
        at = f" at {where}" if where else ""
        raise CorruptedData(
            f"stored message{at} is not valid: {error.errors()[0]['msg']}"
        ) from error


#: How :func:`encode_message` ends the JSON of a message not yet stored (``seq`` is None).
NULL_SEQ = b',"seq":null}'
_NULL_TAIL = len(b"null}")


def stamp_seq(data: bytes, seq: int) -> bytes:
    """``data`` (a message's JSON) with ``seq`` written in, when it ends with ``"seq":null}``;
    else ``data`` unchanged (the caller then sets ``seq`` on the decoded message).

    Safe without parsing: ``seq`` is the last field of :class:`Message`, so the encoder ends
    every unstored message with exactly these bytes, and in valid JSON a final ``,"seq":null}``
    with a single closing brace can only be the top-level object's own ``seq`` member (a nested
    one would end in ``}}``, one inside a string in ``"``). Cheaper than decoding and copying
    the message, which is why the stores that read JSON back stamp it this way.

    >>> stamp_seq(b'{"id":"m1","seq":null}', 7)
    b'{"id":"m1","seq":7}'
    """
    if data.endswith(NULL_SEQ):
        return data[:-_NULL_TAIL] + b"%d}" % seq
    return data


def decode_at(data: bytes, seq: int, where: str = "") -> Message:
    """The stored message ``data`` as message ``seq`` of a history
    (:func:`decode_message`, with ``seq`` stamped in by :func:`stamp_seq`)."""
    stamped = stamp_seq(data, seq)
    if stamped is data:  # not the encoder's form: set seq the slower way
        return with_seq(decode_message(data, where), seq)
    return decode_message(stamped, where)


def decode_batch(
    records: Sequence[bytes] | Sequence[str],
    careful: Callable[[int], Message],
    *,
    first_seq: int | None = None,
) -> list[Message]:
    """The messages stored as ``records``, oldest first, read in one validation.

    Without ``first_seq`` each record must carry its ``seq`` (as the networked stores keep
    it); with it, record ``i`` is message ``first_seq + i``, whatever seq it holds (``null``
    as the encoder writes it, or another branch's). If the batch is not all in the canonical
    stored form, each record is read again with ``careful(i)``, which returns record ``i`` as
    a message or raises a typed error naming where it is stored (:class:`CorruptedData`): so
    one damaged or hostile record fails the read, and is never half read. Every message
    returned is built afresh from the stored text, so none shares a list or dict with another
    or with the store.

    >>> stored = [stamp_seq(encode_message(Message.user(t)), i) for i, t in enumerate("ab", 1)]
    >>> [(m.seq, m.content) for m in decode_batch(stored, lambda i: decode_message(stored[i]))]
    [(1, 'a'), (2, 'b')]
    """
    if not records:
        return []
    # One join into one buffer: gluing the ends on after it would copy the whole text twice
    # more, which for a long history costs a fifth of the read (fresh large allocations).
    joined: bytes | str
    if isinstance(records[0], bytes):
        begin, between, end = JOIN_BYTES
        parts = list(cast("Sequence[bytes]", records))
        parts[0] = begin + parts[0]
        parts[-1] = parts[-1] + end
        joined = between.join(parts)
    else:
        text_begin, text_between, text_end = JOIN_TEXT
        texts = list(cast("Sequence[str]", records))
        texts[0] = text_begin + texts[0]
        texts[-1] = texts[-1] + text_end
        joined = text_between.join(texts)
    try:
        pairs = (BATCH if first_seq is None else NUMBERED).validate_json(joined)
    except ValueError:
        pairs = ()
    if len(pairs) == len(records):
        out = [pair[0] for pair in pairs]
        if first_seq is not None:
            # Fresh from validation and not yet seen by anyone: numbering them in place makes
            # what with_seq would, without a copy of each.
            for seq, m in enumerate(out, first_seq):
                m.__dict__["seq"] = seq
        return out
    # Not all canonical, or a record that is not one whole message.
    out = [careful(i) for i in range(len(records))]
    if first_seq is not None:
        out = [m if m.seq == seq else with_seq(m, seq) for seq, m in enumerate(out, first_seq)]
    return out


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
