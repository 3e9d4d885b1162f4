"""``aixgo file repair``: rebuild sidecars and compacted listing indexes from the logs."""

# ruff: noqa: ASYNC240 - tests poke at store files directly, on purpose

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from aixgo import Message, plugins
from aixgo.session import SessionManager
from aixgo_backend_file._index import ENTRY
from aixgo_backend_file._state import IDX
from aixgo_backend_file.repair import repair


def aixgo_file_repair(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """``aixgo file repair ARGS`` through the installed ``aixgo`` script."""
    script = shutil.which("aixgo")
    assert script is not None, "the aixgo script is not on PATH"
    return subprocess.run(
        [script, "file", "repair", *args], capture_output=True, text=True, check=False, cwd=cwd
    )


async def build(url: str) -> list[str]:
    async with SessionManager(url) as mgr:
        ids = []
        for i in range(5):
            s = await mgr.create("agent", user_id=f"user-{i % 2}", metadata={"i": i})
            await s.append_messages([Message.user(f"{i}-{k}") for k in range(3)])
            cp = await s.checkpoint()
            await s.append_message(Message.user("x"))
            await s.restore(cp.id)
            ids.append(s.id)
        doomed = await mgr.create("agent", user_id="user-0")
        await mgr.delete(doomed.id)
        return ids


KEYS: list[dict[str, str]] = [
    {},
    {"agent": "agent"},
    {"user_id": "user-0"},
    {"agent": "agent", "user_id": "user-1"},
]


async def listing(url: str, **kw: str) -> list[tuple[str, int]]:
    async with SessionManager(url) as mgr:
        return [(i.id, i.message_count) for i in (await mgr.list(**kw)).items]


@pytest.mark.asyncio
async def test_repair_rebuilds_indexes_and_sidecars(store_url: str, store_dir: Path) -> None:
    await build(store_url)
    before = [await listing(store_url, **k) for k in KEYS]
    sizes = {p: p.stat().st_size for p in store_dir.glob("i/*.ix")}
    sidecars = {p: p.read_bytes() for p in store_dir.glob("s/*/*") if p.suffix != ".log"}
    for p in store_dir.glob("i/*.ix"):
        p.unlink()
    for p in sidecars:
        p.unlink()
    report = repair(store_url)
    assert report.sessions == 5 and not report.damaged and report.indexes == 6
    assert [await listing(store_url, **k) for k in KEYS] == before
    for p, size in sizes.items():  # compacted: one line per session
        assert p.stat().st_size <= size
    assert (store_dir / "i" / "g.ix").stat().st_size == 5 * ENTRY
    assert {p: p.read_bytes() for p in sidecars} == sidecars


@pytest.mark.asyncio
async def test_repair_cli_reports_damage_with_file_and_line(
    store_url: str, store_dir: Path
) -> None:
    await build(store_url)
    log = sorted(store_dir.glob("s/*/*.log"))[0]
    data = bytearray(log.read_bytes())
    data[data.index(b'"content":"') + 11] ^= 0x01
    log.write_bytes(bytes(data))
    proc = aixgo_file_repair(store_url)
    assert proc.returncode == 1, proc.stderr
    assert f"DAMAGED {log}, line 2" in proc.stdout
    assert "4 sessions" in proc.stdout
    bad = aixgo_file_repair("file://relative")
    assert bad.returncode == 2 and "absolute" in bad.stderr


def tree(store_dir: Path) -> dict[str, tuple[int, bytes]]:
    """Every file under the store: mode and content."""
    return {
        str(p.relative_to(store_dir)): (p.stat().st_mode, p.read_bytes())
        for p in sorted(store_dir.rglob("*"))
        if p.is_file()
    }


def check(url: str) -> subprocess.CompletedProcess[str]:
    return aixgo_file_repair("--check", url)


@pytest.mark.asyncio
async def test_repair_check_reports_what_repair_would_do_and_changes_nothing(
    store_url: str, store_dir: Path
) -> None:
    ids = await build(store_url)
    logs = sorted(store_dir.glob("s/*/*.log"))
    idx = logs[0].with_suffix(".idx")
    data = bytearray(idx.read_bytes())
    data[IDX.size] ^= 0x01  # entry 2 of a derived index gone bad
    idx.write_bytes(bytes(data))
    with logs[1].open("ab") as f:
        f.write(b"0000004")  # a record torn by a crash
    never = store_dir / "s" / "00" / ("00" * 16 + ".log")  # a create that never completed
    never.parent.mkdir(mode=0o700, exist_ok=True)
    never.touch(mode=0o600)
    before = tree(store_dir)
    proc = check(store_url)
    assert proc.returncode == 1, proc.stderr
    assert tree(store_dir) == before  # not a byte changed, nothing made or removed
    out = proc.stdout
    assert f"{len(ids)} sessions checked; nothing was changed" in out
    assert f"NEEDS REPAIR {idx}: entry 2 does not match the log; the index needs repair" in out
    assert f"NEEDS REPAIR {logs[1]}: 7 bytes from byte " in out
    assert f"would remove {'00' * 16}" in out
    assert "DAMAGED" not in out
    report = repair(store_url)
    assert report.sessions == len(ids) and not report.damaged
    proc = check(store_url)
    assert proc.returncode == 0, proc.stdout
    assert proc.stdout.strip() == f"{len(ids)} sessions checked; nothing was changed"


@pytest.mark.asyncio
async def test_repair_takes_a_path_too_and_is_a_command_of_the_file_plugin(
    store_url: str, store_dir: Path
) -> None:
    ids = await build(store_url)
    idx = sorted(store_dir.glob("s/*/*.idx"))[0]
    idx.unlink()
    relative = aixgo_file_repair("--check", store_dir.name, cwd=store_dir.parent)
    assert relative.returncode == 1, relative.stderr
    assert f"NEEDS REPAIR {idx}: missing" in relative.stdout
    fixed = aixgo_file_repair(str(store_dir))
    assert fixed.returncode == 0, fixed.stderr
    assert f"{len(ids)} sessions, 6 listing indexes rebuilt" in fixed.stdout
    assert check(str(store_dir)).returncode == 0
    (info,) = [p for p in plugins.plugins() if p.name == "file"]
    assert (info.distribution, info.commands) == ("aixgo-backend-file", ["file"])


def test_a_hostile_store_path_is_refused_escaped_and_nothing_is_made(tmp_path: Path) -> None:
    hostile = tmp_path / "a\x1b]0;pwned\x07\x1b[2J"
    for args in (("--check", str(hostile)), (str(hostile),)):
        out = aixgo_file_repair(*args)
        assert out.returncode == 2
        assert "\x1b" not in out.stderr and "\x07" not in out.stderr
        assert "\\x1b]0;pwned\\x07" in out.stderr
    assert list(tmp_path.iterdir()) == []
