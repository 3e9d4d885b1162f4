"""The chat page in a real headless Chromium (Debian's, driven by Playwright) against
``aixgo web`` running as a real process with a file:// store and the scripted ReAct model."""

from __future__ import annotations

from pathlib import Path

from playwright.sync_api import Browser, Page, expect

from .servers import aixgo_web


def ready(page: Page) -> None:
    expect(page.locator("body")).to_have_attribute("data-ready", "true")


def send(page: Page, text: str) -> None:
    page.fill("#input", text)
    with page.expect_response(lambda r: r.url.endswith("/api/agents/assistant/stream")) as sent:
        page.click("#send")
    response = sent.value
    assert response.status == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    # The scripted model streams its reply a word at a time: the page got it in pieces.
    assert response.text().count("event: delta") >= 2


def test_chat_streams_a_reply_keeps_history_and_restores(tmp_path: Path, browser: Browser) -> None:
    with aixgo_web(tmp_path, "--user", "alice") as url:
        page = browser.new_page()
        page.goto(url + "/")
        ready(page)
        expect(page.locator("#agent")).to_have_value("assistant")

        # Markup in a message is shown as text, never run or rendered.
        hostile = "Hi <img src=x onerror=alert(1)> <b>bold</b>"
        send(page, hostile)
        texts = page.locator("#messages li .text")
        expect(texts).to_have_text([hostile, "You said: " + hostile])
        assert page.locator("#messages img, #messages b").count() == 0
        session = page.evaluate("location.hash").lstrip("#")
        assert len(session) == 32

        # After a reload the page shows the stored history of the same session.
        page.reload()
        ready(page)
        expect(texts).to_have_text([hostile, "You said: " + hostile])
        expect(page.locator("#sessions li")).to_have_count(1)

        # Checkpoint, say more, restore: the history is as it was at the checkpoint.
        page.fill("#checkpoint-label", "first-exchange")
        page.click("#checkpoint")
        expect(page.locator("#checkpoints li")).to_have_count(1)
        send(page, "second message")
        expect(texts).to_have_count(4)
        expect(texts.nth(3)).to_have_text("You said: second message")
        page.locator("#checkpoints li", has_text="first-exchange").get_by_role("button").click()
        expect(texts).to_have_text([hostile, "You said: " + hostile])
        # The restore kept the undo checkpoint, listed with the first.
        expect(page.locator("#checkpoints li")).to_have_count(2)
        assert page.locator("#status").text_content() == ""

        # A new session starts empty; the old one is still listed.
        page.click("#new-session")
        expect(texts).to_have_count(0)
        expect(page.locator("#sessions li")).to_have_count(2)
