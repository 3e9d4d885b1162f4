"""Listing cursors: an opaque, URL-safe token holding the last row's sort key.

Every backend lists sessions by ``(updated_at, id)`` descending, so one cursor format serves
them all (keyset pagination: a page costs the same wherever it starts).

>>> from datetime import datetime, UTC
>>> key = (datetime(2026, 1, 2, tzinfo=UTC), "a" * 32)
>>> decode_cursor(encode_cursor(*key)) == key
True
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime

from aixgo.clock import from_micros, to_micros
from aixgo.errors import InvalidArgument
from aixgo.identifiers import is_id

__all__ = ["decode_cursor", "encode_cursor"]

# What encode_cursor makes is under 80 characters; anything far longer is not one of ours.
_MAX_CURSOR = 256


def encode_cursor(updated_at: datetime, session_id: str) -> str:
    """The cursor that continues a listing after the row ``(updated_at, session_id)``."""
    micros = to_micros(updated_at)
    raw = json.dumps([micros, session_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """The ``(updated_at, session_id)`` a cursor holds; :class:`InvalidArgument` if it was
    not made by :func:`encode_cursor`."""
    try:
        if len(cursor) > _MAX_CURSOR:
            raise ValueError
        padded = cursor + "=" * (-len(cursor) % 4)
        micros, sid = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
        if not isinstance(micros, int) or isinstance(micros, bool) or not is_id(sid):
            raise ValueError
        return from_micros(micros), sid
    except (
        ValueError,
        TypeError,
        UnicodeEncodeError,
        binascii.Error,
        OverflowError,
        RecursionError,
    ):
        raise InvalidArgument(
            f"invalid cursor {cursor[:80]!r}: pass back the next_cursor of a previous page "
            "unchanged, or None for the first page"
        ) from None
