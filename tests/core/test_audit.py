"""The audit log (issue #19, section 2): every session operation leaves one HMAC-chained
record without content, on every backend; tampering is named by index; concurrent processes
keep one chain; a failing sink is fatal or buffered-and-reported, never silent."""

from __future__ import annotations

import asyncio
import getpass
import io
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psycopg
import pytest
from aixgo import Message, Runtime
from aixgo.audit import AuditLog, AuditSink, JsonlSink, Sealer, audit_actor, verify_lines
from aixgo.errors import AuditError, InvalidArgument, SessionNotFound
from aixgo.session import SessionManager
from aixgo.session.archive import export_sessions, import_sessions
from aixgo.session.memory import MemoryBackend

KEY = bytes(range(32))
SECRET = "the-secret-text-4711"
META = "meta-value-0815"


def _records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


async def _every_operation(url: str, log: AuditLog) -> list[str]:
    """Create, append, checkpoint, restore, export, delete, import: the session ids."""
    async with SessionManager(url, audit=log) as mgr, audit_actor("alice"):
        s = await mgr.create("assistant", user_id="u1", metadata={"title": META})
        await s.append_messages([Message.user(SECRET, metadata={"k": META}),
                                 Message.assistant(SECRET)])  # fmt: skip
        cp = await s.checkpoint(label=META)
        await s.append_message(Message.user(SECRET))
        await s.restore(cp.id)
        out = io.StringIO()
        await export_sessions(mgr, out.write, session_ids=[s.id])
        await mgr.delete(s.id)
        await import_sessions(mgr, out.getvalue().splitlines())
        await mgr.get_or_create("assistant", "u2")  # creates: recorded
        with pytest.raises(SessionNotFound):
            await mgr.delete("0" * 32)
        return [s.id]


@pytest.mark.asyncio
async def test_every_operation_leaves_one_record_without_content(
    store_url: str, tmp_path: Path
) -> None:
    path = tmp_path / "audit.jsonl"
    (sid,) = await _every_operation(store_url, AuditLog(path, key=KEY))
    text = path.read_text()
    assert SECRET not in text and META not in text
    recs = _records(path)
    ops = [(r["op"], r["outcome"]) for r in recs]
    assert ops[:7] == [
        ("create", "ok"),
        ("append", "ok"),
        ("checkpoint", "ok"),
        ("append", "ok"),
        ("restore", "ok"),
        ("export", "ok"),
        ("delete", "ok"),
    ]
    # The import's own writes, then the import itself, then get_or_create and the bad delete.
    assert ops[-3:] == [("import", "ok"), ("create", "ok"), ("delete", "SessionNotFound")]
    assert {"create", "append", "checkpoint"} <= {op for op, _ in ops[7:-3]}
    for r in recs[:7]:
        assert (r["actor"], r["agent"], r["user_id"], r["session_id"]) == (
            "alice", "assistant", "u1", sid)  # fmt: skip
        assert set(r) == {"i", "prev", "mac", "time", "actor", "op", "agent", "user_id",
                          "session_id", "ids", "count", "outcome"}  # fmt: skip
    assert recs[1]["count"] == 2 and len(recs[1]["ids"]) == 2
    assert recs[5]["count"] == 2  # exported messages: the restored history
    assert [r["i"] for r in recs] == list(range(len(recs)))
    report = verify_lines(text.splitlines(), KEY)
    assert report.intact and report.records == len(recs)
    assert oct(path.stat().st_mode & 0o777) == "0o600"


def _tampered(lines: list[str], how: str) -> tuple[list[str], int]:
    """``lines`` tampered ``how``, and the index verify must name."""
    out = list(lines)
    if how == "flip":
        line = out[3]
        at = line.index('"op":"') + 6
        out[3] = line[:at] + chr(ord(line[at]) ^ 1) + line[at + 1 :]
        return out, 3
    if how == "delete":
        del out[2]
        return out, 2
    if how == "insert":
        forged, _ = Sealer(b"x" * 32).seal({"op": "delete"}, 4, json.loads(out[3])["mac"])
        out.insert(4, forged)
        return out, 4
    if how == "replay":  # a genuine record inserted a second time
        out.insert(5, out[1])
        return out, 5
    assert how == "swap"
    out[1], out[2] = out[2], out[1]
    return out, 1


@pytest.mark.parametrize("how", ["flip", "delete", "insert", "replay", "swap"])
@pytest.mark.asyncio
async def test_tampering_is_named_by_index(store_url: str, tmp_path: Path, how: str) -> None:
    path = tmp_path / "audit.jsonl"
    await _every_operation(store_url, AuditLog(path, key=KEY))
    lines, bad = _tampered(path.read_text().splitlines(), how)
    report = verify_lines(lines, KEY)
    assert (report.intact, report.first_bad, report.records) == (False, bad, bad)


_ODD = [None, "", "plain", "é ü 中", "😀", "\u2028\x00\n\"\\", "\ud800", 0, -7, 10**30, True, 1.5,
        [], ["a", "é"], ["a", 1], [None], {"k": "v"}]  # fmt: skip


def test_records_of_every_value_seal_in_canonical_form() -> None:
    # Records of AuditLog's shape are sealed by a template: whatever its values, the line
    # must be the canonical JSON verification re-derives, or the log would not verify.
    fields = ["actor", "agent", "count", "ids", "op", "outcome", "session_id", "time", "user_id"]
    sealer, lines, prev = Sealer(KEY), [], ""
    for n in range(len(_ODD) * 3):
        body = {f: _ODD[(n + 5 * k) % len(_ODD)] for k, f in enumerate(fields)}
        if n % 7 == 3:
            body.pop("agent")  # another shape: the generic encoder
        line, prev = sealer.seal(body, n, prev)
        lines.append(line)
        rec = json.loads(line)
        assert {k: v for k, v in rec.items() if k not in ("i", "prev", "mac")} == body
    assert verify_lines(lines, KEY).intact


def _verify_cli(target: str, key: bytes = KEY) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "AIXGO_AUDIT_KEY": key.hex()}
    return subprocess.run(["aixgo", "audit", "verify", target], env=env, capture_output=True,
                          text=True, timeout=120)  # fmt: skip


@pytest.mark.parametrize("how", ["flip", "delete", "insert", "swap"])
def test_the_verify_command_exits_1_with_the_index(tmp_path: Path, how: str) -> None:
    path = tmp_path / "audit.jsonl"
    asyncio.run(_every_operation("memory://", AuditLog(path, key=KEY)))
    ok = _verify_cli(str(path))
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith(f"intact: {len(path.read_text().splitlines())} records")
    lines, bad = _tampered(path.read_text().splitlines(), how)
    path.write_text("".join(line + "\n" for line in lines))
    out = _verify_cli(str(path))
    assert out.returncode == 1
    assert out.stdout.startswith(f"TAMPERED: record {bad} (line {bad + 1})")
    wrong = _verify_cli(str(path), key=b"y" * 32)
    assert wrong.returncode == 1 and "record 0 (line 1)" in wrong.stdout


def test_the_verify_command_needs_the_key(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    path.write_text("")
    env = {k: v for k, v in os.environ.items() if k != "AIXGO_AUDIT_KEY"}
    out = subprocess.run(["aixgo", "audit", "verify", str(path)], env=env,
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert out.returncode == 1 and "AIXGO_AUDIT_KEY" in out.stderr


_WRITER = """
import asyncio, sys
from aixgo.audit import AuditLog
async def main():
    log = AuditLog(sys.argv[1], key=bytes(range(32)), fsync=sys.argv[3] == "fsync")
    for n in range(int(sys.argv[2])):
        await log.record("append", session_id=f"p{sys.argv[4]}-{n}", count=1)
    await log.close()
asyncio.run(main())
"""


@pytest.mark.parametrize("fsync", ["fsync", "nofsync"])
def test_concurrent_processes_keep_one_valid_chain(tmp_path: Path, fsync: str) -> None:
    path = tmp_path / "audit.jsonl"
    procs = [
        subprocess.Popen([sys.executable, "-c", _WRITER, str(path), "60", fsync, str(p)])
        for p in range(4)
    ]
    assert [p.wait(timeout=300) for p in procs] == [0, 0, 0, 0]
    lines = path.read_text().splitlines()
    report = verify_lines(lines, KEY)
    assert report.intact and report.records == 240
    assert sorted(json.loads(line)["session_id"] for line in lines) == sorted(
        f"p{p}-{n}" for p in range(4) for n in range(60)
    )


def test_a_torn_final_line_is_cut_off_by_the_next_writer(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"

    async def write(n: int) -> None:
        log = AuditLog(path, key=KEY)
        for _ in range(n):
            await log.record("create", session_id="s")
        await log.close()

    asyncio.run(write(3))
    with path.open("a") as f:
        f.write('{"actor":null,"agent"')  # a crash in the middle of a write
    assert verify_lines(path.read_text().splitlines(), KEY).first_bad == 3
    asyncio.run(write(2))
    report = verify_lines(path.read_text().splitlines(), KEY)
    assert report.intact and report.records == 5


class Flaky:
    """A JSONL sink that fails while ``broken`` (as a full disk or a lost server would)."""

    def __init__(self, path: Path) -> None:
        self.inner = JsonlSink(path)
        self.broken = False

    async def write(self, bodies: Sequence[dict[str, Any]], sealer: Sealer) -> None:
        if self.broken:
            raise OSError(28, "No space left on device")
        await self.inner.write(bodies, sealer)

    def lines(self) -> Any:
        return self.inner.lines()

    async def close(self) -> None:
        await self.inner.close()


@pytest.mark.asyncio
async def test_a_failing_sink_is_fatal_by_default(store_url: str, tmp_path: Path) -> None:
    sink = Flaky(tmp_path / "audit.jsonl")
    assert isinstance(sink, AuditSink)
    async with SessionManager(store_url, audit=AuditLog(sink, key=KEY)) as mgr:
        s = await mgr.create("assistant", user_id="u1")
        sink.broken = True
        with pytest.raises(AuditError, match="append of session .* could not be written .*"
                           "No space left.*the operation itself completed"):  # fmt: skip
            await s.append_message(Message.user("hi"))
        sink.broken = False
        await s.append_message(Message.user("again"))
    recs = _records(tmp_path / "audit.jsonl")
    assert [r["op"] for r in recs] == ["create", "append"]


@pytest.mark.asyncio
async def test_a_failing_sink_is_buffered_and_reported_by_policy(
    store_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    sink = Flaky(tmp_path / "audit.jsonl")
    reports: list[tuple[str, int]] = []
    log = AuditLog(sink, key=KEY, on_failure="buffer",
                   on_report=lambda exc, n: reports.append((type(exc).__name__, n)))  # fmt: skip
    mgr = SessionManager(store_url, audit=log)
    s = await mgr.create("assistant", user_id="u1")
    sink.broken = True
    await s.append_message(Message.user("one"))  # the operation goes on
    await s.checkpoint()
    assert (log.pending, reports) == (2, [("OSError", 1), ("OSError", 2)])
    assert "audit sink" in caplog.text and "2 record(s) buffered" in caplog.text
    with pytest.raises(AuditError, match="2 buffered audit records could not be written"):
        await log.flush()
    sink.broken = False
    await s.append_message(Message.user("two"))  # writes the buffered ones first, in order
    assert log.pending == 0
    assert [r["op"] for r in _records(tmp_path / "audit.jsonl")] == [
        "create", "append", "checkpoint", "append"]  # fmt: skip
    sink.broken = True
    await mgr.delete(s.id)
    with pytest.raises(AuditError, match="1 buffered audit records"):
        await mgr.close()  # never dropped silently
    assert verify_lines((tmp_path / "audit.jsonl").read_text().splitlines(), KEY).intact


@pytest.mark.asyncio
async def test_a_full_buffer_becomes_fatal(tmp_path: Path) -> None:
    sink = Flaky(tmp_path / "audit.jsonl")
    sink.broken = True
    log = AuditLog(sink, key=KEY, on_failure="buffer", max_buffer=2)
    await log.record("create")
    await log.record("create")
    with pytest.raises(AuditError, match="2 records are buffered, the most allowed"):
        await log.record("create")
    assert log.pending == 2


class Slow(Flaky):
    """A sink that suspends in each write (as fsync off the event loop does) and records
    how many records each write carried."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.writes: list[int] = []

    async def write(self, bodies: Sequence[dict[str, Any]], sealer: Sealer) -> None:
        await asyncio.sleep(0.01)
        self.writes.append(len(bodies))
        await super().write(bodies, sealer)


@pytest.mark.asyncio
async def test_records_waiting_together_are_written_together(tmp_path: Path) -> None:
    sink = Slow(tmp_path / "audit.jsonl")
    log = AuditLog(sink, key=KEY)
    await log.record("create", session_id="lone")  # alone: its own write, at once
    assert sink.writes == [1]
    done: list[str] = []

    async def op(n: int) -> None:
        await log.record("append", session_id=f"s{n}")
        # Returned only once the record is in the file.
        assert f'"s{n}"' in (tmp_path / "audit.jsonl").read_text()
        done.append(f"s{n}")

    await asyncio.gather(*(op(n) for n in range(20)))
    assert len(done) == 20 and sum(sink.writes) == 21
    assert len(sink.writes) < 21  # the ones waiting behind the first write went out together
    recs = _records(tmp_path / "audit.jsonl")
    assert sorted(r["session_id"] for r in recs) == sorted(["lone", *done])
    assert verify_lines((tmp_path / "audit.jsonl").read_text().splitlines(), KEY).intact
    sink.broken = True  # a failed group write fails every operation in it
    results = await asyncio.gather(*(log.record("append", session_id=f"f{n}")
                                     for n in range(5)), return_exceptions=True)  # fmt: skip
    assert all(isinstance(r, AuditError) for r in results)
    assert all(f"f{n}" in str(r) for n, r in enumerate(results))
    await log.close()


@pytest.mark.asyncio
async def test_the_runtime_names_the_user_as_actor_unless_one_is_set(
    store_url: str, tmp_path: Path
) -> None:
    class Echo:
        async def execute(self, message: Message) -> Message:
            return Message.assistant(message.text)

    path = tmp_path / "audit.jsonl"
    mgr = SessionManager(store_url, audit=AuditLog(path, key=KEY))
    async with Runtime(session_manager=mgr) as rt:
        rt.register("echo", Echo())
        await rt.call("echo", Message.user(SECRET), user="bob")
        with audit_actor("support-agent"):
            await rt.call("echo", Message.user(SECRET), user="bob")
    await mgr.close()
    recs = [r for r in _records(path) if r["op"] == "append"]
    assert [(r["actor"], r["user_id"]) for r in recs] == [("bob", "bob")] * 2 + [
        ("support-agent", "bob")
    ] * 2
    assert SECRET not in path.read_text()


def test_the_runtime_audit_option_from_yaml(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "audit.jsonl"
    config = tmp_path / "aixgo.yaml"
    config.write_text(f"session: memory://\nruntime:\n  audit: {{target: {path}, fsync: true}}\n")
    monkeypatch.setenv("AIXGO_AUDIT_KEY", KEY.hex())

    class Echo:
        async def execute(self, message: Message) -> Message:
            return Message.assistant("ok")

    async def run() -> None:
        rt = Runtime.from_config(config)
        rt.register("echo", Echo())
        async with rt:
            await rt.call("echo", Message.user("hi"), user="carol")

    asyncio.run(run())
    recs = _records(path)
    assert [r["op"] for r in recs] == ["create", "append", "append"]
    assert {r["actor"] for r in recs} == {"carol"}


def test_the_cli_audits_as_the_os_user(tmp_path: Path) -> None:
    url = f"file://{tmp_path / 'sessions'}"
    path = tmp_path / "audit.jsonl"

    async def make() -> str:
        async with SessionManager(url) as mgr:
            return (await mgr.create("assistant", user_id="u1")).id

    sid = asyncio.run(make())
    env = {**os.environ, "AIXGO_AUDIT_LOG": str(path), "AIXGO_AUDIT_KEY": KEY.hex()}
    out = subprocess.run(["aixgo", "sessions", "--url", url, "delete", "--yes", sid], env=env,
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert out.returncode == 0, out.stderr
    (rec,) = _records(path)
    assert (rec["op"], rec["actor"], rec["session_id"], rec["user_id"]) == (
        "delete", getpass.getuser(), sid, "u1")  # fmt: skip


def test_keys_are_checked_and_never_shown(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="at least 16 bytes"):
        AuditLog(tmp_path / "a.jsonl", key=b"short")
    log = AuditLog(tmp_path / "a.jsonl", key=KEY)
    assert KEY.hex() not in repr(log) and str(KEY) not in repr(log)
    assert not (tmp_path / "a.jsonl").exists()  # nothing is created before a record


# -- the PostgreSQL sink ----------------------------------------------------------------------


@pytest.mark.asyncio
async def test_the_postgres_sink_chains_and_names_tampered_rows(pg_url: str) -> None:
    sink_url = pg_url.replace("?schema=", "?table=audit_log&schema=")
    await _every_operation(pg_url, AuditLog(sink_url, key=KEY))
    log = AuditLog(sink_url, key=KEY)
    report = await log.verify()
    assert report.intact and report.records >= 10
    cli = _verify_cli(sink_url)
    assert cli.returncode == 0 and f"intact: {report.records} records" in cli.stdout
    schema = pg_url.rsplit("schema=", 1)[1]
    table = f'"{schema}".audit_log'
    dsn = pg_url.split("?")[0]
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute(f"SELECT line FROM {table} ORDER BY idx").fetchall()
        assert SECRET not in str(rows) and META not in str(rows)
        # a swapped pair of rows
        conn.execute(f"UPDATE {table} SET line = %s WHERE idx = 2", (rows[3][0],))
        conn.execute(f"UPDATE {table} SET line = %s WHERE idx = 3", (rows[2][0],))
    assert (await log.verify()).first_bad == 2
    cli = _verify_cli(sink_url)
    assert cli.returncode == 1 and "record 2 (line 3)" in cli.stdout
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"UPDATE {table} SET line = %s WHERE idx = 2", (rows[2][0],))
        conn.execute(f"UPDATE {table} SET line = %s WHERE idx = 3", (rows[3][0],))
        assert (await log.verify()).intact
        conn.execute(f"DELETE FROM {table} WHERE idx = 1")  # a deleted row
    assert (await log.verify()).first_bad == 1
    await log.close()


_PG_WRITER = """
import asyncio, sys
from aixgo.audit import AuditLog
async def main():
    log = AuditLog(sys.argv[1], key=bytes(range(32)))
    for n in range(int(sys.argv[2])):
        await log.record("append", session_id=f"p{sys.argv[3]}-{n}", count=1)
    await log.close()
asyncio.run(main())
"""


def test_concurrent_processes_share_one_postgres_chain(pg_url: str) -> None:
    sink_url = pg_url.replace("?schema=", "?table=audit_mp&schema=")
    procs = [subprocess.Popen([sys.executable, "-c", _PG_WRITER, sink_url, "25", str(p)])
             for p in range(3)]  # fmt: skip
    assert [p.wait(timeout=300) for p in procs] == [0, 0, 0]

    async def check() -> None:
        log = AuditLog(sink_url, key=KEY)
        report = await log.verify()
        await log.close()
        assert report.intact and report.records == 75

    asyncio.run(check())


_ENDLESS = """
import asyncio, sys
from aixgo.audit import AuditLog
async def main():
    log = AuditLog(sys.argv[1], key=bytes(range(32)), fsync=sys.argv[2] == "fsync")
    n = 0
    while True:
        await log.record("append", session_id=f"s{n}", ids=["x" * 32] * 50, count=50)
        n += 1
asyncio.run(main())
"""


@pytest.mark.parametrize("fsync", ["fsync", "nofsync"])
def test_a_writer_killed_mid_write_leaves_a_log_the_next_writer_continues(
    tmp_path: Path, fsync: str
) -> None:
    path = tmp_path / "audit.jsonl"
    for _ in range(3):
        proc = subprocess.Popen([sys.executable, "-c", _ENDLESS, str(path), fsync])
        deadline = 600
        while (not path.exists() or path.stat().st_size < 20_000) and deadline:
            deadline -= 1
            time.sleep(0.05)
        proc.kill()  # SIGKILL: no cleanup, possibly in the middle of a write
        proc.wait(timeout=60)
    lines = path.read_text().splitlines()
    report = verify_lines(lines, KEY)
    # Everything before a torn final line is intact; the next writer cuts the torn line off.
    assert report.first_bad in (None, len(lines) - 1)
    asyncio.run(_append_one(path))
    after = verify_lines(path.read_text().splitlines(), KEY)
    assert after.intact and after.records >= report.records + 1


async def _append_one(path: Path) -> None:
    log = AuditLog(path, key=KEY)
    await log.record("create", session_id="after-the-crash")
    await log.close()


def test_audit_sinks_are_plugins(tmp_path: Path) -> None:
    from aixgo import hookimpl, plugins
    from aixgo.errors import PluginError

    class Sinks:
        @hookimpl
        def aixgo_register_audit_sinks(self, register: Any) -> None:
            register("flaky", lambda target, fsync=False: Flaky(tmp_path / "via-plugin.jsonl"))

    plugins.register_plugin(Sinks(), "sinks", "aixgo-test-sinks")
    try:
        assert "flaky" in [p for i in plugins.plugins() for p in i.audit_sinks]
        log = AuditLog("flaky://anything", key=KEY)
        asyncio.run(log.record("create", session_id="s"))
        asyncio.run(log.close())
        assert _records(tmp_path / "via-plugin.jsonl")[0]["op"] == "create"
        with pytest.raises(PluginError, match="no installed plugin provides the audit sink "
                           "scheme 'nosuch'.*Installed audit sink schemes: file://"):  # fmt: skip
            AuditLog("nosuch://x", key=KEY)
    finally:
        plugins.unregister_plugin("sinks")


def test_a_bad_audit_sink_registration_is_named() -> None:
    from aixgo import hookimpl, plugins
    from aixgo.errors import PluginError

    class Bad:
        @hookimpl
        def aixgo_register_audit_sinks(self, register: Any) -> None:
            register("Not A Scheme", "x:y")

    plugins.register_plugin(Bad(), "bad", "aixgo-test-bad")
    try:
        with pytest.raises(PluginError, match="audit sink scheme 'Not A Scheme' is invalid"):
            AuditLog("file:///tmp/x.jsonl", key=KEY)
    finally:
        plugins.unregister_plugin("bad")


class _Stalls(MemoryBackend):
    """Appends store the batch, then wait until released (a slow network answer)."""

    def __init__(self) -> None:
        super().__init__()
        self.stored = asyncio.Event()
        self.release = asyncio.Event()

    async def append_messages(self, session_id: str, messages: Any, **kw: Any) -> Any:
        out = await super().append_messages(session_id, messages, **kw)
        self.stored.set()
        await self.release.wait()
        return out


@pytest.mark.asyncio
async def test_a_cancelled_operation_is_recorded_as_cancelled(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    backend = _Stalls()
    mgr = SessionManager(backend, audit=AuditLog(path, key=KEY))
    s = await mgr.create("assistant", user_id="u1")
    call = asyncio.create_task(s.append_message(Message.user("stored, then cancelled")))
    await backend.stored.wait()
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    assert [m.text for m in await backend.get_messages(s.id)] == ["stored, then cancelled"]
    await mgr.close()
    recs = _records(path)
    assert [(r["op"], r["outcome"]) for r in recs] == [
        ("create", "ok"), ("append", "CancelledError")]  # fmt: skip
    assert verify_lines(path.read_text().splitlines(), KEY).intact
