"""``redis://`` and friends: sessions shared by many processes and machines.

Every operation is one round trip to the session's server. Writes are one Lua script that
reads and writes only that session's keys (see :mod:`aixgo_backend_redis._keys`) and, on a
standalone server, its listing indexes too, so each is atomic as a whole. A tail read is one
``LRANGE`` (see :meth:`RedisBackend._tail`); a listing page is one script.

Redis Cluster: a script may only touch one slot, and the indexes live in other slots. There,
the script changes the session atomically and returns the session's index keys and new
``updated_at``, and a second pipelined step (in parallel across nodes) moves the session in
its indexes with ``ZADD GT`` (a score only ever grows, so a late or repeated step is
harmless). If that second step is lost, the session is correct but its listing position is
stale until its next write or a retry of the same call (retries are idempotent and redo it).
Delete removes the session first and its index entries second; an index entry whose session
is gone (a lost second step, a TTL expiry) is skipped by listing, which keeps reading so the
page is full, and removed on the way. Listing in a cluster takes two round trips: the index
range, then the summaries (one pipeline, in parallel across nodes).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
from collections.abc import Sequence
from typing import Any

from aixgo.errors import (
    BackendClosed,
    BackendError,
    CheckpointNotFound,
    ConflictError,
    InvalidArgument,
    SessionNotFound,
)
from aixgo.message import Message
from aixgo.session.backend import Capability
from aixgo.session.codec import (
    check_batch,
    check_repeat,
    encode_message,
    stored_copy,
    with_seq,
)
from aixgo.session.cursor import decode_cursor, encode_cursor
from aixgo.session.kit import Recent, stale_seq
from aixgo.session.models import Checkpoint, Page, SessionInfo
from redis.asyncio.cluster import RedisCluster

from aixgo_backend_redis import _replies as replies
from aixgo_backend_redis import _rows as rows
from aixgo_backend_redis._connection import Client, make_client
from aixgo_backend_redis._keys import Keys
from aixgo_backend_redis._retry import Retrier
from aixgo_backend_redis._scripts import Scripts, source
from aixgo_backend_redis._wire import Arg, Wire, pack
from aixgo_backend_redis.options import parse_url

__all__ = ["MIN_REDIS_VERSION", "RedisBackend"]

#: ``ZADD GT``, ``ZRANGE ... BYSCORE REV`` and ``PEXPIRE ... GT`` need Redis 7.0.
MIN_REDIS_VERSION = (7, 0)


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class _Restored(Exception):
    """A plain ``LRANGE`` tail crossed a restore marker: read it with ``tail.lua``."""


def _positions(data: Sequence[bytes]) -> Sequence[int]:
    """The seqs of the records of a plain ``LRANGE`` tail, as the last one's stored
    ``...,"seq":N}`` says: only which kept records to compare them with, so a record that
    does not end so (damaged, say) costs a missed reuse and nothing else."""
    last = data[-1]
    try:
        top = int(last[last.rfind(b":", -24) + 1 : -1])
    except ValueError:
        top = 0
    return range(top - len(data) + 1, top + 1)


def _lease_ms(ttl: float) -> int:
    """A lease's ttl in whole milliseconds (what Redis counts in), at least one."""
    if not (isinstance(ttl, int | float) and math.isfinite(ttl) and ttl > 0):
        raise InvalidArgument(f"a turn lease's ttl must be positive seconds, not {ttl!r}")
    return max(1, round(ttl * 1000))


class RedisBackend:
    """A session store on Redis or Redis Cluster. Build it with ``open_backend(url)``.

    >>> b = RedisBackend("redis://:pw@localhost:6379/0?prefix=demo:&ttl=86400")
    >>> b.options.ttl, b.options.prefix, "pw" in repr(b)
    (86400, 'demo:', False)
    """

    capabilities: frozenset[Capability] = frozenset(
        {Capability.PERSISTENT, Capability.MULTI_PROCESS}
    )

    def __init__(self, url: str) -> None:
        self.options = parse_url(url)
        self.keys = Keys(self.options.prefix)
        self._ttl_ms = str(self.options.ttl * 1000) if self.options.ttl else "0"
        self._inline = "0" if self.options.cluster else "1"
        self._retry = Retrier(
            self.options.redactor,
            window=self.options.retry_window,
            timeout=self.options.timeout,
            slots=self.options.pool_size,
        )
        self._client: Client | None = None
        self._scripts: Scripts | None = None
        self._wire: Wire | None = None  # standalone servers only (see wire.py)
        self._closed = False
        self._recent = Recent()  # the records of each session's latest tail read, decoded

    def __repr__(self) -> str:
        return f"RedisBackend({self.options.shown!r})"

    # -- connection -------------------------------------------------------------------------

    def _connection(self) -> tuple[Client, Scripts]:
        if self._closed:
            raise BackendClosed(f"backend {self.options.shown}")
        if self._client is None or self._scripts is None:
            self._client = client = make_client(self.options)
            self._wire = None if isinstance(client, RedisCluster) else Wire(client.connection_pool)
            self._scripts = Scripts(client, self._wire)
        return self._client, self._scripts

    async def open(self) -> None:
        """Connect, check the server and load the scripts, once: an unreachable server fails
        here at once (:class:`BackendUnavailable`), rather than after the retry window."""
        client, scripts = self._connection()
        try:
            if isinstance(client, RedisCluster):
                await client.initialize()
                info = await client.info("server", target_nodes=RedisCluster.RANDOM)
            else:
                info = await client.info("server")
            version = str(info.get("redis_version", "0"))
            # Loaded now, so the first call of each operation is one round trip too.
            await scripts.load()
        except Exception as exc:
            await self._drop_client()  # a failed open leaves no connection behind
            raise self._retry.error("open", exc) from exc
        got = tuple(int(p) for p in version.split(".")[:2] if p.isdigit())
        if got < MIN_REDIS_VERSION:
            await self._drop_client()
            raise BackendError(
                f"Redis at {self.options.shown} is version {version}; aixgo needs "
                f"{'.'.join(map(str, MIN_REDIS_VERSION))} or later"
            )

    async def close(self) -> None:
        """Close every connection; idempotent."""
        self._closed = True
        self._recent.clear()
        await self._drop_client()

    async def _drop_client(self) -> None:
        client, self._client, self._scripts, self._wire = self._client, None, None, None
        if client is not None:
            await client.aclose()

    async def _command(self, *args: Arg) -> Any:
        """One command: on the wire to a standalone server, else through the client (which
        sends it to the node of its key in a cluster)."""
        client, _ = self._connection()
        wire = self._wire
        if wire is not None:
            return await wire.call(pack(*args))
        return await client.execute_command(*args)

    async def _session(self, name: str, session_id: str, *args: Arg) -> list[Any]:
        """Run per-session script ``name`` once (callers wrap it in the retry policy)."""
        _, scripts = self._connection()
        argv: list[Arg] = [session_id, self._ttl_ms, self._inline, *args]
        reply = await scripts.run(name, self.keys.session(session_id), argv, fixed=3)
        if replies.not_found(reply):
            raise SessionNotFound(session_id)
        return reply

    async def _index(
        self, idx: bytes | str | None, session_id: str, score: int, joining: bool = False
    ) -> None:
        """Cluster only: the second step of a write, moving the session in its indexes."""
        if self._inline == "1" or not idx:
            return
        client, _ = self._connection()
        # EVAL, not EVALSHA: a pipeline cannot recover from NOSCRIPT on one node, and the
        # script is a few hundred bytes.
        async with client.pipeline(transaction=False) as pipe:
            for key in _s(idx).split("\n"):
                pipe.eval(source("index"), 1, key, session_id, score, self._ttl_ms, int(joining))
            await pipe.execute()

    # -- sessions ---------------------------------------------------------------------------

    async def create_session(self, info: SessionInfo) -> None:
        idx = "\n".join(self.keys.indexes(info.agent, info.user_id))
        created, updated = rows.to_us(info.created_at), rows.to_us(info.updated_at)
        meta = json.dumps(info.metadata, separators=(",", ":"), ensure_ascii=False)

        async def op(retried: bool) -> None:
            reply = replies.create(await self._session(
                "create", info.id, info.agent, info.user_id or "",
                "0" if info.user_id is None else "1", created, updated, meta, idx,
            ))  # fmt: skip
            if reply.status == b"exists":
                ours = (reply.agent, reply.user, reply.created) == (
                    info.agent.encode(),
                    None if info.user_id is None else info.user_id.encode(),
                    str(created).encode(),
                )
                if not (retried and ours):  # else our earlier attempt created it
                    raise ConflictError(f"session {info.id!r} exists already")
            await self._index(idx, info.id, updated, joining=True)

        await self._retry.run("create_session", op)

    async def get_session(self, session_id: str) -> SessionInfo:
        async def op(retried: bool) -> list[Any]:
            key = self.keys.session(session_id)[0]
            return list(await self._command("HMGET", key, *rows.SUMMARY_FIELDS))

        values = await self._retry.run("get_session", op)
        if values[0] is None:
            raise SessionNotFound(session_id)
        return rows.info(session_id, values, self.keys.session(session_id)[0])

    async def list_sessions(
        self,
        *,
        agent: str | None = None,
        user_id: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page[SessionInfo]:
        after = decode_cursor(cursor) if cursor is not None else None
        score, sid = (str(rows.to_us(after[0])), after[1]) if after else ("", "")
        index = self.keys.index(agent, user_id)
        found = await self._retry.run(
            "list_sessions", lambda _: self._scan(index, limit + 1, score, sid)
        )
        items = [info for info, _ in found[:limit]]
        nxt = None
        if len(found) > limit:
            last, last_score = found[limit - 1]
            nxt = encode_cursor(rows.from_us(last_score), last.id)
        return Page(items=items, next_cursor=nxt)

    async def _scan(
        self, index: str, need: int, score: str, sid: str
    ) -> list[tuple[SessionInfo, bytes]]:
        """Up to ``need`` live sessions of ``index`` after ``(score, sid)``, with scores."""
        client, scripts = self._connection()
        affixes = pre, suf = self.keys.summary_affixes()
        found: list[tuple[SessionInfo, bytes]] = []
        if self._inline == "1":
            flat = await scripts.run("list", [index], [pre, suf, need, score, sid, "1"])
            at = range(0, len(flat), 8)
            infos = rows.infos([(_s(flat[j]), flat[j + 2 : j + 8]) for j in at], affixes)
            return [(info, flat[j + 1]) for info, j in zip(infos, at, strict=True)]
        while len(found) < need:
            want = need - len(found)
            flat = await scripts.run("list", [index], [pre, suf, want, score, sid, "0"])
            ids = [_s(flat[j]) for j in range(0, len(flat), 2)]
            async with client.pipeline(transaction=False) as pipe:
                for row_id in ids:
                    pipe.hmget(pre + row_id + suf, list(rows.SUMMARY_FIELDS))
                summaries = await pipe.execute() if ids else []
            stale, live, scores = [], [], []
            for j, (row_id, values) in enumerate(zip(ids, summaries, strict=True)):
                if values[0] is None:
                    stale.append(row_id)
                else:
                    live.append((row_id, values))
                    scores.append(flat[2 * j + 1])
            found += zip(rows.infos(live, affixes), scores, strict=True)
            if stale:
                await client.zrem(index, *stale)
            if len(ids) < want:
                break
            score, sid = _s(flat[-1]), ids[-1]
        return found

    async def delete_session(self, session_id: str) -> None:
        async def op(retried: bool) -> None:
            try:
                idx = replies.delete(await self._session("delete", session_id)).idx
            except SessionNotFound:
                if retried:  # an earlier attempt deleted it before its reply was lost
                    return
                raise
            if self._inline == "0" and idx:
                client, _ = self._connection()
                async with client.pipeline(transaction=False) as pipe:
                    for key in _s(idx).split("\n"):
                        pipe.zrem(key, session_id)
                    await pipe.execute()

        self._recent.drop(session_id)
        await self._retry.run("delete_session", op)

    # -- messages ---------------------------------------------------------------------------

    async def append_messages(
        self, session_id: str, messages: Sequence[Message], *, expected_seq: int | None = None
    ) -> list[Message]:
        encoded = check_batch(messages)
        for i, m in enumerate(messages):
            if m.seq is not None:  # stored JSON always ends in "seq":null (see rows.message)
                encoded[i] = encode_message(with_seq(m, None))
        expected: str | int = "" if expected_seq is None else expected_seq
        # A batch probes first: if it holds stored ids the script writes nothing and returns
        # them, to be compared before the batch is sent again to be written.
        args: list[str | int] = [f"?{expected}" if len(messages) > 1 else expected]
        for m, data in zip(messages, encoded, strict=True):
            args += [m.id, data]  # type: ignore[list-item]  # bytes are sent as they are

        async def op(retried: bool) -> replies.Appended:
            reply = replies.append(await self._session("append", session_id, *args))
            if reply.status == b"known":
                where = self.keys.session(session_id)[2]
                for k in reply.known:
                    stored = rows.message(k.data, k.seq, where)
                    check_repeat(session_id, stored, messages[k.position])
                reply = replies.append(
                    await self._session("append", session_id, expected, *args[1:])
                )
            if reply.status == b"conflict":
                raise stale_seq(session_id, expected_seq, reply.length)
            if self._inline != "1":
                await self._index(reply.idx, session_id, reply.updated)
            return reply

        reply = await self._retry.run("append_messages", op)
        seq = reply.first
        if not reply.known:  # nothing was stored already: the common case
            return [stored_copy(m, seq + i) for i, m in enumerate(messages)]
        known: dict[int, Message] = {}
        where = self.keys.session(session_id)[2]
        for k in reply.known:
            # One message: nothing was written, so a reused id is refused here.
            known[k.position] = check_repeat(
                session_id, rows.message(k.data, k.seq, where), messages[k.position]
            )
        out: list[Message] = []
        for i, m in enumerate(messages):
            if i in known:
                out.append(known[i])
            else:
                out.append(stored_copy(m, seq))
                seq += 1
        return out

    async def get_messages(self, session_id: str, *, last: int | None = None) -> list[Message]:
        tail = self._tail
        return await self._retry.run("get_messages", lambda _: tail(session_id, last, self._recent))

    async def get_messages_through(
        self, session_id: str, recent: Recent, *, last: int | None = None
    ) -> list[Message]:
        """:class:`~aixgo.session.ReadThrough`: the tail, reusing and keeping records in
        ``recent`` rather than this store's own."""
        tail = self._tail
        return await self._retry.run("get_messages", lambda _: tail(session_id, last, recent))

    async def _tail(self, session_id: str, last: int | None, recent: Recent) -> list[Message]:
        """The last ``last`` messages (all if ``None``), in one round trip.

        Messages are stored with their seq, and the list's end is the end of the current
        history up to the last restore marker (see ``lua/common.lua``). So a tail that has
        no marker is exactly one ``LRANGE``, and the JSON goes from Redis to pydantic without
        passing through Lua. Otherwise (a restore less than ``last`` messages ago, an empty
        or missing session) ``tail.lua`` walks the branches.
        """
        key = self.keys.session(session_id)[2]
        if last != 0:
            data = await self._command("LRANGE", key, 0 if last is None else -last, -1)
            # Markers start with "#", stored messages with "{": the least record (found by
            # comparisons in C, not a Python test per record) shows a marker at once, unless a
            # damaged record sorts lower. Then the batch cannot read as messages, and careful()
            # looks for a marker in every record before it blames one.
            if data and min(data)[:1] != b"#":
                n = len(data)
                looked: list[bool] = []  # whether the records hold a marker, once looked

                def careful(i: int) -> Message:
                    if not looked:
                        looked.append(any(d[:1] == b"#" for d in data))
                    if looked[0]:
                        raise _Restored
                    return rows.message(data[i], None, f"{key}[{i - n}]")

                # Records byte for byte the ones this backend read last at the same place
                # are copies of what it decoded then (see aixgo.session.kit.recent).
                try:
                    return recent.decode(session_id, data, _positions(data), careful)
                except _Restored:
                    pass
        first, found = replies.tail(
            await self._session("tail", session_id, "" if last is None else last)
        )
        return recent.decode(
            session_id,
            found,
            range(first, first + len(found)),
            lambda i: rows.message(found[i], first + i, key),
            first_seq=first,
        )

    # -- checkpoints ------------------------------------------------------------------------

    async def create_checkpoint(
        self, session_id: str, checkpoint_id: str, *, label: str | None = None
    ) -> Checkpoint:
        async def op(retried: bool) -> Checkpoint:
            reply = replies.checkpoint(
                await self._session("checkpoint", session_id, checkpoint_id, json.dumps(label))
            )
            if reply.exists and not retried:
                raise ConflictError(f"checkpoint {checkpoint_id!r} exists already")
            return rows.checkpoint(checkpoint_id, session_id, reply.value)[1]

        return await self._retry.run("create_checkpoint", op)

    async def list_checkpoints(self, session_id: str) -> list[Checkpoint]:
        reply = await self._retry.run(
            "list_checkpoints", lambda _: self._session("checkpoints", session_id)
        )
        cps = [rows.checkpoint(cp.id, session_id, cp.value) for cp in replies.checkpoints(reply)]
        return [cp for _, cp in sorted(cps, key=lambda pair: pair[0])]

    async def restore_checkpoint(
        self, session_id: str, checkpoint_id: str, *, undo_id: str
    ) -> Checkpoint:
        async def op(retried: bool) -> Checkpoint:
            reply = replies.restore(
                await self._session("restore", session_id, checkpoint_id, undo_id)
            )
            if reply.status == b"nocheckpoint":
                raise CheckpointNotFound(checkpoint_id, session_id)
            if reply.status == b"exists" and not retried:
                raise ConflictError(f"checkpoint {undo_id!r} exists already")
            await self._index(reply.idx, session_id, reply.updated)
            return rows.checkpoint(undo_id, session_id, reply.undo)[1]

        return await self._retry.run("restore_checkpoint", op)

    # -- turn leases (TurnLeases) -----------------------------------------------------------

    async def acquire_turn(self, session_id: str, owner: str, ttl: float) -> int | None:
        """Take the session's turn lease (``lua/turn.lua``); the fencing token or ``None``."""
        ms = _lease_ms(ttl)
        reply = await self._retry.run(
            "acquire_turn", lambda _: self._session("turn", session_id, "acquire", owner, ms)
        )
        return replies.turn(reply).token

    async def renew_turn(self, session_id: str, owner: str, ttl: float) -> bool:
        """Extend ``owner``'s lease to ``ttl`` from now; ``False`` if it was lost."""
        ms = _lease_ms(ttl)
        reply = await self._retry.run(
            "renew_turn", lambda _: self._session("turn", session_id, "renew", owner, ms)
        )
        return replies.turn(reply).ok

    async def release_turn(self, session_id: str, owner: str) -> None:
        """Give up ``owner``'s lease if it holds it (a repeat is harmless)."""
        await self._retry.run(
            "release_turn", lambda _: self._session("turn", session_id, "release", owner, 0)
        )

    # -- a user's session (SessionPerUser) --------------------------------------------------

    async def get_or_create_session(self, info: SessionInfo) -> tuple[SessionInfo, bool]:
        """The pair's most recently updated session, or ``info`` created: one script on a
        standalone server (``lua/get_or_create.lua``), a claim in the pair's index around
        the create in Redis Cluster (``lua/pair.lua``)."""
        if info.user_id is None:
            raise InvalidArgument("get_or_create_session needs a user id")
        argv: list[Arg] = [
            info.agent, info.user_id, "1", rows.to_us(info.created_at),
            rows.to_us(info.updated_at),
            json.dumps(info.metadata, separators=(",", ":"), ensure_ascii=False),
            "\n".join(self.keys.indexes(info.agent, info.user_id)),
        ]  # fmt: skip  # create.lua's arguments
        if self._inline == "1":
            return await self._retry.run(
                "get_or_create_session", lambda retried: self._get_or_create(info, argv, retried)
            )
        return await self._get_or_create_spread(info, info.user_id, argv)

    async def _get_or_create(
        self, info: SessionInfo, argv: list[Arg], retried: bool
    ) -> tuple[SessionInfo, bool]:
        _, scripts = self._connection()
        keys = [*self.keys.session(info.id), self.keys.index(info.agent, info.user_id)]
        args: list[Arg] = [info.id, self._ttl_ms, "1", *argv, *self.keys.summary_affixes()]
        reply = replies.get_or_create(await scripts.run("get_or_create", keys, args, fixed=3))
        if reply.status == b"found":
            sid = reply.session_id
            found = rows.info(sid, reply.summary, self.keys.session(sid)[0])
            # A retry finds what its first attempt created before the reply was lost.
            return found, retried and sid == info.id
        if reply.status == b"exists":
            raise ConflictError(f"session {info.id!r} exists already")
        return info, True

    async def _get_or_create_spread(
        self, info: SessionInfo, user_id: str, argv: list[Arg]
    ) -> tuple[SessionInfo, bool]:
        """Redis Cluster: the pair's index is in another slot than the new session, so the
        pair is claimed in the index's slot first (only when its index is empty), the claimer
        creates the session, then settles the claim; the others wait for a claim in flight."""
        pair = [self.keys.index(info.agent, user_id), self.keys.claim(info.agent, user_id)]
        hold = round(max(1.0, 2 * self.options.timeout) * 1000)  # a dead claimer's claim ends
        score = rows.to_us(info.updated_at)
        stale: list[str] = []
        while True:
            claim: list[Arg] = ["claim", info.id, score, self._ttl_ms, hold, *stale]
            reply = await self._pair(pair, claim)
            if reply.status == b"claimed":
                if await self._create_claimed(info, argv, pair, score):
                    return info, True
                stale = []
                continue
            found, stale, waiting = await self._first_live(reply)
            if found is not None:
                if stale:  # dead entries (no claim in flight among them), as listing drops
                    await self._unlist(pair[0], stale)
                return found, False
            if waiting:
                await asyncio.sleep(0.01)

    async def _pair(self, pair: list[str], args: list[Arg]) -> replies.Claim:
        """Run ``lua/pair.lua`` on the pair's index slot."""
        _, scripts = self._connection()
        reply = await self._retry.run(
            "get_or_create_session", lambda _: scripts.run("pair", pair, args)
        )
        return replies.claim(reply)

    async def _unlist(self, index: str, ids: list[str]) -> None:
        client, _ = self._connection()
        await self._retry.run("get_or_create_session", lambda _: client.zrem(index, *ids))

    async def _first_live(self, reply: replies.Claim) -> tuple[SessionInfo | None, list[str], bool]:
        """Of a claim's ``members`` reply: the first session that exists, the ids before it
        that have no summary (stale entries), and whether a claim in flight is in the way."""
        claimed, ids = reply.claimed, reply.ids
        pre, suf = self.keys.summary_affixes()

        async def read(_: bool) -> list[Any]:
            client, _scripts = self._connection()
            async with client.pipeline(transaction=False) as pipe:
                for sid in ids:
                    pipe.hmget(pre + sid + suf, list(rows.SUMMARY_FIELDS))
                return list(await pipe.execute())

        summaries = await self._retry.run("get_or_create_session", read)
        stale: list[str] = []
        for sid, values in zip(ids, summaries, strict=True):
            if values[0] is not None:
                return rows.info(sid, values, pre + sid + suf), stale, False
            if sid == claimed:
                return None, stale, True
            stale.append(sid)
        return None, stale, False

    async def _create_claimed(
        self, info: SessionInfo, argv: list[Arg], pair: list[str], score: int
    ) -> bool:
        """Create the session of a claim, settle it and list the session; ``False`` (with
        the session deleted again) if the claim ran out and another caller took the pair.
        The settle comes before the listing, so a lost session never enters an index."""

        async def create(retried: bool) -> None:
            reply = replies.create(await self._session("create", info.id, *argv))
            if reply.status == b"exists" and not retried:
                raise ConflictError(f"session {info.id!r} exists already")

        await self._retry.run("get_or_create_session", create)
        reply = await self._pair(pair, ["settle", info.id])
        if reply.status == b"lost":
            await self._retry.run("get_or_create_session", lambda _: self._drop(info.id))
            return False
        idx = str(argv[-1])
        await self._retry.run(
            "get_or_create_session", lambda _: self._index(idx, info.id, score, joining=True)
        )
        return True

    async def _drop(self, session_id: str) -> None:
        """Delete a session that never entered an index (a retry finds it gone)."""
        with contextlib.suppress(SessionNotFound):
            await self._session("delete", session_id)
