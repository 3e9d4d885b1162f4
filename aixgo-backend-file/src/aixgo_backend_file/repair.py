"""Repair: re-derive everything derivable in a store from the session logs.

    aixgo file repair [--check] file:///path/to/store     (or a path)

For every session log it rebuilds the ``.idx`` and ``.meta`` sidecars (cutting a torn tail),
finishes interrupted deletes and removes logs whose creation never completed; then it rewrites
each listing index compacted — one line per session, in time order — replacing the old file
atomically. Damage in the middle of a log is reported with file and line and that session is
left untouched (move the file aside to drop it). Exit status: 0 when all is well, 1 when a log
is damaged, 2 when the store cannot be opened or written (a full disk: free space, run again).

``--check`` changes nothing: it opens every file read-only and writes nothing at all (so it
also runs on a full disk or a read-only mount), reads each log whole and reports what repair
would do — sidecars that do not match their log ("the index needs repair"), torn tails, logs
to remove — and damage. Its exit status is 1 also when repair would change something.

Run it while no other process writes to the store: index lines appended by another process
during the rebuild would be lost from the listing (the sessions themselves are not touched).
Normal operation never needs it — each session repairs its own tail on next open — but it is
the way to compact the listing indexes and to rebuild them after restoring files by hand.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from aixgo.errors import (
    BackendError,
    BackendUnavailable,
    ConfigError,
    CorruptedData,
    SessionNotFound,
)
from aixgo.identifiers import is_id

from aixgo_backend_file._diskfull import failed, logger
from aixgo_backend_file._index import keys_for
from aixgo_backend_file._paths import FORMAT, Layout, check_private_dir, open_file
from aixgo_backend_file._recovery import open_log, scan
from aixgo_backend_file._state import LogState, close_files, write_all
from aixgo_backend_file._store import Store
from aixgo_backend_file.backend import parse_url

__all__ = ["Report", "repair"]


@dataclass
class Report:
    """What :func:`repair` found and did (with ``check``: found, and would do)."""

    sessions: int = 0
    removed: list[str] = field(default_factory=list)  # deleted or never-created sessions
    damaged: list[str] = field(default_factory=list)  # CorruptedData messages
    indexes: int = 0
    check: bool = False
    stale: list[str] = field(default_factory=list)  # --check: files repair would fix

    def __str__(self) -> str:
        if self.check:
            lines = [f"{self.sessions} sessions checked; nothing was changed"]
            lines += [f"would remove {sid}" for sid in self.removed]
        else:
            lines = [f"{self.sessions} sessions, {self.indexes} listing indexes rebuilt"]
            lines += [f"removed {sid}" for sid in self.removed]
        lines += [f"NEEDS REPAIR {msg}" for msg in self.stale]
        lines += [f"DAMAGED {msg}" for msg in self.damaged]
        return "\n".join(lines)

    @property
    def clean(self) -> bool:
        """Nothing damaged, and (checking) nothing that repair would change."""
        return not (self.damaged or (self.check and (self.removed or self.stale)))


def repair(url: str, *, check: bool = False) -> Report:
    """Rebuild the sidecars and listing indexes of the store at ``url`` (see module docs);
    with ``check``, only say what that would change, writing nothing."""
    root, options = parse_url(url)
    try:
        if check:
            return _check(root)
        report = _repair(root, fsync=options.get("durability") == "fsync")
    except OSError as exc:
        raise failed(root, exc, "repair" if not check else "repair --check", wrote=False) from exc
    logger.info("repaired file://%s: %s", root, str(report).replace("\n", "; "))
    return report


def _store_layout(root: Path) -> Layout:
    """The layout of the store at ``root``, read-only, or an error: repair mends a store, it
    never makes one where a mistyped path points."""
    layout = Layout(root)
    check_private_dir(root, follow=True, what="session store")
    try:
        fd = open_file(layout.format, os.O_RDONLY, "store marker")
    except FileNotFoundError:
        raise BackendUnavailable(f"{root} is not a session store (it has no FORMAT)") from None
    try:
        head = os.pread(fd, 64, 0)
    finally:
        os.close(fd)
    if head not in (FORMAT, b""):
        raise ConfigError(f"{root} holds a store of another format ({head[:40]!r})")
    return layout


def _check(root: Path) -> Report:
    layout = _store_layout(root)
    report = Report(check=True)
    shards = sorted(layout.sessions.iterdir()) if layout.sessions.is_dir() else []
    for shard in shards:
        for path in sorted(shard.glob("*.log")):
            sid = path.stem
            if not is_id(sid):
                continue
            try:
                log = scan(layout, sid)
            except SessionNotFound:
                report.removed.append(sid)
                continue
            except CorruptedData as exc:
                report.damaged.append(str(exc))
                continue
            report.sessions += 1
            report.stale += log.problems
            close_files(log)
    return report


def _repair(root: Path, *, fsync: bool) -> Report:
    _store_layout(root)
    store = Store(root, fsync=fsync)
    store.open()
    report = Report()
    rows: dict[str, list[tuple[int, str]]] = defaultdict(list)
    try:
        for shard in sorted(store.layout.sessions.iterdir()):
            for path in sorted(shard.glob("*.log")):
                sid = path.stem
                if not is_id(sid):
                    continue
                try:
                    log = _rescan(store, sid)
                except SessionNotFound:
                    report.removed.append(sid)
                    _remove(store, sid)
                    continue
                except CorruptedData as exc:
                    report.damaged.append(str(exc))
                    continue
                report.sessions += 1
                for key in keys_for(log.agent, log.user_id):
                    rows[key].append((log.updated, sid))
                detached = log.detached
                close_files(log)
                if detached:
                    raise BackendError(
                        f"file://{root}: cannot write the rebuilt sidecars of session {sid} "
                        "(the disk refused them: see the warning logged); free space and run "
                        "repair again"
                    )
        report.indexes = _write_indexes(store, rows)
    finally:
        store.close()
    return report


def _rescan(store: Store, sid: str) -> LogState:
    """Open ``sid`` with its sidecars discarded, so everything is re-derived from the log."""
    layout = store.layout
    fd = open_file(layout.session_file(sid, "log"), os.O_RDWR | os.O_APPEND, "session log")
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        for ext in ("idx", "meta"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(layout.session_file(sid, ext))
    finally:
        os.close(fd)
    # Listing indexes are rewritten afterwards, so nothing is noted while rescanning.
    return open_log(layout, sid, fsync=store.fsync, touch=lambda log, ts: None)


def _remove(store: Store, sid: str) -> None:
    for ext in ("idx", "meta", "log"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(store.layout.session_file(sid, ext))


def _write_indexes(store: Store, rows: dict[str, list[tuple[int, str]]]) -> int:
    indexes = store.layout.indexes
    for key, entries in rows.items():
        entries.sort()
        tmp = indexes / f"{key}.ix.tmp"
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        fd = open_file(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, "listing index")
        try:
            write_all(fd, b"".join(b"%016x %b\n" % (ts, sid.encode()) for ts, sid in entries))
            os.fsync(fd)
        except OSError as exc:
            os.unlink(tmp)  # the old index stays in place
            raise failed(store.root, exc, f"rewriting the listing index {key}") from exc
        finally:
            os.close(fd)
        os.replace(tmp, store.layout.index_file(key))
    for old in indexes.glob("*.ix"):  # keys with no session left
        if old.stem not in rows:
            old.unlink()
    return len(rows)
