"""``aixgo web``: registered through the plugin hook, refuses to serve one fixed user on a
public address, and, behind a proxy, takes each request's user from the proxy's header."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import httpx
from aixgo.cli import cli
from click.testing import CliRunner

from .servers import aixgo_web


def test_web_is_an_aixgo_command_from_the_plugin() -> None:
    result = CliRunner().invoke(cli, ["web", "--help"])
    assert result.exit_code == 0
    assert "--listen" in result.output and "--user-header" in result.output
    plugins = CliRunner().invoke(cli, ["plugins"])
    assert any(line.startswith("web") and "command web" in line
               for line in plugins.output.splitlines())  # fmt: skip


def test_a_fixed_user_is_refused_off_loopback(tmp_path: Path) -> None:
    config = tmp_path / "aixgo.yaml"
    config.write_text("session: memory://\n")
    exe = shutil.which("aixgo")
    assert exe
    for listen in ["0.0.0.0:8000", "192.0.2.1:8000"]:
        run = subprocess.run(
            [exe, "web", "--config", str(config), "--listen", listen, "--user", "alice"],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert run.returncode == 2, run.stderr
        assert "--user-header" in run.stderr
    bad = subprocess.run(
        [exe, "web", "--config", str(config), "--listen", "nonsense"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert bad.returncode == 2
    assert "HOST:PORT" in bad.stderr


def test_behind_a_proxy_the_header_names_the_user(tmp_path: Path) -> None:
    with (
        aixgo_web(tmp_path, "--user-header", "X-Forwarded-User") as url,
        httpx.Client(base_url=url, timeout=30) as c,
    ):
        assert c.get("/api/sessions").status_code == 401
        a = {"X-Forwarded-User": "alice"}
        r = c.post("/api/agents/assistant/call", json={"content": "hi"}, headers=a)
        assert r.status_code == 200, r.text
        assert r.json()["message"]["content"] == "You said: hi"
        sid = r.json()["session_id"]
        assert c.get(f"/api/sessions/{sid}", headers=a).status_code == 200
        b = {"X-Forwarded-User": "bob"}
        assert c.get(f"/api/sessions/{sid}", headers=b).status_code == 404
        assert c.get("/api/sessions", headers=b).json()["items"] == []
        # The schema and the page are served too.
        assert "/api/agents/{agent}/stream" in c.get("/openapi.json").json()["paths"]
        page = c.get("/")
        assert page.status_code == 200
        assert "script-src 'self'" in page.headers["content-security-policy"]
        assert c.get("/static/chat.js").status_code == 200
