"""A message's time crosses the wire exactly (whole microseconds, any offset, years 1-9999),
and a time no message can hold is refused as bad input."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from aixgo import Message
from aixgo.errors import InvalidMessage
from aixgo_runtime_grpc.wire import from_wire, to_wire


@pytest.mark.parametrize(
    "at",
    [
        datetime(1, 1, 1, tzinfo=UTC),
        datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        datetime(1969, 12, 31, 23, 59, 59, 1, tzinfo=UTC),
        datetime(2020, 1, 2, 3, 4, 5, 678901, tzinfo=timezone(timedelta(hours=-7))),
    ],
)
def test_times_round_trip_exactly(at: datetime) -> None:
    m = Message.user("x", created_at=at)
    back = from_wire(to_wire(m))
    assert back == m
    assert back.created_at == at and back.created_at.tzinfo is UTC


@pytest.mark.parametrize(("seconds", "nanos"), [(10**15, 0), (-(10**15), 0), (5, -1),
                                                (5, 10**9)])  # fmt: skip
def test_a_time_out_of_range_is_invalid(seconds: int, nanos: int) -> None:
    w = to_wire(Message.user("x"))
    w.created_at.seconds = seconds
    w.created_at.nanos = nanos
    with pytest.raises(InvalidMessage, match="created_at"):
        from_wire(w)
