"""Identifiers: random session ids and the free-text names users choose."""

from __future__ import annotations

import pytest
from aixgo.errors import InvalidIdentifier
from aixgo.identifiers import MAX_NAME_LENGTH, is_id, new_id, validate_id, validate_name


def test_ids_are_random_26_char_base32() -> None:
    ids = {new_id() for _ in range(10_000)}
    assert len(ids) == 10_000
    assert all(is_id(i) and i == i.lower() and len(i) == 32 for i in ids)


@pytest.mark.parametrize(
    "bad", ["", "../etc/passwd", "A" * 32, "a" * 31, "a" * 33, "a" * 31 + "g", None, 7]
)
def test_malformed_ids_are_refused(bad: object) -> None:
    with pytest.raises(InvalidIdentifier, match="ids are 32 characters"):
        validate_id(bad)


@pytest.mark.parametrize(
    "name",
    ["alice@example.com", "auth0|123", "../escape", "foo..bar", "C:\\x", "名前", " sp ", "x" * 256],
)
def test_free_text_names_are_valid(name: str) -> None:
    assert validate_name(name, "user id") == name


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("", "must not be empty"),
        ("x" * (MAX_NAME_LENGTH + 1), "257 characters long"),
        ("a\x00b", "control or invalid character"),
        ("a\nb", "control or invalid character"),
        ("a\u2028b", "control or invalid character"),
        ("\ud800", "control or invalid character"),
        (b"bytes", "must be a string"),
    ],
)
def test_bad_names_are_refused(name: object, why: str) -> None:
    with pytest.raises(InvalidIdentifier, match=why):
        validate_name(name, "user id")
