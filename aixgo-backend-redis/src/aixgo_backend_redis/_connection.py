"""Building the redis-py asyncio client a URL asks for: standalone (TCP, TLS, Unix socket)
or Redis Cluster. No I/O happens here; the first command connects.

Both kinds get socket and connect timeouts (a dead server is an error, never a hang), a
pool of ``pool_size`` connections per server (a standalone one has one more, the spare of
:mod:`aixgo_backend_redis._wire`), bytes replies (message JSON goes straight to
pydantic), hiredis for parsing when installed, and no retries of their own:
:mod:`aixgo_backend_redis._retry` owns the retry budget. It also bounds how many operations
are in flight, so the pool never runs dry and a caller waits (up to ``timeout``) for a free
slot. That is why the pool is redis-py's plain one: its blocking variant puts a condition
variable and a timeout around every checkout, which this bound makes useless.

TLS: every connection of one client shares one TLS context (:class:`TlsConnection`), built
here from the ``ssl_*`` options, for standalone servers and every node of a cluster alike.

Every connection, of either client, drops what it has not sent when redis-py gives it up
after an error (:class:`DropUnsent`), so a command reported as failed is never sent later,
and never lets a cancellation go unnoticed (:class:`KeepCancelled`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

from aixgo.cancellation import CancelWatch
from redis.asyncio import (
    Connection,
    ConnectionPool,
    Redis,
    SSLConnection,
    UnixDomainSocketConnection,
)
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.connection import AbstractConnection, RedisSSLContext
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

from aixgo_backend_redis.options import RedisOptions

#: Either client; both speak the commands this package uses.
Client = Redis | RedisCluster


class DropUnsent(AbstractConnection):
    """A connection that, when redis-py gives it up after an error (a write or read that
    failed or timed out, a cancellation: ``disconnect(nowait=True)``), drops the bytes it has
    not yet sent.

    redis-py closes the transport then, and asyncio's ``close()`` keeps sending what is
    buffered once the server reads again: a server that stalled past the timeout would then
    run a command its caller was told had failed. ``abort()`` discards it (what the kernel
    already took may still arrive; a command cut short there is never run).
    """

    async def disconnect(
        self,
        nowait: bool = False,
        error: Exception | None = None,
        failure_count: int | None = None,
        health_check_failed: bool = False,
    ) -> None:
        writer = getattr(self, "_writer", None)
        if nowait and writer is not None:
            writer.transport.abort()
        await super().disconnect(nowait, error, failure_count, health_check_failed)


class KeepCancelled(AbstractConnection):
    """A connection whose writes never swallow a cancellation, and report a connection
    closed under them as a ``ConnectionError``.

    redis-py writes inside ``asyncio.wait_for``, which on Python 3.11 returns normally when
    the task is cancelled just after the write finished (see :mod:`aixgo.cancellation`). A
    new connection writes its handshake that way, so a call cancelled (or timed out) while
    it connected went on and returned a result. The cancellation is raised again here, and
    the connection dropped: the reply to what was written will never be read.
    """

    async def send_packed_command(
        self, command: bytes | str | Iterable[bytes], check_health: bool = True
    ) -> None:
        watch = CancelWatch()
        try:
            await super().send_packed_command(command, check_health)
        except AttributeError:
            # redis-py's cluster client closes every node's connections when one command
            # times out, also one another task is connecting or writing on; redis-py then
            # writes to the transport it dropped. That is a lost connection, not a bug of
            # the caller's: say so in the type the retry loops know.
            if self.is_connected:
                raise
            raise RedisConnectionError("the connection was closed while in use") from None
        if watch.swallowed():
            await self.disconnect(nowait=True)
            raise asyncio.CancelledError


class TcpConnection(DropUnsent, KeepCancelled, Connection):
    """redis-py's TCP connection, with :class:`DropUnsent` and :class:`KeepCancelled`."""


class UnixConnection(DropUnsent, KeepCancelled, UnixDomainSocketConnection):
    """redis-py's Unix socket connection, with :class:`DropUnsent` and
    :class:`KeepCancelled`."""


class TlsConnection(DropUnsent, KeepCancelled, SSLConnection):
    """redis-py's TLS connection, with the TLS context of its client rather than its own.

    redis-py gives every connection a fresh ``ssl.create_default_context()``, which parses
    the system CA bundle each time with the event loop blocked, so many concurrent calls on
    a fresh TLS cluster ran into ``connect_timeout`` (docs/performance.md). One context per
    client is built once; a new connection then costs a TLS handshake.
    """

    def __init__(self, *, tls_context: RedisSSLContext, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.ssl_context = tls_context


def tls_context(o: RedisOptions) -> RedisSSLContext:
    """The one TLS context of a client for ``o``: verification on (``ssl_cert_reqs`` required,
    hostname checked) unless the URL says otherwise, as in redis-py's own connections."""
    ssl = o.ssl
    kwargs: dict[str, Any] = {
        "keyfile": ssl.get("ssl_keyfile"),
        "certfile": ssl.get("ssl_certfile"),
        "cert_reqs": ssl.get("ssl_cert_reqs", "required"),
        "ca_certs": ssl.get("ssl_ca_certs"),
        "check_hostname": ssl.get("ssl_check_hostname", True),
    }
    if ssl.get("ssl_password") is not None:
        kwargs["password"] = ssl["ssl_password"]
    return RedisSSLContext(**kwargs)


def _no_retry() -> Retry:
    return Retry(NoBackoff(), 0)


def _use_connection(cluster: RedisCluster, cls: type[Connection], **kwargs: Any) -> None:
    """Make every connection of ``cluster`` a ``cls`` made with ``kwargs`` too.

    redis-py's asyncio ``RedisCluster`` takes no connection class or TLS context, and no
    ``ssl_password`` either (a ``TypeError``, though its TLS connections take one). It keeps
    one dict of connection options, from which it makes the nodes it discovers, and gives
    each startup node a copy: both are changed here, before anything connects (connections
    are made lazily).
    """
    cluster.connection_kwargs.update(connection_class=cls, **kwargs)
    cluster.nodes_manager.connection_kwargs.update(connection_class=cls, **kwargs)
    for node in cluster.nodes_manager.startup_nodes.values():
        node.connection_class = cls
        node.connection_kwargs.update(kwargs)


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
        cluster = RedisCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in o.hosts],
            max_connections=o.pool_size,
            **common,
        )
        if o.tls:
            _use_connection(cluster, TlsConnection, tls_context=tls_context(o))
        else:
            _use_connection(cluster, TcpConnection)
        return cluster
    kwargs: dict[str, Any] = {"db": o.db, **common}
    if o.unix_path is not None:
        kwargs.update(connection_class=UnixConnection, path=o.unix_path)
    else:
        host, port = o.hosts[0]
        kwargs.update(host=host, port=port, connection_class=TcpConnection)
        if o.tls:
            kwargs.update(connection_class=TlsConnection, tls_context=tls_context(o))
    # One more than pool_size: the Wire keeps a spare checked out (see wire.py).
    pool = ConnectionPool(max_connections=o.pool_size + 1, **kwargs)
    return Redis.from_pool(pool)
