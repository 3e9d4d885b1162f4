"""A separate process running a Runtime on a shared store, for test_turns_shared.py.

    python turn_worker.py first URL USER...           print "ready", wait for "go" on stdin,
                                                      make every USER's first call to agent
                                                      "chat" at once, on a store whose listing
                                                      answers a little late
    python turn_worker.py drive URL POLICY NAME TURNS USER...
                                                      print "ready", wait for "go", then for
                                                      every USER at once: TURNS calls in a row
                                                      (inputs "NAME USER i"); print "ok ID" per
                                                      answered call, "conflict ID" per
                                                      ConflictError
    python turn_worker.py hold URL USER MESSAGE_ID TTL
                                                      call with MESSAGE_ID; the agent prints
                                                      "running" and never answers (the test
                                                      kills the process)

The agent ("chat") sleeps a little before answering "re: <input>", so turns overlap.
"""

from __future__ import annotations

import asyncio
import random
import sys
from typing import Any

from aixgo import Message, Runtime
from aixgo.errors import ConflictError
from aixgo.session import Page, SessionInfo, SessionManager, open_backend


class Chat:
    async def execute(self, input: Message) -> Message:
        await asyncio.sleep(random.uniform(0.002, 0.02))
        return Message.assistant("re: " + input.text)


class Hang:
    async def execute(self, input: Message) -> Message:
        print("running", flush=True)
        await asyncio.Event().wait()  # killed here, holding the turn lease
        raise AssertionError("unreachable")


async def first(url: str, users: list[str]) -> None:
    backend = open_backend(url)
    listing = backend.list_sessions

    async def slow_listing(**filters: Any) -> Page[SessionInfo]:
        # A store with some latency: what a listing says is a little old when it arrives,
        # which is where a look-up-then-create races.
        page = await listing(**filters)
        await asyncio.sleep(0.05)
        return page

    backend.list_sessions = slow_listing  # type: ignore[method-assign]
    async with SessionManager(backend) as mgr, Runtime(session_manager=mgr, timeout=30) as rt:
        rt.register("chat", Chat())
        print("ready", flush=True)
        await asyncio.to_thread(sys.stdin.readline)

        async def one(user: str) -> None:
            out = await rt.call("chat", Message.user("hello"), user=user)
            assert out.metadata["aixgo.reply_to"]

        await asyncio.gather(*(one(u) for u in users))


async def drive(url: str, policy: str, name: str, turns: int, users: list[str]) -> None:
    async with Runtime(session_manager=url, timeout=30, turn_policy=policy) as rt:
        rt.register("chat", Chat())
        for user in users:  # sessions exist before the race on turns starts
            await rt.session_manager.get_or_create("chat", user)
        print("ready", flush=True)
        await asyncio.to_thread(sys.stdin.readline)

        async def one(user: str) -> None:
            for i in range(turns):
                msg = Message.user(f"{name} {user} {i}")
                try:
                    await rt.call("chat", msg, user=user)
                except ConflictError:
                    print("conflict", msg.id, flush=True)
                else:
                    print("ok", msg.id, flush=True)

        await asyncio.gather(*(one(u) for u in users))


async def hold(url: str, user: str, message_id: str, ttl: float) -> None:
    async with Runtime(session_manager=url, turn_lease_ttl=ttl) as rt:
        rt.register("chat", Hang())
        await rt.call("chat", Message.user("the dead turn", id=message_id), user=user)


def main() -> None:
    mode, url, *args = sys.argv[1:]
    if mode == "first":
        asyncio.run(first(url, args))
    elif mode == "drive":
        asyncio.run(drive(url, args[0], args[1], int(args[2]), args[3:]))
    elif mode == "hold":
        asyncio.run(hold(url, args[0], args[1], float(args[2])))
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main()
