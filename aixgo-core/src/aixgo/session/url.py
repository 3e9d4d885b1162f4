"""Backend URLs: choosing a backend plugin by scheme, and showing URLs without secrets."""

from __future__ import annotations

import os
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from aixgo import plugins
from aixgo.errors import AixgoError, ConfigError, PluginError
from aixgo.session.backend import Backend

__all__ = ["default_session_url", "open_backend", "redact_url"]

_SECRET_PARAMS = ("password", "passwd", "secret", "token")


def default_session_url() -> str:
    """``$AIXGO_SESSION_URL`` if set, else the embedded file store in ``$AIXGO_HOME/sessions``
    (``~/.aixgo/sessions`` when ``AIXGO_HOME`` is unset)."""
    url = os.environ.get("AIXGO_SESSION_URL")
    if url:
        return url
    home = os.environ.get("AIXGO_HOME")
    return f"file://{home}/sessions" if home else "file://~/.aixgo/sessions"


def redact_url(url: str) -> str:
    """``url`` with any password (and secret-looking query values) replaced by ``***``.

    >>> redact_url("redis://:hunter2@cache:6379/0?ssl_keyfile_password=x&db=1")
    'redis://:***@cache:6379/0?ssl_keyfile_password=***&db=1'
    """
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if parts.password is not None:
            userinfo, _, host = netloc.rpartition("@")
            user = userinfo.split(":", 1)[0]
            netloc = f"{user}:***@{host}"
        query = parts.query
        if query:
            pairs = parse_qsl(query, keep_blank_values=True)
            secret = [any(s in k.lower() for s in _SECRET_PARAMS) for k, _ in pairs]
            query = urlencode(
                [(k, "***" if hide else v) for (k, v), hide in zip(pairs, secret, strict=True)],
                safe="/:*",
            )
        if "://" not in url:
            return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
        # Built by hand: urlunsplit drops the "//" of host-less URLs (postgresql:///db).
        out = f"{parts.scheme}://{netloc}{parts.path}"
        return (
            out + (f"?{query}" if query else "") + (f"#{parts.fragment}" if parts.fragment else "")
        )
    except ValueError:
        scheme = url.partition("://")[0] if "://" in url else ""
        return f"{scheme}://***" if scheme else "***"


def open_backend(url: str) -> Backend:
    """The backend for ``url``, made by the plugin that registered its scheme.

    ``memory://`` is built in; ``file://``, ``redis://``, ``postgresql://`` and any
    third-party scheme come from installed plugins. An unknown scheme is a
    :class:`PluginError` that lists the installed schemes and names the package to install.

    >>> backend = open_backend("memory://")
    >>> type(backend).__name__
    'MemoryBackend'
    """
    if not isinstance(url, str):
        raise ConfigError(f"a backend URL must be a string, not {type(url).__name__}")
    scheme, sep, _ = url.partition("://")
    if not sep or not scheme:
        raise ConfigError(
            f"backend URL {redact_url(url)!r} has no scheme; write it like "
            "'file:///var/lib/app/sessions', 'redis://host:6379/0' or 'memory://'"
        )
    factory, reg = plugins.backend_factory(scheme.lower())
    try:
        backend = factory(url)
    except AixgoError:
        raise
    except Exception as exc:
        raise PluginError(
            f"{reg.origin()} could not open {redact_url(url)!r}: {type(exc).__name__}: {exc}"
        ) from exc
    if not isinstance(backend, Backend):
        raise PluginError(
            f"{reg.origin()} returned {type(backend).__name__} for {scheme}://, which does not "
            "implement aixgo.session.Backend"
        )
    return backend
