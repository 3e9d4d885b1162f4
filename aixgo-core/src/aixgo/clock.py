"""Time as aixgo stores it: timezone-aware UTC, and integer microseconds since the epoch.

Backends keep times as microseconds (exact, compact, sortable) and the listing cursor uses
the same unit, so one conversion serves them all.

>>> from datetime import datetime, UTC
>>> t = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
>>> from_micros(to_micros(t)) == t
True
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

__all__ = ["from_micros", "now_micros", "to_micros", "utc_now"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def utc_now() -> datetime:
    """The current time, timezone-aware in UTC."""
    return datetime.now(UTC)


def now_micros() -> int:
    """The current time in microseconds since the epoch."""
    return time.time_ns() // 1000


def to_micros(ts: datetime) -> int:
    """``ts`` in whole microseconds since the epoch (exact: no float rounding)."""
    delta = ts.astimezone(UTC) - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_micros(micros: int) -> datetime:
    """The UTC time ``micros`` microseconds after the epoch; :class:`ValueError` outside the
    years 1-9999.

    >>> from_micros(-1)
    datetime.datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=datetime.timezone.utc)
    """
    try:
        # One addition: half the time of fromtimestamp().replace(), and a listing page
        # converts two times per row.
        return _EPOCH + timedelta(microseconds=micros)
    except OverflowError:
        raise ValueError(f"{micros} microseconds after the epoch is out of range") from None
