"""Listing cursors: round trips, refusals and microsecond order."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from aixgo.errors import InvalidArgument
from aixgo.identifiers import new_id
from aixgo.session.cursor import decode_cursor, encode_cursor


def test_cursor_round_trip_and_refusals() -> None:
    key = (datetime(2026, 11, 21, 12, 0, 0, 123456, tzinfo=UTC), new_id())
    assert decode_cursor(encode_cursor(*key)) == key
    for bad in ["", "garbage!", encode_cursor(key[0], "x"), "W10", "WzEsMl0"]:
        with pytest.raises(InvalidArgument, match="invalid cursor"):
            decode_cursor(bad)


def test_cursor_keeps_microsecond_order() -> None:
    t = datetime(2026, 1, 1, tzinfo=UTC)
    a, b = (
        decode_cursor(encode_cursor(t, "a" * 32)),
        decode_cursor(encode_cursor(t + timedelta(microseconds=1), "a" * 32)),
    )
    assert a < b
