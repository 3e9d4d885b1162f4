"""Backend URLs: parsing ``redis://``, ``rediss://``, ``unix://`` and ``redis+cluster://``.

Parsing is strict: an unknown or repeated option, or a value out of range, is a
:class:`~aixgo.errors.ConfigError` that lists what is valid, so a typo never silently falls back
to a default. Errors show the URL through :func:`~aixgo.session.redact_url`: never a password.
A raw password with '@', ':' or '%' works; one with '/', '?' or '#' must be percent-encoded
(:func:`~aixgo.session.escape_userinfo`).

>>> o = parse_url("redis://:s3cret@cache:6380/2?prefix=app:&ttl=3600&pool_size=20")
>>> (o.hosts, o.db, o.prefix, o.ttl, o.pool_size, o.password)
([('cache', 6380)], 2, 'app:', 3600, 20, 's3cret')
>>> parse_url("redis+cluster://n1:7000,n2:7001").hosts
[('n1', 7000), ('n2', 7001)]
>>> parse_url("redis://localhost?tll=60")
Traceback (most recent call last):
...
aixgo.errors.ConfigError: unknown option 'tll' in 'redis://localhost?tll=60'; valid options: ...
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

from aixgo.errors import ConfigError
from aixgo.session.kit import Option, boolean, integer, parse_options, seconds
from aixgo.session.kit import options as kit
from aixgo.session.redaction import Redactor, escape_userinfo, redact_url

__all__ = ["OPTIONS", "SCHEMES", "RedisOptions", "parse_url"]

#: The URL schemes this package registers.
SCHEMES = ("redis", "rediss", "unix", "redis+cluster")

# A prefix sits in front of every key; braces would move the cluster hash tag into it, and
# whitespace or control characters make keys painful to inspect with redis-cli.
_PREFIX = re.compile(r"[!-z|~]{1,100}")


def _ttl(raw: str) -> int | None:
    return integer(0, 10 * 365 * 86_400)(raw) or None  # 0: keep forever


_COMMON: tuple[Option[Any], ...] = (
    Option("prefix", kit.matching(_PREFIX, "must be 1-100 printable ASCII characters without "
           "spaces or braces (braces would move the cluster hash tag)"), "aixgo:",
           "prepended to every key; lets several applications share one Redis"),
    Option("ttl", _ttl, None, "sliding expiry in seconds: every write renews every key of "
           "the session; 0 (the default): keep"),
    Option("pool_size", integer(1, 10_000), 50, "connections per server; when all are busy "
           "a call waits up to timeout for one"),
    Option("timeout", seconds(0.001, 3600), 5.0,
           "seconds one command may take before it fails with BackendTimeout"),
    Option("connect_timeout", seconds(0.001, 3600), 5.0, "seconds a connection may take"),
    Option("retry_window", seconds(0, 3600), 10.0,
           "seconds during which an operation retries, with backoff, while Redis is unreachable"),
)  # fmt: skip
_DB = Option("db", integer(0, 1_000_000), 0, "the database number")
_TLS = Option("tls", boolean, False, "TLS to every node (redis+cluster://; rediss:// has it)")
_SSL: tuple[Option[Any], ...] = (
    Option("ssl_ca_certs", kit.path, None, "CA bundle the server's certificate is checked with"),
    Option("ssl_certfile", kit.path, None, "client certificate"),
    Option("ssl_keyfile", kit.path, None, "client key"),
    Option("ssl_password", kit.text, None, "the client key's password"),
    Option("ssl_cert_reqs", kit.choice("none", "optional", "required"), None,
           "whether the server's certificate is required"),
    Option("ssl_check_hostname", boolean, None, "whether it must name the host"),
)  # fmt: skip
_SSL_NAMES = frozenset(o.name for o in _SSL)
#: The URL options of each scheme. ssl_* are in every table so that using them without TLS
#: gets an error that says how to turn TLS on.
OPTIONS: dict[str, tuple[Option[Any], ...]] = {
    "redis": (*_COMMON, _DB, *_SSL),
    "rediss": (*_COMMON, _DB, *_SSL),
    "unix": (*_COMMON, _DB, *_SSL),
    "redis+cluster": (*_COMMON, _TLS, *_SSL),
}
_DEFAULT = {o.name: o.default for o in (*_COMMON, _DB, _TLS)}


@dataclass(frozen=True, slots=True)
class RedisOptions:
    """Everything a backend URL says, with defaults filled in."""

    url: str = field(repr=False)
    scheme: str
    hosts: list[tuple[str, int]] = field(default_factory=list)
    unix_path: str | None = None
    db: int = _DEFAULT["db"]
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    # The options of OPTIONS (see their descriptions there), with the same defaults.
    prefix: str = _DEFAULT["prefix"]
    ttl: int | None = _DEFAULT["ttl"]
    pool_size: int = _DEFAULT["pool_size"]
    timeout: float = _DEFAULT["timeout"]
    connect_timeout: float = _DEFAULT["connect_timeout"]
    retry_window: float = _DEFAULT["retry_window"]
    tls: bool = _DEFAULT["tls"]
    ssl: dict[str, str | bool | None] = field(default_factory=dict, repr=False)

    @property
    def cluster(self) -> bool:
        return self.scheme == "redis+cluster"

    @property
    def shown(self) -> str:
        """The URL as errors and logs show it: without its password."""
        return redact_url(self.url)

    @property
    def redactor(self) -> Redactor:
        """Scrubs this URL's secrets from redis-py's messages."""
        return Redactor(self.url, *(p for p in (self.password,) if p))


def parse_url(url: str) -> RedisOptions:
    """The :class:`RedisOptions` of ``url``; :class:`ConfigError` if anything is off."""
    shown = redact_url(url)
    scheme, sep, _ = url.partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in OPTIONS:
        raise ConfigError(f"{shown!r} is not a Redis URL; schemes: {', '.join(SCHEMES)}")
    # Parsed with its user name and password percent-encoded, so urllib reads it right; the
    # options keep the URL as given.
    rest = escape_userinfo(url).partition("://")[2]
    if "#" in rest:
        # urllib would drop everything after it, options (and half a password) included.
        raise ConfigError(
            f"{shown!r} holds a '#', which a Redis URL has no use for: in a password or "
            "option value write it as %23"
        )
    given = parse_options(url, OPTIONS[scheme]).values
    ssl = {name: value for name, value in given.items() if name in _SSL_NAMES}
    for name in ssl:
        del given[name]
    db = given.pop("db", None)
    kw = {**given, **_address(scheme, rest, db, url)}
    kw["tls"] = scheme == "rediss" or kw.get("tls", False)
    if ssl and not kw["tls"]:
        raise ConfigError(_no_tls(scheme, next(iter(ssl)), shown))
    return RedisOptions(url=url, scheme=scheme, ssl=ssl, **kw)


def _no_tls(scheme: str, name: str, shown: str) -> str:
    if scheme == "redis+cluster":
        return f"{shown!r} has ssl_* options but no TLS: add tls=true"
    return f"{name} in {shown!r} needs TLS: use rediss:// (redis+cluster://...?tls=true)"


def _address(scheme: str, rest: str, db: int | None, url: str) -> dict[str, Any]:
    """Where to connect and as whom: hosts or a socket, the database, the credentials."""
    shown = redact_url(url)
    if scheme == "redis+cluster":
        netloc, _, path = rest.partition("?")[0].partition("/")
        userinfo, _, hostlist = netloc.rpartition("@")
        if path:
            raise ConfigError(f"{shown!r}: Redis Cluster has only database 0; drop '/{path}'")
        where: dict[str, Any] = {"hosts": [_host(h, shown) for h in hostlist.split(",")]}
    else:
        try:
            parts = urlsplit(f"{scheme}://{rest}")
            port = parts.port
        except ValueError as exc:
            raise ConfigError(f"{shown!r} is not a valid URL: {Redactor(url)(str(exc))}") from None
        userinfo = parts.netloc.rpartition("@")[0]
        if scheme == "unix":
            where = {"unix_path": _socket(parts.path, shown), "db": db or 0}
        else:
            where = {"hosts": [(parts.hostname or "localhost", port or 6379)]}
            where["db"] = _db(parts.path.lstrip("/"), db, shown)
    return {**where, **_credentials(userinfo)}


def _socket(raw: str, shown: str) -> str:
    if not raw:
        raise ConfigError(f"{shown!r} names no socket; write unix:///path/to/redis.sock")
    return unquote(raw)


def _db(in_path: str, option: int | None, shown: str) -> int:
    """The database named by the URL's path or its ``db=`` option (not both)."""
    if not in_path:
        return option or 0
    if option is not None:
        raise ConfigError(f"{shown!r} gives the database twice (path and db=)")
    try:
        return _DB.parse(in_path)
    except ValueError as exc:
        raise ConfigError(f"db in {shown!r} {exc}") from None


def _credentials(userinfo: str) -> dict[str, str | None]:
    if not userinfo:
        return {}
    user, colon, password = userinfo.partition(":")
    return {"username": unquote(user) or None, "password": unquote(password) if colon else None}


def _host(text: str, shown: str) -> tuple[str, int]:
    m = re.fullmatch(r"(\[[0-9A-Fa-f:.]+\]|[^:\[\]/]+)(?::(\d{1,5}))?", text)
    if m is None:
        raise ConfigError(f"{shown!r}: {text!r} is not a host[:port]")
    return m.group(1).strip("[]"), int(m.group(2) or 6379)
