"""``file://``: the embedded session store, and how its URL is read.

``file:///abs/path`` names the store directory; ``file://~/x`` and ``file://$AIXGO_HOME/x``
expand. Options go in the query string and are checked strictly:

* ``durability=flush`` (default): every acknowledged write is in the operating system's
  cache, so it survives the process crashing or being killed;
* ``durability=fsync``: every acknowledged write is also on disk (``fdatasync``), so it
  survives power loss, at the cost of a disk flush per write, shared by the writes in flight
  at once (:mod:`aixgo_backend_file._commit`).
"""

from __future__ import annotations

import asyncio
import os
import types
from collections.abc import Generator, Sequence
from pathlib import Path
from urllib.parse import unquote

from aixgo.errors import ConfigError
from aixgo.message import Message
from aixgo.session.backend import Capability
from aixgo.session.kit import Option, Recent, choice, parse_options
from aixgo.session.models import Checkpoint, Page, SessionInfo

from aixgo_backend_file._lease import Leases
from aixgo_backend_file._pair import get_or_create
from aixgo_backend_file._store import Store

__all__ = ["DURABILITY", "OPTIONS", "FileBackend", "parse_url"]

DURABILITY = ("flush", "fsync")
#: The URL options of ``file://`` (see the module docs).
OPTIONS = (
    Option(
        "durability",
        choice(*DURABILITY),
        "flush",
        "flush: writes survive the process; fsync: they also survive power loss",
    ),
)


def parse_url(url: str) -> tuple[Path, dict[str, str]]:
    """The store directory and the options a ``file://`` URL gives; :class:`ConfigError`
    naming what is wrong otherwise.

    >>> parse_url("file:///var/lib/app/sessions?durability=fsync")
    (PosixPath('/var/lib/app/sessions'), {'durability': 'fsync'})
    """
    scheme, sep, rest = url.partition("://")
    if scheme.lower() != "file" or not sep:
        raise ConfigError(f"not a file:// URL: {url!r}")
    options = parse_options(url, OPTIONS).values
    return _directory(url, rest.partition("#")[0].partition("?")[0]), options


def _directory(url: str, raw_path: str) -> Path:
    path = unquote(raw_path)
    if path.startswith("localhost/"):
        path = path[len("localhost") :]
    if path.startswith("~"):
        path = os.path.expanduser(path)
    if path.startswith("$"):
        path = os.path.expandvars(path)
        if path.startswith("$"):
            raise ConfigError(
                f"{url!r}: the variable {path.split('/')[0]} is not set; set it or write the "
                "path out"
            )
    if not path.startswith("/"):
        raise ConfigError(
            f"{url!r} does not name an absolute directory; write file:///absolute/path, "
            "file://~/path or file://$AIXGO_HOME/path"
        )
    if "\x00" in path:
        raise ConfigError(f"{url!r}: the path contains a NUL character")
    return Path(os.path.normpath(path))


@types.coroutine
def _turn() -> Generator[None, None, None]:
    """``asyncio.sleep(0)`` without its coroutine: one turn of the event loop (a bare
    ``yield`` is how asyncio's own ``sleep(0)`` gives it), for the hottest call."""
    yield


class FileBackend:
    """Sessions as append-only, self-checking JSON-lines files in a private directory.

    The store's work runs inline and never waits, so every operation first gives the event
    loop a turn (``await asyncio.sleep(0)``): without it, a loop of calls would starve every
    other task of the process, timers included. First, not last: a task cancelled in that
    turn has changed nothing.

    >>> import asyncio, tempfile
    >>> from aixgo.session import SessionManager
    >>> async def demo(url: str) -> int:
    ...     async with SessionManager(url) as mgr:
    ...         s = await mgr.create("assistant", user_id="u1")
    ...         await s.append_message(Message.user("hi"))
    ...     async with SessionManager(url) as mgr:          # reopened: still there
    ...         return len(await (await mgr.get(s.id)).get_messages())
    >>> with tempfile.TemporaryDirectory() as d:
    ...     asyncio.run(demo(f"file://{d}/sessions"))
    1
    """

    capabilities: frozenset[Capability] = frozenset(
        {Capability.PERSISTENT, Capability.MULTI_PROCESS}
    )

    def __init__(self, url: str = "file://~/.aixgo/sessions") -> None:
        root, options = parse_url(url)
        self.url = url
        self.durability = options.get("durability", OPTIONS[0].default)
        self.store = Store(root, fsync=self.durability == "fsync")
        self.leases = Leases(self.store)

    def __repr__(self) -> str:
        return f"FileBackend({self.url!r})"

    async def open(self) -> None:
        self.store.open()

    async def close(self) -> None:
        self.leases.close()
        self.store.close()

    async def create_session(self, info: SessionInfo) -> None:
        await asyncio.sleep(0)
        self.store.create(info)

    async def get_session(self, session_id: str) -> SessionInfo:
        await asyncio.sleep(0)
        return self.store.info(session_id)

    async def list_sessions(
        self,
        *,
        agent: str | None = None,
        user_id: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page[SessionInfo]:
        await asyncio.sleep(0)
        return self.store.list_page(agent, user_id, limit, cursor)

    async def delete_session(self, session_id: str) -> None:
        await asyncio.sleep(0)
        self.store.delete(session_id)
        self.leases.drop(session_id)

    # SessionPerUser and TurnLeases: see aixgo_backend_file._pair and aixgo_backend_file._lease.

    async def get_or_create_session(self, info: SessionInfo) -> tuple[SessionInfo, bool]:
        return get_or_create(self.store, info)

    async def acquire_turn(self, session_id: str, owner: str, ttl: float) -> int | None:
        return self.leases.acquire(session_id, owner, ttl)

    async def renew_turn(self, session_id: str, owner: str, ttl: float) -> bool:
        return self.leases.renew(session_id, owner, ttl)

    async def release_turn(self, session_id: str, owner: str) -> None:
        self.leases.release(session_id, owner)

    async def append_messages(
        self, session_id: str, messages: Sequence[Message], *, expected_seq: int | None = None
    ) -> list[Message]:
        await _turn()
        out, pending = self.store.append(session_id, messages, expected_seq)
        if pending is not None:
            await self.store.commit.wait(*pending)
        return out

    async def get_messages(self, session_id: str, *, last: int | None = None) -> list[Message]:
        await asyncio.sleep(0)
        return self.store.messages(session_id, last)

    async def get_messages_through(
        self, session_id: str, recent: Recent, *, last: int | None = None
    ) -> list[Message]:
        """:class:`~aixgo.session.ReadThrough`: the tail, reusing and keeping records in
        ``recent`` rather than this store's own."""
        await asyncio.sleep(0)
        return self.store.messages(session_id, last, recent)

    async def create_checkpoint(
        self, session_id: str, checkpoint_id: str, *, label: str | None = None
    ) -> Checkpoint:
        await asyncio.sleep(0)
        cp, pending = self.store.checkpoint(session_id, checkpoint_id, label)
        if pending is not None:
            await self.store.commit.wait(*pending)
        return cp

    async def list_checkpoints(self, session_id: str) -> list[Checkpoint]:
        await asyncio.sleep(0)
        return self.store.checkpoints(session_id)

    async def restore_checkpoint(
        self, session_id: str, checkpoint_id: str, *, undo_id: str
    ) -> Checkpoint:
        await asyncio.sleep(0)
        undo, pending = self.store.restore(session_id, checkpoint_id, undo_id)
        if pending is not None:
            await self.store.commit.wait(*pending)
        return undo
