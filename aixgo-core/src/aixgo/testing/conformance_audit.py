"""Wrapper mode of the conformance kit for the audit log: the whole kit run through the audit
layer, plus the audit, erasure and retention properties, on any backend.

The audit log lives in core, between the manager and the backend, so a backend needs no code
for it; this class proves that holds for yours. Provide ``plain_backend`` (an empty store, as
the ``backend`` fixture of :class:`~aixgo.testing.BackendConformance` would be) instead of
``backend``::

    class TestMyStoreAudited(AuditedConformance):
        @pytest_asyncio.fixture
        async def plain_backend(self):
            backend = open_backend("mystore://...")
            yield backend
            await backend.close()

Every test of :class:`~aixgo.testing.BackendConformance` then runs with ``backend`` being
your store behind the audit layer, and after each one the kit checks that every write the
test made (create, append, checkpoint, restore, delete) left exactly one record and that the
chain verifies. The tests below check on your store that each operation is recorded with its
operation, ids, counts and outcome and never its content, that a failure records the
error's type, that tampering is named by index, that a failing audit sink is fatal or
buffered-and-reported as configured, and that ``erase_user`` and retention sweeps are
recorded and leave nothing of what they removed.
"""

from __future__ import annotations

import io
import json
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from aixgo.audit import AuditedBackend, AuditLog, JsonlSink, Sealer, audit_actor
from aixgo.errors import AuditError, ConflictError, SessionNotFound
from aixgo.identifiers import new_id
from aixgo.message import Message
from aixgo.session import Backend, Checkpoint, SessionInfo, SessionManager
from aixgo.session.archive import export_sessions
from aixgo.session.kit.wrapper import BackendWrapper
from aixgo.session.retention import RetentionPolicy, sweep
from aixgo.testing.base import unique
from aixgo.testing.conformance import BackendConformance

__all__ = ["AuditedConformance", "FailingSink", "audited_store"]

#: The audit key the kit's logs are chained with.
KEY = bytes(range(32))


def _text(path: Path) -> str:
    """The log's text ('' before its first record). Small files: read inline."""
    return path.read_text(encoding="utf-8") if path.exists() else ""


def _records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in _text(path).splitlines()]


def _rewrite(path: Path, lines: list[str]) -> None:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


class FailingSink:
    """A JSONL audit sink that fails while ``broken`` is set, as a full disk or a lost
    database would: for testing the failure policy."""

    def __init__(self, path: Path) -> None:
        self.inner = JsonlSink(path)
        self.broken = False

    def __repr__(self) -> str:
        return f"FailingSink({self.inner!r})"

    async def write(self, bodies: Sequence[dict[str, Any]], sealer: Sealer) -> None:
        if self.broken:
            raise OSError(28, "No space left on device")
        await self.inner.write(bodies, sealer)

    def lines(self) -> AsyncIterator[str]:
        return self.inner.lines()

    async def close(self) -> None:
        await self.inner.close()


class _CountsWrites(BackendWrapper):
    """Counts the writes that reach the store, to compare with the audit records."""

    def __init__(self, inner: Backend) -> None:
        super().__init__(inner)
        self.writes: Counter[str] = Counter()

    def optional(self, name: str, fn: Any) -> Any:
        if name != "get_or_create_session" or fn is None:
            return fn

        async def get_or_create_session(info: SessionInfo) -> tuple[SessionInfo, bool]:
            try:
                got, created = await fn(info)
            except BaseException:
                self.writes["create"] += 1
                raise
            self.writes["create"] += created
            return got, created

        return get_or_create_session

    async def create_session(self, info: SessionInfo) -> None:
        self.writes["create"] += 1
        await self.inner.create_session(info)

    async def delete_session(self, session_id: str) -> None:
        self.writes["delete"] += 1
        await self.inner.delete_session(session_id)

    async def append_messages(
        self, session_id: str, messages: Sequence[Message], *, expected_seq: int | None = None
    ) -> list[Message]:
        self.writes["append"] += 1
        return await self.inner.append_messages(session_id, messages, expected_seq=expected_seq)

    async def create_checkpoint(
        self, session_id: str, checkpoint_id: str, *, label: str | None = None
    ) -> Checkpoint:
        self.writes["checkpoint"] += 1
        return await self.inner.create_checkpoint(session_id, checkpoint_id, label=label)

    async def restore_checkpoint(
        self, session_id: str, checkpoint_id: str, *, undo_id: str
    ) -> Checkpoint:
        self.writes["restore"] += 1
        return await self.inner.restore_checkpoint(session_id, checkpoint_id, undo_id=undo_id)


async def audited_store(plain_backend: Backend, audit_path: Path) -> AsyncIterator[Backend]:
    """Yield ``plain_backend`` behind the audit layer (logging to ``audit_path``); when
    resumed, check that each write that reached the store left one record and that the
    chain verifies (:class:`AssertionError` otherwise)."""
    counted = _CountsWrites(plain_backend)
    log = AuditLog(audit_path, key=KEY)
    yield AuditedBackend(counted, log)
    await log.close()
    recorded = Counter(r["op"] for r in _records(audit_path))
    assert recorded == +counted.writes, (
        f"audit records by operation {dict(recorded)} differ from the writes that "
        f"reached the store {dict(+counted.writes)}"
    )
    if recorded:
        report = await AuditLog(audit_path, key=KEY).verify()
        assert report.intact, f"the audit chain breaks at record {report.first_bad}"


class AuditedConformance(BackendConformance):
    """The kit in audit wrapper mode (see the module docs). Override ``plain_backend``."""

    @pytest_asyncio.fixture
    def plain_backend(self) -> AsyncIterator[Backend]:
        """Override with an async fixture that yields an empty backend and closes it."""
        pytest.fail(
            f"{type(self).__name__} must override the `plain_backend` fixture: an async "
            "fixture (@pytest_asyncio.fixture) that yields an empty backend and closes it"
        )

    @pytest.fixture
    def audit_path(self, tmp_path: Path) -> Path:
        """Where the test's audit log is written (a fresh JSONL file)."""
        return tmp_path / "audit" / "audit.jsonl"

    @pytest_asyncio.fixture
    async def backend(  # type: ignore[override]  # pytest injects fixtures by name
        self, plain_backend: Backend, audit_path: Path
    ) -> AsyncIterator[Backend]:
        """Your store behind the audit layer. Afterwards: one record per write that reached
        your store, and an intact chain."""
        async for audited in audited_store(plain_backend, audit_path):
            yield audited

    @pytest.fixture
    def backend_url(self) -> str | None:
        return None  # a URL would reopen the store without the audit layer

    @pytest.mark.asyncio
    async def test_every_operation_is_one_record_with_ids_and_counts_and_no_content(
        self, plain_backend: Backend, audit_path: Path
    ) -> None:
        secret, title, label = unique("secret-text"), unique("secret-title"), unique("label")
        agent, user, actor = unique("agent"), unique("user"), unique("actor")
        log = AuditLog(audit_path, key=KEY)
        mgr = SessionManager(plain_backend, audit=log)
        with audit_actor(actor):
            s = await mgr.create(agent, user_id=user, metadata={"title": title})
            sent = [Message.user(secret, metadata={"note": title}), Message.assistant(secret)]
            await s.append_messages(sent)
            cp = await s.checkpoint(label=label)
            extra = await s.append_message(Message.user(secret))
            undo = await s.restore(cp.id)
            out = io.StringIO()
            await export_sessions(mgr, out.write, session_ids=[s.id])
            await mgr.delete(s.id)
        await log.close()
        text = _text(audit_path)
        for hidden in (secret, title, label):
            assert hidden not in text, "an audit record holds content or metadata values"
        recs = _records(audit_path)
        assert [(r["op"], r["outcome"]) for r in recs] == [
            ("create", "ok"), ("append", "ok"), ("checkpoint", "ok"), ("append", "ok"),
            ("restore", "ok"), ("export", "ok"), ("delete", "ok"),
        ]  # fmt: skip
        for r in recs:
            assert (r["actor"], r["agent"], r["user_id"], r["session_id"]) == (
                actor, agent, user, s.id
            )  # fmt: skip
        _, append, checkpoint, append2, restore, export, _ = recs
        assert (append["ids"], append["count"]) == ([m.id for m in sent], 2)
        assert (append2["ids"], append2["count"]) == ([extra.id], 1)
        assert (checkpoint["ids"], checkpoint["count"]) == ([cp.id], 2)
        assert restore["ids"] == [cp.id, undo.id]
        assert export["count"] == 2  # the restored history
        assert [r["i"] for r in recs] == list(range(len(recs)))
        report = await AuditLog(audit_path, key=KEY).verify()
        assert (report.intact, report.records) == (True, len(recs))

    @pytest.mark.asyncio
    async def test_a_failed_operation_records_the_error_type(
        self, plain_backend: Backend, audit_path: Path
    ) -> None:
        log = AuditLog(audit_path, key=KEY)
        mgr = SessionManager(plain_backend, audit=log)
        s = await mgr.create(unique("agent"), user_id=unique("user"))
        await s.append_message(Message.user("one"))
        with pytest.raises(ConflictError) as stale:
            await s.append_messages([Message.user("two")], expected_seq=0)
        with pytest.raises(SessionNotFound) as missing:
            await mgr.delete(new_id())
        await log.close()
        recs = _records(audit_path)
        assert [(r["op"], r["outcome"]) for r in recs] == [
            ("create", "ok"),
            ("append", "ok"),
            ("append", type(stale.value).__name__),
            ("delete", type(missing.value).__name__),
        ]
        assert (recs[2]["session_id"], recs[2]["count"]) == (s.id, None)
        assert [m.text for m in await s.get_messages()] == ["one"]

    @pytest.mark.asyncio
    @pytest.mark.parametrize("how", ["flip", "delete", "swap"])
    async def test_tampering_with_the_log_is_named_by_index(
        self, plain_backend: Backend, audit_path: Path, how: str
    ) -> None:
        log = AuditLog(audit_path, key=KEY)
        mgr = SessionManager(plain_backend, audit=log)
        s = await mgr.create(unique("agent"), user_id=unique("user"))
        for n in range(4):
            await s.append_message(Message.user(f"m{n}"))
        await log.close()
        lines = _text(audit_path).splitlines()
        if how == "flip":
            at = lines[2].index('"op":"') + 6
            lines[2] = lines[2][:at] + chr(ord(lines[2][at]) ^ 1) + lines[2][at + 1 :]
        elif how == "delete":
            del lines[2]
        else:
            lines[2], lines[3] = lines[3], lines[2]
        _rewrite(audit_path, lines)
        report = await AuditLog(audit_path, key=KEY).verify()
        assert report.first_bad == 2

    @pytest.mark.asyncio
    async def test_a_failing_sink_is_fatal_by_default(
        self, plain_backend: Backend, audit_path: Path
    ) -> None:
        sink = FailingSink(audit_path)
        mgr = SessionManager(plain_backend, audit=AuditLog(sink, key=KEY))
        s = await mgr.create(unique("agent"), user_id=unique("user"))
        sink.broken = True
        with pytest.raises(AuditError, match="the operation itself completed"):
            await s.append_message(Message.user("stored, not recorded"))
        sink.broken = False
        await s.append_message(Message.user("again"))
        await sink.close()
        assert [r["op"] for r in _records(audit_path)] == ["create", "append"]
        assert [m.text for m in await plain_backend.get_messages(s.id)] == [
            "stored, not recorded", "again"
        ]  # fmt: skip

    @pytest.mark.asyncio
    async def test_a_failing_sink_is_buffered_and_reported_by_policy(
        self, plain_backend: Backend, audit_path: Path
    ) -> None:
        sink = FailingSink(audit_path)
        reports: list[int] = []
        log = AuditLog(sink, key=KEY, on_failure="buffer", on_report=lambda _, n: reports.append(n))
        mgr = SessionManager(plain_backend, audit=log)
        s = await mgr.create(unique("agent"), user_id=unique("user"))
        sink.broken = True
        await s.append_message(Message.user("one"))  # the operation goes on
        await s.checkpoint()
        assert (log.pending, reports) == (2, [1, 2])
        with pytest.raises(AuditError, match="2 buffered audit records"):
            await log.flush()
        sink.broken = False
        await s.append_message(Message.user("two"))  # the buffered ones first, in order
        assert log.pending == 0
        sink.broken = True
        await s.append_message(Message.user("three"))
        with pytest.raises(AuditError, match="1 buffered audit records"):
            await log.close()  # reported, never dropped silently
        assert [r["op"] for r in _records(audit_path)] == [
            "create", "append", "checkpoint", "append"
        ]  # fmt: skip
        assert (await AuditLog(audit_path, key=KEY).verify()).intact

    @pytest.mark.asyncio
    async def test_erase_user_is_one_record_and_leaves_nothing_of_the_user(
        self, plain_backend: Backend, audit_path: Path
    ) -> None:
        secret = unique("secret-text")
        log = AuditLog(audit_path, key=KEY)
        mgr = SessionManager(plain_backend, audit=log)
        agent, gone, kept = unique("agent"), unique("alice"), unique("bob")
        ids: dict[str, list[str]] = {gone: [], kept: []}
        for user in (gone, kept):
            for n in range(2):
                s = await mgr.create(agent, user_id=user)
                await s.append_messages([Message.user(f"{secret} {i}") for i in range(n + 1)])
                await s.checkpoint()
                ids[user].append(s.id)
        before = len(_records(audit_path))
        report = await mgr.erase_user(gone)
        assert (report.sessions, report.messages, report.checkpoints) == (2, 3, 2)
        assert (await plain_backend.list_sessions(user_id=gone)).items == []
        for sid in ids[gone]:
            with pytest.raises(SessionNotFound):
                await plain_backend.get_session(sid)
        left = (await plain_backend.list_sessions(user_id=kept)).items
        assert sorted(i.id for i in left) == sorted(ids[kept])
        assert [len(await plain_backend.get_messages(sid)) for sid in ids[kept]] == [1, 2]
        await log.close()
        recs = _records(audit_path)[before:]
        assert [(r["op"], r["user_id"], r["count"], r["outcome"]) for r in recs] == [
            ("erase", gone, 2, "ok")
        ]
        assert secret not in _text(audit_path)

    @pytest.mark.asyncio
    async def test_a_retention_sweep_deletes_what_its_policy_selects_and_is_recorded(
        self, plain_backend: Backend, audit_path: Path
    ) -> None:
        log = AuditLog(audit_path, key=KEY)
        mgr = SessionManager(plain_backend, audit=log)
        agent, other, user = unique("agent"), unique("agent"), unique("user")
        old = await mgr.create(agent, user_id=user)
        await old.append_message(Message.user("old"))
        new = await mgr.create(agent, user_id=user)
        await new.append_message(Message.user("new"))  # the most recently updated
        spared = await mgr.create(other, user_id=user)
        policy = {agent: RetentionPolicy(keep_last=1)}
        before = len(_records(audit_path))
        dry = await sweep(mgr, policy, dry_run=True)
        assert (dry.session_ids, len(_records(audit_path))) == ([old.id], before)
        done = await sweep(mgr, policy)
        assert (done.session_ids, done.deleted) == ([old.id], 1)
        with pytest.raises(SessionNotFound):
            await plain_backend.get_session(old.id)
        listed = {i.id for i in (await plain_backend.list_sessions(user_id=user)).items}
        assert listed == {new.id, spared.id}
        await log.close()
        recs = _records(audit_path)[before:]
        assert [(r["op"], r["session_id"], r["count"]) for r in recs] == [
            ("delete", old.id, None), ("sweep", None, 1)
        ]  # fmt: skip

    @pytest.mark.asyncio
    async def test_reads_leave_no_record(self, plain_backend: Backend, audit_path: Path) -> None:
        log = AuditLog(audit_path, key=KEY)
        mgr = SessionManager(plain_backend, audit=log)
        s = await mgr.create(unique("agent"), user_id=unique("user"))
        await s.append_message(Message.user("hi"))
        size = len(_text(audit_path))
        await s.get_messages()
        await s.get_messages(last=1)
        await s.list_checkpoints()
        await mgr.get(s.id)
        await mgr.list(user_id=(await s.info()).user_id)
        assert len(_text(audit_path)) == size
        await log.close()
