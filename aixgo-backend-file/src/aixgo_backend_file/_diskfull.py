"""A full disk, and any other write the file system refuses.

Writes are refused whole: the store takes back whatever part of a failed operation reached
its files and raises :class:`~aixgo.errors.BackendError` naming the store and the errno
(:func:`failed`), so nothing half-made stays behind and a retry starts clean. Reads need no
free space: a session's sidecars are derived from its log, so when one cannot be brought up
to date on disk it is kept in memory instead (:func:`memory_copy`) and the session is read
from that.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import tempfile
from pathlib import Path

from aixgo.errors import BackendError

#: The package's logger: sidecars kept in memory, and indexes that need repair.
logger = logging.getLogger("aixgo.file")

#: Errors that mean "no room": the disk, or this user's quota, is full.
FULL = frozenset({errno.ENOSPC, errno.EDQUOT})


def failed(root: Path | str, exc: OSError, what: str, *, wrote: bool = True) -> BackendError:
    """The error for ``what`` (e.g. "appending to session X") failing with ``exc``.

    ``wrote``: the operation was a write, whose traces have been taken back.
    """
    code = errno.errorcode.get(exc.errno or 0, "unknown error")
    reason = exc.strerror or str(exc)
    msg = f"file://{root}: {what} failed: {reason} ({code})"
    if wrote:
        msg += "; nothing was written"
    if exc.errno in FULL:
        msg += ". The disk is full: writes are refused until space is freed, reads keep working"
    return BackendError(msg)


def _anonymous_file() -> int:
    if hasattr(os, "memfd_create"):
        return os.memfd_create("aixgo-sidecar", os.MFD_CLOEXEC)
    fd, name = tempfile.mkstemp(prefix="aixgo-sidecar-")  # pragma: no cover - not Linux
    os.unlink(name)  # pragma: no cover
    return fd  # pragma: no cover


def memory_copy(fd: int | None, size: int) -> int:
    """A new in-memory file, opened for appending, holding the first ``size`` bytes of ``fd``
    (none if ``fd`` is None). Memory is not the disk, so writing to it cannot run out of
    space; it goes when its descriptor is closed."""
    out = _anonymous_file()
    try:
        # O_APPEND, like the sidecar files: writes land at the end even after a truncation.
        fcntl.fcntl(out, fcntl.F_SETFL, fcntl.fcntl(out, fcntl.F_GETFL) | os.O_APPEND)
        done = 0
        while fd is not None and done < size:
            chunk = os.pread(fd, min(size - done, 4 << 20), done)
            if not chunk:
                break
            os.write(out, chunk)
            done += len(chunk)
    except BaseException:
        os.close(out)
        raise
    return out
