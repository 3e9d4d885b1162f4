"""Records: one self-checking JSON line each, so a log stays readable with ``cat``.

A record line is ``LLLLLLLL CCCCCCCC {json}\\n``: the JSON payload's length and its CRC-32,
both as 8 hex digits, then the payload. The length finds the end of a record without trusting
its content; the checksum tells a complete record from a torn or damaged one. zlib's CRC-32 is
enough: it guards against torn writes and bit rot, not against an attacker (who could as well
rewrite the whole file).

Message records are built by byte concatenation around the message's JSON (as
:func:`aixgo.session.codec.encode_message` made it), so an append never re-serialises a
message, and a read parses only the short fixed prefix with a regex before handing the
message bytes to pydantic.
"""

from __future__ import annotations

import json
import re
import zlib
from dataclasses import dataclass
from itertools import repeat
from typing import Any

#: Bytes before the payload: 8 hex digits of length, a space, 8 hex digits of CRC, a space.
PREFIX = 18
_HEX = re.compile(rb"[0-9a-f]{8} [0-9a-f]{8} ")
_MSG = re.compile(
    rb'\{"t":"m","b":(\d+),"f":(\d+),"s":(\d+),"n":(\d+),"ts":(\d+),"h":"([0-9a-f]{16})","m":'
)


#: A message record's payload: branch, batch first, seq, batch last, time, id hash, message.
MESSAGE = b'{"t":"m","b":%d,"f":%d,"s":%d,"n":%d,"ts":%d,"h":"%016x","m":%b}'


def line(payload: bytes) -> bytes:
    """The record line holding ``payload``."""
    return b"%08x %08x %b\n" % (len(payload), zlib.crc32(payload), payload)


def other_payload(record: dict[str, Any]) -> bytes:
    """Any other record (session header, checkpoint, restore, delete) as compact JSON."""
    return json.dumps(record, separators=(",", ":"), ensure_ascii=False).encode()


@dataclass(frozen=True, slots=True)
class Parsed:
    """The outcome of reading one record at an offset: ``payload`` is ``None`` when the
    bytes there are not a complete valid record (``complete`` tells torn from damaged)."""

    payload: bytes | None
    end: int
    complete: bool


def parse_at(buf: bytes | memoryview, pos: int) -> Parsed:
    """Read the record starting at ``pos`` of ``buf``.

    ``complete=False`` means ``buf`` ends before the record does (a torn tail, or simply a
    buffer that is too short); a complete but invalid record has ``payload=None``.
    """
    if len(buf) - pos < PREFIX:
        return Parsed(None, len(buf), False)
    head = bytes(buf[pos : pos + PREFIX])
    if not _HEX.fullmatch(head):
        return Parsed(None, pos, True)
    size = int(head[:8], 16)
    end = pos + PREFIX + size + 1
    if end > len(buf):
        return Parsed(None, end, False)
    payload = bytes(buf[pos + PREFIX : end - 1])
    if buf[end - 1] != 0x0A or zlib.crc32(payload) != int(head[9:17], 16):
        return Parsed(None, end, True)
    return Parsed(payload, end, True)


_MESSAGE_LINE = re.compile(
    rb"([0-9a-f]{8}) ([0-9a-f]{8}) "
    rb'\{"t":"m","b":\d+,"f":\d+,"s":(\d+),"n":\d+,"ts":\d+,"h":"[0-9a-f]{16}","m":'
)


def message_at(buf: bytes, pos: int, length: int) -> tuple[int, bytes] | None:
    """``(seq, message JSON)`` of the intact message record of ``length`` bytes at ``pos`` of
    ``buf``, or ``None`` if the bytes there are anything else: what :func:`parse_at` and
    :func:`parse_message` find, in one regex match, for reading a tail."""
    m = _MESSAGE_LINE.match(buf, pos)
    end = pos + length
    if m is None or PREFIX + int(m[1], 16) + 1 != length or end > len(buf) or buf[end - 1] != 10:
        return None
    if zlib.crc32(memoryview(buf)[pos + PREFIX : end - 1]) != int(m[2], 16):
        return None
    return int(m[3]), buf[m.end() : end - 2]  # the payload ends with the record's own "}"


#: One whole message record line: length, CRC, payload, seq, and the message JSON. The
#: message stops at the line's end (the encoder never writes a raw newline); a record that
#: holds one is left to :func:`message_at`.
_RUN_LINE = re.compile(
    rb"([0-9a-f]{8}) ([0-9a-f]{8}) "
    rb'(\{"t":"m","b":\d+,"f":\d+,"s":(\d+),"n":\d+,"ts":\d+,"h":"[0-9a-f]{16}","m":([^\n]*)\})\n'
)


def message_run(buf: bytes, seq: int, lengths: list[int]) -> list[bytes] | None:
    """The message JSON of each record if ``buf`` is exactly ``len(lengths)`` intact
    message records, of those line lengths, messages ``seq`` on in order; else ``None``
    (then :func:`message_at`, record by record, finds what is wrong, or reads what this does
    not, such as other records between the messages).

    What :func:`message_at` checks of each record, checked for the whole run in a few C
    calls rather than a few Python steps per record: the lines found tile ``buf`` (their
    lengths add up to it, so nothing was skipped), each one's length and checksum match its
    payload and its length is the one given, and their seqs count up from ``seq``."""
    count = len(lengths)
    found = _RUN_LINE.findall(buf)
    if len(found) != count:
        return None
    sizes, crcs, payloads, seqs, messages = zip(*found, strict=True)
    have = list(map(len, payloads))
    ok = (
        sum(have) + (PREFIX + 1) * count == len(buf)
        and list(map(int, sizes, repeat(16))) == have
        and [n - PREFIX - 1 for n in lengths] == have
        and list(map(int, crcs, repeat(16))) == list(map(zlib.crc32, payloads))
        and list(map(int, seqs)) == list(range(seq, seq + count))
    )
    return list(messages) if ok else None


def record_size(prefix: bytes) -> int | None:
    """The whole line's length from its first :data:`PREFIX` bytes, or ``None``."""
    if not _HEX.fullmatch(prefix):
        return None
    return PREFIX + int(prefix[:8], 16) + 1


@dataclass(frozen=True, slots=True)
class MessageHead:
    """The fixed fields of a message record."""

    branch: int
    first: int
    seq: int
    last: int
    ts: int
    idhash: int
    data: bytes


def parse_message(payload: bytes) -> MessageHead | None:
    """The message record in ``payload``, or ``None`` if it is another kind of record."""
    m = _MSG.match(payload)
    if m is None:
        return None
    b, f, s, n, ts, h = m.groups()
    return MessageHead(int(b), int(f), int(s), int(n), int(ts), int(h, 16), payload[m.end() : -1])
