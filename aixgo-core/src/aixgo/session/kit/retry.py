"""Retrying an operation through a store's restarts and failovers: one backoff policy.

A backend decides *what* is worth retrying (its driver's "connection lost", never "wrong
password"); :class:`RetryPolicy` decides *how*: capped exponential backoff with jitter, for at
most ``deadline`` seconds and (optionally) ``attempts`` retries, the last attempt made at the
deadline rather than one pause before it. Only operations that are safe to run twice should be
retried; the attempt number lets an operation recognise its own earlier, half-finished try.

Cancellation is never retried or swallowed: ``CancelledError`` (and every other
``BaseException`` that is not an ``Exception``) goes straight through.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

__all__ = ["RetryPolicy"]

T = TypeVar("T")

# 2**30 times any sane base is far past any cap; a larger exponent would overflow a float.
_MAX_EXPONENT = 30


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """``deadline``: seconds, from the first attempt, during which failures are retried
    (``None``: no time limit). ``attempts``: the most retries after the first try (``None``:
    no count limit). The pause before retry ``n`` (from 0) is ``base * 2**n``, reduced by a
    random fraction of up to ``jitter`` (so clients that failed together do not return
    together), and at most ``cap``.

    >>> policy = RetryPolicy(deadline=None, attempts=2, jitter=0.0)
    >>> [policy.pause(n) for n in range(3)]
    [0.05, 0.1, 0.2]
    """

    deadline: float | None = 10.0
    base: float = 0.05
    cap: float = 1.0
    jitter: float = 0.5
    attempts: int | None = None

    def pause(self, retry: int) -> float:
        """The pause before retry number ``retry`` (0 for the first retry)."""
        spread = random.uniform(1.0 - self.jitter, 1.0)  # noqa: S311 - spreads load, not crypto
        return min(self.cap, self.base * 2.0 ** min(retry, _MAX_EXPONENT) * spread)

    async def run(
        self,
        op: Callable[[int], Awaitable[T]],
        is_transient: Callable[[Exception], bool],
        on_retry: Callable[[Exception, int], None] | None = None,
    ) -> T:
        """``await op(attempt)`` (``attempt`` counts from 0) until it returns, raises an
        exception ``is_transient`` rejects, or the budget is spent; then that exception is
        raised as it is, for the backend to translate. ``on_retry(exc, attempt)`` is called
        before each pause, when the failed ``attempt`` will be retried (to log it, say)."""
        loop = asyncio.get_running_loop()
        ends = None if self.deadline is None else loop.time() + self.deadline
        attempt = 0
        while True:
            try:
                return await op(attempt)
            except Exception as exc:
                if not is_transient(exc):
                    raise
                if self.attempts is not None and attempt >= self.attempts:
                    raise
                delay = self.pause(attempt)
                if ends is not None:
                    remaining = ends - loop.time()
                    if remaining <= 0:
                        raise
                    delay = min(delay, remaining)
                if on_retry is not None:
                    on_retry(exc, attempt)
            await asyncio.sleep(delay)
            attempt += 1
