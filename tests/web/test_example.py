"""examples/fastapi-app: an existing FastAPI app with its own lifespan and login, serving
aixgo's API and chat page as its users; checked in-process and in a real browser."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
from playwright.sync_api import Browser, expect

from tests.services import free_port, wait_until_ready

from .servers import answers
from .test_browser import ready, send

EXAMPLE = Path(__file__).parents[2] / "examples" / "fastapi-app" / "main.py"


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "AIXGO_"))}
    env["AIXGO_HOME"] = str(home)
    return env


def test_the_example_checks_itself(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, str(EXAMPLE)], env=_env(tmp_path), capture_output=True, text=True,
        timeout=120, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "assistant -> alice: You said: Hi!" in run.stdout
    assert "bob asks for alice's session: 404 SessionNotFound" in run.stdout


def test_the_example_answers_in_a_browser(tmp_path: Path, browser: Browser) -> None:
    port = free_port()
    log = (tmp_path / "example.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, str(EXAMPLE), "--serve", "--port", str(port)],
        env=_env(tmp_path), stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(proc, answers(url + "/"), what="the example",
                         log=(tmp_path / "example.log").read_text)  # fmt: skip
        page = browser.new_page()
        page.goto(url + "/")
        page.fill("input[name=user]", "carol")
        page.click("button")
        page.wait_for_url(url + "/chat/")
        ready(page)
        send(page, "Hello from the browser")
        expect(page.locator("#messages li .text")).to_have_text(
            ["Hello from the browser", "You said: Hello from the browser"]
        )
        # Without the app's login, aixgo's routes are closed.
        assert httpx.get(url + "/api/ai/sessions", timeout=10).status_code == 401
    finally:
        proc.terminate()
        proc.wait(15)
        log.close()
