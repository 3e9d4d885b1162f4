"""Backend URLs: choosing a backend plugin by scheme, and showing URLs without secrets."""

from __future__ import annotations

import os

from aixgo import plugins
from aixgo.errors import AixgoError, ConfigError, PluginError
from aixgo.session.backend import Backend
from aixgo.session.redaction import Redactor, redact_url

# redact_url lives in aixgo.session.redaction; it is re-exported here, where it started.
__all__ = ["default_session_url", "open_backend", "redact_url"]


def default_session_url() -> str:
    """``$AIXGO_SESSION_URL`` if set, else the embedded file store in ``$AIXGO_HOME/sessions``
    (``~/.aixgo/sessions`` when ``AIXGO_HOME`` is unset)."""
    url = os.environ.get("AIXGO_SESSION_URL")
    if url:
        return url
    home = os.environ.get("AIXGO_HOME")
    return f"file://{home}/sessions" if home else "file://~/.aixgo/sessions"


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
        # A plugin's own exception may quote the URL it was given, password and all.
        redactor = Redactor(url)
        raise PluginError(
            f"{reg.origin()} could not open {redactor.shown!r}: {redactor.describe(exc)}"
        ) from None
    if not isinstance(backend, Backend):
        raise PluginError(
            f"{reg.origin()} returned {type(backend).__name__} for {scheme}://, which does not "
            "implement aixgo.session.Backend"
        )
    return backend
