"""Checks for plain arguments (counts, limits) shared by the public API."""

from __future__ import annotations

from aixgo.errors import InvalidArgument

__all__ = ["check_count"]


def check_count(value: object, name: str, *, low: int, high: int | None = None) -> int:
    """``value`` if it is an int within bounds, else :class:`InvalidArgument` (bools too).

    >>> check_count(5, "last", low=0)
    5
    """
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidArgument(f"{name} must be an int, not {type(value).__name__}")
    if value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise InvalidArgument(f"{name} must be {bound}, not {value}")
    return value
