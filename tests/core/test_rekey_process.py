"""``aixgo sessions rekey`` killed with SIGKILL halfway, then run again: everything ends on the
active key and reads without the old one (real processes, real servers)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from pathlib import Path

import pytest
from aixgo import Message
from aixgo.crypto import Keyring
from aixgo.session._encrypted import DATA_KEY_AGENT

from tests.core.governance import Store, key, store

__all__ = ["store"]
USERS = 60


def _env(k1: bytes, k2: bytes) -> dict[str, str]:
    return {
        **os.environ,
        "TEST_K1": k1.hex(),
        "TEST_K2": k2.hex(),
        "AIXGO_ENCRYPTION_KEYS": "k1=env:TEST_K1,k2=env:TEST_K2",
        "AIXGO_ENCRYPTION_ACTIVE": "k2",
    }


async def _masters(store: Store) -> list[str]:
    out: list[str] = []
    cursor = None
    while True:
        page = await store.backend.list_sessions(agent=DATA_KEY_AGENT, limit=100, cursor=cursor)
        out += [str(i.metadata["aixgo.data_key"]["master"]) for i in page.items]  # type: ignore[index,call-overload]
        if page.next_cursor is None:
            return out
        cursor = page.next_cursor


@pytest.mark.asyncio
@pytest.mark.parametrize("store", ["file", "redis", "postgresql"], indirect=True)
async def test_a_rekey_killed_halfway_is_finished_by_running_it_again(
    store: Store, tmp_path: Path
) -> None:
    k1, k2 = key(), key()
    first = store.manager(Keyring({"k1": k1}, active="k1"))
    ids = []
    for n in range(USERS):
        s = await first.create("assistant", user_id=f"user-{n}", metadata={"title": f"t{n}"})
        await s.append_message(Message.user(f"hello {n}"))
        ids.append(s.id)
    cmd = ["aixgo", "sessions", "--url", store.url, "rekey", "--batch", "2"]
    proc = await asyncio.to_thread(
        subprocess.Popen, cmd, env=_env(k1, k2), stderr=subprocess.PIPE, text=True
    )
    assert proc.stderr is not None
    line = await asyncio.to_thread(proc.stderr.readline)
    assert line.startswith("rekey: "), line
    os.kill(proc.pid, signal.SIGKILL)
    assert await asyncio.to_thread(proc.wait, 30) == -signal.SIGKILL
    proc.stderr.close()
    masters = await _masters(store)
    assert "k1" in masters and "k2" in masters  # cut short halfway
    # The application keeps running meanwhile, with both keys.
    both = store.manager(Keyring({"k1": k1, "k2": k2}, active="k2"))
    assert [m.text for m in await (await both.get(ids[-1])).get_messages()] == [
        f"hello {USERS - 1}"
    ]

    done = await asyncio.to_thread(
        subprocess.run, cmd, env=_env(k1, k2), capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "rewrapped" in done.stdout
    assert set(await _masters(store)) == {"k2"}
    assert len(await _masters(store)) == USERS
    only_k2 = store.manager(Keyring({"k2": k2}, active="k2"))
    for n, sid in enumerate(ids):
        s = await only_k2.get(sid)
        assert s.metadata == {"title": f"t{n}"}
        assert [m.text for m in await s.get_messages()] == [f"hello {n}"]
