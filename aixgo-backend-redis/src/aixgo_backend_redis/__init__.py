"""Redis and Redis Cluster session backend for aixgo.

Install it and open a URL; the plugin registers ``redis://``, ``rediss://``, ``unix://`` and
``redis+cluster://``::

    from aixgo.session import SessionManager
    mgr = SessionManager("redis://localhost:6379/0?prefix=myapp:&ttl=604800")
"""

from aixgo_backend_redis._retry import BackendTimeout
from aixgo_backend_redis.backend import RedisBackend
from aixgo_backend_redis.options import RedisOptions, parse_url

__all__ = ["BackendTimeout", "RedisBackend", "RedisOptions", "parse_url"]
