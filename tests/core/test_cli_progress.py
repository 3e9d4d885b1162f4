"""Progress of export and import: a bar with count, rate and time left on a terminal (a real
pseudo-terminal here), plain lines or nothing elsewhere; and CLI errors that name commands."""

from __future__ import annotations

import asyncio
import io
import os
import pty
import shutil
import subprocess
from pathlib import Path

import pytest
from aixgo import Message
from aixgo.cli_progress import ProgressReport
from aixgo.session import SessionManager


def _aixgo() -> str:
    exe = shutil.which("aixgo")
    assert exe is not None
    return exe


@pytest.fixture
def store(tmp_path: Path) -> str:
    url = f"file://{tmp_path}/store"

    async def seed() -> None:
        async with SessionManager(url) as mgr:
            for n in range(3):
                s = await mgr.create("assistant", user_id=f"user-{n}")
                await s.append_message(Message.user(f"hello {n}"))

    asyncio.run(seed())
    return url


def _on_a_terminal(args: list[str]) -> tuple[int, str]:
    """Run the aixgo script with stderr on a pseudo-terminal: its status and what it drew."""
    main, secondary = pty.openpty()
    env = {**os.environ, "TERM": "xterm", "COLUMNS": "140"}
    env.pop("NO_COLOR", None)
    proc = subprocess.Popen([_aixgo(), *args], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=secondary, env=env)  # fmt: skip
    os.close(secondary)
    drawn = b""
    while True:
        try:
            chunk = os.read(main, 65536)
        except OSError:  # EIO: the script closed the terminal's last writer
            break
        if not chunk:
            break
        drawn += chunk
    os.close(main)
    return proc.wait(timeout=120), drawn.decode("utf-8", "replace")


def test_export_and_import_draw_a_bar_with_total_rate_and_eta_on_a_terminal(
    store: str, tmp_path: Path
) -> None:
    archive = tmp_path / "all.jsonl"
    status, drawn = _on_a_terminal(["sessions", "--url", store, "export", "-o", str(archive)])
    assert status == 0, drawn
    assert "exporting" in drawn and "3/3" in drawn and "100%" in drawn
    assert "sessions/s" in drawn and "0:00:00" in drawn  # rate, and time left at the end
    assert "3 messages" in drawn
    status, drawn = _on_a_terminal(
        ["sessions", "--url", f"file://{tmp_path}/copy", "import", str(archive)]
    )
    assert status == 0, drawn
    assert "importing" in drawn and "3/3" in drawn  # the total, counted in the archive
    assert "sessions/s" in drawn


def test_elsewhere_progress_is_off_or_plain_lines(store: str, tmp_path: Path) -> None:
    base = [_aixgo(), "sessions", "--url", store, "export", "-o", str(tmp_path / "a.jsonl")]
    quiet = subprocess.run(base, capture_output=True, text=True, timeout=120, check=True)
    assert quiet.stderr.splitlines() == [quiet.stderr.splitlines()[-1]]
    assert quiet.stderr.startswith("exported 3 sessions")
    lines = subprocess.run([*base, "--progress"], capture_output=True, text=True, timeout=120,
                           check=True).stderr.splitlines()  # fmt: skip
    assert lines[0].startswith("exporting: 3/3 sessions, 3 messages, ")
    assert lines[0].endswith(" sessions/s") and "\r" not in lines[0] and "\x1b" not in lines[0]
    assert lines[1].startswith("exported 3 sessions")
    assert len(lines) == 2


def test_plain_lines_come_every_n_items_and_at_the_end() -> None:
    out = io.StringIO()
    with ProgressReport("sweeping", show=True, total=None, unit="items", every=3, stream=out) as p:
        for done in range(1, 8):
            p.update(done, f"{done * 10} bytes")
    lines = out.getvalue().splitlines()
    assert [line.split(", ")[0] for line in lines] == [
        "sweeping: 3 items", "sweeping: 6 items", "sweeping: 7 items"
    ]  # fmt: skip
    assert lines[-1].startswith("sweeping: 7 items, 70 bytes, ")
    quiet = io.StringIO()
    with ProgressReport("sweeping", show=None, stream=quiet) as p:
        p.update(500)
    assert quiet.getvalue() == ""


def test_help_says_what_progress_shows_where() -> None:
    for command in ("export", "import"):
        text = subprocess.run([_aixgo(), "sessions", command, "--help"], capture_output=True,
                              text=True, timeout=60, check=True).stdout  # fmt: skip
        flat = " ".join(text.split())
        assert "On a terminal" in flat and "rate" in flat and "one line per 100 sessions" in flat


def test_not_found_errors_name_commands_not_python_calls(store: str) -> None:
    missing = "0" * 32
    proc = subprocess.run([_aixgo(), "sessions", "--url", store, "show", missing],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert proc.returncode == 1
    assert proc.stderr == (
        f"error: session '{missing}' does not exist; `aixgo sessions list` shows the sessions "
        "there are\n"
    )
    listed = subprocess.run(
        [_aixgo(), "sessions", "--url", store, "list", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    sid = listed.split('"id": "')[1].split('"')[0]
    proc = subprocess.run([_aixgo(), "sessions", "--url", store, "restore", sid, missing],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert proc.returncode == 1
    assert f"`aixgo sessions checkpoints {sid}` lists the ones there are" in proc.stderr
    assert "()" not in proc.stderr and "Session." not in proc.stderr
