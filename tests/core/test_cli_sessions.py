"""``aixgo sessions ...`` on real stores, and sessions moved losslessly between backends."""

from __future__ import annotations

import asyncio
import itertools
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from aixgo import Message, ToolCall
from aixgo.cli import cli
from aixgo.identifiers import new_id
from aixgo.session import SessionManager
from aixgo.session.archive import _on_current_history
from click.testing import CliRunner, Result

# -- helpers -------------------------------------------------------------------------------


def run(*args: str, input: str | None = None, ok: bool = True) -> Result:
    result = CliRunner().invoke(cli, list(args), input=input, catch_exceptions=True)
    if ok:
        assert result.exit_code == 0, (result.output, result.stderr, result.exception)
    return result


def sync(coro: Any) -> Any:
    return asyncio.run(coro)


async def seed(url: str) -> dict[str, Any]:
    """Three sessions with everything a message can carry, checkpoints, and a restore."""
    async with SessionManager(url) as mgr:
        a = await mgr.create("assistant", user_id="alice", metadata={"title": "trip", "n": [1]})
        call = ToolCall(name="weather", arguments={"city": "Oslo"})
        await a.append_messages(
            [
                Message.system("Be brief."),
                Message.user("Hello! My name is Alice. ünïcödé ✓"),
                Message.assistant(tool_calls=[call], metadata={"model": "m1"}),
                Message.tool("12°C", tool_call_id=call.id, name="weather"),
                Message.user([{"type": "text", "text": "parts"}, {"type": "image", "url": "x"}]),
            ]
        )
        cp = await a.checkpoint(label="five")
        await a.append_message(Message.assistant("done"))
        b = await mgr.create("assistant", user_id="bob")
        await b.append_message(Message.user("I am Bob"))
        tail = await b.checkpoint(label="one")
        await b.append_message(Message.assistant("hi Bob"))
        await b.restore(tail.id)  # bob's "hi Bob" is now only reachable by the undo checkpoint
        await b.append_message(Message.assistant("Hello Bob"))
        c = await mgr.create("classifier")  # no user, no messages
        return {"a": a.id, "b": b.id, "c": c.id, "cp": cp.id}


async def snapshot(url: str) -> dict[str, Any]:
    """Everything the protocol shows of every session, for exact comparison (checkpoints into
    discarded branches aside: an archive cannot carry them)."""
    out: dict[str, Any] = {}
    async with SessionManager(url) as mgr:
        for info in (await mgr.list(limit=1000)).items:
            s = await mgr.get(info.id)
            messages = await s.get_messages()
            out[info.id] = {
                "info": info.model_dump(exclude={"updated_at"}),
                "messages": [m.model_dump() for m in messages],
                "checkpoints": sorted(
                    (c.seq, c.id, c.label)
                    for c in await s.list_checkpoints()
                    if _on_current_history(c, messages)
                ),
            }
    return out


@pytest.fixture
def file_url(tmp_path: Path) -> str:
    return f"file://{tmp_path}/store"


# -- commands ------------------------------------------------------------------------------


def test_list_show_checkpoints_restore_delete(file_url: str) -> None:
    ids = sync(seed(file_url))
    out = run("sessions", "--url", file_url, "list").output
    assert out.splitlines()[0].split() == ["ID", "AGENT", "USER", "MESSAGES", "UPDATED", "TITLE"]
    assert ids["a"] in out and "trip" in out and "alice" in out
    page = json.loads(run("sessions", "--url", file_url, "list", "--json", "--limit", "2").output)
    assert len(page["items"]) == 2 and page["next_cursor"]
    rest = run("sessions", "--url", file_url, "list", "--json", "--cursor", page["next_cursor"])
    assert len(json.loads(rest.output)["items"]) == 1
    only = json.loads(run("sessions", "--url", file_url, "list", "--json", "--user", "bob").output)
    assert [i["id"] for i in only["items"]] == [ids["b"]]

    shown = run("sessions", "--url", file_url, "show", ids["a"]).output
    assert "Hello! My name is Alice. ünïcödé ✓" in shown and "[calls weather]" in shown
    data = json.loads(run("sessions", "--url", file_url, "show", ids["a"], "--json").output)
    assert data["session"]["metadata"] == {"title": "trip", "n": [1]}
    assert [m["seq"] for m in data["messages"]] == [1, 2, 3, 4, 5, 6]
    last = json.loads(
        run("sessions", "--url", file_url, "show", ids["a"], "--last", "1", "--json").output
    )
    assert [m["content"] for m in last["messages"]] == ["done"]
    refused = run("sessions", "--url", file_url, "show", ids["a"], "--user", "bob", ok=False)
    assert refused.exit_code != 0

    cps = run("sessions", "--url", file_url, "checkpoints", ids["a"]).output
    assert ids["cp"] in cps and "five" in cps
    restored = json.loads(
        run("sessions", "--url", file_url, "restore", ids["a"], ids["cp"], "--json").output
    )
    assert restored["session"]["message_count"] == 5
    undo = restored["undo"]["id"]
    text = run("sessions", "--url", file_url, "restore", ids["a"], undo).output
    assert "6 messages" in text

    aborted = run("sessions", "--url", file_url, "delete", ids["c"], input="n\n", ok=False)
    assert aborted.exit_code == 1
    run("sessions", "--url", file_url, "delete", "--yes", ids["c"])
    remaining = json.loads(run("sessions", "--url", file_url, "list", "--json").output)["items"]
    assert ids["c"] not in {i["id"] for i in remaining}


def test_the_script_reports_errors_in_one_line(file_url: str) -> None:
    aixgo = shutil.which("aixgo")
    assert aixgo is not None
    missing = new_id()
    proc = subprocess.run(
        [aixgo, "sessions", "--url", file_url, "show", missing],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: session") and missing in proc.stderr


def test_url_comes_from_the_environment(file_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    ids = sync(seed(file_url))
    monkeypatch.setenv("AIXGO_SESSION_URL", file_url)
    assert ids["b"] in run("sessions", "list").output


def test_export_import_is_lossless_and_reports_what_it_cannot_carry(
    file_url: str, tmp_path: Path
) -> None:
    ids = sync(seed(file_url))
    archive = tmp_path / "all.jsonl"
    exported = run("sessions", "--url", file_url, "export", "-o", str(archive), "--progress")
    assert "exporting: 3/3 sessions, 8 messages" in exported.stderr
    lines = [json.loads(x) for x in archive.read_text().splitlines()]
    assert lines[0]["type"] == "header" and lines[0]["format"] == "aixgo-sessions"
    assert sum(1 for x in lines if x["type"] == "end") == 3

    target = f"file://{tmp_path}/copy"
    imported = run("sessions", "--url", target, "import", str(archive), "--json", "--progress")
    stats = json.loads(imported.stdout)
    assert stats == {"sessions": 3, "messages": 8, "checkpoints": 2, "sessions_skipped": 0,
                     "checkpoints_skipped": 1,  # bob's undo checkpoint: discarded tail
                     "sessions_unchanged": 0, "sessions_completed": 0,
                     "sessions_replaced": 0}  # fmt: skip
    assert "importing: 3 sessions" in imported.stderr
    assert sync(snapshot(target)) == sync(snapshot(file_url))

    # Again: sessions already there as archived are left alone in every mode.
    for how in ("fail", "skip", "replace"):
        again = run("sessions", "--url", target, "import", str(archive), "--on-conflict", how)
        assert "imported 0 sessions" in again.output
        assert "3 sessions were there already" in again.output

    # Checkpoints still work in the copy (and the restore makes that session differ).
    run("sessions", "--url", target, "restore", ids["a"], ids["cp"])

    # A session that differs is a conflict: fails by default, can be skipped or replaced.
    again = run("sessions", "--url", target, "import", str(archive), ok=False)
    assert "exists in the target store already" in str(again.exception)
    skipped = run("sessions", "--url", target, "import", str(archive), "--on-conflict", "skip")
    assert "skipped 1 existing sessions" in skipped.output
    run("sessions", "--url", target, "import", str(archive), "--on-conflict", "replace")
    assert sync(snapshot(target)) == sync(snapshot(file_url))

    # Filters and stdout.
    only_bob = run("sessions", "--url", file_url, "export", "--user", "bob").stdout
    assert {json.loads(x).get("session_id") for x in only_bob.splitlines()} - {None} == {ids["b"]}
    one = run("sessions", "--url", file_url, "export", ids["c"]).stdout
    fresh = f"file://{tmp_path}/fresh"
    run("sessions", "--url", fresh, "import", "-", input=one)
    assert list(sync(snapshot(fresh))) == [ids["c"]]


def test_a_damaged_archive_is_refused_naming_the_line(file_url: str, tmp_path: Path) -> None:
    ids = sync(seed(file_url))
    archive = tmp_path / "a.jsonl"
    run("sessions", "--url", file_url, "export", ids["a"], ids["b"], "-o", str(archive))
    lines = archive.read_text().splitlines()
    target = f"file://{tmp_path}/t"
    cases = {
        "cut.jsonl": ("\n".join(lines[:-1]), "has no end line"),
        "junk.jsonl": ("\n".join([*lines[:3], "{oops", *lines[3:]]), "line 4: not JSON"),
        "nohead.jsonl": ("\n".join(lines[1:]), "line 1: not an aixgo session archive"),
        "empty.jsonl": ("", "is empty"),
        "badid.jsonl": (
            "\n".join([lines[0], lines[1].replace(ids["a"], "../../etc")]),
            "line 2: malformed session record: invalid session id",
        ),
        "badagent.jsonl": (
            "\n".join([lines[0], lines[1].replace('"assistant"', '"a\\u0000b"')]),
            "line 2: malformed session record: agent name",
        ),
    }
    for name, (text, why) in cases.items():
        (tmp_path / name).write_text(text)
        result = run("sessions", "--url", target, "import", str(tmp_path / name), ok=False)
        assert why in str(result.exception), (name, result.exception)
    # The complete first session of the cut archive was imported; the cut one was not.
    assert list(sync(snapshot(target))) == [ids["a"]]


# -- migration across all backends (servers from conftest.py) ------------------------------


def test_migration_file_redis_postgres_and_back(
    file_url: str, redis_url: str, pg_url: str, tmp_path: Path
) -> None:
    sync(seed(file_url))

    async def many() -> None:  # enough to page through and batch
        async with SessionManager(file_url) as mgr:
            for i in range(30):
                s = await mgr.create(f"agent-{i % 3}", user_id=f"user-{i % 7}")
                await s.append_messages([Message.user(f"m{i}-{j}") for j in range(i * 20 + 1)])

    sync(many())
    original = sync(snapshot(file_url))
    back = f"file://{tmp_path}/back"
    hops = [file_url, redis_url, pg_url, back]
    for i, (src, dst) in enumerate(itertools.pairwise(hops)):
        archive = tmp_path / f"hop{i}.jsonl"
        run("sessions", "--url", src, "export", "-o", str(archive))
        run("sessions", "--url", dst, "import", str(archive))
        copy = sync(snapshot(dst))
        assert copy.keys() == original.keys(), dst
        for sid, data in original.items():
            for n, (want, got) in enumerate(
                zip(data["messages"], copy[sid]["messages"], strict=True)
            ):
                assert got == want, (dst, sid, n)
            assert copy[sid] == data, dst
