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
from urllib.parse import parse_qsl, unquote, urlsplit

from aixgo.errors import ConfigError
from aixgo.session.redaction import Redactor, escape_userinfo, redact_url

__all__ = ["SCHEMES", "RedisOptions", "parse_url"]

#: The URL schemes this package registers.
SCHEMES = ("redis", "rediss", "unix", "redis+cluster")

_COMMON = ("prefix", "ttl", "pool_size", "timeout", "connect_timeout", "retry_window")
_TLS = ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_password", "ssl_cert_reqs",
        "ssl_check_hostname")  # fmt: skip
_VALID = {
    "redis": (*_COMMON, "db"),
    "rediss": (*_COMMON, "db", *_TLS),
    "unix": (*_COMMON, "db"),
    "redis+cluster": (*_COMMON, "tls", *_TLS),
}
# A prefix sits in front of every key; braces would move the cluster hash tag into it, and
# whitespace or control characters make keys painful to inspect with redis-cli.
_PREFIX = re.compile(r"[!-z|~]{1,100}")
_CERT_REQS = ("none", "optional", "required")


@dataclass(frozen=True, slots=True)
class RedisOptions:
    """Everything a backend URL says, with defaults filled in."""

    url: str = field(repr=False)
    scheme: str
    hosts: list[tuple[str, int]] = field(default_factory=list)
    unix_path: str | None = None
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    #: Prepended to every key; lets several applications share one Redis.
    prefix: str = "aixgo:"
    #: Sliding expiry in seconds: every write renews every key of the session. None: keep.
    ttl: int | None = None
    #: Connections per server; when all are busy a call waits up to ``timeout`` for one.
    pool_size: int = 50
    #: Seconds one command may take before it fails with BackendTimeout.
    timeout: float = 5.0
    connect_timeout: float = 5.0
    #: Seconds during which an operation retries, with backoff, while Redis is unreachable.
    retry_window: float = 10.0
    tls: bool = False
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
    scheme, sep, rest = url.partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in _VALID:
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
    query = rest.partition("?")[2]
    opts = _query(query, scheme, shown)
    kw: dict[str, object] = {"url": url, "scheme": scheme}
    if scheme == "redis+cluster":
        netloc = rest.partition("?")[0].partition("/")[0]
        userinfo, _, hostlist = netloc.rpartition("@")
        kw["hosts"] = [_host(h, shown) for h in hostlist.split(",")]
        path = rest.partition("?")[0].partition("/")[2]
        if path:
            raise ConfigError(f"{shown!r}: Redis Cluster has only database 0; drop '/{path}'")
    else:
        try:
            parts = urlsplit(f"{scheme}://{rest}")
            port = parts.port
        except ValueError as exc:
            raise ConfigError(f"{shown!r} is not a valid URL: {Redactor(url)(str(exc))}") from None
        userinfo = parts.netloc.rpartition("@")[0]
        if scheme == "unix":
            if not parts.path:
                raise ConfigError(f"{shown!r} names no socket; write unix:///path/to/redis.sock")
            kw["unix_path"] = unquote(parts.path)
            kw["db"] = _int(opts.pop("db", "0"), "db", shown, 0, 1_000_000)
        else:
            kw["hosts"] = [(parts.hostname or "localhost", port or 6379)]
            db = parts.path.lstrip("/") or opts.get("db", "0")
            if parts.path.lstrip("/") and "db" in opts:
                raise ConfigError(f"{shown!r} gives the database twice (path and db=)")
            opts.pop("db", None)
            kw["db"] = _int(db, "db", shown, 0, 1_000_000)
    if userinfo:
        user, colon, password = userinfo.partition(":")
        kw["username"] = unquote(user) or None
        kw["password"] = unquote(password) if colon else None
    if "prefix" in opts:
        prefix = opts.pop("prefix")
        if not _PREFIX.fullmatch(prefix):
            raise ConfigError(
                f"prefix {prefix!r} in {shown!r} must be 1-100 printable ASCII characters "
                "without spaces or braces (braces would move the cluster hash tag)"
            )
        kw["prefix"] = prefix
    if "ttl" in opts:
        ttl = _int(opts.pop("ttl"), "ttl", shown, 0, 10 * 365 * 86_400)
        kw["ttl"] = ttl or None
    if "pool_size" in opts:
        kw["pool_size"] = _int(opts.pop("pool_size"), "pool_size", shown, 1, 10_000)
    for name in ("timeout", "connect_timeout", "retry_window"):
        if name in opts:
            low = 0.0 if name == "retry_window" else 0.001
            kw[name] = _float(opts.pop(name), name, shown, low, 3600.0)
    kw["tls"] = scheme == "rediss" or _bool(opts.pop("tls", "false"), "tls", shown)
    ssl: dict[str, str | bool | None] = {}
    for name in _TLS:
        if name not in opts:
            continue
        value = opts.pop(name)
        if name == "ssl_check_hostname":
            ssl[name] = _bool(value, name, shown)
        elif name == "ssl_cert_reqs":
            if value not in _CERT_REQS:
                raise ConfigError(f"{name} in {shown!r} must be one of {', '.join(_CERT_REQS)}")
            ssl[name] = value
        else:
            ssl[name] = value
    if ssl and not kw["tls"]:
        raise ConfigError(f"{shown!r} has ssl_* options but no TLS: add tls=true")
    kw["ssl"] = ssl
    assert not opts, opts  # every valid option was consumed above
    return RedisOptions(**kw)  # type: ignore[arg-type]  # keys match the dataclass fields


def _query(query: str, scheme: str, shown: str) -> dict[str, str]:
    valid = _VALID[scheme]
    opts: dict[str, str] = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key in _TLS and key not in valid:
            raise ConfigError(
                f"{key} in {shown!r} needs TLS: use rediss:// (redis+cluster://...?tls=true)"
            )
        if key not in valid:
            raise ConfigError(
                f"unknown option {key!r} in {shown!r}; valid options: {', '.join(valid)}"
            )
        if key in opts:
            raise ConfigError(f"option {key!r} is given twice in {shown!r}")
        opts[key] = value
    return opts


def _host(text: str, shown: str) -> tuple[str, int]:
    m = re.fullmatch(r"(\[[0-9A-Fa-f:.]+\]|[^:\[\]/]+)(?::(\d{1,5}))?", text)
    if m is None:
        raise ConfigError(f"{shown!r}: {text!r} is not a host[:port]")
    return m.group(1).strip("[]"), int(m.group(2) or 6379)


def _int(text: str, name: str, shown: str, low: int, high: int) -> int:
    try:
        value = int(text)
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise ConfigError(f"{name} in {shown!r} must be a whole number from {low} to {high}")
    return value


def _float(text: str, name: str, shown: str, low: float, high: float) -> float:
    try:
        value = float(text)
    except ValueError:
        value = low - 1
    if not low <= value <= high:  # also refuses nan
        raise ConfigError(f"{name} in {shown!r} must be a number of seconds from {low} to {high}")
    return value


def _bool(text: str, name: str, shown: str) -> bool:
    lowered = text.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} in {shown!r} must be true or false")
