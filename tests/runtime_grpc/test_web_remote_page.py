"""The chat page of ``aixgo web`` on a remote agent, in a real headless Chromium (Debian's,
driven by Playwright): ``aixgo web`` and ``aixgo serve`` as real processes on 127.0.0.1. The
page starts no session of its own; the node's session, named by the stream's first event, is
continued by each message and shown again after a reload."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml
from aixgo.session import SessionManager, open_backend
from playwright.sync_api import Page, expect, sync_playwright

from tests.web.servers import serving

from .conftest import NodeFactory

CHROMIUM = "/usr/bin/chromium"


def _sessions(url: str, user: str) -> list[tuple[str, int]]:
    async def listed() -> list[tuple[str, int]]:
        async with SessionManager(open_backend(url)) as mgr:
            page = await mgr.list(user_id=user)
        return [(i.id, i.message_count) for i in page.items]

    # In a thread of its own: Playwright's sync API runs an event loop in this one.
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, listed()).result()


def send(page: Page, text: str) -> None:
    page.fill("#input", text)
    with page.expect_response(lambda r: r.url.endswith("/api/agents/assistant/stream")) as sent:
        page.click("#send")
    assert sent.value.status == 200


def test_the_chat_page_continues_the_nodes_session(nodes: NodeFactory, tmp_path: Path) -> None:
    node_store, here = (tmp_path / "node").as_uri(), (tmp_path / "web").as_uri()
    (node,) = nodes(node_store, args=["--insecure"])
    config = tmp_path / "web.yaml"
    options = {"url": f"grpc://{node.address}", "agent": "echo", "insecure": True}
    config.write_text(yaml.safe_dump({
        "session": here,
        "agents": [{"name": "assistant", "role": "remote", "options": options}],
    }))  # fmt: skip
    with serving(config, tmp_path / "web.log", "--user", "alice") as url, sync_playwright() as p:
        # Root (as in CI) cannot use Chromium's sandbox.
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                    args=["--no-sandbox"])  # fmt: skip
        try:
            page = browser.new_page()
            page.goto(url + "/")
            expect(page.locator("body")).to_have_attribute("data-ready", "true")
            expect(page.locator("#agent")).to_have_value("assistant")
            # Nothing to list or start here: the sessions are the node's.
            expect(page.locator("#new-session")).to_be_hidden()
            expect(page.locator("#sessions li")).to_have_text(["Kept where assistant runs."])

            send(page, "hello")
            texts = page.locator("#messages li .text")
            expect(texts).to_have_text(["hello", "You said: hello"])
            fragment = page.evaluate("location.hash")
            assert fragment.startswith("#assistant/")
            sid = fragment.rsplit("/", 1)[1]
            assert _sessions(node_store, "alice") == [(sid, 2)]

            send(page, "again")
            expect(texts).to_have_count(4)
            assert _sessions(node_store, "alice") == [(sid, 4)]

            # After a reload the page reads the history from the node.
            page.reload()
            expect(page.locator("body")).to_have_attribute("data-ready", "true")
            expect(texts).to_have_text(["hello", "You said: hello", "again", "You said: again"])
            expect(page.locator("#session-title")).to_contain_text(sid)
        finally:
            browser.close()
    assert _sessions(here, "alice") == []
