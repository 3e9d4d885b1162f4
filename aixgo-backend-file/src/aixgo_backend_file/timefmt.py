"""Times on disk are integer microseconds since the Unix epoch (UTC): exact, compact, and
the same unit the listing cursor uses."""

from __future__ import annotations

import time
from datetime import UTC, datetime

__all__ = ["from_micros", "now_micros", "to_micros"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_micros(ts: datetime) -> int:
    delta = ts.astimezone(UTC) - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_micros(micros: int) -> datetime:
    return datetime.fromtimestamp(micros // 1_000_000, UTC).replace(microsecond=micros % 1_000_000)


def now_micros() -> int:
    return time.time_ns() // 1000
