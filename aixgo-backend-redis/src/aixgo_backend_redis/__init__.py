"""Redis and Redis Cluster session backend for aixgo.

Install it and open a URL; the plugin registers ``redis://``, ``rediss://``, ``unix://`` and
``redis+cluster://``::

    from aixgo.session import SessionManager
    mgr = SessionManager("redis://localhost:6379/0?prefix=myapp:&ttl=604800")
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aixgo.plugins import lazy_exports

if TYPE_CHECKING:
    from aixgo_backend_redis._retry import BackendTimeout
    from aixgo_backend_redis.backend import RedisBackend
    from aixgo_backend_redis.options import RedisOptions, parse_url

#: Imported on first use: loading plugins imports this package, and must not import
#: its dependencies (every process that opens any store would pay for them).
_LAZY = {
    "BackendTimeout": ("aixgo_backend_redis._retry", "BackendTimeout"),
    "RedisBackend": ("aixgo_backend_redis.backend", "RedisBackend"),
    "RedisOptions": ("aixgo_backend_redis.options", "RedisOptions"),
    "parse_url": ("aixgo_backend_redis.options", "parse_url"),
}

__all__ = ["BackendTimeout", "RedisBackend", "RedisOptions", "parse_url"]


__getattr__ = lazy_exports(__name__, _LAZY)
