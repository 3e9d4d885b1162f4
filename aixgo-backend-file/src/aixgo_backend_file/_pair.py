"""A user's current session with an agent, found or created atomically across processes
(:class:`aixgo.session.SessionPerUser`).

When a first look finds no session of the pair, "look up its most recently updated session,
else create one" runs again under an exclusive ``flock`` of ``i/p-<hash>.lock`` (0600 in the
store's 0700 index directory), where the hash is the pair's listing key: agent names and user
ids never become paths. A creation writes its listing rows before the lock is released, so the
next process to take it finds the session.
"""

from __future__ import annotations

import fcntl
import os

from aixgo.session.models import SessionInfo

from aixgo_backend_file._index import query_key
from aixgo_backend_file._paths import open_file
from aixgo_backend_file._store import Store


def get_or_create(store: Store, info: SessionInfo) -> tuple[SessionInfo, bool]:
    """The pair's most recently updated session, or ``info`` stored as a new one."""
    store.open()
    # The common case, a user who has a session, needs no lock: a session found without it
    # is as current as one found under it (a delete does not take it either).
    page = store.list_page(info.agent, info.user_id, 1, None)
    if page.items:
        return page.items[0], False
    key = query_key(info.agent, info.user_id)
    fd = open_file(store.layout.indexes / f"{key}.lock", os.O_RDWR | os.O_CREAT, "pair lock")
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        page = store.list_page(info.agent, info.user_id, 1, None)
        if page.items:
            return page.items[0], False
        store.create(info)
        return info, True
    finally:
        os.close(fd)  # drops the flock
