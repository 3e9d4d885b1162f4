"""Small helpers shared by the file backend tests: listings checked every way, and a line
exchanged with a worker process."""

from __future__ import annotations

import subprocess
from collections.abc import Callable

from aixgo.session import SessionManager

#: The spawn_worker fixture (conftest.py): starts worker.py and waits until it is ready.
Spawn = Callable[..., "subprocess.Popen[str]"]


KEYS: list[dict[str, str]] = [
    {},
    {"agent": "a"},
    {"user_id": "u"},
    {"agent": "a", "user_id": "u"},
]


def ask(proc: subprocess.Popen[str], line: str) -> str:
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(line + "\n")
    proc.stdin.flush()
    return proc.stdout.readline().strip()


async def check_listings(
    url: str, newest_first: list[str], keys: list[dict[str, str]] = KEYS
) -> None:
    """Every key lists exactly these sessions in this order, whole and one per page."""
    async with SessionManager(url) as mgr:
        for key in keys:
            agent, user = key.get("agent"), key.get("user_id")
            page = await mgr.list(agent=agent, user_id=user)
            infos = page.items
            assert [i.id for i in infos] == newest_first, key
            assert infos == sorted(infos, key=lambda i: (i.updated_at, i.id), reverse=True)
            seen: list[str] = []
            cursor = None
            while True:
                page = await mgr.list(agent=agent, user_id=user, limit=1, cursor=cursor)
                seen += [i.id for i in page.items]
                cursor = page.next_cursor
                if cursor is None:
                    break
            assert seen == newest_first, key
