"""The node: serves every agent of a :class:`aixgo.Runtime` over gRPC (``aixgo.v1``).

>>> server = AgentServer(Runtime(session_manager="memory://"), "127.0.0.1:0", insecure=True)
>>> server  # doctest: +ELLIPSIS
AgentServer(127.0.0.1:0, plaintext, stopped)

Each call runs through the runtime's turn protocol, so what a node stores is exactly what a
local call stores; two nodes on one shared store serve the same sessions. The client's
deadline bounds the agent's run; a client that cancels cancels the turn (its input stays
stored, and the same call resumes it). ``stop(grace)`` refuses new calls and lets running
turns finish for ``grace`` seconds. Standard health checking (``grpc.health.v1``) answers for
the empty service name and for each agent's name; on ``stop`` every one turns NOT_SERVING and
open ``Watch`` streams end, so a watching load balancer does not hold the node's shutdown.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Collection, Mapping
from contextlib import aclosing
from types import TracebackType
from typing import Any, NoReturn, Self

import grpc
from aixgo.errors import AgentError, AixgoError, InvalidArgument, InvalidMessage, UsageError
from aixgo.events import Reply, SessionOpened
from aixgo.message import Message
from aixgo.runtime import Runtime
from aixgo.session.codec import MAX_MESSAGE_BYTES
from grpc_health.v1 import health_pb2, health_pb2_grpc

from aixgo_runtime_grpc._health import NodeHealth
from aixgo_runtime_grpc._pb import agent_pb2 as pb
from aixgo_runtime_grpc.identity import check_allow, peer_identities
from aixgo_runtime_grpc.tls import ServerTLS
from aixgo_runtime_grpc.wire import ERROR_KEY, event_to_wire, from_wire, status_of, to_wire

__all__ = ["MAX_WIRE_BYTES", "SERVICE", "AgentServer"]

SERVICE = "aixgo.v1.AgentService"
#: gRPC's message limit: one aixgo message at its 16 MiB limit plus the request around it.
MAX_WIRE_BYTES = MAX_MESSAGE_BYTES + 1024 * 1024
# JSON escaping can make text up to six times longer (\u00XX), so only a request this large
# can hold a message over the limit; smaller ones skip measuring it.
_CHECK_OVER = MAX_MESSAGE_BYTES // 6

_LATE = "the call's deadline passed; its input stays stored and the same call resumes it"

_log = logging.getLogger("aixgo.grpc")


class AgentServer:
    """Serves ``runtime``'s agents on ``address`` (``"host:port"``; port 0 picks a free one,
    see :attr:`port`). ``tls`` is required unless ``insecure=True`` (plaintext, logged as a
    warning; for a service mesh whose sidecar terminates TLS, say ``mesh=True`` instead).
    ``allow`` maps an agent to the client certificate identities (common name or subject
    alternative name, compared exactly: see :mod:`aixgo_runtime_grpc.identity`) that may call
    it; agents not in it accept every authenticated client. An allow-list needs mutual TLS.

    The runtime is the caller's to start and stop; :meth:`stop` leaves it running.
    """

    def __init__(
        self,
        runtime: Runtime,
        address: str,
        *,
        tls: ServerTLS | None = None,
        insecure: bool = False,
        mesh: bool = False,
        allow: Mapping[str, Collection[str]] | None = None,
    ) -> None:
        if tls is None and not (insecure or mesh):
            raise InvalidArgument(
                "a node needs TLS (tls=ServerTLS.from_files(cert, key[, client_ca])); "
                "plaintext only with insecure=True, or mesh=True behind a TLS sidecar"
            )
        if tls is not None and (insecure or mesh):
            raise InvalidArgument("give tls, or insecure/mesh, not both")
        if allow and (tls is None or not tls.mutual):
            raise InvalidArgument(
                "an allow-list needs mutual TLS (a client CA): without client certificates "
                "no client has an identity, so every call would be refused"
            )
        self.runtime = runtime
        self.address = address
        self.tls = tls
        self.mesh = mesh
        self.allow = check_allow(allow or {})
        self.port: int | None = None
        self._server: grpc.aio.Server | None = None
        self._health = NodeHealth()

    def __repr__(self) -> str:
        mode = "plaintext" if self.tls is None else "mTLS" if self.tls.mutual else "TLS"
        state = "serving" if self._server is not None else "stopped"
        return f"AgentServer({self.address}, {mode}, {state})"

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def start(self) -> int:
        """Bind and serve; return the bound port."""
        options = [
            ("grpc.max_receive_message_length", MAX_WIRE_BYTES),
            ("grpc.max_send_message_length", MAX_WIRE_BYTES),
        ]
        server = grpc.aio.server(options=options)
        handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] = {
            "Call": grpc.unary_unary_rpc_method_handler(
                self._call,
                request_deserializer=pb.CallRequest.FromString,
                response_serializer=pb.CallResponse.SerializeToString,
            ),
            "Stream": grpc.unary_stream_rpc_method_handler(
                self._stream,
                request_deserializer=pb.CallRequest.FromString,
                response_serializer=pb.Event.SerializeToString,
            ),
            "Tail": grpc.unary_unary_rpc_method_handler(
                self._tail,
                request_deserializer=pb.TailRequest.FromString,
                response_serializer=pb.TailResponse.SerializeToString,
            ),
        }
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        if self.tls is not None:
            port = server.add_secure_port(self.address, self.tls.credentials())
        else:
            port = server.add_insecure_port(self.address)
            where = f"{self.address.rpartition(':')[0]}:{port}"
            if self.mesh:
                _log.info("serving %s in plaintext: TLS is expected from the service mesh's "
                          "sidecar in front of this node", where)  # fmt: skip
            else:
                _log.warning("serving %s in PLAINTEXT (--insecure): anyone who can reach "
                             "it can call every agent and read what it says", where)  # fmt: skip
        await server.start()
        for name in ["", *self.runtime.list()]:
            await self._health.set(name, health_pb2.HealthCheckResponse.SERVING)
        self._server, self.port = server, port
        return port

    async def stop(self, grace: float | None = 30.0) -> None:
        """Report NOT_SERVING, refuse new calls, and give running ones ``grace`` seconds
        (``None``: until they finish) before cancelling them. Idempotent."""
        server, self._server = self._server, None
        if server is None:
            return
        await self._health.shut_down()  # open health watches end now, not after the grace
        await server.stop(grace)

    async def wait(self) -> None:
        """Until the server stops."""
        if self._server is not None:
            await self._server.wait_for_termination()

    # -- handlers ----------------------------------------------------------------------------

    async def _call(
        self, request: pb.CallRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.CallResponse:
        agent, message, user, session = await self._open(request, context)
        # No timer of our own: at the client's deadline gRPC cancels this handler's task
        # (and so the turn), and the client reports DEADLINE_EXCEEDED itself.
        try:
            reply, session = await self._turn(agent, message, user, session)
        except AixgoError as exc:
            await _abort(context, exc)
        response = pb.CallResponse(session=session)
        to_wire(reply, response.reply)
        return response

    async def _turn(
        self, agent: str, message: Message, user: str | None, session: str | None
    ) -> tuple[Message, str | None]:
        """The reply and the session the turn ran in (``None``: stateless)."""
        stateful = self.runtime.session_mode(agent) == "enabled"
        if session is not None or user is None or not stateful:
            reply = await self.runtime.call(agent, message, user=user, session=session)
            return reply, session if stateful else None
        # Only the turn knows which of the user's sessions it found (or made): a stream
        # that asks for it says so first.
        opened = None
        events = self.runtime.stream(agent, message, user=user, session_event=True)
        async with aclosing(events):
            async for event in events:
                if isinstance(event, SessionOpened):
                    opened = event.session_id
                elif isinstance(event, Reply):
                    return event.message, opened
        raise AgentError(f"agent {agent!r} ended its turn without a reply", agent=agent,
                         session_id=opened)  # fmt: skip

    async def _stream(
        self, request: pb.CallRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[pb.Event]:
        agent, message, user, session = await self._open(request, context)
        try:
            async with asyncio.timeout(context.time_remaining()):
                events = self.runtime.stream(agent, message, user=user, session=session,
                                             session_event=request.session_event)  # fmt: skip
                try:
                    async for event in events:
                        yield event_to_wire(event)
                finally:
                    # A client gone mid-stream ends the turn now, not when collected.
                    close = getattr(events, "aclose", None)
                    if close is not None:
                        await close()
        except AixgoError as exc:
            await _abort(context, exc)
        except TimeoutError:
            await _abort_with(context, grpc.StatusCode.DEADLINE_EXCEEDED, _LATE, "CallTimeout")

    async def _tail(
        self, request: pb.TailRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.TailResponse:
        user = request.user if request.HasField("user") else None
        try:
            self.runtime.get(request.agent)
            self._check_allowed(request.agent, context)
            s = await self.runtime.session_manager.get(request.session, user_id=user)
            if s.agent != request.agent:
                raise InvalidArgument(
                    f"session {request.session!r} belongs to agent {s.agent!r}, "
                    f"not {request.agent!r}"
                )
            messages = await s.get_messages(last=request.last or None)
        except AixgoError as exc:
            await _abort(context, exc)
        return pb.TailResponse(messages=[to_wire(m) for m in messages])

    async def _open(
        self, request: pb.CallRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> tuple[str, Message, str | None, str | None]:
        """The request's parts, checked; a bad one aborts the call before anything runs."""
        try:
            self.runtime.get(request.agent)  # AgentNotFound before anything else
            self._check_allowed(request.agent, context)
            if not request.HasField("message"):
                raise InvalidMessage("the request has no message")
            if request.ByteSize() > _CHECK_OVER:
                size = len(from_wire(request.message).model_dump_json())
                if size > MAX_MESSAGE_BYTES:
                    await _abort_with(
                        context,
                        grpc.StatusCode.RESOURCE_EXHAUSTED,
                        f"the message is {size:,} bytes as JSON; the limit is "
                        f"{MAX_MESSAGE_BYTES:,}. Nothing was stored",
                        "InvalidMessage",
                    )
            message = from_wire(request.message)
        except AixgoError as exc:
            await _abort(context, exc)
        user = request.user if request.HasField("user") else None
        session = request.session if request.HasField("session") else None
        return request.agent, message, user, session

    def _check_allowed(self, agent: str, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        allowed = self.allow.get(agent)
        if allowed is None:
            return
        # The names come from the certificate itself: gRPC's x509_common_name property ends
        # a name at a NUL, so 'client-a\0.evil' would pass as 'client-a'.
        pem = next(iter(context.auth_context().get("x509_pem_cert", ())), None)
        if allowed.isdisjoint(peer_identities(pem)):
            raise _Denied(f"this client's certificate is not allowed to call agent {agent!r}")


class _Denied(UsageError):
    """The client's certificate identity is not on the agent's allow-list."""


async def _abort(context: grpc.aio.ServicerContext[Any, Any], exc: AixgoError) -> NoReturn:
    code = grpc.StatusCode.PERMISSION_DENIED if isinstance(exc, _Denied) else status_of(exc)
    name = "PermissionDenied" if isinstance(exc, _Denied) else type(exc).__name__
    await _abort_with(context, code, str(exc), name)


async def _abort_with(
    context: grpc.aio.ServicerContext[Any, Any], code: grpc.StatusCode, details: str, name: str
) -> NoReturn:
    context.set_trailing_metadata(((ERROR_KEY, name),))
    await context.abort(code, details)
    raise AssertionError("unreachable: abort raises")  # pragma: no cover
