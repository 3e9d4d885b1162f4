"""Session basics: create, append, resume after a restart, checkpoint, restore.

Run it with ``uvx nox -s demo``, or directly: ``uv run python examples/session-basic/main.py``.
It uses the embedded default store (``$AIXGO_SESSION_URL``, else the file store under
``$AIXGO_HOME``, else ``~/.aixgo/sessions``); with no file backend installed it falls back to
``memory://``.
"""

from __future__ import annotations

import asyncio

from aixgo import Message, plugins
from aixgo.session import SessionManager, default_session_url


def store_url() -> str:
    url = default_session_url()  # $AIXGO_SESSION_URL, else the embedded file store
    if url.partition("://")[0] not in plugins.backend_schemes():
        print(f"({url} needs a backend plugin that is not installed; using memory://)")
        return "memory://"
    return url


async def introduce(mgr: SessionManager) -> str:
    """The first run: a user introduces herself."""
    sess = await mgr.create("assistant", user_id="user-123", metadata={"title": "trip"})
    await sess.append_messages(
        [Message.user("Hello! My name is Alice."), Message.assistant("Nice to meet you, Alice.")]
    )
    print(f"created session {sess.id} with 2 messages")
    return sess.id


async def resume(mgr: SessionManager, session_id: str) -> None:
    """A later run: resume, checkpoint, go wrong, restore, undo, list, clean up."""
    resumed = await mgr.get(session_id, user_id="user-123")
    latest = await mgr.get_or_create("assistant", "user-123")  # the user's latest session
    assert latest.id == resumed.id
    print("resumed:", [f"{m.seq}:{m.role}:{m.text}" for m in await resumed.get_messages()])

    cp = await resumed.checkpoint(label="before-tool")
    await resumed.append_message(Message.assistant("(a tool call that went wrong)"))
    undo = await resumed.restore(cp.id)
    print("after restore:", [m.text for m in await resumed.get_messages()])
    await resumed.restore(undo.id)  # nothing was lost: the restore can be undone
    print("after undo, last message:", [m.text for m in await resumed.get_messages(last=1)])
    print("checkpoints:", [(c.label, c.seq) for c in await resumed.list_checkpoints()])

    page = await mgr.list(agent="assistant", user_id="user-123", limit=10)
    print("sessions of user-123:", [(i.id, i.message_count) for i in page.items])
    await mgr.delete(session_id)


async def main() -> None:
    url = store_url()
    print(f"store: {url}")
    if url.startswith("memory:"):  # lives in this process only: one manager for both parts
        async with SessionManager(url) as mgr:
            await resume(mgr, await introduce(mgr))
        return
    async with SessionManager(url) as mgr:
        session_id = await introduce(mgr)
    async with SessionManager(url) as mgr:  # a fresh manager, as after a restart
        await resume(mgr, session_id)


if __name__ == "__main__":
    asyncio.run(main())
