"""GroupCommit: ``durability=fsync`` acknowledgements that share one ``fdatasync``.

In fsync mode a write (an append, a checkpoint, a restore) goes to the log under the file lock
exactly as in flush mode, and the lock is released; only its acknowledgement waits, here,
until an ``fdatasync`` of the log that began after the write has finished. The first waiter
leads a group: it yields to the event loop once (``asyncio.sleep(0)``), so every other task
that is ready to run writes its lines too, then syncs each log with unsynced writes once,
back to back, and wakes the rest. So fifty tasks appending to one session at once pay one
``fdatasync`` (or two), not fifty in a row, and the event loop is blocked for one sync, not
fifty. A lone writer (no group gathering, no other task ready to run) gains nothing by
yielding: an append then syncs inline, before its sidecar and index writes, as fast as a sync
per write can be (:meth:`GroupCommit.alone`).

Writes to different sessions are different files, each needing an ``fdatasync`` of its own:
a group syncs them back to back. One group serves the store: groups per log, each synced
when its own leader ran again, did worse (docs/performance.md has the measurements).

Every ``fdatasync`` covers all the file holds when it starts, whoever wrote it: a writer's
sync also covers unsynced lines of another task or process before its own, and nothing is
acknowledged before a sync that covers it (``LogState.synced`` is how far this process knows
the log to be on disk). A reader may see a line whose writer is still waiting for its sync;
anything written after it to the same log is synced with it.

The sync itself still runs on the event loop's thread, blocking it for one sync per group (a
hop to a worker thread costs about as much as the sync on a fast disk).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

from aixgo.errors import BackendError

from aixgo_backend_file._state import LogState
from aixgo_backend_file._writing import sync

#: What an acknowledgement waits for: this log synced up to this offset.
Pending = tuple[LogState, int]


class _Group:
    """The writes gathering for the next sync: the leader's loop and the waiting writers."""

    __slots__ = ("loop", "waiters")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.waiters: list[asyncio.Future[None]] = []


class GroupCommit:
    """The logs of one store with writes not yet synced, and the group syncing them."""

    def __init__(self, lock: threading.RLock, drop: Callable[[LogState], None]) -> None:
        self._lock = lock  # the store's: it guards the logs and the dirty set
        self._drop = drop  # forgets a log whose sync failed (see _writing.sync)
        self._dirty: dict[LogState, None] = {}  # insertion-ordered set
        self._group: _Group | None = None

    def alone(self) -> bool:
        """Whether a write about to be made had best be synced at once, inline (before its
        sidecar and index entries, so their pages stay out of the journal commit the sync
        waits for): no group is gathering and no other task is queued to run before the
        writer could sync, so no other write could share the sync. Outside an event loop,
        always."""
        if self._group is not None:
            return False
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return True
        ready = getattr(loop, "_ready", None)  # asyncio's run queue (see _lead)
        return ready is not None and not ready

    def note(self, log: LogState) -> Pending | None:
        """After a write under the store lock: what acknowledging it must wait for, or None
        when this process has synced everything the log holds already."""
        if log.synced >= log.size:
            return None
        self._dirty[log] = None
        return log, log.size

    def flush(self, log: LogState) -> None:
        """Sync ``log`` now if it has unsynced writes (store lock held): before it is
        closed, so nobody waits for a descriptor that is gone."""
        if log in self._dirty:
            del self._dirty[log]
            self._sync(log)

    def flush_all(self) -> None:
        while self._dirty:
            self.flush(next(iter(self._dirty)))

    async def wait(self, log: LogState, end: int) -> None:
        """Return once ``log`` is on disk up to ``end``; BackendError if its sync failed."""
        while log.synced < end:
            if log.sync_error is not None:
                raise BackendError(
                    f"fdatasync of {log.path} failed ({log.sync_error}): the write may not "
                    "be on disk"
                ) from log.sync_error
            if log.fd < 0:  # closing syncs what is owed, so this is not expected
                raise BackendError(f"{log.path} was closed before the write was synced")
            group = self._group
            loop = asyncio.get_running_loop()
            if group is not None and group.loop is loop:
                # A future of its own (a cancelled waiter cancels only that), woken
                # directly: it writes its next line before the leader's task can.
                woken = loop.create_future()
                group.waiters.append(woken)
                await woken
            else:
                await self._lead(loop)

    async def _lead(self, loop: asyncio.AbstractEventLoop) -> None:
        # Yielding lets the tasks queued to run now write first; tasks that become ready
        # later run after this one anyway. With none queued, sync at once. (``_ready`` is
        # asyncio's run queue; a loop without one, such as uvloop, always yields.)
        ready = getattr(loop, "_ready", None)
        if ready is not None and not ready:
            self._sync_dirty()
            return
        group = self._group = _Group(loop)
        try:
            await asyncio.sleep(0)
        finally:
            # Also when cancelled: the followers are waiting for this sync.
            try:
                self._sync_dirty(group)
            finally:
                for woken in group.waiters:
                    if not woken.done():
                        woken.set_result(None)

    def _sync_dirty(self, group: _Group | None = None) -> None:
        with self._lock:
            if group is not None and self._group is group:
                self._group = None  # writers from now on form the next group
            dirty, self._dirty = self._dirty, {}
            for log in dirty:
                self._sync(log)

    def _sync(self, log: LogState) -> None:
        try:
            sync(log)
        except BackendError:  # its waiters raise it, from log.sync_error
            self._drop(log)
