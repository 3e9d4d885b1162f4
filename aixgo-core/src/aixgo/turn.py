"""Turn: what one call does to its session, as one unit — take the session's turn, store the
input, notice an in-flight or abandoned turn, resume, run the agent, store the reply.

The input is stored *before* the agent runs, so a run that dies half-way is resumed by calling
again with the same message (same id): the input is never stored twice, and a repeated call
whose input was already answered gets that stored reply without the agent running again. The
reply is tagged ``metadata["aixgo.reply_to"]`` with the input's id.

How turns on one session are kept from interleaving depends on the backend:

* With :class:`~aixgo.session.backend.TurnLeases` (``memory://``, ``file://``, and any backend
  implementing it) a turn holds the session's lease in the store from before its input is
  stored until after its reply is, so one turn at a time runs on a session across every
  process and machine sharing the store. ``turn_policy="queue"`` (the default) waits for the
  running turn, polling with capped, jittered backoff, for at most the turn bound (the
  ``timeout`` plus a second, or a minute without one, and never less than
  ``turn_lease_ttl`` plus a second), then raises :class:`ConflictError`; ``"reject"`` raises
  it at once. The lease is renewed every ``turn_lease_ttl / 3`` while the agent runs and
  released afterwards, also on errors and cancellation. A process that dies holding it loses
  it after at most ``turn_lease_ttl``; its input stays stored and resumable, and the next turn
  goes after it. Writes under the lease still state ``expected_seq``, which fences off an
  owner whose lease expired while it was stuck: if the lease was lost while the agent ran,
  the reply is stored only if this turn can take the lease back and no other turn's input
  came after its own; otherwise :class:`ConflictError` (the input stays stored: call again
  with the same message to resume).
* Without it (a third-party backend that has not implemented leases) the protocol is
  optimistic: every write states ``expected_seq`` and is retried on the new head, and a call
  whose session ends with another call's unanswered input waits for that reply first (at
  most the turn bound, since a run that died never answers), or under ``"reject"`` raises
  :class:`ConflictError` at once. A turn that fails here only
  ever marks its own input, and the steps that followed it, as abandoned, so a later call in
  this process does not wait for it; never another call's message.

Calls on one session are also serialized within a runtime, by an ``asyncio.Lock``; under
``turn_policy="reject"`` a call that finds that lock taken is refused at once as well.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import weakref
from collections.abc import Awaitable, Callable
from typing import Literal

from aixgo.errors import AgentError, ConflictError, MessageIdConflict
from aixgo.identifiers import new_id
from aixgo.message import Message, utc_now
from aixgo.session.backend import Backend, TurnLeases
from aixgo.session.session import Session

__all__ = ["REPLY_TO", "TurnPolicy", "Turns"]

#: Metadata key of a stored reply: the id of the input it answers.
REPLY_TO = "aixgo.reply_to"
#: What a call does when another turn is running on its session.
TurnPolicy = Literal["queue", "reject"]
#: Runs the agent on the stored input and returns its reply (not yet stored).
Run = Callable[[Message], Awaitable[Message]]

# Conflicting writes from other writers are retried this many times, with a short backoff.
_CONFLICT_RETRIES = 8
# Without a timeout option, how long a turn running elsewhere is waited for.
_DEFAULT_TURN_BOUND = 60.0
_LOOKBACK = 8
# Waits and conflict retries are routine (debug); a lease lost while the agent ran, or one
# that cannot be renewed, is worth a warning. Session ids only, never message content.
_log = logging.getLogger("aixgo.runtime")


class Turns:
    """The turns of one runtime: its policy, lease length, per-session locks, and which
    turns it saw end without a reply."""

    def __init__(
        self, *, policy: TurnPolicy = "queue", lease_ttl: float = 30.0, timeout: float | None
    ) -> None:
        self.policy = policy
        self.lease_ttl = lease_ttl
        self.timeout = timeout
        # Owners are this prefix plus a fresh part per call: random, so two runtimes (or
        # two processes) never share one.
        self._owner = new_id()[:16]
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
        # Optimistic protocol only: per session, the messages of the last turn this runtime
        # saw end without a reply.
        self._abandoned: dict[str, set[str]] = {}

    @property
    def bound(self) -> float:
        """How long a turn running elsewhere can last: the agent timeout plus the writes
        around it, or a minute without a timeout."""
        return self.timeout + 1.0 if self.timeout is not None else _DEFAULT_TURN_BOUND

    async def take(
        self, s: Session, backend: Backend, message: Message, run: Run, *, agent: str
    ) -> Message:
        """Run one turn of ``agent`` on ``s`` (see the module docs) and return the stored
        reply."""
        lock = self._locks.get(s.id)
        if lock is None:
            lock = self._locks[s.id] = asyncio.Lock()
        if self.policy == "reject" and lock.locked():
            raise _busy(s.id)
        async with lock:
            if isinstance(backend, TurnLeases):
                return await self._leased(s, backend, message, run, agent)
            return await self._optimistic(s, message, run, agent)

    # -- with a lease ------------------------------------------------------------------------

    async def _leased(
        self, s: Session, backend: TurnLeases, message: Message, run: Run, agent: str
    ) -> Message:
        lease = _Lease(backend, s.id, f"{self._owner}-{new_id()[:16]}", self.lease_ttl)
        await self._acquire(lease)
        lease.keep()
        try:
            stored, head = await _store_input_leased(s, message, lease)
            answered = await _stored_reply(s, stored, head)
            if answered is not None:
                return answered
            out = _as_reply(await run(stored), stored, agent, s)
            return await _store_reply_leased(s, out, stored, head, lease)
        finally:
            await lease.release()

    async def _acquire(self, lease: _Lease) -> None:
        loop = asyncio.get_running_loop()
        bound = max(self.bound, self.lease_ttl + 1.0)
        deadline = loop.time() + bound
        attempt = 0
        while not await lease.acquire():
            if self.policy == "reject":
                raise _busy(lease.session_id)
            if loop.time() >= deadline:
                raise ConflictError(
                    f"another turn is still running on session {lease.session_id!r} after "
                    f"{bound:g} s of waiting for it; nothing was written, retry the call"
                )
            if attempt == 0:
                _log.debug("session %s: another turn holds the lease; waiting up to %g s",
                           lease.session_id, bound)  # fmt: skip
            await _backoff(attempt, jitter=True)
            attempt += 1

    # -- without a lease ---------------------------------------------------------------------

    async def _optimistic(self, s: Session, message: Message, run: Run, agent: str) -> Message:
        try:
            stored, head = await self._store_input(s, message)
            answered = await _stored_reply(s, stored, head)
            if answered is not None:
                out = answered
            else:
                reply = _as_reply(await run(stored), stored, agent, s)
                out = await _append_reply(s, reply)
        except BaseException:
            # This turn is over without a reply (it failed, or its caller left: a cancelled
            # or abandoned stream): a later call in this process need not wait for it
            # (another process cannot know, and waits at most the turn bound). Only this
            # call's own messages are marked: its input, and the last step after it if its
            # input still opens the session's last turn. Never another call's message, which
            # may belong to a turn still running elsewhere.
            ids = {message.id}
            # A cancelled task can still await; a second cancellation only skips the step.
            with contextlib.suppress(Exception, asyncio.CancelledError):
                tail, opener = await _open_turn(s)
                if tail and opener is not None and opener.id == message.id:
                    ids.add(tail[-1].id)
            self._abandoned[s.id] = ids
            raise
        self._abandoned.pop(s.id, None)
        return out

    async def _store_input(self, s: Session, message: Message) -> tuple[Message, int]:
        """Store the input onto the head as read; return it and the history length after.

        If the head ends with another call's unanswered input (a turn running in another
        process), wait for its reply so turns never interleave, but at most the turn bound:
        a run that died leaves its input unanswered for ever."""
        bound = self.bound
        loop = asyncio.get_running_loop()
        deadline = loop.time() + bound
        conflicts = waits = 0
        while True:
            tail, opener = await _open_turn(s)
            count = (tail[-1].seq or 0) if tail else 0
            # A resumed call whose crashed run stored steps after its input finds the input
            # opening the last turn, however many steps followed: it need not wait for itself.
            ours = opener is not None and opener.id == message.id
            if (
                tail
                and not ours
                and loop.time() < deadline
                and self._in_flight(s.id, tail[-1], message, bound)
            ):
                if self.policy == "reject":
                    raise _busy(s.id)
                if waits == 0:
                    _log.debug("session %s: waiting for the reply to another call's input", s.id)
                await _backoff(waits)
                waits += 1
                continue
            try:
                stored = await s.append_message(message, expected_seq=count)
            except MessageIdConflict:  # not a race: retrying cannot help
                raise
            except ConflictError:
                conflicts += 1
                if conflicts >= _CONFLICT_RETRIES:
                    raise ConflictError(
                        f"session {s.id!r} kept changing under other writers; the input was "
                        f"not stored after {_CONFLICT_RETRIES} attempts, retry the call"
                    ) from None
                _conflict(s.id, "input", conflicts)
                await _backoff(conflicts)
                continue
            assert stored.seq is not None
            return stored, max(count, stored.seq)

    def _in_flight(self, session_id: str, last: Message, message: Message, bound: float) -> bool:
        """Whether ``last`` looks like part of a turn still running elsewhere: an input, a
        tool result or a request for tools, not yet followed by a reply. System prompts and
        plain assistant messages an application stores itself (a greeting) are not."""
        if last.id == message.id or REPLY_TO in last.metadata:
            return False
        if last.role == "system" or (last.role == "assistant" and not last.tool_calls):
            return False
        if last.id in self._abandoned.get(session_id, ()):
            return False
        age = (utc_now() - last.created_at).total_seconds()
        return age < bound


class _Lease:
    """One turn's hold on a session's lease: taken, kept alive in the background, given up."""

    def __init__(self, backend: TurnLeases, session_id: str, owner: str, ttl: float) -> None:
        self.backend = backend
        self.session_id = session_id
        self.owner = owner
        self.ttl = ttl
        #: Set when a renewal found the lease taken or expired.
        self.lost = False
        self._keeper: asyncio.Task[None] | None = None

    async def acquire(self) -> bool:
        try:
            token = await self.backend.acquire_turn(self.session_id, self.owner, self.ttl)
        except BaseException:
            # Cancelled (or failed) while the store may have granted it: give it back.
            await self.release()
            raise
        if token is not None:
            self.lost = False
        return token is not None

    def keep(self) -> None:
        """Renew the lease every third of its length until :meth:`release`."""
        self._keeper = asyncio.create_task(self._renew_forever())

    async def _renew_forever(self) -> None:
        while True:
            await asyncio.sleep(self.ttl / 3)
            try:
                held = await self.backend.renew_turn(self.session_id, self.owner, self.ttl)
            except Exception as exc:  # a store hiccup: the next period tries again
                # Backends' errors carry redacted URLs only.
                _log.warning("session %s: renewing the turn's lease failed (%s: %s); trying "
                             "again in %g s", self.session_id, type(exc).__name__, exc,
                             self.ttl / 3)  # fmt: skip
                continue
            if not held:
                _log.warning("session %s: the turn lost its lease while the agent ran (it "
                             "expired or another turn took it)", self.session_id)  # fmt: skip
                self.lost = True
                return

    async def confirm(self) -> bool:
        """Whether this turn holds the lease now, taking it back if it expired and nobody
        else took it."""
        if await self.backend.renew_turn(self.session_id, self.owner, self.ttl):
            return True
        return await self.acquire()

    async def release(self) -> None:
        if self._keeper is not None:
            self._keeper.cancel()
            self._keeper = None
        # Shielded: a cancelled call still gives the lease back; a failing release is left
        # to the lease's expiry rather than hide the turn's own outcome.
        with contextlib.suppress(Exception):
            await asyncio.shield(self.backend.release_turn(self.session_id, self.owner))


async def _store_input_leased(s: Session, message: Message, lease: _Lease) -> tuple[Message, int]:
    """Store the input at the head (the lease is held, so no other turn is running); return
    it and the history length after. A message stored by a writer outside the turn protocol
    in between is a conflict: retried on the new head while the lease is still held."""
    for attempt in range(_CONFLICT_RETRIES):
        count = (await s.info()).message_count
        try:
            stored = await s.append_message(message, expected_seq=count)
        except MessageIdConflict:  # not a race: retrying cannot help
            raise
        except ConflictError:
            if not await lease.confirm():
                raise _lost(s.id, "the input was not stored; retry the call") from None
            _conflict(s.id, "input", attempt + 1)
            await _backoff(attempt)
            continue
        assert stored.seq is not None
        return stored, max(count, stored.seq)
    raise ConflictError(
        f"session {s.id!r} kept changing under writers outside the turn protocol; the input "
        f"was not stored after {_CONFLICT_RETRIES} attempts, retry the call"
    )


async def _store_reply_leased(
    s: Session, out: Message, stored: Message, head: int, lease: _Lease
) -> Message:
    """Store the reply after whatever the agent stored itself, fenced by ``expected_seq``.
    ``head`` is the history's length when the turn began; a user message stored after it,
    other than this turn's input, is another turn's input."""
    resume = "its input is stored: call again with the same message to resume"
    if lease.lost and not await lease.confirm():
        raise _lost(s.id, f"the reply {out.id!r} was not stored ({resume})")
    for attempt in range(_CONFLICT_RETRIES):
        tail, opener = await _open_turn(s)
        if (
            opener is not None
            and opener.role == "user"
            and opener.id != stored.id
            and (opener.seq or 0) > head
        ):
            # Another turn's input came after ours: our lease expired while the agent ran.
            raise _lost(s.id, f"another turn started; the reply {out.id!r} was not stored "
                        f"({resume})")  # fmt: skip
        count = (tail[-1].seq or 0) if tail else 0
        try:
            return await s.append_message(out, expected_seq=count)
        except MessageIdConflict:  # not a race: retrying cannot help
            raise
        except ConflictError:
            if not await lease.confirm():
                raise _lost(s.id, f"the reply {out.id!r} was not stored ({resume})") from None
            _conflict(s.id, "reply", attempt + 1)
            await _backoff(attempt)
    raise ConflictError(
        f"session {s.id!r} kept changing under writers outside the turn protocol; the reply "
        f"{out.id!r} was not stored after {_CONFLICT_RETRIES} attempts ({resume})"
    )


# -- shared steps --------------------------------------------------------------------------


async def _stored_reply(s: Session, stored: Message, head: int) -> Message | None:
    """For a repeated call (its input was stored before): the reply stored already, if any."""
    if stored.seq is not None and stored.seq < head:
        for later in await s.get_messages(last=head - stored.seq):
            if later.metadata.get(REPLY_TO) == stored.id:
                return later
    return None


def _as_reply(out: Message, stored: Message, agent: str, s: Session) -> Message:
    if out.id == stored.id:
        raise AgentError(
            f"agent {agent!r} returned its input (message {out.id!r}) as its reply; "
            f"nothing more was written to session {s.id!r}",
            agent=agent,
            session_id=s.id,
        )
    if REPLY_TO not in out.metadata:
        out = out.model_copy(update={"metadata": {**out.metadata, REPLY_TO: stored.id}})
    return out


async def _append_reply(s: Session, out: Message) -> Message:
    for attempt in range(_CONFLICT_RETRIES):
        # Read after the agent ran: a session-aware agent may have stored messages of its
        # own (tool results) while it worked; the reply goes after them.
        count = (await s.info()).message_count
        try:
            return await s.append_message(out, expected_seq=count)
        except MessageIdConflict:  # not a race: retrying cannot help
            raise
        except ConflictError:
            _conflict(s.id, "reply", attempt + 1)
            await _backoff(attempt)
    raise ConflictError(
        f"session {s.id!r} kept changing under other writers; the reply {out.id!r} was "
        f"not stored after {_CONFLICT_RETRIES} attempts (its input is stored: retry the "
        "call with the same message to resume)"
    )


def _conflict(session_id: str, what: str, attempt: int) -> None:
    _log.debug("session %s: another writer changed it first; storing the %s again (attempt %d)",
               session_id, what, attempt + 1)  # fmt: skip


def _busy(session_id: str) -> ConflictError:
    return ConflictError(
        f"another turn is running on session {session_id!r} and turn_policy is 'reject'; "
        "nothing was written, retry the call later"
    )


def _lost(session_id: str, what: str) -> ConflictError:
    return ConflictError(
        f"this turn lost its lease on session {session_id!r} to another turn while it ran; " + what
    )


async def _backoff(attempt: int, *, jitter: bool = False) -> None:
    delay = min(0.005 * 2**attempt, 0.1 if jitter else 0.2)
    # Jitter spreads pollers that started together, so they do not retry in lockstep.
    await asyncio.sleep(delay * random.uniform(0.5, 1.0) if jitter else delay)  # noqa: S311


def _is_step(m: Message) -> bool:
    """A step inside a turn: a request for tools, or a tool's result."""
    return m.role == "tool" or (m.role == "assistant" and bool(m.tool_calls))


async def _open_turn(s: Session) -> tuple[list[Message], Message | None]:
    """The history's tail and the message that opened its last turn (the newest message that
    is not a step), reading back geometrically so a long turn costs a few reads, not one read
    of the whole history."""
    n = _LOOKBACK
    while True:
        tail = await s.get_messages(last=n)
        opener = next((m for m in reversed(tail) if not _is_step(m)), None)
        if opener is not None or len(tail) < n:
            return tail, opener
        n *= 8
