"""Retention (issue #19, section 3): per-agent policies, ``sweep`` in bounded batches with a
dry run that changes nothing, on every backend; audited; from config, the CLI and the
runtime's background task."""

from __future__ import annotations

import asyncio
import io
import json
import os
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aixgo import Message, Runtime
from aixgo.audit import AuditLog, audit_actor
from aixgo.errors import ConfigError
from aixgo.session import SessionManager
from aixgo.session.archive import export_sessions, import_sessions
from aixgo.session.models import SessionInfo
from aixgo.session.retention import RetentionPolicy, _delete_unused, sweep

KEY = bytes(range(32))


async def _ids(mgr: SessionManager, agent: str | None = None) -> set[str]:
    return {i.id for i in (await mgr.list(agent=agent, limit=1000)).items}


@pytest.mark.asyncio
async def test_idle_sessions_go_and_a_dry_run_changes_nothing(store_url: str) -> None:
    async with SessionManager(store_url) as mgr:
        old = await mgr.create("assistant", user_id="u1")
        await old.append_message(Message.user("kept until swept"))
        await asyncio.sleep(0.3)
        new = await mgr.create("assistant", user_id="u1")
        other = await mgr.create("helper", user_id="u1")
        now = (await new.info()).updated_at + timedelta(seconds=0.1)
        policy = {"assistant": RetentionPolicy(idle=timedelta(seconds=0.2))}
        before = {i: await mgr.backend.get_session(i) for i in await _ids(mgr)}
        dry = await sweep(mgr, policy, dry_run=True, now=now)
        assert (dry.session_ids, dict(dry.by_rule), dry.examined) == ([old.id], {"idle": 1}, 2)
        assert {i: await mgr.backend.get_session(i) for i in await _ids(mgr)} == before
        assert [m.text for m in await old.get_messages()] == ["kept until swept"]
        done = await sweep(mgr, policy, now=now)
        assert (done.session_ids, done.deleted, done.dry_run) == ([old.id], 1, False)
        assert await _ids(mgr) == {new.id, other.id}


@pytest.mark.asyncio
async def test_sessions_older_than_max_age_go(store_url: str) -> None:
    async with SessionManager("memory://") as elsewhere:
        s = await elsewhere.create("assistant", user_id="u1")
        await s.append_message(Message.user("from long ago"))
        out = io.StringIO()
        await export_sessions(elsewhere, out.write)
    lines = out.getvalue().splitlines()
    rec = json.loads(lines[1])
    rec["session"]["created_at"] = "2020-01-01T00:00:00+00:00"
    lines[1] = json.dumps(rec)
    async with SessionManager(store_url) as mgr:
        await import_sessions(mgr, lines)  # keeps the archived created_at
        young = await mgr.create("assistant", user_id="u1")
        report = await sweep(mgr, {"assistant": RetentionPolicy(max_age=timedelta(days=30))})
        assert (report.session_ids, dict(report.by_rule)) == ([s.id], {"max_age": 1})
        assert await _ids(mgr) == {young.id}


@pytest.mark.asyncio
async def test_keep_last_per_user_and_agent_in_bounded_batches(store_url: str) -> None:
    async with SessionManager(store_url) as mgr:
        u1 = [await mgr.create("assistant", user_id="u1") for _ in range(5)]
        for s in u1:  # updated in creation order: the last one is the latest
            await s.append_message(Message.user("hi"))
        u2 = await mgr.create("assistant", user_id="u2")
        helper = await mgr.create("helper", user_id="u1")
        policy = {"assistant": RetentionPolicy(keep_last=2)}
        first = await sweep(mgr, policy, batch=2, max_deletions=2)
        assert (first.deleted, first.truncated) == (2, True)
        seen: list[int] = []
        rest = await sweep(mgr, policy, batch=2, progress=lambda a, r: seen.append(r.examined))
        assert (rest.deleted, rest.truncated, dict(rest.by_rule)) == (1, False, {"keep_last": 1})
        assert seen == [2, 4]  # one progress report per batch
        assert set(first.session_ids + rest.session_ids) == {s.id for s in u1[:3]}
        assert await _ids(mgr) == {u1[3].id, u1[4].id, u2.id, helper.id}


@pytest.mark.asyncio
async def test_a_session_used_since_it_was_listed_is_spared(store_url: str) -> None:
    async with SessionManager(store_url) as mgr:
        s = await mgr.create("assistant", user_id="u1")
        listed = (await mgr.list()).items[0]
        await s.append_message(Message.user("just now"))
        assert await _delete_unused(mgr, listed) is False
        assert await _ids(mgr) == {s.id}
        assert await _delete_unused(mgr, await mgr.backend.get_session(s.id)) is True
        assert await _ids(mgr) == set()


@pytest.mark.asyncio
async def test_sweeps_are_audited_and_dry_runs_are_not(store_url: str, tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    async with SessionManager(store_url, audit=AuditLog(path, key=KEY)) as mgr:
        a = await mgr.create("assistant", user_id="u1")
        b = await mgr.create("assistant", user_id="u1")
        await b.append_message(Message.user("latest"))
        size = path.stat().st_size
        policy = {"assistant": RetentionPolicy(keep_last=1)}
        await sweep(mgr, policy, dry_run=True)
        assert path.stat().st_size == size
        with audit_actor("janitor"):
            await sweep(mgr, policy)
    recs = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(r["op"], r["session_id"], r["count"], r["actor"]) for r in recs[-2:]] == [
        ("delete", a.id, None, "janitor"), ("sweep", None, 1, "janitor")]  # fmt: skip
    assert recs[-1]["agent"] == "assistant" and recs[-1]["outcome"] == "ok"


def test_policies_from_config_are_checked(tmp_path: Path) -> None:
    assert RetentionPolicy.from_mapping({"idle": "2w", "max_age": 3600, "keep_last": 3}) == (
        RetentionPolicy(timedelta(days=14), timedelta(hours=1), 3))  # fmt: skip
    cases = [({"idel": "1d"}, "unknown rule"), ({"idle": "soon"}, "a duration"),
             ({"keep_last": 0}, "positive integer"), ({"max_age": -5}, "positive")]  # fmt: skip
    for bad, why in cases:
        with pytest.raises(ConfigError, match=why):
            RetentionPolicy.from_mapping(bad)
    config = tmp_path / "aixgo.yaml"
    config.write_text("runtime:\n  retention:\n    assistant: {idle: 30d, kep_last: 2}\n")
    with pytest.raises(ConfigError, match=r"retention.*kep_last"):
        Runtime.from_config(config)


def test_the_sweep_command(tmp_path: Path) -> None:
    url = f"file://{tmp_path / 'sessions'}"

    async def make() -> list[str]:
        async with SessionManager(url) as mgr:
            out = []
            for _ in range(3):
                s = await mgr.create("assistant", user_id="u1")
                await s.append_message(Message.user("hi"))
                out.append(s.id)
            return out

    ids = asyncio.run(make())
    config = tmp_path / "aixgo.yaml"
    config.write_text("runtime:\n  retention:\n    assistant: {keep_last: 1}\n")

    def aixgo(*args: str) -> subprocess.CompletedProcess[str]:
        argv = ["aixgo", "sessions", "--url", url, "sweep", *args]
        return subprocess.run(argv, capture_output=True, text=True, timeout=120, env=os.environ)

    dry = aixgo("--config", str(config), "--dry-run", "--progress")
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.splitlines() == [
        "would delete 2 of 3 sessions examined (by rule: keep_last 2; spared as used "
        "meanwhile: 0)", f"  {ids[1]}", f"  {ids[0]}"]  # fmt: skip
    assert "sweep: 3 sessions examined, assistant: 2 selected" in dry.stderr  # one line/batch
    done = aixgo("--agent", "assistant", "--keep-last", "1", "--json")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert (data["deleted"], data["session_ids"], data["dry_run"]) == (2, [ids[1], ids[0]], False)
    bad = aixgo("--agent", "assistant")
    assert bad.returncode == 2 and "--idle" in bad.stderr


@pytest.mark.asyncio
async def test_the_runtime_sweeps_in_the_background(store_url: str) -> None:
    class Echo:
        async def execute(self, message: Message) -> Message:
            return Message.assistant("ok")

    mgr = SessionManager(store_url)
    for n in range(3):
        s = await mgr.create("echo", user_id="u1")
        await s.append_message(Message.user(f"{n}"))
    rt = Runtime(session_manager=mgr, retention={"echo": {"keep_last": 1}},
                 retention_interval=0.05)  # fmt: skip
    rt.register("echo", Echo())
    async with rt:
        for _ in range(400):
            if len(await _ids(mgr)) == 1:
                break
            await asyncio.sleep(0.05)
    assert len(await _ids(mgr)) == 1
    await mgr.close()


def test_a_policy_names_the_rule_that_selects_a_session() -> None:
    policy = RetentionPolicy(idle=timedelta(days=1), max_age=timedelta(days=10), keep_last=2)
    t = datetime.now(UTC)
    info = SessionInfo(id="a" * 32, agent="x", user_id=None, created_at=t - timedelta(days=20),
                       updated_at=t, metadata={})  # fmt: skip
    assert policy.reason(info, 0, t + timedelta(days=2)) == "idle"
    assert policy.reason(info, 0, t) == "max_age"
    young = info.model_copy(update={"created_at": t})
    assert policy.reason(young, 2, t) == "keep_last"
    assert policy.reason(young, 1, t) is None
