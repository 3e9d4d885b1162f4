"""The remote agent: an agent of another node, called like a local one.

>>> agent = RemoteAgent("grpc://127.0.0.1:50051", agent="assistant", insecure=True)
>>> agent
RemoteAgent('assistant' at grpc://127.0.0.1:50051, plaintext)

Registered in a :class:`aixgo.Runtime` (in code, or in YAML as ``role: remote``), it is a
:class:`~aixgo.agent.SessionHost`: the node runs the turn in its own session store, so
``rt.call(..., user=...)`` and ``rt.call_with_session(...)`` reach the sessions on the node.

Several ``url`` targets are used round-robin (a DNS name with several addresses is balanced by
gRPC itself). A call that fails with ``UNAVAILABLE`` before any reply (the node died, is
stopping, or cannot reach its store) is sent again to the next target with the same message:
the message id makes the retry resume the same turn on a node sharing the store, so the input
is stored once and a tool that finished is not run again.

A call's time limit is the runtime's ``timeout``, sent to the node as the gRPC deadline. A
session read (:meth:`RemoteAgent.tail`) has its own, ``read_timeout`` (10 s by default): a
node that stops answering fails it with :class:`~aixgo.errors.BackendTimeout` instead of
holding the caller (a web request, say) for ever.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import random
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, ClassVar

import grpc
from aixgo.agent import AgentEvent
from aixgo.errors import AixgoError, BackendTimeout, CallTimeout, ConfigError
from aixgo.events import Reply, SessionOpened, Step
from aixgo.message import Message

from aixgo_runtime_grpc._pb import agent_pb2 as pb
from aixgo_runtime_grpc.server import MAX_WIRE_BYTES, SERVICE
from aixgo_runtime_grpc.tls import ClientTLS
from aixgo_runtime_grpc.wire import (
    ERROR_KEY,
    NodeUnavailable,
    error_from_status,
    event_from_wire,
    from_wire,
    to_wire,
)

__all__ = ["DEFAULT_READ_TIMEOUT", "RemoteAgent", "build_remote"]

#: Seconds a session read (``tail``) may take by default.
#: The longest ``read_timeout`` taken (a finite gRPC deadline).
MAX_READ_TIMEOUT = 86_400.0
DEFAULT_READ_TIMEOUT = 10.0

_log = logging.getLogger("aixgo.grpc")


class _Default(enum.Enum):
    DEFAULT = enum.auto()


_DEFAULT = _Default.DEFAULT


class RemoteAgent:
    """Agent ``agent`` of the node(s) at ``url`` (``grpcs://host:port``, or a list of them).
    ``tls`` says what to trust and, for mutual TLS, which certificate to present (default:
    the system's roots, no client certificate). ``grpc://`` (plaintext) needs
    ``insecure=True``. ``attempts`` bounds how many targets one call tries (default: every
    target twice, at least 3). ``read_timeout`` bounds a session read such as :meth:`tail`
    (seconds, retries included; ``None``: no limit)."""

    #: Its calls carry ``time_left`` as their gRPC deadline, retries included, and fail
    #: with :class:`~aixgo.errors.CallTimeout` once it passes (see
    #: :class:`~aixgo.agent.SessionHost`): the runtime sets no timer of its own.
    enforces_time_left: ClassVar[bool] = True

    def __init__(
        self,
        url: str | Sequence[str],
        *,
        agent: str,
        tls: ClientTLS | None = None,
        insecure: bool = False,
        server_name: str | None = None,
        attempts: int | None = None,
        read_timeout: float | None = DEFAULT_READ_TIMEOUT,
    ) -> None:
        _check_read_timeout(read_timeout)
        if attempts is not None and (type(attempts) is not int or attempts < 1):
            raise ConfigError(f"attempts must be a whole number of at least 1, "
                              f"not {attempts!r:.100}")  # fmt: skip
        urls = [url] if isinstance(url, str) else list(url)
        if not urls:
            raise ConfigError("a remote agent needs at least one url")
        self.urls = urls
        self.targets = [_target(u, insecure) for u in urls]
        self.agent = agent
        self.tls = tls or ClientTLS()
        self.insecure = insecure
        self.server_name = server_name
        self.attempts = attempts or max(3, 2 * len(urls))
        self.read_timeout = read_timeout
        self._channels: list[grpc.aio.Channel] = []
        # Per channel, its methods: made once, not on every call.
        self._stubs: list[_Stub] = []
        self._next = 0

    def __repr__(self) -> str:
        mode = "plaintext" if self.insecure else "TLS"
        return f"RemoteAgent({self.agent!r} at {', '.join(self.urls)}, {mode})"

    # -- lifecycle (the runtime calls these) -------------------------------------------------

    async def start(self) -> None:
        """Open one channel per target (connections are made on first use)."""
        if self._channels:
            return
        options: list[tuple[str, Any]] = [
            ("grpc.max_receive_message_length", MAX_WIRE_BYTES),
            ("grpc.max_send_message_length", MAX_WIRE_BYTES),
            ("grpc.lb_policy_name", "round_robin"),
            # Retries are ours: with the same message id, on the next target.
            ("grpc.enable_retries", 0),
        ]
        if self.server_name:
            options.append(("grpc.ssl_target_name_override", self.server_name))
        for secure, target in self.targets:
            if secure:
                ch = grpc.aio.secure_channel(target, self.tls.credentials(), options=options)
            else:
                ch = grpc.aio.insecure_channel(target, options=options)
            self._channels.append(ch)
            self._stubs.append(_Stub(ch))

    async def stop(self) -> None:
        channels, self._channels, self._stubs = self._channels, [], []
        for ch in channels:
            await ch.close()

    # -- calls -------------------------------------------------------------------------------

    async def execute(self, input: Message) -> Message:
        """A stateless call (no session on the node)."""
        return await self.execute_hosted(input, user=None, session=None, time_left=None)

    async def execute_hosted(
        self, input: Message, *, user: str | None, session: str | None, time_left: float | None
    ) -> Message:
        """One turn on the node, in ``user``'s latest session or in ``session``."""
        request = self._request(input, user, session)

        def late() -> AixgoError:
            return CallTimeout(
                f"remote agent {self.agent!r} did not answer within {time_left} s"
                + ("; its input is stored on the node and the same call resumes it"
                   if user is not None or session is not None else ""),
                agent=self.agent, session_id=session,
            )  # fmt: skip

        response: pb.CallResponse = await self._unary("call", request, time_left, late)
        return from_wire(response.reply)

    async def stream_hosted(
        self, input: Message, *, user: str | None, session: str | None, time_left: float | None
    ) -> AsyncIterator[AgentEvent | SessionOpened]:
        """One turn on the node, streamed: the session it runs in there (when it runs in
        one), Deltas and Steps as they happen, last the reply.

        Retried on the next target like :meth:`execute_hosted` while no reply came; a Step
        already passed on is not passed on again, but the Deltas of a step cut off by the
        failure come again from the node that finishes it."""
        request = self._request(input, user, session)
        request.session_event = True
        if not self._channels:
            await self.start()
        loop = asyncio.get_running_loop()
        deadline = None if time_left is None else loop.time() + time_left
        seen: set[str] = set()
        opened = False
        for attempt in range(self.attempts):
            method = self._pick().stream
            left = None if deadline is None else max(deadline - loop.time(), 0.001)
            call = method(request, timeout=left)
            try:
                async for wire in call:
                    event = event_from_wire(wire)
                    if event is None:
                        continue  # a kind from a newer node
                    if isinstance(event, SessionOpened):
                        if opened:  # a retry's node says it again
                            continue
                        opened = True
                        # A retry continues this very session, not whichever of the
                        # user's sessions another node would find.
                        request.session = event.session_id
                    elif isinstance(event, Reply):
                        yield event.message
                        return
                    if isinstance(event, Step):
                        if event.message.id in seen:
                            continue
                        seen.add(event.message.id)
                    yield event
                raise NodeUnavailable(f"remote agent {self.agent!r}: the node ended the "
                                      "stream without a reply", code="UNKNOWN")  # fmt: skip
            except grpc.aio.AioRpcError as exc:
                if self._retry(exc, attempt):
                    await _pause(attempt, None if deadline is None else deadline - loop.time())
                    continue
                raise self._error(exc) from None
            finally:
                call.cancel()  # the consumer left early: the node's turn is cancelled too
        raise AssertionError("unreachable: the last attempt returns or raises")  # pragma: no cover

    async def tail(
        self,
        session: str,
        *,
        user: str | None = None,
        last: int | None = None,
        read_timeout: float | _Default | None = _DEFAULT,
    ) -> list[Message]:
        """The last ``last`` messages of ``session`` on the node (all of them by default).
        Within ``read_timeout`` seconds (default: the agent's :attr:`read_timeout`; it
        travels to the node as the gRPC deadline), or :class:`~aixgo.errors.BackendTimeout`."""
        limit = self.read_timeout if isinstance(read_timeout, _Default) else read_timeout
        _check_read_timeout(limit)
        request = pb.TailRequest(agent=self.agent, session=session, last=last or 0)
        if user is not None:
            request.user = user

        def late() -> AixgoError:
            return BackendTimeout(f"remote agent {self.agent!r}: the node did not return "
                                  f"session {session!r} within {limit} s")  # fmt: skip

        response: pb.TailResponse = await self._unary("tail", request, limit, late)
        return [from_wire(m) for m in response.messages]

    async def _unary(
        self,
        method: str,
        request: Any,
        time_left: float | None,
        late: Callable[[], AixgoError] | None = None,
    ) -> Any:
        """``method`` on the next target, retried while UNAVAILABLE, all within
        ``time_left``; a deadline that passes raises ``late()`` when given."""
        if not self._channels:
            await self.start()
        loop = asyncio.get_running_loop()
        deadline = None if time_left is None else loop.time() + time_left
        for attempt in range(self.attempts):
            call = getattr(self._pick(), method)
            left = None if deadline is None else max(deadline - loop.time(), 0.001)
            try:
                return await call(request, timeout=left)
            except grpc.aio.AioRpcError as exc:
                if self._retry(exc, attempt):
                    await _pause(attempt, None if deadline is None else deadline - loop.time())
                    continue
                if late is not None and exc.code() is grpc.StatusCode.DEADLINE_EXCEEDED:
                    raise late() from None
                raise self._error(exc) from None
        raise AssertionError("unreachable: the last attempt returns or raises")  # pragma: no cover

    def _request(self, input: Message, user: str | None, session: str | None) -> pb.CallRequest:
        request = pb.CallRequest(agent=self.agent)
        to_wire(input, request.message)
        if user is not None:
            request.user = user
        if session is not None:
            request.session = session
        return request

    def _retry(self, exc: grpc.aio.AioRpcError, attempt: int) -> bool:
        """Whether a failed attempt goes to the next target: only UNAVAILABLE (no node, or
        one stopping), and only while attempts are left."""
        if exc.code() is not grpc.StatusCode.UNAVAILABLE or attempt + 1 >= self.attempts:
            return False
        _log.warning("remote agent %r: a node was unavailable (%s); trying the next one "
                     "with the same message", self.agent, exc.details())  # fmt: skip
        return True

    def _pick(self) -> _Stub:
        stub = self._stubs[self._next % len(self._stubs)]
        self._next += 1
        return stub

    def _error(self, exc: grpc.aio.AioRpcError) -> AixgoError:
        trailing = exc.trailing_metadata() or ()
        name = next((str(v) for k, v in trailing if k == ERROR_KEY), None)
        return error_from_status(exc.code(), exc.details() or "", name, agent=self.agent)


class _Stub:
    """The service's methods on one channel."""

    __slots__ = ("call", "stream", "tail")

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self.call = channel.unary_unary(
            f"/{SERVICE}/Call",
            request_serializer=pb.CallRequest.SerializeToString,
            response_deserializer=pb.CallResponse.FromString,
        )
        self.stream = channel.unary_stream(
            f"/{SERVICE}/Stream",
            request_serializer=pb.CallRequest.SerializeToString,
            response_deserializer=pb.Event.FromString,
        )
        self.tail = channel.unary_unary(
            f"/{SERVICE}/Tail",
            request_serializer=pb.TailRequest.SerializeToString,
            response_deserializer=pb.TailResponse.FromString,
        )


async def _pause(attempt: int, time_left: float | None = None) -> None:
    # Jittered, so clients cut off together do not all land on the next node at once; never
    # past the call's deadline.
    pause = min(0.05 * 2**attempt, 1.0) * random.uniform(0.5, 1)  # noqa: S311
    await asyncio.sleep(pause if time_left is None else max(min(pause, time_left), 0))


def _target(url: str, insecure: bool) -> tuple[bool, str]:
    scheme, sep, target = url.partition("://")
    if not sep or not target or scheme not in ("grpcs", "grpc"):
        raise ConfigError(f"remote url {url!r} must be grpcs://host:port (or grpc://host:port "
                          "with insecure: true)")  # fmt: skip
    if scheme == "grpc" and not insecure:
        raise ConfigError(f"remote url {url!r} is plaintext: say insecure: true to allow it, "
                          "or use grpcs://")  # fmt: skip
    if scheme == "grpcs" and insecure:
        raise ConfigError(f"remote url {url!r} is grpcs:// but insecure is set; use one")
    return scheme == "grpcs", target.rstrip("/")


def _check_read_timeout(value: object) -> None:
    """Options come from YAML as they are: a string, a bool, nan or inf is refused here
    rather than failing (or never timing out) at the first call."""
    if value is not None and (
        type(value) not in (int, float) or not 0 < value <= MAX_READ_TIMEOUT  # type: ignore[operator]
    ):
        raise ConfigError(f"read_timeout must be a number of seconds above 0 and at most "
                          f"{MAX_READ_TIMEOUT:g}, or None, not {value!r:.100}")  # fmt: skip


def build_remote(
    *,
    url: str | list[str],
    agent: str,
    ca_file: str | None = None,
    cert_file: str | None = None,
    key_file: str | None = None,
    insecure: bool = False,
    server_name: str | None = None,
    attempts: int | None = None,
    read_timeout: float | None = DEFAULT_READ_TIMEOUT,
) -> RemoteAgent:
    """A :class:`RemoteAgent` from YAML options (``role: remote``); relative file paths are
    relative to the working directory."""
    tls = None if insecure else ClientTLS.from_files(ca_file, cert_file, key_file)
    return RemoteAgent(url, agent=agent, tls=tls, insecure=insecure, server_name=server_name,
                       attempts=attempts, read_timeout=read_timeout)  # fmt: skip
