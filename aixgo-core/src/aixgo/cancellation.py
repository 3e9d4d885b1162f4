"""Noticing a cancellation that the code below swallowed.

On Python 3.11, ``asyncio.wait_for`` returns the awaited result when its task is cancelled
just after that result arrived, and the cancellation is lost (CPython gh-86296; 3.12
rebuilt ``wait_for`` on ``asyncio.timeout``). redis-py writes every command of a new
connection's handshake through it, and psycopg_pool waits for a free connection in it, so a
timed-out or cancelled call could carry on as if nothing had happened and return a result.

A task's :meth:`asyncio.Task.cancelling` count goes up with every cancellation request and
down only where one is handled (``asyncio.timeout``, ``TaskGroup``): if it went up while
some code ran and that code returned normally, the cancellation was swallowed on the way.

>>> import asyncio
>>> async def swallows() -> str:
...     try:
...         await asyncio.sleep(1)
...     except asyncio.CancelledError:
...         pass
...     return "result"
>>> async def watched() -> str:
...     watch = CancelWatch()
...     out = await swallows()
...     watch.check()
...     return out
>>> async def demo() -> bool:
...     task = asyncio.create_task(watched())
...     await asyncio.sleep(0)
...     task.cancel()
...     try:
...         await task
...     except asyncio.CancelledError:
...         return True
...     return False
>>> asyncio.run(demo())
True
"""

from __future__ import annotations

import asyncio

__all__ = ["CancelWatch"]


class CancelWatch:
    """Made before awaiting code that may swallow a cancellation; :meth:`swallowed` tells,
    after it returned normally, whether the current task was cancelled meanwhile."""

    __slots__ = ("_before", "_task")

    def __init__(self) -> None:
        self._task = asyncio.current_task()
        self._before = self._task.cancelling() if self._task is not None else 0

    def swallowed(self) -> bool:
        """Whether a cancellation of the task was requested since and not handled."""
        return self._task is not None and self._task.cancelling() > self._before

    def check(self) -> None:
        """Raise the swallowed cancellation again, if there was one."""
        if self.swallowed():
            raise asyncio.CancelledError
