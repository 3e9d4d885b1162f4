"""The Lua scripts that make every write one atomic server-side step.

Each lives in ``lua/<name>.lua``. The per-session ones share ``lua/common.lua`` (key names,
the lineage walk, TTL renewal, the standalone index update), and those, ``index.lua`` (Redis
Cluster's second step) and ``pair.lua`` (Redis Cluster's get-or-create claim) share
``lua/index_add.lua``; ``get_or_create.lua`` calls ``create.lua`` as a function. They reach
the server in one of two forms:

* **a function library** (standalone servers, :func:`library`): the shared code once at the
  top, and each script a function of it, called with ``FCALL``. The shared functions are
  made once, when the library is loaded, instead of on every call (an append costs less
  server time than through ``EVALSHA``: docs/performance.md). The library's name
  carries a digest of its text, so two aixgo versions on one server never replace each
  other's; a backend that opens deletes the libraries of other versions (a process still
  running one loads its own again on its next call, as after a server restart). A server
  that refuses functions (an ACL without ``FUNCTION``, a Redis-compatible server without
  them) gets the scripts below instead, still on the wire.
* **a script per name** (Redis Cluster, :func:`source`): the shared code before each
  script, run with ``EVALSHA`` (redis-py finds an ``FCALL``'s keys with an extra
  ``COMMAND GETKEYS`` round trip in a cluster, and an ``EVALSHA``'s without).

Either way a server that lost them (restarted, failed over, flushed) gets them again, once.

>>> "local function owner" in source("append")
True
>>> name, text = library()
>>> text.startswith(f"#!lua name={name}\\n") and f"'{name}_append'" in text
True
"""

from __future__ import annotations

import contextlib
import hashlib
import re
from functools import cache
from importlib.resources import files
from typing import Any

from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError, ResponseError

from aixgo_backend_redis._wire import Arg, Wire, pack_args

#: Scripts that act on one session's keys (and so start with common.lua).
SESSION_SCRIPTS = (
    "create", "append", "tail", "checkpoint", "checkpoints", "restore", "delete",
    "turn", "get_or_create",
)  # fmt: skip
# get_or_create calls create.lua as the function create_ (defined before it in the library).
NAMES = (*SESSION_SCRIPTS, "list", "pair")
#: Packed command heads kept (see Scripts.run): a few hundred bytes each.
MAX_HEADS = 4096
#: Every aixgo function library is named this and 12 hex digits of its digest.
LIBRARY_PREFIX = "aixgo_session_"
_OURS = re.compile(re.escape(LIBRARY_PREFIX) + "[0-9a-f]{12}")
# Flags of the functions (the scripts sent with EVAL behave the same way without them):
# reads run on a server at its memory limit, and so do delete and list, which only remove.
_FLAGS = {
    "tail": "'no-writes'",
    "checkpoints": "'no-writes'",
    "delete": "'allow-oom'",
    "list": "'allow-oom'",
}
_MISSING = "Function not found"
_RELOADS = 3  # another version may delete ours between our load and our call (see above)


def _read(name: str) -> str:
    return (files(__package__) / "lua" / f"{name}.lua").read_text(encoding="utf-8")


@cache
def source(name: str) -> str:
    """The full Lua source of script ``name`` for ``EVAL``, with the shared functions it
    uses."""
    if name == "get_or_create":
        create = f"local function create_(KEYS, ARGV)\nbind(KEYS, ARGV)\n{_read('create')}\nend"
        parts = [_read("index_add"), _read("common"), create, "bind(KEYS, ARGV)", _read(name)]
        return "\n".join(parts)
    if name in SESSION_SCRIPTS:
        return "\n".join([_read("index_add"), _read("common"), "bind(KEYS, ARGV)", _read(name)])
    if name in ("index", "pair"):
        return "\n".join([_read("index_add"), _read(name)])
    return _read(name)


@cache
def library() -> tuple[str, str]:
    """``(name, text)`` of the function library holding every script of :data:`NAMES`:
    script ``x`` is the function ``<name>_x``, called with the same keys and arguments."""
    parts = [_read("index_add"), _read("common")]
    for name in NAMES:
        bind = "bind(KEYS, ARGV)\n" if name in SESSION_SCRIPTS else ""
        parts.append(f"local function {name}_(KEYS, ARGV)\n{bind}{_read(name)}\nend")
        parts.append(
            f"redis.register_function{{function_name='@@_{name}', callback={name}_, "
            f"flags={{{_FLAGS.get(name, '')}}}}}"
        )
    body = "\n".join(parts)
    name = LIBRARY_PREFIX + hashlib.sha256(body.encode()).hexdigest()[:12]
    return name, f"#!lua name={name}\n" + body.replace("'@@_", f"'{name}_")


class Scripts:
    """Every script, bound to one client (standalone or cluster). With a :class:`Wire` (a
    standalone server) they run on it, past redis-py's per-command overhead, as the
    functions of :func:`library` (or as scripts where the server refuses functions); else
    as scripts through the client."""

    def __init__(self, client: Any, wire: Wire | None = None) -> None:
        # AsyncScript accepts both client kinds; its annotations predate the cluster one.
        self._client = client
        self._wire = wire
        self._library, self._library_text = library()
        self._functions = True  # until the server refuses them (see load())
        # (script, first key) -> (parts, the packed head of its call); see run().
        self._heads: dict[tuple[str, str], tuple[int, bytes]] = {}
        self._by_name = {name: AsyncScript(client, source(name)) for name in NAMES}

    async def load(self) -> None:
        """Send every script to the server(s) now (``SCRIPT LOAD`` reaches every primary of a
        cluster), so no operation pays for a reload later. On a standalone server: the
        library, and delete the libraries of other aixgo versions; a server that refuses
        functions (an ACL without ``FUNCTION``, a Redis-compatible server without them) gets
        the scripts instead, run with ``EVALSHA`` on the wire."""
        if self._wire is not None and self._functions:
            try:
                await self._load_library()
            except ResponseError:  # NOPERM, unknown command: not for us to change
                self._functions = False
                self._heads.clear()
            else:
                await self._drop_other_versions()
                return
        for script in self._by_name.values():
            script.sha = await self._client.script_load(script.script)

    async def _load_library(self) -> None:
        try:
            await self._client.function_load(self._library_text)
        except ResponseError as exc:
            if "already exists" not in str(exc):
                raise

    async def _drop_other_versions(self) -> None:
        try:
            found = await self._client.function_list(library=LIBRARY_PREFIX + "*")
        except ResponseError:
            return  # may load but not list: leave them
        for entry in found:
            fields = dict(zip(entry[::2], entry[1::2], strict=True))
            name = fields.get(b"library_name", b"").decode()
            if _OURS.fullmatch(name) and name != self._library:
                # Another process may have deleted it first, or we may not delete.
                with contextlib.suppress(ResponseError):
                    await self._client.function_delete(name)

    async def run(
        self, name: str, keys: list[str], args: list[Arg], *, fixed: int = 0
    ) -> list[Any]:
        """Run script ``name``; its reply is always a list (RESP array). A server that lost
        its scripts (restarted, failed over) gets them again.

        The first ``fixed`` of ``args`` are the same on every call with these ``keys`` (a
        session's id and the backend's options): on the wire they are packed once, with the
        keys, and kept for the next call, so a call packs only what changes."""
        wire = self._wire
        script = self._by_name[name]
        if wire is not None:
            heads = self._heads
            head = heads.get((name, keys[0]))
            if head is None:
                if len(heads) >= MAX_HEADS:
                    heads.clear()
                verb = (
                    ["FCALL", f"{self._library}_{name}"]
                    if self._functions
                    else ["EVALSHA", script.sha]
                )
                head = heads[name, keys[0]] = (
                    3 + len(keys) + fixed,
                    pack_args([*verb, len(keys), *keys, *args[:fixed]]),
                )
            packed = b"*%d\r\n%b%b" % (
                head[0] + len(args) - fixed,
                head[1],
                pack_args(args[fixed:]),
            )
            for attempt in range(_RELOADS + 1):
                try:
                    reply = await wire.call(packed)
                    break
                except NoScriptError:
                    if attempt == _RELOADS:
                        raise
                    await self._client.script_load(script.script)  # same source, same sha
                except ResponseError as exc:
                    if not str(exc).startswith(_MISSING) or attempt == _RELOADS:
                        raise
                    await self._load_library()  # same text, same name
        else:
            try:
                reply = await self._client.evalsha(script.sha, len(keys), *keys, *args)
            except NoScriptError:
                script.sha = await self._client.script_load(script.script)
                reply = await self._client.evalsha(script.sha, len(keys), *keys, *args)
        assert isinstance(reply, list)
        return reply
