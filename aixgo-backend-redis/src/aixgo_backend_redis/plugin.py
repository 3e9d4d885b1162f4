"""The entry point: registers this package's URL schemes, imported lazily on first use."""

from __future__ import annotations

from aixgo.hookspecs import BackendRegister, hookimpl

from aixgo_backend_redis.options import SCHEMES

__all__ = ["aixgo_register_backends"]


@hookimpl
def aixgo_register_backends(register: BackendRegister) -> None:
    """``redis://``, ``rediss://``, ``unix://`` and ``redis+cluster://``."""
    for scheme in SCHEMES:
        register(scheme, "aixgo_backend_redis.backend:RedisBackend")
