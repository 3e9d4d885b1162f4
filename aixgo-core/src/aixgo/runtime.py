"""Runtime: registers agents, starts and stops them, and runs calls inside durable sessions.

Sessions are on by default: a call with a ``user`` resumes that user's latest session with the
agent (or starts one); a call with a ``session`` id continues that session. A call with
neither, or to an agent registered with ``session_mode="disabled"``, touches no session.

:meth:`Runtime.stream` runs the same turn and yields its events as they happen
(:mod:`aixgo.events`); :meth:`Runtime.call` is that stream consumed to its reply.

What a call persists, exactly (the turn protocol, :mod:`aixgo.turn`):

* the input is stored *before* the agent runs, so a run that dies half-way can be resumed by
  calling again with the same message (same id): the input is never stored twice;
* the output is stored when the agent returns, tagged ``metadata["aixgo.reply_to"]`` with the
  input's id; a repeated call whose input was already answered returns that stored reply
  without running the agent again;
* on an agent error or a timeout nothing more is written, and the :class:`AgentError` (or
  :class:`CallTimeout`) names the session;
* one turn at a time runs on a session. Within a runtime, calls on one session are
  serialized. Across runtimes, processes and machines, a backend with turn leases
  (:class:`~aixgo.session.TurnLeases`: ``memory://``, ``file://``) holds the session's lease
  from before the input is stored until after the reply is: with ``turn_policy="queue"`` (the
  default) a call waits for the running turn (at most the turn bound, then
  :class:`ConflictError`), with ``"reject"`` it raises :class:`ConflictError` at once. A
  process that dies mid-turn loses its lease after at most ``turn_lease_ttl`` seconds; its
  input stays stored and resumable. On a backend without leases, every write states the
  history length it expects (``expected_seq``) and is retried on the new head, and a call
  whose session ends with another call's unanswered input waits for that reply first (at most
  ``timeout`` + 1 s, or a minute without a timeout), so turns do not interleave there either
  unless a run outlives that bound;
* with a ``user``, the user's current session is found or created atomically in the store
  when the backend has :class:`~aixgo.session.SessionPerUser`, so concurrent first calls from
  several processes share one session (see :meth:`SessionManager.get_or_create`).

>>> import asyncio
>>> from aixgo import Message, Runtime
>>> class Echo:
...     async def execute(self, input: Message) -> Message:
...         return Message.assistant("you said: " + input.text)
>>> async def demo() -> list[str]:
...     rt = Runtime(session_manager="memory://")
...     rt.register("echo", Echo())
...     async with rt:
...         await rt.call("echo", Message.user("hi"), user="alice")
...         s = await rt.session_manager.get_or_create("echo", "alice")
...         return [m.text for m in await s.get_messages()]
>>> asyncio.run(demo())
['hi', 'you said: hi']
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from os import PathLike
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from aixgo.agent import Agent, SessionHost, SessionMode, StreamingAgent
from aixgo.audit import acting_for, audit_actor
from aixgo.cancellation import CancelWatch
from aixgo.crypto import keyring_from_env
from aixgo.errors import (
    AgentError,
    AixgoError,
    CallTimeout,
    ConfigError,
    InvalidArgument,
    InvalidMessage,
    NotStarted,
    SessionNotFound,
)
from aixgo.events import Delta, Event, Reply, SessionOpened, Step
from aixgo.identifiers import validate_id, validate_name
from aixgo.message import Message
from aixgo.registry import AgentEntry, AgentRegistry
from aixgo.runtime_options import CoreOptions, resolve_options
from aixgo.session.backend import SessionPerUser
from aixgo.session.context import using_session
from aixgo.session.manager import SessionManager
from aixgo.session.retention import sweep
from aixgo.session.session import Session
from aixgo.session.url import default_session_url, open_backend
from aixgo.telemetry import Telemetry
from aixgo.turn import REPLY_TO, TurnPolicy, Turns

if TYPE_CHECKING:
    from aixgo.config import EncryptionSpec  # PyYAML loads only for a runtime from a file

__all__ = ["REPLY_TO", "STREAM_BUFFER", "Runtime"]

#: How many events a :meth:`Runtime.stream` holds for a consumer slower than its agent; past
#: that the agent waits for the consumer (backpressure), so a stalled consumer (a client that
#: stops reading) never makes a turn's events pile up in memory.
STREAM_BUFFER = 256


class _Unset(enum.Enum):
    UNSET = enum.auto()


_UNSET = _Unset.UNSET
# How many times a user's call looks for the session that racing first calls settled on.
_SETTLE_ATTEMPTS = 3
_log = logging.getLogger("aixgo.runtime")


class Runtime:
    """Runs agents. Options (see :mod:`aixgo.runtime_options`) are keyword arguments:
    ``session_manager`` (a :class:`SessionManager` or a backend URL; default
    ``$AIXGO_SESSION_URL``, else the embedded file store), ``timeout`` (seconds per agent run),
    ``max_concurrent_calls``, ``tracing``, ``turn_policy`` (``"queue"`` or ``"reject"``: what a
    call does while another turn runs on its session), ``turn_lease_ttl`` (seconds a turn's
    lease lasts without renewal), and any option a plugin registers.

    A session manager the runtime opened from a URL is closed by :meth:`stop`; one passed in
    stays the caller's to close.
    """

    def __init__(
        self,
        session_manager: SessionManager | str | None = None,
        *,
        timeout: float | _Unset | None = _UNSET,
        max_concurrent_calls: int | _Unset | None = _UNSET,
        tracing: bool | _Unset = _UNSET,
        turn_policy: TurnPolicy | _Unset = _UNSET,
        turn_lease_ttl: float | _Unset = _UNSET,
        **plugin_options: Any,
    ) -> None:
        # Only what the caller passed overrides the environment and config files; an
        # explicit None (e.g. timeout=None: no limit) counts as passed.
        given = {"timeout": timeout, "max_concurrent_calls": max_concurrent_calls,
                 "tracing": tracing, "turn_policy": turn_policy,
                 "turn_lease_ttl": turn_lease_ttl}  # fmt: skip
        code: dict[str, object] = {k: v for k, v in given.items() if v is not _UNSET}
        code.update(plugin_options)
        if session_manager is not None:
            code["session_manager"] = session_manager
        self._setup(resolve_options(code))

    @classmethod
    def from_options(
        cls,
        code: Mapping[str, object] | None = None,
        *,
        file: Mapping[str, tuple[object, str]] | None = None,
    ) -> Runtime:
        """A runtime from options given in code and in a config file (``name -> (value,
        where)``, where ``where`` names the file, key and line for error messages)."""
        rt = cls.__new__(cls)
        rt._setup(resolve_options(code or {}, file=file))
        return rt

    @classmethod
    def from_config(cls, path: str | PathLike[str]) -> Runtime:
        """A runtime built from a YAML file: its ``session:``, ``agents:`` and ``runtime:``
        blocks (see :mod:`aixgo.config`). Modules it names are imported from the file's
        folder or the current directory (see :mod:`aixgo.builder`)."""
        # Imported here so that PyYAML loads only for a runtime that reads a file.
        from aixgo.builder import build_agent, check_store, import_roots
        from aixgo.config import load_config

        config = load_config(path)
        check_store(config)
        rt = cls.from_options(file=config.options())
        rt._encryption = config.encryption
        with import_roots(config.path):
            for spec in config.agents:
                agent = build_agent(spec)
                try:
                    rt.register(spec.name, agent, session_mode=spec.session_mode)
                except AixgoError as exc:
                    raise ConfigError(f"{spec.where}: {exc}") from None
        return rt

    def _setup(self, options: CoreOptions) -> None:
        self.options = options
        self._agents = AgentRegistry()
        self._mgr: SessionManager | None = None
        # What calls use: the manager itself, or a traced view of a caller's manager.
        self._calls: SessionManager | None = None
        self._owns_mgr = False
        # A config file's `session: encryption:`, for the store the runtime opens itself.
        self._encryption: EncryptionSpec | None = None
        self._running = False
        self._inflight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._sem: asyncio.Semaphore | None = None
        self._start_lock = asyncio.Lock()
        self._sweeper: asyncio.Task[None] | None = None
        self._telemetry = Telemetry(enabled=options.tracing)
        self._turns = Turns(
            policy=options.turn_policy, lease_ttl=options.turn_lease_ttl, timeout=options.timeout
        )

    def __repr__(self) -> str:
        state = "running" if self._running else "stopped"
        return f"Runtime({state}, agents={self._agents.names()})"

    # -- agents -----------------------------------------------------------------------------

    def register(self, name: str, agent: Agent, *, session_mode: SessionMode = "enabled") -> None:
        """Add ``agent`` under ``name``. ``session_mode="disabled"`` makes it stateless.
        An agent registered while the runtime runs is started on its first call."""
        self._agents.add(name, agent, session_mode=session_mode)

    async def unregister(self, name: str) -> Any:
        """Remove the agent ``name`` (stopping it if the runtime started it) and return it."""
        entry = self._agents.remove(name)
        if entry.started:
            await entry.stop()
        return entry.agent

    def get(self, name: str) -> Any:
        """The agent registered as ``name``, or :class:`AgentNotFound`."""
        return self._agents.entry(name).agent

    def session_mode(self, name: str) -> SessionMode:
        """How agent ``name`` was registered: ``"enabled"`` or ``"disabled"``."""
        return self._agents.entry(name).session_mode

    def hosted(self, name: str) -> bool:
        """Whether agent ``name`` keeps its sessions where it runs (a
        :class:`~aixgo.agent.SessionHost`, such as a remote agent), decided when it was
        registered; :class:`AgentNotFound` for an unknown name."""
        return self._agents.entry(name).hosted

    def list(self) -> list[str]:
        """Registered agent names, sorted."""
        return self._agents.names()

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def session_manager(self) -> SessionManager:
        """The session manager calls use (available once started)."""
        if self._mgr is None:
            raise NotStarted("the runtime has no session manager before start(); "
                             "use 'async with runtime:' or 'await runtime.start()'")  # fmt: skip
        return self._mgr

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        """Open the session store and start every agent that has ``start()``. If anything
        fails, what was started is stopped again and the error raised. Idempotent."""
        async with self._start_lock:
            if self._running:
                return
            configured = self.options.session_manager
            traced = self._telemetry.traced
            if isinstance(configured, SessionManager) and self.options.audit is not None:
                raise ConfigError("the audit option applies to a store the runtime opens; "
                                  "give your SessionManager audit= instead")  # fmt: skip
            if isinstance(configured, SessionManager):
                # The caller's manager stays as it was (and is what session_manager
                # returns); calls go through a traced view of the same store.
                self._mgr, self._owns_mgr = configured, False
                self._calls = configured.wrapped(traced) if self._telemetry.enabled else configured
            else:
                url = default_session_url() if configured is None else configured
                spec = self._encryption
                self._mgr = self._calls = SessionManager(
                    traced(open_backend(url)),
                    encryption=keyring_from_env() if spec is None else spec.keyring(),
                    allow_plaintext=spec is not None and spec.allow_plaintext,
                    audit=self.options.audit,
                )
                self._owns_mgr = True
            try:
                await self._calls.open()
                await self._agents.start_all()
            except BaseException:
                await self._release_manager()
                raise
            limit = self.options.max_concurrent_calls
            self._sem = asyncio.Semaphore(limit) if limit else None
            self._running = True
            if self.options.retention and self.options.retention_interval:
                self._sweeper = asyncio.create_task(self._sweep_forever())

    async def stop(self) -> None:
        """Refuse new calls, wait for running ones, stop agents (last started first) and
        close the session store if the runtime opened it. Idempotent."""
        async with self._start_lock:
            if not self._running:
                return
            self._running = False
            if self._sweeper is not None:
                self._sweeper.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._sweeper
                self._sweeper = None
            await self._idle.wait()
            errors = await self._agents.stop_all()  # all of them, then the first error
            await self._release_manager()
            if errors:
                raise errors[0]

    async def _sweep_forever(self) -> None:
        """The retention option's policies, every ``retention_interval`` seconds; a failed
        sweep is logged and tried again next time."""
        mgr, interval = self._calls, self.options.retention_interval
        assert mgr is not None  # set while the runtime runs
        assert interval is not None  # the task starts only with an interval
        while True:
            await asyncio.sleep(interval)
            try:
                with audit_actor("aixgo-runtime"):
                    await sweep(mgr, self.options.retention)
            except Exception:
                _log.exception("retention sweep failed; it runs again in %s s", interval)

    async def _release_manager(self) -> None:
        mgr, self._mgr, self._calls = self._mgr, None, None
        if mgr is not None and self._owns_mgr:
            await mgr.close()

    # -- calls -------------------------------------------------------------------------------

    async def call(
        self,
        agent: str,
        message: Message,
        *,
        user: str | None = None,
        session: str | None = None,
    ) -> Message:
        """Run ``agent`` on ``message`` and return its reply (as stored, when a session is
        in play). With ``user``, the user's latest session with the agent is resumed or
        created; with ``session``, that session is used (and must belong to ``user`` if one
        is given); with neither, or for a stateless agent, no session is touched.

        This is :meth:`stream` consumed to its :class:`~aixgo.events.Reply`: the same turn,
        run in the caller's task, with the events before the reply dropped."""
        return await self._execute(agent, message, user, session, _drop)

    async def stream(
        self,
        agent: str,
        message: Message,
        *,
        user: str | None = None,
        session: str | None = None,
        session_event: bool = False,
    ) -> AsyncGenerator[Event, None]:
        """Run ``agent`` on ``message`` like :meth:`call`, yielding the turn's events as
        they happen: :class:`~aixgo.events.Delta` chunks of text (from an agent that
        streams, :class:`~aixgo.agent.StreamingAgent`), a :class:`~aixgo.events.Step` for
        each message the turn stores before its reply, and last the stored
        :class:`~aixgo.events.Reply`. An error ends the iteration with the exception
        :meth:`call` would raise.

        Leaving the loop early (``break``) or cancelling the task that iterates cancels the
        turn, which then stays resumable exactly as after a crash: calling again with the
        same message continues it. Python closes an abandoned iterator when it is garbage
        collected; ``contextlib.aclosing`` closes it (and so ends the turn) at once.

        With ``session_event=True``, a turn that runs in a session first yields a
        :class:`~aixgo.events.SessionOpened` naming it: how a caller who gave only ``user``
        learns the session's id (for a remote agent, the id of the session on its node, which
        ``call_with_session`` continues through any node sharing that store).

        The turn runs in a task of its own. Up to :data:`STREAM_BUFFER` events wait in
        memory for a consumer slower than the agent; then the agent waits for the consumer
        to take one (a streaming agent is not resumed past its ``yield``), and that waiting
        counts toward the ``timeout`` option like the rest of the agent's run."""
        queue: asyncio.Queue[Delta | Step | SessionOpened | None] = asyncio.Queue()
        # The queue itself stays unbounded so that the end marker below always fits; the
        # semaphore bounds the events in it.
        room = asyncio.Semaphore(STREAM_BUFFER)

        async def emit(event: Delta | Step | SessionOpened) -> None:
            if not session_event and isinstance(event, SessionOpened):
                return
            await room.acquire()
            queue.put_nowait(event)

        task = asyncio.create_task(self._execute(agent, message, user, session, emit))
        # Wakes the loop below when the turn ends, whether or not it emitted anything.
        task.add_done_callback(lambda _: queue.put_nowait(None))
        try:
            while (event := await queue.get()) is not None:
                room.release()
                yield event
            reply = task.result()
        finally:
            if not task.done():
                task.cancel()
                # Wait for the turn to end (its lease given back) before the caller goes on:
                # a call made right after a break then finds the turn over.
                await asyncio.wait([task])
            if not task.cancelled():
                task.exception()  # retrieved: an error the consumer never saw is not logged
        yield Reply(message=reply)

    async def _execute(
        self,
        agent: str,
        message: Message,
        user: str | None,
        session: str | None,
        emit: Emit,
    ) -> Message:
        """One call, streamed or not: checks, span, concurrency limit, turn."""
        entry = self._entry(agent)
        if not isinstance(message, Message):
            raise InvalidMessage(
                f"call() takes a Message, not {type(message).__name__}; "
                "build one with Message.user(...)"
            )
        if entry.check_input is not None:
            # The agent's own input limits (size, control characters), before anything is
            # written: a refused input never becomes an orphan message.
            entry.check_input(message)
        if user is not None:
            validate_name(user, "user id")
        if session is not None:
            validate_id(session)
            if entry.session_mode == "disabled":
                raise InvalidArgument(
                    f"agent {agent!r} is registered with session_mode='disabled', so it "
                    f"cannot continue session {session!r}; call it without a session"
                )
        stateful = entry.session_mode == "enabled" and (user is not None or session is not None)
        self._inflight += 1
        self._idle.clear()
        watch = CancelWatch()
        try:
            with self._telemetry.call_span(agent, session) as span, acting_for(user):
                if self._sem is None:
                    out = await self._call(
                        entry, agent, message, user, session, stateful, span, emit
                    )
                else:
                    async with self._sem:
                        out = await self._call(
                            entry, agent, message, user, session, stateful, span, emit
                        )
                # A caller who cancelled (or timed out) this call gets no reply, even when
                # the cancellation was swallowed on the way (by an agent or a library).
                watch.check()
                return out
        finally:
            self._inflight -= 1
            if self._inflight == 0:
                self._idle.set()

    async def call_with_session(self, agent: str, message: Message, session_id: str) -> Message:
        """Continue session ``session_id`` with ``agent``: ``call(agent, message,
        session=session_id)``."""
        return await self.call(agent, message, session=session_id)

    def stream_with_session(
        self, agent: str, message: Message, session_id: str
    ) -> AsyncGenerator[Event, None]:
        """Continue session ``session_id`` with ``agent``, streamed: ``stream(agent,
        message, session=session_id)``."""
        return self.stream(agent, message, session=session_id)

    def _entry(self, agent: str) -> AgentEntry:
        # Everything is checked before anything is written: an unknown agent or a stopped
        # runtime never leaves an orphan input behind.
        if not self._running:
            raise NotStarted(
                "the runtime is not running; use 'async with runtime:' or "
                "'await runtime.start()' before calling agents"
            )
        entry = self._agents.find(agent)
        if entry is not None:  # a registered name was checked when it was registered
            return entry
        validate_name(agent, "agent name")
        return self._agents.entry(agent)

    async def _call(
        self,
        entry: AgentEntry,
        agent: str,
        message: Message,
        user: str | None,
        session_id: str | None,
        stateful: bool,
        span: Any,
        emit: Emit,
    ) -> Message:
        if not entry.started:
            async with self._start_lock:
                if not entry.started:
                    await entry.start()
        if entry.hosted:
            # Its sessions live where it runs (another node): the turn protocol runs there.
            return await self._hosted(
                entry.agent, entry.bounds_time, agent, message, user if stateful else None,
                session_id if stateful else None, emit,
            )  # fmt: skip
        if not stateful:
            with using_session(None):
                return await self._run(entry, agent, message, None, emit)
        mgr = self._calls
        assert mgr is not None  # set while the runtime runs
        if session_id is not None:
            s = await mgr.get(session_id, user_id=user)
            if s.agent != agent:
                raise InvalidArgument(
                    f"session {session_id!r} belongs to agent {s.agent!r}, not {agent!r}"
                )
            return await self._turn(entry, agent, message, s, span, emit)
        assert user is not None
        # Without SessionPerUser, racing first calls from other processes settle on one
        # session afterwards and delete the other, still-empty ones: the one found here may
        # be gone before the input was stored. Then look again for the survivor.
        retries = 0 if isinstance(mgr.backend, SessionPerUser) else _SETTLE_ATTEMPTS - 1
        for _ in range(retries):
            with contextlib.suppress(SessionNotFound):
                return await self._turn(
                    entry, agent, message, await mgr.get_or_create(agent, user), span, emit
                )
        s = await mgr.get_or_create(agent, user)
        return await self._turn(entry, agent, message, s, span, emit)

    async def _hosted(
        self,
        host: SessionHost,
        bounded: bool,
        agent: str,
        message: Message,
        user: str | None,
        session_id: str | None,
        emit: Emit,
    ) -> Message:
        timeout = self.options.timeout
        try:
            if emit is _drop and (timeout is None or bounded):
                # One round trip, which a host that enforces time_left bounds itself: a
                # timer here would only duplicate its deadline.
                return await host.execute_hosted(
                    message, user=user, session=session_id, time_left=timeout
                )
            async with asyncio.timeout(timeout):
                if emit is _drop:  # nobody streams: the host's plain call is one round trip
                    return await host.execute_hosted(
                        message, user=user, session=session_id, time_left=timeout
                    )
                reply: Message | None = None
                items = host.stream_hosted(message, user=user, session=session_id,
                                           time_left=timeout)  # fmt: skip
                async for item in items:
                    if isinstance(item, Message):
                        reply = item
                    else:
                        await emit(item)
        except TimeoutError as exc:
            if isinstance(exc, AixgoError):  # the host's own typed timeout says more
                raise
            where = f"session {session_id!r}" if session_id else "its session"
            raise self._timed_out(agent, where, session_id) from exc
        if reply is None:
            where = f"session {session_id!r}" if session_id else "its session"
            raise AgentError(f"agent {agent!r} ended its stream without a reply in {where}",
                             agent=agent, session_id=session_id)  # fmt: skip
        return reply

    async def _turn(
        self, entry: AgentEntry, agent: str, message: Message, s: Session, span: Any, emit: Emit
    ) -> Message:
        span.set_attribute("aixgo.session_id", s.id)
        announced = False

        async def announce() -> None:
            # Once the input is stored here: a user's first call may still move to the
            # session that racing first calls settled on (see _call).
            nonlocal announced
            if not announced:
                announced = True
                if emit is not _drop:
                    await emit(SessionOpened(session_id=s.id))

        async def run(stored: Message) -> Message:
            await announce()
            with using_session(s):
                return await self._run(entry, agent, stored, s, emit)

        out = await self._turns.take(s, message, run, agent=agent)
        await announce()  # a repeated call answered from the store ran nothing
        return out

    async def _run(
        self,
        entry: AgentEntry,
        agent: str,
        message: Message,
        session: Session | None,
        emit: Emit,
    ) -> Message:
        session_id = session.id if session is not None else None
        where = f"session {session_id!r}" if session_id else "a stateless call"
        deadline = asyncio.timeout(self.options.timeout)
        try:
            async with deadline:
                if entry.streams:
                    out = await _consume(entry.agent, message, session, emit)
                elif session is not None and entry.session_aware:
                    out = await entry.agent.execute_with_session(message, session)
                else:
                    out = await entry.agent.execute(message)
        except TimeoutError as exc:
            raise self._timed_out(agent, where, session_id) from exc
        except _BadStream as exc:
            raise AgentError(
                f"agent {agent!r} {exc} in {where}; nothing more was written",
                agent=agent,
                session_id=session_id,
            ) from None
        except Exception as exc:
            if deadline.expired():  # the agent turned its cancellation into an error
                raise self._timed_out(agent, where, session_id) from exc
            raise AgentError(
                f"agent {agent!r} failed in {where}: {type(exc).__name__}: {exc}"
                + ("; its input is stored and nothing more was written" if session_id else ""),
                agent=agent,
                session_id=session_id,
            ) from exc
        if deadline.expired():
            # The cancellation was swallowed below (the agent caught it, or a library's
            # wait_for on Python 3.11 did): a reply after the deadline is not an answer.
            raise self._timed_out(agent, where, session_id)
        if not isinstance(out, Message):
            raise AgentError(
                f"agent {agent!r} returned a {type(out).__name__}, not a Message, in {where}; "
                "nothing more was written",
                agent=agent,
                session_id=session_id,
            )
        return out

    def _timed_out(self, agent: str, where: str, session_id: str | None) -> CallTimeout:
        return CallTimeout(
            f"agent {agent!r} did not answer within {self.options.timeout} s in {where}; "
            "its input is stored and nothing more was written",
            agent=agent,
            session_id=session_id,
        )


#: Where a turn sends its events before the reply; it waits while the consumer is behind.
Emit = Callable[[Delta | Step | SessionOpened], Awaitable[None]]


async def _drop(event: Delta | Step | SessionOpened) -> None:
    """The events of a call nobody streams (never awaited: callers skip it)."""


class _BadStream(Exception):
    """A streaming agent broke its protocol (the text says how)."""


async def _consume(
    agent: StreamingAgent, message: Message, session: Session | None, emit: Emit
) -> Message:
    """Iterate the agent's stream, passing its events on, and return its reply."""
    reply: Message | None = None
    items = agent.stream_with_session(message, session)
    try:
        async for item in items:
            if reply is not None:
                raise _BadStream(f"yielded a {type(item).__name__} after its reply")
            if isinstance(item, Message):
                reply = item
            elif isinstance(item, Step) and session is not None and item.message.seq is None:
                raise _BadStream(
                    f"yielded a Step with message {item.message.id!r}, which it did not store "
                    "(a Step carries the message session.append_message returned)"
                )
            elif isinstance(item, Delta | Step):
                if emit is not _drop:
                    await emit(item)
            else:
                raise _BadStream(
                    f"yielded a {type(item).__name__}; a streaming agent yields Delta, Step "
                    "and last its reply, a Message"
                )
    finally:
        # An async generator left early (an error above) is closed now, not when collected.
        close = getattr(items, "aclose", None)
        if close is not None:
            await close()
    if reply is None:
        raise _BadStream("ended its stream without a reply")
    return reply
