"""Observability through the OpenTelemetry API: a span per runtime call and per backend
operation, call and operation counters, and latency histograms.

The API is a no-op until the application installs and configures an OpenTelemetry SDK, so
this costs next to nothing by default. What is emitted:

* span ``aixgo.call`` with ``aixgo.agent``, ``aixgo.session_id`` (when a session is in play)
  and ``aixgo.outcome`` (``ok``, ``error``, ``timeout``);
* span ``aixgo.backend.<operation>`` (e.g. ``aixgo.backend.append_messages``) with
  ``aixgo.backend`` (the backend class), ``aixgo.session_id``, ``aixgo.outcome`` and, inside
  a call, ``aixgo.agent``;
* counters ``aixgo.calls`` and ``aixgo.backend.operations``, histograms
  ``aixgo.call.duration`` and ``aixgo.backend.duration`` (seconds), with the same attributes
  minus the session id (unbounded cardinality has no place in metrics).

Turn it off per runtime with the ``tracing`` option (``AIXGO_RUNTIME_TRACING=false``).

>>> Telemetry(enabled=False).enabled
False
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from contextvars import ContextVar
from types import TracebackType
from typing import Any, TypeVar

from opentelemetry import metrics, trace
from opentelemetry.trace import Span, Status, StatusCode

from aixgo.errors import CallTimeout
from aixgo.message import Message
from aixgo.session.backend import Backend
from aixgo.session.kit.wrapper import BackendWrapper
from aixgo.session.models import Checkpoint, Page, SessionInfo

__all__ = ["Telemetry", "TracedBackend"]

T = TypeVar("T")
_SCOPE = "aixgo"
# Optional backend methods traced like the protocol's own (see TracedBackend.__getattr__).
_TRACED_OPTIONAL = frozenset({"get_or_create_session", "acquire_turn", "renew_turn",
                              "release_turn"})  # fmt: skip
# The agent of the call in progress, so backend spans can name it too.
_agent: ContextVar[str | None] = ContextVar("aixgo_telemetry_agent", default=None)

# A proxy tracer: it hands over to the application's TracerProvider once one is set.
_tracer = trace.get_tracer(_SCOPE)
# Proxy instruments: they start reporting once the application sets a MeterProvider.
_meter = metrics.get_meter(_SCOPE)
_calls = _meter.create_counter("aixgo.calls", unit="{call}", description="Runtime calls")
_call_duration = _meter.create_histogram(
    "aixgo.call.duration", unit="s", description="Runtime call latency"
)
_ops = _meter.create_counter(
    "aixgo.backend.operations", unit="{operation}", description="Backend operations"
)
_op_duration = _meter.create_histogram(
    "aixgo.backend.duration", unit="s", description="Backend operation latency"
)


def _outcome(exc: BaseException | None) -> str:
    if exc is None:
        return "ok"
    if isinstance(exc, CallTimeout | TimeoutError):
        return "timeout"
    return "error"


def _start(name: str) -> tuple[Span, AbstractContextManager[Any]]:
    """A new span and what makes it the current one while it runs.

    Without an OpenTelemetry SDK (or when the SDK drops the span) the span is a stand-in
    carrying the current span's context: making it current would change nothing a child
    span or a propagator sees, and costs more than the rest of a local call, so it is
    skipped then."""
    current = trace.get_current_span()
    span = _tracer.start_span(name, record_exception=False, set_status_on_exception=False)
    # Without an SDK the API hands back the current span itself: the common case, first.
    if span is current or (
        not span.is_recording() and span.get_span_context() == current.get_span_context()
    ):
        return span, nullcontext()
    return span, trace.use_span(span, record_exception=False, set_status_on_exception=False)


def _end(span: Span, exc: BaseException | None) -> str:
    outcome = _outcome(exc)
    span.set_attribute("aixgo.outcome", outcome)
    if exc is not None:
        span.record_exception(exc)
        span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
    return outcome


class _NoSpan:
    """Stands in for a span when tracing is off."""

    def set_attribute(self, key: str, value: Any) -> None:
        """Ignore the attribute."""


class _CallSpan:
    """One runtime call's span, agent context and metrics. A class rather than a generator
    context manager: it is entered on every call, local or remote, on both sides."""

    __slots__ = ("_agent", "_current", "_session_id", "_span", "_start", "_token")

    def __init__(self, agent: str, session_id: str | None) -> None:
        self._agent = agent
        self._session_id = session_id

    def __enter__(self) -> Span:
        self._start = time.perf_counter()
        span, current = _start("aixgo.call")
        current.__enter__()
        self._span, self._current = span, current
        span.set_attribute("aixgo.agent", self._agent)
        if self._session_id is not None:
            span.set_attribute("aixgo.session_id", self._session_id)
        self._token = _agent.set(self._agent)
        return span

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        span = self._span
        try:
            _agent.reset(self._token)
            outcome = _end(span, exc)
            span.end()
            attrs = {"aixgo.agent": self._agent, "aixgo.outcome": outcome}
            _calls.add(1, attrs)
            _call_duration.record(time.perf_counter() - self._start, attrs)
        finally:
            self._current.__exit__(exc_type, exc, tb)


class _NoCallSpan:
    """Stands in for :class:`_CallSpan` when tracing is off."""

    __slots__ = ()

    def __enter__(self) -> _NoSpan:
        return _NoSpan()

    def __exit__(self, *exc: object) -> None:
        return None


_NO_CALL_SPAN = _NoCallSpan()


class Telemetry:
    """The runtime's spans and metrics; everything is skipped when ``enabled`` is false."""

    def __init__(self, *, enabled: bool = True) -> None:
        self.enabled = enabled

    def call_span(self, agent: str, session_id: str | None) -> AbstractContextManager[Any]:
        """A span (and metrics) around one runtime call: ``with telemetry.call_span(...) as
        span``. Entering and leaving it awaits nothing."""
        return _CallSpan(agent, session_id) if self.enabled else _NO_CALL_SPAN

    def traced(self, backend: Backend) -> Backend:
        """``backend`` with every operation traced; ``backend`` itself when tracing is off
        or it is traced already. The runtime applies it where it builds its session
        manager, and to a manager passed in through
        :meth:`~aixgo.session.SessionManager.wrapped`, which leaves that one untouched."""
        if not self.enabled or isinstance(backend, TracedBackend):
            return backend
        return TracedBackend(backend)


class TracedBackend(BackendWrapper):
    """A :class:`~aixgo.session.Backend` that reports each operation of the one it wraps.

    >>> from aixgo.session import open_backend
    >>> isinstance(TracedBackend(open_backend("memory://")), Backend)
    True
    """

    def __init__(self, inner: Backend) -> None:
        super().__init__(inner)
        self._name = type(inner).__name__

    def __repr__(self) -> str:
        return f"TracedBackend({self.inner!r})"

    def optional(self, name: str, fn: Any) -> Any:
        # Migratable.migrate and a plugin's own extras pass through untraced; the methods
        # of SessionPerUser and TurnLeases, which calls make, are traced.
        if name not in _TRACED_OPTIONAL or fn is None:
            return fn

        def traced(first: Any, *args: Any, **kwargs: Any) -> Awaitable[Any]:
            session_id = first.id if isinstance(first, SessionInfo) else first
            return self._op(name, session_id, lambda: fn(first, *args, **kwargs))

        return traced

    async def _op(self, op: str, session_id: str | None, fn: Callable[[], Awaitable[T]]) -> T:
        start = time.perf_counter()
        span, current = _start(f"aixgo.backend.{op}")
        with current:
            span.set_attribute("aixgo.backend", self._name)
            agent = _agent.get()
            if agent is not None:
                span.set_attribute("aixgo.agent", agent)
            if session_id is not None:
                span.set_attribute("aixgo.session_id", session_id)
            error: BaseException | None = None
            try:
                return await fn()
            except BaseException as exc:
                error = exc
                raise
            finally:
                outcome = _end(span, error)
                span.end()
                attrs = {"aixgo.backend": self._name, "aixgo.operation": op,
                         "aixgo.outcome": outcome}  # fmt: skip
                _ops.add(1, attrs)
                _op_duration.record(time.perf_counter() - start, attrs)

    async def open(self) -> None:
        """Open the wrapped backend."""
        await self._op("open", None, self.inner.open)

    async def close(self) -> None:
        """Close the wrapped backend."""
        await self._op("close", None, self.inner.close)

    async def create_session(self, info: SessionInfo) -> None:
        """See :meth:`Backend.create_session`."""
        await self._op("create_session", info.id, lambda: self.inner.create_session(info))

    async def get_session(self, session_id: str) -> SessionInfo:
        """See :meth:`Backend.get_session`."""
        return await self._op("get_session", session_id, lambda: self.inner.get_session(session_id))

    async def list_sessions(
        self,
        *,
        agent: str | None = None,
        user_id: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page[SessionInfo]:
        """See :meth:`Backend.list_sessions`."""
        return await self._op(
            "list_sessions",
            None,
            lambda: self.inner.list_sessions(
                agent=agent, user_id=user_id, limit=limit, cursor=cursor
            ),
        )

    async def delete_session(self, session_id: str) -> None:
        """See :meth:`Backend.delete_session`."""
        await self._op("delete_session", session_id, lambda: self.inner.delete_session(session_id))

    async def append_messages(
        self, session_id: str, messages: Sequence[Message], *, expected_seq: int | None = None
    ) -> list[Message]:
        """See :meth:`Backend.append_messages`."""
        return await self._op(
            "append_messages",
            session_id,
            lambda: self.inner.append_messages(session_id, messages, expected_seq=expected_seq),
        )

    async def get_messages(self, session_id: str, *, last: int | None = None) -> list[Message]:
        """See :meth:`Backend.get_messages`."""
        return await self._op(
            "get_messages", session_id, lambda: self.inner.get_messages(session_id, last=last)
        )

    async def create_checkpoint(
        self, session_id: str, checkpoint_id: str, *, label: str | None = None
    ) -> Checkpoint:
        """See :meth:`Backend.create_checkpoint`."""
        return await self._op(
            "create_checkpoint",
            session_id,
            lambda: self.inner.create_checkpoint(session_id, checkpoint_id, label=label),
        )

    async def list_checkpoints(self, session_id: str) -> list[Checkpoint]:
        """See :meth:`Backend.list_checkpoints`."""
        return await self._op(
            "list_checkpoints", session_id, lambda: self.inner.list_checkpoints(session_id)
        )

    async def restore_checkpoint(
        self, session_id: str, checkpoint_id: str, *, undo_id: str
    ) -> Checkpoint:
        """See :meth:`Backend.restore_checkpoint`."""
        return await self._op(
            "restore_checkpoint",
            session_id,
            lambda: self.inner.restore_checkpoint(session_id, checkpoint_id, undo_id=undo_id),
        )
