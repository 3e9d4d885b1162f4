"""Where things live in a store, and opening them safely.

Layout under the store directory (all directories 0700, all files 0600)::

    FORMAT                       "aixgo-file-store 1": what this directory is
    s/<id[:2]>/<id>.log          a session's records, one JSON line each (the source of truth)
    s/<id[:2]>/<id>.idx          32 bytes per message: offset, length, branch, id hash, time
    s/<id[:2]>/<id>.meta         copies of the checkpoint/restore/delete records
    i/<key>.ix                   listing indexes: (time, session id) lines, appended

No user-supplied string becomes a path: session ids are checked against the id alphabet
(``[0-9a-f]{32}``) before use, and agent names and user ids appear only as BLAKE2b hashes.
Every open passes ``O_NOFOLLOW``, so a symlink planted inside the store is refused rather than
followed; the store directory itself must belong to this user and not be group/world-writable.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import stat
from pathlib import Path

from aixgo.errors import BackendUnavailable, ConfigError, CorruptedData, SessionNotFound
from aixgo.identifiers import is_id

DIR_MODE = 0o700
FILE_MODE = 0o600
FORMAT = b"aixgo-file-store 1\n"
_OPEN_FLAGS = os.O_NOFOLLOW | os.O_CLOEXEC


def key_hash(*parts: str | None) -> str:
    """A fixed-length, path-safe name for a listing key (agent, user, or both)."""
    raw = json.dumps(parts, ensure_ascii=False).encode()
    return hashlib.blake2b(raw, digest_size=16, person=b"aixgo-index").hexdigest()


def open_file(path: str | Path, flags: int, what: str = "store file") -> int:
    """``os.open`` with ``O_NOFOLLOW``; a symlink is :class:`CorruptedData`, never followed.
    A created file is 0600 whatever the umask (the umask can only clear bits, so fix it up)."""
    try:
        fd = os.open(path, flags | _OPEN_FLAGS, FILE_MODE)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise CorruptedData(
                f"{what} {path} is a symbolic link; aixgo never follows links inside a store "
                "(remove it, then run `aixgo file repair`)"
            ) from None
        raise
    if flags & os.O_CREAT:
        os.fchmod(fd, FILE_MODE)
    return fd


def make_private_dir(path: Path | str) -> bool:
    """Create ``path`` as a 0700 directory if it is missing; True if it was created."""
    try:
        os.mkdir(path, DIR_MODE)
    except FileExistsError:
        return False
    os.chmod(path, DIR_MODE, follow_symlinks=False)
    return True


def check_private_dir(path: Path | str, *, follow: bool, what: str) -> None:
    """Refuse a directory that is a planted link, someone else's, or writable by others."""
    try:
        st = os.stat(path, follow_symlinks=follow)
    except FileNotFoundError:
        raise BackendUnavailable(f"{what} {path} does not exist") from None
    if stat.S_ISLNK(st.st_mode):
        raise CorruptedData(f"{what} {path} is a symbolic link; aixgo never follows links here")
    if not stat.S_ISDIR(st.st_mode):
        raise ConfigError(f"{what} {path} is not a directory")
    if st.st_uid != os.geteuid():
        raise ConfigError(
            f"{what} {path} belongs to uid {st.st_uid}, not to this user (uid {os.geteuid()}); "
            "a session store must be private: use a directory you own"
        )
    if st.st_mode & 0o022:
        raise ConfigError(
            f"{what} {path} is writable by group or others (mode {stat.S_IMODE(st.st_mode):o}); "
            f"run `chmod 700 {path}` or choose another directory"
        )


class Layout:
    """The paths of one store."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.sessions = root / "s"
        self._sessions_str = str(self.sessions)
        self.indexes = root / "i"
        self.format = root / "FORMAT"
        self._shards: set[str] = set()

    def shard(self, session_id: str) -> Path:
        """The session's shard directory; refuses anything that is not an aixgo id."""
        if not is_id(session_id):
            # The manager validates ids already; this keeps a stray string from ever
            # reaching the file system through a direct backend call.
            raise SessionNotFound(str(session_id)[:64])
        return self.sessions / session_id[:2]

    def log_path(self, session_id: str) -> str:
        """The session log's path as a string: the listing hot path stats many of them, and
        pathlib would cost more than the ``lstat`` itself. Only for ids checked by ``is_id``."""
        return f"{self._sessions_str}/{session_id[:2]}/{session_id}.log"

    def session_file(self, session_id: str, ext: str) -> Path:
        return self.shard(session_id) / f"{session_id}.{ext}"

    def session_base(self, session_id: str) -> str:
        """The session's files' common path, ``.../s/<id[:2]>/<id>.``, as a string (cheaper
        than pathlib on the create path); refuses anything that is not an aixgo id."""
        if not is_id(session_id):
            raise SessionNotFound(str(session_id)[:64])
        return f"{self._sessions_str}/{session_id[:2]}/{session_id}."

    def ensure_shard(self, session_id: str, *, create: bool = True) -> bool:
        """Make sure the shard directory exists and is a private directory, not a planted
        link (checked once per process); True if it was created now."""
        name = session_id[:2]
        if name in self._shards and is_id(session_id):
            return False
        if not is_id(session_id):
            raise SessionNotFound(str(session_id)[:64])
        path = f"{self._sessions_str}/{name}"  # a string: a cold listing checks many shards
        created = make_private_dir(path) if create else False
        if not created:
            try:
                check_private_dir(path, follow=False, what="store directory")
            except BackendUnavailable:
                raise SessionNotFound(session_id) from None
        self._shards.add(name)
        return created

    def index_file(self, key: str) -> Path:
        return self.indexes / f"{key}.ix"
