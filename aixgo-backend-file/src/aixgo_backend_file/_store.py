"""Store: one store directory — its layout, listing indexes and open sessions — with the
synchronous operations :class:`~aixgo_backend_file.backend.FileBackend` exposes as async.

Each session open in this process is a :class:`~aixgo_backend_file._state.LogState`; an
operation locks it and catches up with other writers (:func:`~aixgo_backend_file._recovery.lock`),
then reads (:mod:`aixgo_backend_file._reading`) or writes (:mod:`aixgo_backend_file._writing`).

Operations run inline on the caller's thread: an append is a handful of system calls, far
cheaper than a hop to a worker thread, and an asyncio program with many sessions still
interleaves them at call boundaries. With ``durability=fsync`` a write returns
what its acknowledgement must wait for (:class:`~aixgo_backend_file._commit.Pending`), and the
backend awaits it: writes of many tasks share one ``fdatasync``
(:mod:`aixgo_backend_file._commit`). A thread lock makes one store safe to
share between threads; file locks (``flock``) make one store directory safe to share between
processes.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from aixgo.clock import now_micros
from aixgo.errors import (
    BackendClosed,
    BackendError,
    BackendUnavailable,
    ConfigError,
    SessionNotFound,
)
from aixgo.message import Message
from aixgo.session.codec import check_batch
from aixgo.session.kit.recent import Recent
from aixgo.session.models import Checkpoint, Page, SessionInfo

from aixgo_backend_file import _reading, _recovery, _summary, _writing
from aixgo_backend_file._commit import GroupCommit, Pending
from aixgo_backend_file._diskfull import failed
from aixgo_backend_file._index import REFRESH_US, Index, keys_for, query_key
from aixgo_backend_file._paths import (
    FORMAT,
    Layout,
    check_private_dir,
    make_private_dir,
    open_file,
)
from aixgo_backend_file._state import LogState, close_files, list_checkpoints, write_all
from aixgo_backend_file._state import info as summary

T = TypeVar("T")

#: Sessions kept open (three descriptors each at most) per store.
MAX_OPEN_SESSIONS = 256
#: Session summaries remembered for listing (checked by ``lseek`` or ``lstat``).
MAX_SUMMARIES = 16_384
#: Logs kept open read-only (one descriptor each) after listing read their summaries.
MAX_READERS = 128


class Store:
    """A store directory in use by this process."""

    def __init__(self, root: Path, *, fsync: bool) -> None:
        self.root = root
        self.fsync = fsync
        self.layout = Layout(root)
        self.index = Index(self.layout)
        self.lock = threading.RLock()
        self.commit = GroupCommit(self.lock, self._drop)
        self._open: OrderedDict[str, LogState] = OrderedDict()
        self._ready = False
        self._closed = False
        # Listing keys by (agent, user id): hashing them costs more than a whole append.
        self._keys: dict[tuple[str, str | None], list[str]] = {}
        self._summaries: OrderedDict[str, _summary.Row] = OrderedDict()
        self._readers: OrderedDict[str, int] = OrderedDict()
        self.recent = Recent()  # records read lately, decoded (see aixgo.session.kit.recent)

    # ---------------------------------------------------------------- lifecycle

    def open(self) -> None:
        with self.lock:
            self._check()
            if self._ready:
                return
            self._prepare()
            self._ready = True

    def _prepare(self) -> None:
        root = self.root
        missing = []
        p = root
        while not p.exists() and p != p.parent:
            missing.append(p)
            p = p.parent
        try:
            for d in reversed(missing):
                make_private_dir(d)
        except OSError as exc:
            raise BackendUnavailable(f"cannot create the session store {root}: {exc}") from None
        check_private_dir(root, follow=True, what="session store")
        for sub in (self.layout.sessions, self.layout.indexes):
            if not make_private_dir(sub):
                check_private_dir(sub, follow=False, what="store directory")
        try:
            fd = open_file(self.layout.format, os.O_RDWR | os.O_CREAT, "store marker")
        except OSError as exc:
            raise BackendUnavailable(f"cannot open the session store {root}: {exc}") from None
        try:
            head = os.pread(fd, 64, 0)
            if not head:
                self._mark_format(fd)
            elif head != FORMAT:
                raise ConfigError(
                    f"{root} holds a store of another format ({head[:40]!r}); "
                    "this version reads 'aixgo-file-store 1'"
                )
        finally:
            os.close(fd)

    def _mark_format(self, fd: int) -> None:
        try:
            write_all(fd, FORMAT)
        except OSError as exc:
            with contextlib.suppress(OSError):  # an empty marker is written on the next open
                os.ftruncate(fd, 0)
            raise BackendUnavailable(str(failed(self.root, exc, "creating the store"))) from exc

    def close(self) -> None:
        with self.lock:
            self._closed = True
            self.commit.flush_all()
            while self._open:
                close_files(self._open.popitem()[1])
            while self._readers:
                os.close(self._readers.popitem()[1])
            self.recent.clear()
            self.index.close()

    def _check(self) -> None:
        if self._closed:
            raise BackendClosed(f"backend file://{self.root}")

    def _ensure(self) -> None:
        self._check()
        if not self._ready:
            self._prepare()
            self._ready = True

    # ---------------------------------------------------------------- sessions

    def _touch(self, log: LogState, updated: int) -> None:
        # Rows this process wrote for the session at most REFRESH_US ago still bound its
        # age as a page needs (index docs): write none, not even a syscall's worth.
        if updated - log.noted <= REFRESH_US:
            return
        keys = self._keys.get((log.agent, log.user_id))
        if keys is None:
            if len(self._keys) >= 4 * MAX_OPEN_SESSIONS:
                self._keys.clear()
            keys = self._keys[log.agent, log.user_id] = keys_for(log.agent, log.user_id)
        self.index.note(keys, updated, log.id)
        log.noted = updated

    def _remember(self, log: LogState) -> None:
        self._open[log.id] = log
        if len(self._open) > MAX_OPEN_SESSIONS:
            _, old = self._open.popitem(last=False)
            self.commit.flush(old)
            close_files(old)

    def _forget(self, session_id: str) -> None:
        self.recent.drop(session_id)
        log = self._open.pop(session_id, None)
        if log is not None:
            self.commit.flush(log)
            close_files(log)

    def _drop(self, log: LogState) -> None:
        """Forget ``log`` if it is still the open one (store lock held): its sync failed,
        so the next operation reopens the session rather than trust this view."""
        if self._open.get(log.id) is log:
            self._forget(log.id)

    def _log(self, session_id: str) -> LogState:
        self._ensure()
        log = self._open.get(session_id)
        if log is not None:
            self._open.move_to_end(session_id)
            return log
        try:
            log = _recovery.open_log(self.layout, session_id, fsync=self.fsync, touch=self._touch)
        except OSError as exc:
            raise failed(self.root, exc, f"opening session {session_id}", wrote=False) from exc
        self._remember(log)
        return log

    def _release(self, log: LogState, *, wrote: bool) -> None:
        """Unlock ``log`` after an operation; drop the view if it can no longer be trusted,
        or, after a write succeeded, if its sidecars were kept in memory (the next operation
        reopens the session and catches the disk up)."""
        _recovery.unlock(log)
        if log.stale or log.sync_error is not None:
            self._drop(log)
        elif wrote and log.detached:
            if self.fsync:
                self.commit.note(log)  # closing the view syncs what is noted
            self._drop(log)

    def _locked(self, session_id: str, *, exclusive: bool) -> LogState:
        return self._lock(self._log(session_id), exclusive=exclusive)

    def _lock(self, log: LogState, *, exclusive: bool) -> LogState:
        """Lock ``log`` and catch up with other writers; forget it if it is gone."""
        try:
            _recovery.lock(log, self._touch, exclusive=exclusive)
        except SessionNotFound:
            self._forget(log.id)
            raise
        except OSError as exc:
            raise self._unreadable(log.id, exc) from exc
        return log

    def _unreadable(self, session_id: str, exc: OSError) -> BackendError:
        """Catching up with the log failed part-way: drop the view, say why."""
        self._forget(session_id)
        return failed(self.root, exc, f"reading session {session_id}", wrote=False)

    def create(self, info: SessionInfo) -> None:
        with self.lock:
            self._ensure()
            try:
                log = _writing.create(self.layout, info, fsync=self.fsync, touch=self._touch)
            except OSError as exc:
                raise failed(self.root, exc, f"creating session {info.id}") from exc
            self._drop_summary(info.id)  # of a session of this id deleted before
            self._remember(log)

    def _known(self, session_id: str, read: Callable[[LogState], T]) -> T:
        """``read`` of what this process knows of the session, brought up to date (for
        what needs no file read beyond catching up)."""
        with self.lock:
            log = self._locked(session_id, exclusive=False)
            try:
                return read(log)
            finally:
                _recovery.unlock(log)

    def info(self, session_id: str) -> SessionInfo:
        return self._known(session_id, summary)

    def peek(self, session_id: str, seen: int = 0) -> tuple[SessionInfo, int] | None:
        """For listing: the session's summary and its ``updated_at`` in µs, or None if it is
        gone; ``seen`` is the time of a listing row of it (the session is at least that new).
        A remembered summary is checked with one ``lstat``: the log only ever grows, so the
        same file (inode and modification time) at the same size holds the same content. A
        file of a session deleted and created again by another process may reuse the inode
        and match in size and, with coarse file times, in time too: its creation's listing
        rows, newer than what is remembered, tell it apart."""
        known = self._summaries.get(session_id)
        if known is not None and known[2] >= seen:
            log = self._open.get(session_id)
            fd = log.fd if log is not None else self._readers.get(session_id)
            try:
                if fd is not None:  # a delete grows the log (its record) before unlinking
                    same = os.lseek(fd, 0, os.SEEK_END) == known[0][1]
                else:
                    st = os.lstat(self.layout.log_path(session_id))
                    same = (st.st_ino, st.st_size, st.st_mtime_ns) == known[0]
            except FileNotFoundError:
                self._drop_summary(session_id)
                self._forget(session_id)
                return None
            if same:
                self._summaries.move_to_end(session_id)
                return known[1], known[2]
        row = self._look_up(session_id)
        if row is None:
            self._drop_summary(session_id)
            return None
        self._summaries[session_id] = row
        self._summaries.move_to_end(session_id)
        if len(self._summaries) > MAX_SUMMARIES:
            self._summaries.popitem(last=False)
        return row[1], row[2]

    def _look_up(self, session_id: str) -> _summary.Row | None:
        """A session's listing row: from the view this process has open, else from the
        log's first and last records (:mod:`aixgo_backend_file._summary`), else by
        opening the session (locked, caught up, repaired). None if it is gone."""
        if session_id in self._open:
            try:
                return self._from_view(session_id)
            except SessionNotFound:
                # The view was of a log deleted since; another process may have created
                # the session again (a deterministic id): look at the path afresh.
                pass
        fd = self._readers.pop(session_id, None)
        if fd is not None:
            os.close(fd)  # the log grew or went: read it afresh
        try:
            self.layout.ensure_shard(session_id, create=False)
            fd = open_file(self.layout.log_path(session_id), os.O_RDONLY, "session log")
        except (SessionNotFound, FileNotFoundError):
            return None
        except OSError as exc:
            raise failed(self.root, exc, f"reading session {session_id}", wrote=False) from exc
        try:
            row = _summary.read(fd, session_id)
        except OSError as exc:
            os.close(fd)
            raise failed(self.root, exc, f"reading session {session_id}", wrote=False) from exc
        if row is None:
            os.close(fd)
            return self._from_view(session_id)
        self._readers[session_id] = fd
        if len(self._readers) > MAX_READERS:
            os.close(self._readers.popitem(last=False)[1])
        return row

    def _drop_summary(self, session_id: str) -> None:
        self._summaries.pop(session_id, None)
        fd = self._readers.pop(session_id, None)
        if fd is not None:
            os.close(fd)

    def _from_view(self, session_id: str) -> _summary.Row | None:
        """The row from the session opened the usual way; SessionNotFound from a view
        that was open already (the caller looks again), None if there is no session."""
        was_open = session_id in self._open
        with self.lock:
            try:
                log = self._locked(session_id, exclusive=False)
            except SessionNotFound:
                if was_open:
                    raise
                return None
            try:
                st = os.fstat(log.fd)
                return (st.st_ino, log.size, st.st_mtime_ns), summary(log), log.updated
            except OSError as exc:
                raise failed(self.root, exc, f"reading session {session_id}", wrote=False) from exc
            finally:
                _recovery.unlock(log)

    def list_page(
        self, agent: str | None, user_id: str | None, limit: int, cursor: str | None
    ) -> Page[SessionInfo]:
        def resolve(session_id: str, seen: int) -> tuple[SessionInfo, int] | None:
            got = self.peek(session_id, seen)
            # Rows only name candidates: a session listed under another key (a misplaced
            # or planted index line) is not shown outside its agent's and user's scope.
            if got is None or (agent is not None and got[0].agent != agent):
                return None
            if user_id is not None and got[0].user_id != user_id:
                return None
            return got

        with self.lock:
            self._ensure()
            return self.index.page(
                query_key(agent, user_id), limit=limit, cursor=cursor, resolve=resolve
            )

    def delete(self, session_id: str) -> None:
        with self.lock:
            log = self._locked(session_id, exclusive=True)
            mark = _writing.mark(log)
            try:
                _writing.delete(log, now_micros())
            except OSError as exc:
                _writing.undo(log, mark)
                raise failed(self.root, exc, f"deleting session {session_id}") from exc
            finally:
                _recovery.unlock(log)
                self._forget(session_id)
                self._drop_summary(session_id)

    def append(
        self, session_id: str, messages: Sequence[Message], expected_seq: int | None
    ) -> tuple[list[Message], Pending | None]:
        """The stored messages, and in fsync mode what acknowledging them waits for (an
        idempotent repeat too: its writer may have died before syncing it)."""
        encoded = check_batch(messages)
        with self.lock:
            log = self._open.get(session_id)
            if log is None or self._closed:
                log = self._locked(session_id, exclusive=True)
            else:  # the hot path: an open session
                self._open.move_to_end(session_id)
                self._lock(log, exclusive=True)
            # fsync mode: a lone writer syncs inline, before the sidecars (their pages then
            # stay out of the journal commit the sync waits for); writes in flight together
            # leave it to the group commit.
            sync = self.fsync and self.commit.alone()
            mark = _writing.mark(log)
            try:
                out = _writing.append(
                    log, messages, encoded, expected_seq, now_micros(), self._touch, sync=sync
                )
            except OSError as exc:
                _writing.undo(log, mark)
                raise failed(self.root, exc, f"appending to session {session_id}") from exc
            finally:
                self._release(log, wrote=True)
            return out, self.commit.note(log) if self.fsync else None

    def messages(
        self, session_id: str, last: int | None, recent: Recent | None = None
    ) -> list[Message]:
        """The tail, through ``recent`` (a wrapper's) if given, else the store's own."""
        with self.lock:
            log = self._locked(session_id, exclusive=False)
            try:
                return _reading.messages(log, last, self.recent if recent is None else recent)
            except OSError as exc:
                raise failed(self.root, exc, f"reading session {session_id}", wrote=False) from exc
            finally:
                self._release(log, wrote=False)

    def checkpoint(
        self, session_id: str, checkpoint_id: str, label: str | None
    ) -> tuple[Checkpoint, Pending | None]:
        return self._write(
            session_id,
            "checkpointing",
            lambda log: _writing.add_checkpoint(log, checkpoint_id, label, now_micros()),
        )

    def checkpoints(self, session_id: str) -> list[Checkpoint]:
        return self._known(session_id, list_checkpoints)

    def restore(
        self, session_id: str, checkpoint_id: str, undo_id: str
    ) -> tuple[Checkpoint, Pending | None]:
        return self._write(
            session_id,
            "restoring",
            lambda log: _writing.restore(log, checkpoint_id, undo_id, now_micros(), self._touch),
        )

    def _write(
        self, session_id: str, doing: str, write: Callable[[LogState], T]
    ) -> tuple[T, Pending | None]:
        """``write`` under the exclusive lock, taken back whole if the disk refuses it; in
        fsync mode, also what acknowledging it waits for. (Appends, the hot path, do the
        same inline.)"""
        with self.lock:
            log = self._locked(session_id, exclusive=True)
            mark = _writing.mark(log)
            try:
                out = write(log)
            except OSError as exc:
                _writing.undo(log, mark)
                raise failed(self.root, exc, f"{doing} session {session_id}") from exc
            finally:
                self._release(log, wrote=True)
            return out, self.commit.note(log) if self.fsync else None
