"""Standard health checking (``grpc.health.v1``) for a node, whose ``Watch`` streams end when
the node shuts down.

grpcio-health-checking's servicer keeps a ``Watch`` stream open through shutdown (it sends
NOT_SERVING and waits for the next change, which never comes), so one watching load balancer
held a node's graceful stop for the whole grace period. Here a watcher is sent NOT_SERVING and
its stream ends with OK; the watcher reconnects elsewhere.
"""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
from grpc_health.v1 import health_pb2

__all__ = ["NodeHealth"]

#: A ``HealthCheckResponse.ServingStatus`` value.
_Status = int


class NodeHealth:
    """``Check``, ``List`` and ``Watch`` (the methods of the generated ``HealthServicer``);
    :meth:`shut_down` turns every service NOT_SERVING for good and ends
    the watches."""

    def __init__(self) -> None:
        self._status: dict[str, _Status] = {}
        self._closing = False
        self._version = 0  # bumped on every change: what a watcher waits for
        self._changed = asyncio.Condition()

    async def set(self, service: str, status: _Status) -> None:
        """Set ``service``'s status (ignored once shutting down)."""
        if not self._closing:
            await self._publish(lambda: self._status.__setitem__(service, status))

    async def shut_down(self) -> None:
        """Every service NOT_SERVING; open watches are told so and end. Idempotent."""

        def close() -> None:
            self._closing = True
            for name in self._status:
                self._status[name] = health_pb2.HealthCheckResponse.NOT_SERVING

        if not self._closing:
            await self._publish(close)

    async def _publish(self, change: Any) -> None:
        async with self._changed:
            change()
            self._version += 1
            self._changed.notify_all()

    async def Check(
        self, request: health_pb2.HealthCheckRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> health_pb2.HealthCheckResponse:
        status = self._status.get(request.service)
        if status is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"unknown service {request.service!r}")
            raise AssertionError("unreachable: abort raises")  # pragma: no cover
        return health_pb2.HealthCheckResponse(status=status)

    async def List(
        self, request: Any, context: grpc.aio.ServicerContext[Any, Any]
    ) -> Any:  # health_pb2.HealthListResponse (grpcio-health-checking >= 1.69)
        return health_pb2.HealthListResponse(
            statuses={n: health_pb2.HealthCheckResponse(status=s) for n, s in self._status.items()}
        )

    async def Watch(
        self, request: health_pb2.HealthCheckRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> None:
        unknown = health_pb2.HealthCheckResponse.SERVICE_UNKNOWN
        seen, sent = -1, None
        while True:
            async with self._changed:
                while self._version == seen:
                    await self._changed.wait()
                seen = self._version
                status, closing = self._status.get(request.service, unknown), self._closing
            if status != sent:
                await context.write(health_pb2.HealthCheckResponse(status=status))
                sent = status
            if closing:
                return
