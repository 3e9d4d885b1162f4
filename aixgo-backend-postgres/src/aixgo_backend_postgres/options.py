"""URL options: what a ``postgresql://`` URL says, split into ours and libpq's.

Everything libpq understands (host lists, ``sslmode``, ``sslrootcert``, ``sslcert``,
``sslkey``, ``connect_timeout``, ``application_name``, ``options``, ``target_session_attrs``,
...) passes through untouched, so any URL ``psql`` accepts works here. Our own options are
parsed strictly and removed before libpq sees the URL:

``schema``                the schema holding our tables (default ``public``; created if missing)
``pool_min_size``         connections kept open (default 1)
``pool_max_size``         most connections at once (default 10)
``pool_timeout``          seconds to wait for a free connection (default 30)
``statement_timeout_ms``  per-statement limit on the server; exceeding it raises
                          :class:`~aixgo_backend_postgres.errors.StatementTimeout` (default: none)
``retries``               how often an operation is retried after a dropped connection (default 3)
``migrate``               ``true`` (default) upgrades the schema on open; ``false`` only checks it

Any other option is a :class:`~aixgo.errors.ConfigError` that lists the valid ones, so a typo
never silently does nothing.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

import psycopg
from aixgo.errors import ConfigError
from aixgo.session.redaction import Redactor, escape_userinfo
from psycopg import pq
from psycopg.conninfo import conninfo_to_dict, make_conninfo

__all__ = ["OUR_OPTIONS", "PostgresOptions", "libpq_keywords", "parse_url"]

_SCHEMA = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")


def _positive_int(name: str, raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise ConfigError(f"URL option {name}={raw!r} must be a whole number of at least 1")
    return value


def _count(name: str, raw: str) -> int:
    return 0 if raw == "0" else _positive_int(name, raw)


def _seconds(name: str, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 < value < 86_400:
        raise ConfigError(f"URL option {name}={raw!r} must be a number of seconds above 0")
    return value


def _bool(name: str, raw: str) -> bool:
    low = raw.lower()
    if low in ("true", "1", "yes", "on"):
        return True
    if low in ("false", "0", "no", "off"):
        return False
    raise ConfigError(f"URL option {name}={raw!r} must be true or false")


def _schema(name: str, raw: str) -> str:
    if not _SCHEMA.fullmatch(raw):
        raise ConfigError(
            f"URL option {name}={raw[:80]!r} is not a schema name we accept: use letters, "
            "digits and _ (at most 63, not starting with a digit), e.g. schema=aixgo"
        )
    return raw


#: Our URL options and how each is parsed; libpq never sees these.
OUR_OPTIONS: dict[str, Callable[[str, str], Any]] = {
    "schema": _schema,
    "pool_min_size": _count,
    "pool_max_size": _positive_int,
    "pool_timeout": _seconds,
    "statement_timeout_ms": _positive_int,
    "retries": _count,
    "migrate": _bool,
}


def libpq_keywords() -> frozenset[str]:
    """Every connection keyword the installed libpq understands."""
    return frozenset(o.keyword.decode() for o in pq.Conninfo.get_defaults())


@dataclass(frozen=True, slots=True)
class PostgresOptions:
    """A parsed URL. ``conninfo`` holds the password and is never shown; ``shown`` is the URL
    as error messages may print it, and ``redactor`` scrubs the password from libpq's and the
    server's messages."""

    conninfo: str = field(repr=False)
    shown: str
    schema: str = "public"
    pool_min_size: int = 1
    pool_max_size: int = 10
    pool_timeout: float = 30.0
    statement_timeout_ms: int | None = None
    retries: int = 3
    migrate: bool = True
    redactor: Redactor = field(default_factory=lambda: Redactor(""), repr=False, compare=False)


def parse_url(url: str) -> PostgresOptions:
    """Split ``url`` into our options and a libpq connection string.

    >>> o = parse_url("postgresql://app:s3cret@db:5432/app?sslmode=require&schema=aixgo")
    >>> o.schema, o.shown
    ('aixgo', 'postgresql://app:***@db:5432/app?sslmode=require&schema=aixgo')
    >>> "sslmode=require" in o.conninfo and "schema" not in o.conninfo
    True
    """
    redactor = Redactor(url)
    shown = redactor.shown
    try:
        # libpq ends the password at its first '@': a raw one is percent-encoded first.
        parts = urlsplit(escape_userinfo(url))
    except ValueError as exc:
        raise ConfigError(f"invalid PostgreSQL URL {shown!r}: {redactor(str(exc))}") from None
    if parts.scheme.lower() not in ("postgresql", "postgres"):
        raise ConfigError(f"{shown!r} is not a postgresql:// or postgres:// URL")
    if "#" in url:
        # urllib would drop everything after it, options (and half a password) included.
        raise ConfigError(
            f"{shown!r} holds a '#', which a PostgreSQL URL has no use for: in a password "
            "or option value write it as %23"
        )
    ours: dict[str, Any] = {}
    theirs: list[str] = []
    known = libpq_keywords()
    # libpq's values are passed on exactly as written: libpq percent-decodes them itself and
    # takes "+" literally, which a decode/re-encode round trip through urllib would not keep.
    for item in filter(None, parts.query.split("&")):
        raw_key, eq, raw_value = item.partition("=")
        key = unquote(raw_key)
        if key in OUR_OPTIONS:
            if key in ours:
                raise ConfigError(f"URL option {key} is given twice in {shown!r}")
            ours[key] = OUR_OPTIONS[key](key, unquote(raw_value))
        elif key in known and eq:
            theirs.append(item)
        else:
            raise ConfigError(
                f"unknown URL option {key!r} in {shown!r}. Ours: {', '.join(OUR_OPTIONS)}; "
                f"libpq's: {', '.join(sorted(known))}"
            )
    if ours.get("pool_min_size", 1) > ours.get("pool_max_size", 10):
        raise ConfigError(f"pool_min_size is above pool_max_size in {shown!r}")
    # libpq parses the URL itself (host lists, percent-escapes, unix sockets); we only took
    # our options out of the query.
    # Built by hand: urlunsplit would turn "postgresql:///db" (no host) into "postgresql:/db".
    query = "&".join(theirs)
    bare = f"{parts.scheme}://{parts.netloc}{parts.path}" + (f"?{query}" if query else "")
    try:
        params = conninfo_to_dict(bare)
    except psycopg.Error as exc:
        # libpq's message may quote the whole URL, password included.
        raise ConfigError(f"invalid PostgreSQL URL {shown!r}: {redactor(str(exc))}") from None
    params["options"] = _server_settings(params.get("options"), ours.get("statement_timeout_ms"))
    # Without a limit an unreachable host would hang open() for the OS TCP timeout.
    params.setdefault("connect_timeout", "10")
    password = params.get("password")
    return PostgresOptions(
        conninfo=make_conninfo("", **params),
        shown=shown,
        # The password as libpq decoded it, should a message quote that form.
        redactor=Redactor(url, str(password)) if password else redactor,
        **ours,
    )


def _server_settings(user_options: Any, statement_timeout_ms: int | None) -> str:
    """The libpq ``options`` string: the user's own first, then ours.

    ``TimeZone=UTC`` makes timestamps come back in UTC. Every statement we run is a key
    lookup or a keyset range whose right plan does not depend on the data, so:
    ``plan_cache_mode=force_generic_plan`` plans each prepared statement (and each statement
    inside our functions) once per connection instead of re-planning it on every call, which
    cost more than running it; ``enable_seqscan=off`` keeps a plan made while a table was
    still empty (or never analysed) from being a sequential scan that grows with the table.
    The statements are written so their generic plans use the matching index (see the
    EXPLAIN tests).
    """
    settings = ["-c TimeZone=UTC", "-c enable_seqscan=off", "-c plan_cache_mode=force_generic_plan"]
    if statement_timeout_ms is not None:
        settings.append(f"-c statement_timeout={statement_timeout_ms}")
    return " ".join([str(user_options), *settings] if user_options else settings)
