"""Reading stored messages back with every check inside pydantic-core.

:class:`~aixgo.message.Message`'s own checks (content parts need a string ``type``, times
become UTC, a tool message needs ``tool_call_id``) are Python validators, and calling them
costs as much as the rest of reading a message. A stored message is in the encoder's
canonical form, so the schema here asks for exactly that form and expresses the same checks
natively: every field present and nothing else, content parts as objects with a string
``type``, ``created_at`` at UTC offset 0, and a union tagged by ``role`` whose ``tool``
branch requires a non-empty ``tool_call_id``. It builds plain :class:`Message` instances, as
the model's own validator does.

What it refuses is not necessarily damaged (a record written by hand, or by an older
version, may name a time at another offset or leave a field out): :mod:`aixgo.session.codec`
then reads that record the careful way, which accepts what the model accepts and reports
anything else as :class:`~aixgo.errors.CorruptedData`. So this schema only ever has to be
at least as strict as the model; ``tests/core/test_decode_batch.py`` checks the two agree.

A batch is validated in one call, as one JSON text. Records are joined as
``[[r1,"N"],[r2,"N"],...]`` with ``N`` a random token of this process and each pair checked
to end in it: a hostile record cannot know ``N``, so it cannot close its pair early and
carry part of itself into the next message. With the count of pairs equal to the count of
records, each message was read from exactly one whole record.
"""

from __future__ import annotations

import secrets

from pydantic_core import SchemaValidator
from pydantic_core import core_schema as cs

from aixgo.message import Message, ToolCall

__all__ = ["BATCH", "JOIN_BYTES", "JOIN_TEXT", "NUMBERED", "ONE"]

_JSON = cs.any_schema()  # read from JSON text, any value is a JSON value
_NAME = cs.str_schema(min_length=1, max_length=256)


def _tool_call() -> cs.CoreSchema:
    fields = {
        "id": cs.model_field(_NAME),
        "name": cs.model_field(_NAME),
        "arguments": cs.model_field(cs.dict_schema(cs.str_schema(), _JSON)),
    }
    return cs.model_schema(
        ToolCall, cs.model_fields_schema(fields, extra_behavior="forbid"), frozen=True
    )


def _message(roles: list[str], tool_call_id: cs.CoreSchema, seq: cs.CoreSchema) -> cs.CoreSchema:
    part = cs.typed_dict_schema(
        {"type": cs.typed_dict_field(cs.str_schema())}, extra_behavior="allow", extras_schema=_JSON
    )
    fields = {
        "id": _NAME,
        "role": cs.literal_schema(roles),
        "content": cs.union_schema([cs.str_schema(), cs.list_schema(part)], mode="left_to_right"),
        "name": cs.nullable_schema(cs.str_schema(max_length=256)),
        "tool_calls": cs.nullable_schema(cs.list_schema(_tool_call())),
        "tool_call_id": tool_call_id,
        "metadata": cs.dict_schema(cs.str_schema(), _JSON),
        # Offset 0 only. The time keeps pydantic-core's UTC tzinfo, equal to datetime.UTC:
        # swapping it in would cost a call per message.
        "created_at": cs.datetime_schema(tz_constraint=0),
        "seq": seq,
    }
    if list(fields) != list(Message.model_fields):  # a new field must be added here too
        raise RuntimeError("aixgo.session._stored is out of step with Message's fields")
    return cs.model_schema(
        Message,
        cs.model_fields_schema(
            {k: cs.model_field(v) for k, v in fields.items()}, extra_behavior="forbid"
        ),
        frozen=True,
    )


def _stored(seq: cs.CoreSchema) -> cs.CoreSchema:
    chat = _message(
        ["system", "user", "assistant"], cs.nullable_schema(cs.str_schema(max_length=256)), seq
    )
    tool = _message(["tool"], _NAME, seq)
    choices: dict[str, cs.CoreSchema] = {"system": chat, "user": chat, "assistant": chat}
    choices["tool"] = tool
    return cs.tagged_union_schema(choices, discriminator="role")


_SEQ = cs.int_schema(ge=1)
# A record the reader numbers: its seq member must be there, but may hold anything valid.
_ANY_SEQ = cs.nullable_schema(_SEQ)

#: One stored message, with its ``seq``, to a :class:`Message` (``validate_json``).
ONE = SchemaValidator(_stored(_SEQ))

_TOKEN = "n" + secrets.token_hex(16)  # starts with a letter: never a bare JSON number


def _batch(seq: cs.CoreSchema) -> SchemaValidator:
    pair = cs.tuple_schema([_stored(seq), cs.literal_schema([_TOKEN])])
    return SchemaValidator(cs.list_schema(pair))


#: Records joined as :data:`JOIN_BYTES` or :data:`JOIN_TEXT` say, to ``[(Message, token), ...]``:
#: each with its seq (``BATCH``), or with a seq the reader replaces (``NUMBERED``).
BATCH = _batch(_SEQ)
NUMBERED = _batch(_ANY_SEQ)

_SEP = f',"{_TOKEN}"],['
_END = f',"{_TOKEN}"]]'
#: ``(open, between, close)``: :data:`BATCH` reads ``open + between.join(records) + close``.
JOIN_BYTES = (b"[[", _SEP.encode(), _END.encode())
JOIN_TEXT = ("[[", _SEP, _END)
