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
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import SplitResult, urlsplit

import psycopg
from aixgo.errors import ConfigError
from aixgo.session.kit import Option, boolean, integer, matching, parse_options, seconds
from aixgo.session.redaction import Redactor, escape_userinfo
from psycopg import pq
from psycopg.conninfo import conninfo_to_dict, make_conninfo

__all__ = ["OPTIONS", "PostgresOptions", "libpq_keywords", "parse_url"]

_SCHEMA = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")

#: Our URL options; libpq never sees these.
OPTIONS: tuple[Option[Any], ...] = (
    Option("schema", matching(_SCHEMA, "is not a schema name we accept: use letters, digits "
           "and _ (at most 63, not starting with a digit), e.g. schema=aixgo"), "public",
           "the schema holding our tables (created if missing)"),
    Option("pool_min_size", integer(0), 1, "connections kept open"),
    Option("pool_max_size", integer(1), 10, "most connections at once"),
    Option("pool_timeout", seconds(0.001, 86_400), 30.0,
           "seconds to wait for a free connection"),
    Option("statement_timeout_ms", integer(1), None, "per-statement limit on the server"),
    Option("retries", integer(0), 3, "retries of an operation after a dropped connection"),
    Option("migrate", boolean, True, "upgrade the schema on open (false: only check it)"),
)  # fmt: skip
_DEFAULT = {o.name: o.default for o in OPTIONS}


def libpq_keywords() -> frozenset[str]:
    """Every connection keyword the installed libpq understands."""
    return frozenset(o.keyword.decode() for o in pq.Conninfo.get_defaults())


@dataclass(frozen=True, slots=True)
class PostgresOptions:
    """A parsed URL. ``conninfo`` holds the password and is never shown; ``shown`` is the URL
    as error messages may print it, and ``redactor`` scrubs the password from libpq's and the
    server's messages. The other fields are :data:`OPTIONS`, with the same defaults."""

    conninfo: str = field(repr=False)
    shown: str
    schema: str = _DEFAULT["schema"]
    pool_min_size: int = _DEFAULT["pool_min_size"]
    pool_max_size: int = _DEFAULT["pool_max_size"]
    pool_timeout: float = _DEFAULT["pool_timeout"]
    statement_timeout_ms: int | None = _DEFAULT["statement_timeout_ms"]
    retries: int = _DEFAULT["retries"]
    migrate: bool = _DEFAULT["migrate"]
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
    parts = _split(url, redactor)
    # libpq's values are passed on exactly as written: libpq percent-decodes them itself and
    # takes "+" literally, which a decode/re-encode round trip through urllib would not keep.
    found = parse_options(url, OPTIONS, passthrough=libpq_keywords(), form=False)
    ours = found.with_defaults(OPTIONS)
    if ours["pool_min_size"] > ours["pool_max_size"]:
        raise ConfigError(f"pool_min_size is above pool_max_size in {redactor.shown!r}")
    params = _libpq_params(parts, found.passed, redactor)
    params["options"] = _server_settings(params.get("options"), ours["statement_timeout_ms"])
    # Without a limit an unreachable host would hang open() for the OS TCP timeout.
    params.setdefault("connect_timeout", "10")
    password = params.get("password")
    return PostgresOptions(
        conninfo=make_conninfo("", **params),
        shown=redactor.shown,
        # The password as libpq decoded it, should a message quote that form.
        redactor=Redactor(url, str(password)) if password else redactor,
        **ours,
    )


def _split(url: str, redactor: Redactor) -> SplitResult:
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
    return parts


def _libpq_params(parts: SplitResult, items: tuple[str, ...], redactor: Redactor) -> dict[str, Any]:
    """libpq's reading of the URL without our options: libpq parses host lists,
    percent-escapes and unix sockets itself."""
    query = "&".join(items)
    # Built by hand: urlunsplit would turn "postgresql:///db" (no host) into "postgresql:/db".
    bare = f"{parts.scheme}://{parts.netloc}{parts.path}" + (f"?{query}" if query else "")
    try:
        return conninfo_to_dict(bare)
    except psycopg.Error as exc:
        # libpq's message may quote the whole URL, password included.
        raise ConfigError(
            f"invalid PostgreSQL URL {redactor.shown!r}: {redactor(str(exc))}"
        ) from None


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
