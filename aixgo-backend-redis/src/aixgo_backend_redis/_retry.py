"""Retrying through Redis restarts and failovers, and mapping redis-py errors to aixgo's.

Policy (one place, so every operation behaves alike):

* Connection failures (refused, reset, a server still loading its data, a cluster
  re-sharding or failing over) are retried under core's
  :class:`~aixgo.session.kit.RetryPolicy` (capped exponential backoff and jitter) for up
  to ``retry_window`` seconds, then raised as :class:`BackendUnavailable`. Retrying is safe
  because every write is idempotent server-side: appends by message id, creates by the
  fresh session or checkpoint id (see ``retried`` below).
* A command that times out is **not** retried: the server is up but slow, and retrying would
  multiply the wait the caller configured. It is raised at once as :class:`BackendTimeout`.
  The write may still have happened; repeating the call with the same messages is safe.
* Authentication failures and other refusals are raised at once: waiting will not fix them.

redis-py's own retries are switched off (``retries=0``) so the budget is ours alone.

At most ``slots`` operations are in flight at once (each uses one connection at a time, so
the pool never runs dry); the next waits up to ``timeout`` for a slot, then gets a
:class:`BackendTimeout`. Backoff sleeps hold no slot.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from aixgo import errors
from aixgo.errors import BackendError, BackendUnavailable, CorruptedData
from aixgo.session.kit import RetryPolicy
from aixgo.session.redaction import Redactor
from redis import exceptions as rx

T = TypeVar("T")
_log = logging.getLogger("aixgo.redis")

# Errors that mean "the server is not reachable right now"; BusyLoadingError (a restarted
# server reading its AOF) is a ConnectionError subclass in redis-py.
_TRANSIENT: tuple[type[Exception], ...] = (
    rx.ConnectionError,
    rx.ClusterDownError,
    rx.TryAgainError,
    rx.MasterDownError,
    rx.ReadOnlyError,
    rx.RedisClusterException,
)
_FATAL: tuple[type[Exception], ...] = (rx.AuthenticationError, rx.AuthorizationError)


class BackendTimeout(errors.BackendTimeout, BackendUnavailable):
    """Redis did not answer within the configured ``timeout``: an
    :class:`aixgo.errors.BackendTimeout` (so a :class:`TimeoutError`), and still the
    :class:`BackendUnavailable` it has always been. The operation may or may not have taken
    effect; repeating it is safe (appends are idempotent by message id)."""


def _is_transient(exc: Exception) -> bool:
    # AuthenticationError is a ConnectionError in redis-py, and a timeout is not retried.
    return isinstance(exc, _TRANSIENT) and not isinstance(exc, (*_FATAL, rx.TimeoutError))


class Retrier:
    """Runs an operation under the retry policy above.

    The operation gets ``retried``: ``True`` when an earlier attempt failed after it may have
    reached the server, so "already exists" for the id it was creating means "done".
    """

    def __init__(
        self,
        redactor: Redactor,
        *,
        window: float,
        timeout: float,
        slots: int = 50,
        base: float = 0.05,
        cap: float = 1.0,
    ) -> None:
        self.shown_url = redactor.shown
        self.window = window
        self.timeout = timeout
        # redis-py's messages are its own: they may quote what they were given.
        self._scrub = redactor.describe
        self._policy = RetryPolicy(deadline=window, base=base, cap=cap)
        self._slots = asyncio.Semaphore(slots)

    def unavailable(self, what: str, exc: BaseException) -> BackendUnavailable:
        """The error for ``what`` failing because Redis cannot be reached."""
        return BackendUnavailable(
            f"cannot reach Redis at {self.shown_url} ({what}): {self._scrub(exc)}; check that "
            "the server is running and the URL, password and TLS options are right"
        )

    def error(self, what: str, exc: Exception) -> BackendError:
        """The aixgo error for a redis-py exception that is not retried."""
        if isinstance(exc, rx.TimeoutError):
            return BackendTimeout(
                f"Redis at {self.shown_url} did not answer {what} within {self.timeout:g} s "
                "(the timeout= URL option); the operation may or may not have happened, and "
                "repeating it is safe"
            )
        if isinstance(exc, (*_FATAL, *_TRANSIENT)):
            return self.unavailable(what, exc)
        if isinstance(exc, rx.ResponseError) and "AIXGO_CORRUPT" in str(exc):
            detail = str(exc).split("AIXGO_CORRUPT", 1)[1].split(" script:", 1)[0].strip()
            return CorruptedData(f"Redis at {self.shown_url}: {detail}")
        return BackendError(f"Redis at {self.shown_url} refused {what}: {self._scrub(exc)}")

    async def run(self, what: str, op: Callable[[bool], Awaitable[T]]) -> T:
        """``await op(retried)`` until it succeeds, fails for good, or the window closes."""

        async def attempt(n: int) -> T:
            await self._take_slot(what)
            try:
                return await op(n > 0)
            finally:
                self._slots.release()

        def retrying(failure: Exception, attempt: int) -> None:
            # One warning per operation that has to retry; its later attempts at debug.
            level = logging.WARNING if attempt == 0 else logging.DEBUG
            _log.log(level, "Redis at %s: %s failed (%s); retrying", self.shown_url, what,
                     self._scrub(failure))  # fmt: skip

        try:
            return await self._policy.run(attempt, _is_transient, retrying)
        except rx.RedisError as exc:
            raise self.error(what, exc) from exc

    async def _take_slot(self, what: str) -> None:
        if not self._slots.locked():
            await self._slots.acquire()  # free: returns at once
            return
        try:  # all busy: wait, but no longer than a command may take
            async with asyncio.timeout(self.timeout):
                await self._slots.acquire()
        except TimeoutError:
            raise BackendTimeout(
                f"no free connection to Redis at {self.shown_url} for {what} within "
                f"{self.timeout:g} s: all pool_size= connections stayed busy; raise "
                "pool_size or timeout, or make fewer calls at once"
            ) from None
