"""Building the redis-py asyncio client a URL asks for: standalone (TCP, TLS, Unix socket)
or Redis Cluster. No I/O happens here; the first command connects.

Both kinds get socket and connect timeouts (a dead server is an error, never a hang), a
pool of ``pool_size`` connections (per server), bytes replies (message JSON goes straight to
pydantic), hiredis for parsing when installed, and no retries of their own:
:mod:`aixgo_backend_redis.retry` owns the retry budget. It also bounds how many operations
are in flight, so the pool never runs dry and a caller waits (up to ``timeout``) for a free
slot. That is why the pool is redis-py's plain one: its blocking variant costs ~20 us more
per command (measured: a condition variable and a timeout around every checkout).
"""

from __future__ import annotations

from typing import Any

from redis.asyncio import ConnectionPool, Redis, SSLConnection, UnixDomainSocketConnection
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from aixgo_backend_redis.options import RedisOptions

__all__ = ["Client", "make_client"]

#: Either client; both speak the commands this package uses.
Client = Redis | RedisCluster


def _no_retry() -> Retry:
    return Retry(NoBackoff(), 0)


def make_client(o: RedisOptions) -> Client:
    """A client for ``o``; close it with ``await client.aclose()``."""
    common: dict[str, Any] = {
        "username": o.username,
        "password": o.password,
        "socket_timeout": o.timeout,
        "socket_connect_timeout": o.connect_timeout,
        "retry": _no_retry(),
        "client_name": "aixgo",
    }
    if o.cluster:
        return RedisCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in o.hosts],
            max_connections=o.pool_size,
            ssl=o.tls,
            **common,
            **dict[str, Any](o.ssl),
        )
    kwargs: dict[str, Any] = {"db": o.db, **common}
    if o.unix_path is not None:
        kwargs.update(connection_class=UnixDomainSocketConnection, path=o.unix_path)
    else:
        host, port = o.hosts[0]
        kwargs.update(host=host, port=port)
        if o.tls:
            kwargs.update(connection_class=SSLConnection, **o.ssl)
    pool = ConnectionPool(max_connections=o.pool_size, **kwargs)
    return Redis.from_pool(pool)
