"""The Lua scripts that make every write one atomic server-side step.

Each lives in ``lua/<name>.lua``; the per-session ones are prefixed with ``lua/common.lua``
(key names, the lineage walk, TTL renewal, the standalone index update), and those and
``index.lua`` (Redis Cluster's second step) with ``lua/index_add.lua``. They are loaded with
``EVALSHA`` and re-sent once after a ``NOSCRIPT`` reply (a restarted or new server).

>>> "local function owner" in source("append")
True
"""

from __future__ import annotations

from functools import cache
from importlib.resources import files
from typing import Any

from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

from aixgo_backend_redis.wire import Arg, Wire, pack_args

__all__ = ["NAMES", "Scripts", "source"]

#: Scripts that act on one session's keys (and so start with common.lua).
SESSION_SCRIPTS = ("create", "append", "tail", "checkpoint", "checkpoints", "restore", "delete")
NAMES = (*SESSION_SCRIPTS, "list")
#: Packed command heads kept (see Scripts.run): a few hundred bytes each.
MAX_HEADS = 4096


def _read(name: str) -> str:
    return (files(__package__) / "lua" / f"{name}.lua").read_text(encoding="utf-8")


@cache
def source(name: str) -> str:
    """The full Lua source of script ``name``, with the shared functions it uses."""
    parts = [_read(name)]
    if name in SESSION_SCRIPTS:
        parts.insert(0, _read("common"))
    if name in (*SESSION_SCRIPTS, "index"):
        parts.insert(0, _read("index_add"))
    return "\n".join(parts)


class Scripts:
    """Every script, bound to one client (standalone or cluster). With a :class:`Wire` (a
    standalone server) scripts run on it, past redis-py's per-command overhead."""

    def __init__(self, client: Any, wire: Wire | None = None) -> None:
        # AsyncScript accepts both client kinds; its annotations predate the cluster one.
        self._client = client
        self._wire = wire
        # (script, first key) -> (parts, the packed head of its EVALSHA); see run().
        self._heads: dict[tuple[str, str], tuple[int, bytes]] = {}
        self._by_name = {name: AsyncScript(client, source(name)) for name in NAMES}

    async def load(self) -> None:
        """Send every script to the server(s) now (``SCRIPT LOAD`` reaches every primary of a
        cluster), so no operation pays for a ``NOSCRIPT`` round trip later."""
        for script in self._by_name.values():
            script.sha = await self._client.script_load(script.script)

    async def run(
        self, name: str, keys: list[str], args: list[Arg], *, fixed: int = 0
    ) -> list[Any]:
        """Run script ``name``; its reply is always a list (RESP array). A server that lost
        its script cache (restarted, failed over) gets the script again, once.

        The first ``fixed`` of ``args`` are the same on every call with these ``keys`` (a
        session's id and the backend's options): on the wire they are packed once, with the
        keys, and kept for the next call (~2 us of packing saved per call)."""
        script = self._by_name[name]
        wire = self._wire
        if wire is not None:
            heads = self._heads
            head = heads.get((name, keys[0]))
            if head is None:
                if len(heads) >= MAX_HEADS:
                    heads.clear()
                head = heads[name, keys[0]] = (
                    3 + len(keys) + fixed,
                    pack_args(["EVALSHA", script.sha, len(keys), *keys, *args[:fixed]]),
                )
            packed = b"*%d\r\n%b%b" % (
                head[0] + len(args) - fixed,
                head[1],
                pack_args(args[fixed:]),
            )
            try:
                reply = await wire.call(packed)
            except NoScriptError:
                await self._client.script_load(script.script)  # same source, same sha
                reply = await wire.call(packed)
        else:
            try:
                reply = await self._client.evalsha(script.sha, len(keys), *keys, *args)
            except NoScriptError:
                script.sha = await self._client.script_load(script.script)
                reply = await self._client.evalsha(script.sha, len(keys), *keys, *args)
        assert isinstance(reply, list)
        return reply
