"""URL options: a backend's table of query options, and the one strict parser for it.

A backend describes each option it takes as an :class:`Option` (name, parser, default,
description) and calls :func:`parse_options` once, when it is opened: an unknown option, an
option given twice, or a value its parser refuses is a :class:`~aixgo.errors.ConfigError`
naming the option and showing the URL without its secrets. A typo never silently falls back
to a default, and ``?durability=fsync&durability=flush`` never means whichever came last.

>>> TABLE = (
...     Option("ttl", integer(0, 86_400), None, "expiry in seconds"),
...     Option("fast", boolean, False, "skip the flush"),
... )
>>> parse_options("mystore://h/db?ttl=60", TABLE).values
{'ttl': 60}
>>> parse_options("mystore://h?ttl=60&ttl=61", TABLE)
Traceback (most recent call last):
...
aixgo.errors.ConfigError: option 'ttl' is given twice in 'mystore://h?ttl=60&ttl=61'; give it once

Parsers are plain callables from the option's text to its value that raise
:class:`ValueError` saying what a valid value is ("must be true or false"); the ones here
cover most needs, and any function of that shape works.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar
from urllib.parse import unquote, unquote_plus

from aixgo.errors import ConfigError
from aixgo.session.redaction import escape_userinfo, redact_url

__all__ = [
    "Option",
    "UrlOptions",
    "boolean",
    "choice",
    "integer",
    "matching",
    "parse_options",
    "path",
    "seconds",
    "text",
]

T = TypeVar("T")

#: Turns an option's text into its value; raises ValueError saying what is valid.
Parser = Callable[[str], T]


@dataclass(frozen=True, slots=True)
class Option(Generic[T]):
    """One URL option: its ``name``, the ``parse`` function for its text, the ``default``
    used when the URL does not give it, and a ``description`` for docs and help."""

    name: str
    parse: Parser[T] = field(repr=False)
    default: T
    description: str = ""


@dataclass(frozen=True, slots=True)
class UrlOptions:
    """What :func:`parse_options` found: ``values``, the table's options the URL gives
    (parsed; absent ones are not there, see :func:`with_defaults`), and ``passed``, the
    pass-through items as written (``"key=value"``), in URL order."""

    values: dict[str, Any]
    passed: tuple[str, ...] = ()

    def with_defaults(self, table: Iterable[Option[Any]]) -> dict[str, Any]:
        """Every option of ``table``: the URL's value, else the option's default."""
        return {o.name: self.values.get(o.name, o.default) for o in table}


def parse_options(
    url: str,
    table: Sequence[Option[Any]],
    *,
    passthrough: Collection[str] = (),
    form: bool = True,
) -> UrlOptions:
    """Parse the query of ``url`` against ``table``, strictly.

    ``passthrough`` names options that belong to someone else (a driver's connection
    keywords): they are neither parsed nor checked for repeats, and come back untouched in
    :attr:`UrlOptions.passed`. ``form=True`` decodes the query as an HTML form does (``+`` is
    a space, as urllib and redis-py read it); ``form=False`` keeps ``+`` (as libpq does).
    A fragment (``#...``) is not part of the query; refuse it first if your URLs have no use
    for one.
    """
    shown = redact_url(url)
    # A raw password may hold '?': escaped first, so the query starts where a parser sees it.
    query = escape_userinfo(url).partition("?")[2].partition("#")[0]
    decode = unquote_plus if form else unquote
    known = {o.name: o for o in table}
    values: dict[str, Any] = {}
    passed: list[str] = []
    for item in filter(None, query.split("&")):
        raw_key, eq, raw_value = item.partition("=")
        key = decode(raw_key)
        option = known.get(key)
        if option is None:
            if key in passthrough and eq:
                passed.append(item)
                continue
            raise ConfigError(_unknown(key, shown, known, passthrough))
        if key in values:
            raise ConfigError(f"option {key!r} is given twice in {shown!r}; give it once")
        try:
            values[key] = option.parse(decode(raw_value))
        except ValueError as exc:
            # The value itself is not repeated: it may be a secret (ssl_password=...).
            raise ConfigError(f"option {key} in {shown!r} {exc}") from None
    return UrlOptions(values, tuple(passed))


def _unknown(key: str, shown: str, known: Iterable[str], passthrough: Collection[str]) -> str:
    text = f"unknown option {key!r} in {shown!r}; valid options: {', '.join(known)}"
    if passthrough:
        text += f"; passed on to the driver: {', '.join(sorted(passthrough))}"
    return text


# -- parsers ----------------------------------------------------------------------------------

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


def boolean(raw: str) -> bool:
    """``true``/``false`` (also ``1``/``0``, ``yes``/``no``, ``on``/``off``, any case)."""
    low = raw.lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise ValueError("must be true or false")


def integer(low: int, high: int | None = None) -> Parser[int]:
    """A parser of whole numbers from ``low`` to ``high`` (no upper bound when ``None``)."""
    span = f"from {low} to {high}" if high is not None else f"of at least {low}"

    def parse(raw: str) -> int:
        try:
            value = int(raw)
        except ValueError:
            value = low - 1
        if value < low or (high is not None and value > high):
            raise ValueError(f"must be a whole number {span}")
        return value

    return parse


def seconds(low: float, high: float) -> Parser[float]:
    """A parser of durations: a number of seconds from ``low`` to ``high``."""

    def parse(raw: str) -> float:
        try:
            value = float(raw)
        except ValueError:
            value = math.nan
        if not low <= value <= high:  # also refuses nan
            raise ValueError(f"must be a number of seconds from {low:g} to {high:g}")
        return value

    return parse


def choice(*values: str) -> Parser[str]:
    """A parser that accepts exactly one of ``values``."""

    def parse(raw: str) -> str:
        if raw not in values:
            raise ValueError(f"is not valid; choose one of {', '.join(values)}")
        return raw

    return parse


def matching(pattern: str | re.Pattern[str], rule: str) -> Parser[str]:
    """A parser of text that must match ``pattern`` whole; ``rule`` says what that means in
    words, for the error ("must be ..." follows the option's name)."""
    compiled = re.compile(pattern)

    def parse(raw: str) -> str:
        if not compiled.fullmatch(raw):
            raise ValueError(rule)
        return raw

    return parse


def text(raw: str) -> str:
    """Any text, as given (a password, a name a library checks itself)."""
    return raw


def path(raw: str) -> str:
    """A file path, as given; not empty and without NUL characters."""
    if not raw or "\x00" in raw:
        raise ValueError("must be a file path (not empty, no NUL characters)")
    return raw
