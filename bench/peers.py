"""The peers users could pick instead, driven the way their docs show, on the same machine.

Installed only in the bench environment (``nox -s bench``), never as dependencies of our
packages. Each is imported lazily so a missing one is reported, not fatal.
"""

from __future__ import annotations

import tempfile
import uuid
from pathlib import Path
from typing import Any

from subjects import TEXT, Subject


class OpenAISQLite(Subject):
    """OpenAI Agents SDK ``SQLiteSession`` on a file database."""

    name = "openai-agents SQLiteSession"
    family = "peer"

    async def open(self) -> None:
        from agents import SQLiteSession

        self.dir = tempfile.TemporaryDirectory(prefix="aixgo-bench-peer-")
        self.db = Path(self.dir.name) / "sessions.db"
        self.cls = SQLiteSession
        self.session = SQLiteSession("appender", self.db)
        self.filled: Any = None
        self.have = 0

    async def close(self) -> None:
        self.session.close()
        if self.filled is not None:
            self.filled.close()
        self.dir.cleanup()

    @staticmethod
    def item() -> Any:
        return {"role": "user", "content": TEXT}

    async def append_one(self) -> None:
        await self.session.add_items([self.item()])

    async def append_batch(self) -> None:
        await self.session.add_items([self.item() for _ in range(10)])

    async def add_fill(self, n: int) -> None:
        if self.filled is None:
            self.filled = self.cls("reader", self.db)
        await self.filled.add_items([self.item() for _ in range(n)])

    async def tail(self) -> None:
        assert len(await self.filled.get_items(limit=100)) == 100

    async def history(self) -> None:
        assert len(await self.filled.get_items()) == self.have


class OpenAIRedis(OpenAISQLite):
    """OpenAI Agents SDK ``RedisSession``."""

    name = "openai-agents RedisSession"

    def __init__(self, url: str) -> None:
        self.url = url

    async def open(self) -> None:
        from agents.extensions.memory import RedisSession

        self.prefix = f"aixgo-bench-peer:{uuid.uuid4().hex}"
        self.make = lambda sid: RedisSession.from_url(sid, url=self.url, key_prefix=self.prefix)
        self.session = self.make("appender")
        self.filled = None
        self.have = 0

    async def close(self) -> None:
        for s in (self.session, self.filled):
            if s is not None:
                await s.clear_session()
                await s.close()

    async def add_fill(self, n: int) -> None:
        if self.filled is None:
            self.filled = self.make("reader")
        await self.filled.add_items([self.item() for _ in range(n)])


class LangChainFile(Subject):
    """LangChain ``FileChatMessageHistory`` (rewrites the whole file on every add)."""

    name = "langchain FileChatMessageHistory"
    family = "peer"

    async def open(self) -> None:
        from langchain_community.chat_message_histories import FileChatMessageHistory
        from langchain_core.messages import HumanMessage

        self.dir = tempfile.TemporaryDirectory(prefix="aixgo-bench-peer-")
        self.cls = FileChatMessageHistory
        self.msg = HumanMessage
        self.appender = self.cls(str(Path(self.dir.name) / "appender.json"))
        self.filled = self.cls(str(Path(self.dir.name) / "reader.json"))
        self.have = 0

    async def close(self) -> None:
        self.dir.cleanup()

    async def append_one(self) -> None:
        self.appender.add_message(self.msg(content=TEXT))

    async def append_batch(self) -> None:
        self.appender.add_messages([self.msg(content=TEXT) for _ in range(10)])

    fill_batch = 100  # its add_messages rewrites the file once per message

    async def add_fill(self, n: int) -> None:
        self.filled.add_messages([self.msg(content=TEXT) for _ in range(n)])

    async def tail(self) -> None:
        assert len(self.filled.messages[-100:]) == 100

    async def history(self) -> None:
        assert len(self.filled.messages) == self.have


class LangChainRedis(LangChainFile):
    """LangChain ``RedisChatMessageHistory`` (langchain-community)."""

    name = "langchain RedisChatMessageHistory"

    def __init__(self, url: str) -> None:
        self.url = url

    async def open(self) -> None:
        from langchain_community.chat_message_histories import RedisChatMessageHistory
        from langchain_core.messages import HumanMessage

        prefix = f"aixgo-bench-peer:{uuid.uuid4().hex}:"
        self.msg = HumanMessage
        self.appender = RedisChatMessageHistory("appender", url=self.url, key_prefix=prefix)
        self.filled = RedisChatMessageHistory("reader", url=self.url, key_prefix=prefix)
        self.have = 0

    async def close(self) -> None:
        self.appender.clear()
        self.filled.clear()

    async def tail(self) -> None:
        # Its reader has no tail: it LRANGEs the whole list, as applications then slice.
        assert len(self.filled.messages[-100:]) == 100


class ADKSqlite(Subject):
    """Google ADK ``DatabaseSessionService`` on SQLite (aiosqlite)."""

    name = "google-adk DatabaseSessionService(sqlite)"
    family = "peer"

    async def open(self) -> None:
        from google.adk.events import Event
        from google.adk.sessions import DatabaseSessionService
        from google.genai import types

        self.dir = tempfile.TemporaryDirectory(prefix="aixgo-bench-peer-")
        url = f"sqlite+aiosqlite:///{Path(self.dir.name) / 'adk.db'}"
        self.svc = DatabaseSessionService(db_url=url)
        self.event = lambda: Event(
            author="user", content=types.Content(role="user", parts=[types.Part(text=TEXT)])
        )
        self.session = await self.svc.create_session(app_name="bench", user_id="appender")
        self.filled: Any = None
        self.have = 0

    async def close(self) -> None:
        close = getattr(self.svc, "close", None)
        if close is not None:
            await close()
        else:
            await self.svc.db_engine.dispose()
        self.dir.cleanup()

    async def append_one(self) -> None:
        await self.svc.append_event(self.session, self.event())

    async def create(self) -> None:
        await self.svc.create_session(app_name="bench", user_id="creator")

    fill_batch = 50

    async def add_fill(self, n: int) -> None:
        if self.filled is None:
            self.filled = await self.svc.create_session(app_name="bench", user_id="reader")
        for _ in range(n):  # no batch API: one event at a time
            await self.svc.append_event(self.filled, self.event())

    async def tail(self) -> None:
        from google.adk.sessions.base_session_service import GetSessionConfig

        s = await self.svc.get_session(
            app_name="bench",
            user_id="reader",
            session_id=self.filled.id,
            config=GetSessionConfig(num_recent_events=100),
        )
        assert s is not None and len(s.events) == 100
