"""``aixgo sessions ...`` on real stores, and sessions moved losslessly between backends."""

from __future__ import annotations

import asyncio
import itertools
import json
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from aixgo import Message, ToolCall
from aixgo.cli import cli, main
from aixgo.errors import SessionNotFound
from aixgo.identifiers import new_id
from aixgo.session import SessionManager
from aixgo.session.archive import _on_current_history, export_sessions
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
    assert stat.S_IMODE(archive.stat().st_mode) == 0o600  # conversations: owner only
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
    assert "importing: 3/3 sessions, 8 messages" in imported.stderr  # total counted in the archive
    assert sync(snapshot(target)) == sync(snapshot(file_url))

    # Into the store it came from: every session is there already, bob's with the checkpoint
    # into his discarded reply that the archive names but cannot carry.
    same = run("sessions", "--url", file_url, "import", str(archive), "--on-conflict", "replace")
    assert "imported 0 sessions" in same.output
    assert "3 sessions were there already" in same.output

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


# -- safety: --user, terminals, errors, interrupted imports --------------------------------


def test_every_command_treats_another_users_session_as_not_found(
    file_url: str, tmp_path: Path
) -> None:
    ids = sync(seed(file_url))
    a, cp = ids["a"], ids["cp"]
    before = sync(snapshot(file_url))
    older = tmp_path / "older.jsonl"
    older.write_text("an older archive\n")
    for args in (
        ["show", a],
        ["export", a],
        ["export", a, "-o", str(tmp_path / "x.jsonl")],
        ["export", a, "-o", str(older)],
        ["checkpoints", a],
        ["restore", a, cp],
        ["delete", "--yes", a],
    ):
        refused = run("sessions", "--url", file_url, *args, "--user", "bob", ok=False)
        assert refused.exit_code == 1, (args, refused.output)
        assert f"session {a!r} does not exist" in str(refused.exception), args
        assert "Alice" not in refused.stdout and "five" not in refused.stdout, args
    assert sync(snapshot(file_url)) == before
    # A refused export leaves no file, and an older one as it was.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["older.jsonl", "store"]
    assert older.read_text() == "an older archive\n"
    # The owner passes.
    assert cp in run("sessions", "--url", file_url, "checkpoints", a, "--user", "alice").output
    undo = run("sessions", "--url", file_url, "restore", a, cp, "--user", "alice").output
    assert "--user alice" in undo
    assert "Alice" in run("sessions", "--url", file_url, "export", a, "--user", "alice").output


HOSTILE = "\x1b]0;pwned\x07\x1b[2J\x9b31m\x7f\x00"


def test_stored_control_characters_are_escaped_in_human_output_and_exact_in_json(
    file_url: str,
) -> None:
    from aixgo.message import utc_now
    from aixgo.session.models import SessionInfo

    async def hostile() -> tuple[str, str]:
        async with SessionManager(file_url) as mgr:
            s = await mgr.create("assistant", user_id="u", metadata={"title": HOSTILE[:-1]})
            await s.append_message(Message.user(f"line one\n{HOSTILE[:-1]}\ttab"))
            sid = new_id()  # what an older version or another tool may have stored
            now = utc_now()
            info = SessionInfo(id=sid, agent=f"ag{HOSTILE}", user_id=f"u{HOSTILE}",
                               created_at=now, updated_at=now)  # fmt: skip
            await mgr.backend.create_session(info)
            await mgr.backend.create_checkpoint(sid, new_id(), label=f"l{HOSTILE}")
            return s.id, sid

    ok, odd = sync(hostile())
    outputs = [
        run("sessions", "--url", file_url, "list").output,
        run("sessions", "--url", file_url, "show", ok).output,
        run("sessions", "--url", file_url, "show", odd).output,
        run("sessions", "--url", file_url, "checkpoints", odd).output,
    ]
    for out in outputs:
        assert not any(c in out for c in "\x1b\x07\x9b\x7f\x00"), out
    assert "\\x1b]0;pwned\\x07\\x1b[2J\\x9b31m\\x7f" in outputs[0]
    # A message's second line is indented under its first, in the MESSAGE column.
    assert "user  line one\n           \\x1b]0;pwned" in outputs[1]
    assert "\\x09tab" not in outputs[1]
    assert "ag\\x1b]0;pwned" in outputs[2] and "l\\x1b]0;pwned" in outputs[3]
    # --json is exact: the same text once decoded, with every control character escaped.
    shown = run("sessions", "--url", file_url, "show", odd, "--json").output
    assert not any(c in shown for c in "\x1b\x07\x9b\x7f\x00")
    assert json.loads(shown)["session"]["agent"] == f"ag{HOSTILE}"
    listed = run("sessions", "--url", file_url, "list", "--json").output
    assert {i["user_id"] for i in json.loads(listed)["items"]} == {"u", f"u{HOSTILE}"}


def aixgo(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str
) -> tuple[int, str]:
    """The ``aixgo`` script's entry point in this process (a subprocess per case costs
    seconds here; test_the_script_reports_errors_in_one_line runs the real script):
    its exit status and stderr."""
    monkeypatch.setattr(sys, "argv", ["aixgo", *args])
    capsys.readouterr()
    with pytest.raises(SystemExit) as exited:
        main()
    return int(exited.value.code or 0), capsys.readouterr().err


def test_bad_files_are_one_line_errors_with_documented_exit_codes(
    file_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    ids = sync(seed(file_url))
    good = tmp_path / "good.jsonl"
    run("sessions", "--url", file_url, "export", ids["b"], "-o", str(good))
    lines = good.read_bytes().splitlines()
    (tmp_path / "latin1.jsonl").write_bytes(b"\n".join([*lines[:2], b'{"x": "\xe9"}']))
    deep = b'{"type":"session","session":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    (tmp_path / "deep.jsonl").write_bytes(b"\n".join([lines[0], deep]))
    target = f"file://{tmp_path}/t"
    cases = [
        (["import", str(tmp_path / "missing.jsonl")], "cannot read", "No such file"),
        (["import", str(tmp_path / "latin1.jsonl")], "line 3: not UTF-8 text", "0xe9"),
        (["import", str(tmp_path / "deep.jsonl")], "line 2: JSON nested too deeply", ""),
        (["export", "-o", str(tmp_path / "no" / "dir.jsonl")], "cannot write", "No such"),
        (["export", "-o", str(good / "x.jsonl")], "cannot write", "Not a directory"),
    ]
    for args, what, detail in cases:
        url = target if args[0] == "import" else file_url
        code, err = aixgo(monkeypatch, capsys, "sessions", "--url", url, *args)
        assert code == 1, (args, err)
        assert err.startswith("error: ") and err.count("\n") == 1, err
        assert what in err and detail in err, err
    for args in (["import", "--on-conflict", "maybe", str(good)], ["export", "-o", str(tmp_path)]):
        code, err = aixgo(monkeypatch, capsys, "sessions", "--url", target, *args)
        assert code == 2 and "Traceback" not in err, err  # the command line itself is wrong
    assert sync(snapshot(target)) == {}


async def _big(url: str, archive: Path, messages: int) -> dict[str, Any]:
    """Seed ``url`` (quickly: memory://) with small sessions around one of ``messages``
    messages with checkpoints, export it to ``archive``, return its snapshot."""
    async with SessionManager(url) as mgr:
        first = await mgr.create("assistant", user_id="u1")
        await first.append_message(Message.user("first"))
        big = await mgr.create("assistant", user_id="u2", metadata={"title": "big"})
        for k in range(0, messages, 5000):
            await big.append_messages([Message.user(f"m{k + i}") for i in range(5000)])
            await big.checkpoint(label=f"at {k + 5000}")
        last = await mgr.create("other")
        await last.append_message(Message.user("last"))
        ids = [first.id, big.id, last.id]
        with archive.open("w") as out:
            await export_sessions(mgr, out.write, session_ids=ids)
        snap = await snapshot_of(mgr)
        snap["ids"] = ids
        return snap


async def snapshot_of(mgr: SessionManager) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for info in (await mgr.list(limit=1000)).items:
        s = await mgr.get(info.id)
        out[info.id] = {
            "info": info.model_dump(exclude={"updated_at"}),
            "ids": [m.id for m in await s.get_messages()],
            "checkpoints": sorted((c.seq, c.id, c.label) for c in await s.list_checkpoints()),
        }
    return out


def _import_until_half_way(target: str, archive: Path, big: str, sig: int) -> int:
    """Start ``aixgo sessions import`` and send it ``sig`` once the big session is partly
    written (the import of it takes seconds: many batches of 500); return its exit status."""
    exe = shutil.which("aixgo")
    assert exe is not None
    proc = subprocess.Popen(
        [exe, "sessions", "--url", target, "import", str(archive)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )

    async def count() -> int:
        async with SessionManager(target) as mgr:
            try:
                return (await (await mgr.get(big)).info()).message_count
            except SessionNotFound:
                return 0

    deadline = time.monotonic() + 120
    while sync(count()) < 5000:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.01)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    if sig != signal.SIGKILL:
        assert "interrupted: 1 sessions were written" in err, err
        assert "Aborted!" in err and "Traceback" not in err, err
    return proc.returncode


@pytest.fixture
def big_archive(tmp_path: Path) -> tuple[Path, dict[str, Any], list[str]]:
    """An archive of three sessions, the middle one of 40,000 messages; its snapshot; ids."""
    archive = tmp_path / "big.jsonl"
    source = sync(_big("memory://", archive, 40_000))
    return archive, source, source.pop("ids")


async def _state(url: str) -> dict[str, Any]:
    async with SessionManager(url) as mgr:
        return await snapshot_of(mgr)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "ctrl-c"])
def test_an_import_terminated_half_way_rolls_back_and_a_rerun_finishes(
    tmp_path: Path, big_archive: tuple[Path, dict[str, Any], list[str]], sig: signal.Signals
) -> None:
    archive, source, (first, big, _) = big_archive
    # SIGTERM acts like Ctrl-C: the session in progress is rolled back; exit status 1.
    target = f"file://{tmp_path}/term"
    assert _import_until_half_way(target, archive, big, sig) == 1
    assert list(sync(_state(target))) == [first]
    run("sessions", "--url", target, "import", str(archive))
    assert sync(_state(target)) == source


@pytest.mark.parametrize("how", ["fail", "skip"])
def test_an_import_killed_half_way_is_finished_by_running_it_again(
    tmp_path: Path, big_archive: tuple[Path, dict[str, Any], list[str]], how: str
) -> None:
    archive, source, (first, big, _) = big_archive
    # kill -9: no rollback can run, so the big session is cut short...
    target = f"file://{tmp_path}/kill"
    assert _import_until_half_way(target, archive, big, signal.SIGKILL) == -signal.SIGKILL
    cut = sync(_state(target))
    assert set(cut) == {first, big}
    assert 0 < len(cut[big]["ids"]) < len(source[big]["ids"])
    assert cut[big]["ids"] == source[big]["ids"][: len(cut[big]["ids"])]
    # ...and the same command again (or with skip, which must not skip it) completes it.
    done = run("sessions", "--url", target, "import", str(archive), "--on-conflict", how)
    assert "1 cut short by an earlier run, now completed" in done.output
    assert "1 sessions were there already" in done.output
    assert sync(_state(target)) == source
