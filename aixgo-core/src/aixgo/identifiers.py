"""Identifiers: random ids for sessions, checkpoints and messages; validation of names.

Ids are 128 bits from the OS CSPRNG (:func:`os.urandom`), written as 32 lowercase hex
characters: safe in URLs, file names, Redis keys and SQL without quoting, distinct even on
case-insensitive file systems, and cheap to make (well under a microsecond).
Agent names and user ids are free text (``auth0|123`` and ``alice@example.com`` are fine)
but never empty, never longer than 256 characters, and never carry control characters;
backends must still encode them before using them as keys or paths.
"""

from __future__ import annotations

import os
import re
import unicodedata

from aixgo.errors import InvalidIdentifier

__all__ = [
    "ID_LENGTH",
    "ID_PATTERN",
    "MAX_NAME_LENGTH",
    "is_id",
    "new_id",
    "validate_id",
    "validate_name",
]

MAX_NAME_LENGTH = 256
#: Characters in an id, and a regular expression (without anchors) that matches one.
ID_LENGTH = 32
ID_PATTERN = "[0-9a-f]{32}"
_ID_RE = re.compile(ID_PATTERN)
# Control characters (Cc), lone surrogates (Cs: not encodable as UTF-8) and the line and
# paragraph separators (Zl, Zp), which would split log lines and tables.
_BAD_CATEGORIES = frozenset({"Cc", "Cs", "Zl", "Zp"})


def new_id() -> str:
    """A fresh 128-bit random id, e.g. ``'3f9c0a5e7d1b4c2a8e6f0d9b7a5c3e1f'``.

    >>> len(new_id()), new_id() != new_id()
    (32, True)
    """
    # os.urandom is the OS CSPRNG (getrandom(2)); the secrets module wraps the same source.
    return os.urandom(16).hex()


def is_id(value: object) -> bool:
    """Whether ``value`` has the shape of an id made by :func:`new_id`."""
    return isinstance(value, str) and _ID_RE.fullmatch(value) is not None


def validate_id(value: object, kind: str = "session id") -> str:
    """Return ``value`` if it is a well-formed id, else raise :class:`InvalidIdentifier`.

    >>> validate_id("../etc/passwd")
    Traceback (most recent call last):
    ...
    aixgo.errors.InvalidIdentifier: invalid session id '../etc/passwd': ids are 32 characters ...
    """
    if is_id(value):
        return value  # type: ignore[return-value]
    shown = repr(value[:64]) + "…" if isinstance(value, str) and len(value) > 64 else repr(value)
    raise InvalidIdentifier(
        f"invalid {kind} {shown}: ids are 32 characters from 0-9 and a-f, as aixgo makes them"
    )


def validate_name(value: object, kind: str = "name") -> str:
    """Return ``value`` if it is a valid agent name or user id, else raise
    :class:`InvalidIdentifier`.

    >>> validate_name("auth0|123", "user id")
    'auth0|123'
    """
    if not isinstance(value, str):
        raise InvalidIdentifier(f"{kind} must be a string, not {type(value).__name__}")
    if not value:
        raise InvalidIdentifier(f"{kind} must not be empty")
    if len(value) > MAX_NAME_LENGTH:
        raise InvalidIdentifier(
            f"{kind} is {len(value)} characters long; at most {MAX_NAME_LENGTH} are allowed"
        )
    for i, ch in enumerate(value):
        if unicodedata.category(ch) in _BAD_CATEGORIES:
            raise InvalidIdentifier(
                f"{kind} {value[:64]!r} has a control or invalid character {ch!r} at "
                f"position {i}; use printable text"
            )
    return value
