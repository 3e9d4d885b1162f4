"""Fixtures for aixgo-web: an app over a memory:// runtime with test agents, called through
httpx's ASGI transport, the user taken from the ``X-User`` header."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import httpx
import pytest
from aixgo import Message, Runtime
from aixgo.events import Delta, Step
from aixgo.session import Session
from aixgo_web import create_app, header_user
from playwright.sync_api import Browser, sync_playwright


class Echo:
    async def execute(self, input: Message) -> Message:
        return Message.assistant("echo: " + input.text)


class Slow:
    """Answers after ``delay`` seconds (turn-policy and timeout tests)."""

    def __init__(self, delay: float) -> None:
        self.delay = delay

    async def execute(self, input: Message) -> Message:
        await asyncio.sleep(self.delay)
        return Message.assistant("slowly: " + input.text)


class Spell:
    """Streams its reply letter by letter, after storing a step of its own."""

    async def execute(self, input: Message) -> Message:
        raise AssertionError("a streaming agent is always iterated")

    async def stream_with_session(
        self, input: Message, session: Session | None
    ) -> AsyncIterator[Delta | Step | Message]:
        if session is not None:
            note = await session.append_message(Message.assistant(f"spelling {input.text}"))
            yield Step(message=note)
        for ch in input.text.upper():
            yield Delta(text=ch)
        yield Message.assistant(input.text.upper())


class Stumble:
    """Streams a first chunk, then fails."""

    async def execute(self, input: Message) -> Message:
        raise AssertionError("a streaming agent is always iterated")

    async def stream_with_session(
        self, input: Message, session: Session | None
    ) -> AsyncIterator[Delta | Message]:
        yield Delta(text="Hel")
        raise RuntimeError("the model is down at db.internal:5432")


class Broken:
    async def execute(self, input: Message) -> Message:
        raise RuntimeError("the model is down at db.internal:5432")


def runtime(**options: Any) -> Runtime:
    rt = Runtime(session_manager="memory://", **options)
    rt.register("echo", Echo())
    rt.register("slow", Slow(0.3))
    rt.register("broken", Broken())
    rt.register("spell", Spell())
    rt.register("stumble", Stumble())
    rt.register("stateless", Echo(), session_mode="disabled")
    return rt


Client = Callable[..., AbstractAsyncContextManager[tuple[httpx.AsyncClient, Runtime]]]


@pytest.fixture
def client() -> Client:
    """``async with client(**runtime_options, app_options={...}) as (c, rt)``: an app whose
    runtime is started (unless ``start=False``), called as alice."""

    @asynccontextmanager
    async def make(
        app_options: dict[str, Any] | None = None, start: bool = True, **options: Any
    ) -> AsyncIterator[tuple[httpx.AsyncClient, Runtime]]:
        rt = runtime(**options)
        app = create_app(rt, authenticate=header_user("X-User"), **(app_options or {}))
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://test", headers={"X-User": "alice"}
        ) as c:
            if start:
                async with rt:
                    yield c, rt
            else:
                yield c, rt

    return make


BOB = {"X-User": "bob"}


def sse_events(body: str) -> list[tuple[str, str]]:
    """``(event, data)`` pairs of a text/event-stream body."""
    out = []
    for block in body.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if "event" in fields:
            out.append((fields["event"], fields.get("data", "")))
    return out


CHROMIUM = "/usr/bin/chromium"  # Debian's; .ci/run installs it. Playwright downloads none.


@pytest.fixture
def browser() -> Iterator[Browser]:
    """A headless Chromium driven by Playwright."""
    with sync_playwright() as p:
        # Root (as in CI) cannot use Chromium's sandbox.
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        try:
            yield b
        finally:
            b.close()
