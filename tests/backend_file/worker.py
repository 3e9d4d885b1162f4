"""A separate process driving a file store, for the crash and multi-process tests.

    python worker.py loop URL SESSION START        append forever from message START on,
                                                   printing each acknowledged number
    python worker.py append URL SESSION TAG N      wait for "go" on stdin, append N messages
                                                   with ids TAG-0.., print each stored seq
    python worker.py create URL AGENT USER N       wait for "go", create N sessions, print ids
    python worker.py serve URL                     one command per stdin line, one answer
                                                   per command: "create AGENT USER" prints
                                                   the id, "append SESSION TEXT" the seq
    python worker.py tasks URL SESSION TAG N K     wait for "go" (N > 0) or start at once
                                                   (N = 0: until killed); K tasks append at
                                                   once, ids TAG.<task>.<i>; each
                                                   acknowledgement prints "id seq synced",
                                                   synced being how many bytes of the log
                                                   this process's finished fdatasyncs cover;
                                                   at the end "syncs <count>"
    python worker.py dump URL                      print the store as JSON: every listed
                                                   session's id, message texts and
                                                   checkpoint labels, most recent first

Messages of the loop mode have ids ``m<i>`` and text ``<i>``; every third append is a batch
of three, so kills also land inside batches.
"""

from __future__ import annotations

import asyncio
import json
import os
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


def spy_on_fdatasync() -> tuple[dict[int, int], list[int]]:
    """Wrap ``os.fdatasync``: per inode, the file size when the latest finished sync began
    (what it covers); and a list with one item per sync."""
    covered: dict[int, int] = {}
    calls: list[int] = []
    real = os.fdatasync

    def fdatasync(fd: int) -> None:
        st = os.fstat(fd)
        real(fd)
        covered[st.st_ino] = max(covered.get(st.st_ino, 0), st.st_size)
        calls.append(st.st_ino)

    os.fdatasync = fdatasync
    return covered, calls


async def tasks(url: str, session_id: str, tag: str, n: int, k: int) -> None:
    covered, calls = spy_on_fdatasync()
    async with SessionManager(url) as mgr:
        s = await mgr.get(session_id)
        print("ready", flush=True)
        if n:
            sys.stdin.readline()

        async def one(task: int) -> None:
            i = 0
            while not n or i < n:
                mid = f"{tag}.{task}.{i}"
                stored = await s.append_message(Message.user(mid, id=mid))
                print(mid, stored.seq, max(covered.values(), default=0), flush=True)
                i += 1

        await asyncio.gather(*(one(t) for t in range(k)))
    print("syncs", len(calls), flush=True)


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


async def dump(url: str) -> None:
    async with SessionManager(url) as mgr:
        out = []
        for info in (await mgr.list(limit=1000)).items:
            s = await mgr.get(info.id)
            texts = [m.text for m in await s.get_messages()]
            labels = [cp.label for cp in await s.list_checkpoints()]
            out.append({"id": info.id, "messages": texts, "checkpoints": labels})
    print(json.dumps(out), flush=True)


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
    elif mode == "dump":
        asyncio.run(dump(args[0]))
    elif mode == "tasks":
        asyncio.run(tasks(args[0], args[1], args[2], int(args[3]), int(args[4])))
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main()
