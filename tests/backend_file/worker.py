"""A separate process driving a file store, for the crash and multi-process tests.

    python worker.py loop URL SESSION START        append forever from message START on,
                                                   printing each acknowledged number
    python worker.py append URL SESSION TAG N      wait for "go" on stdin, append N messages
                                                   with ids TAG-0.., print each stored seq
    python worker.py create URL AGENT USER N       wait for "go", create N sessions, print ids
    python worker.py serve URL                     one command per stdin line, one answer
                                                   per command: "create AGENT USER" prints
                                                   the id, "append SESSION TEXT" the seq

Messages of the loop mode have ids ``m<i>`` and text ``<i>``; every third append is a batch
of three, so kills also land inside batches.
"""

from __future__ import annotations

import asyncio
import sys

from aixgo import Message
from aixgo.session import SessionManager


async def loop(url: str, session_id: str, start: int) -> None:
    async with SessionManager(url) as mgr:
        s = await mgr.get(session_id)
        i = start
        print("ready", flush=True)
        while True:
            if i % 3 == 0:
                batch = [Message.user(str(i + k), id=f"m{i + k}") for k in range(3)]
                await s.append_messages(batch)
                i += 3
            else:
                await s.append_message(Message.user(str(i), id=f"m{i}"))
                i += 1
            print(i - 1, flush=True)


async def append(url: str, session_id: str, tag: str, n: int) -> None:
    async with SessionManager(url) as mgr:
        s = await mgr.get(session_id)
        print("ready", flush=True)
        sys.stdin.readline()
        for i in range(n):
            stored = await s.append_message(Message.user(f"{tag} {i}", id=f"{tag}-{i}"))
            print(stored.seq, flush=True)


async def create(url: str, agent: str, user: str, n: int) -> None:
    async with SessionManager(url) as mgr:
        await mgr.open()
        print("ready", flush=True)
        sys.stdin.readline()
        for _ in range(n):
            s = await mgr.create(agent, user_id=user)
            print(s.id, flush=True)


async def serve(url: str) -> None:
    async with SessionManager(url) as mgr:
        await mgr.open()
        print("ready", flush=True)
        for line in sys.stdin:
            cmd, *args = line.split()
            if cmd == "create":
                print((await mgr.create(args[0], user_id=args[1])).id, flush=True)
            elif cmd == "append":
                s = await mgr.get(args[0])
                print((await s.append_message(Message.user(args[1]))).seq, flush=True)


def main() -> None:
    mode, *args = sys.argv[1:]
    if mode == "loop":
        asyncio.run(loop(args[0], args[1], int(args[2])))
    elif mode == "append":
        asyncio.run(append(args[0], args[1], args[2], int(args[3])))
    elif mode == "create":
        asyncio.run(create(args[0], args[1], args[2], int(args[3])))
    elif mode == "serve":
        asyncio.run(serve(args[0]))
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main()
