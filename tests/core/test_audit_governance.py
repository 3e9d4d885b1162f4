"""Key rotation and erasure leave one audit record each (issue #19): who did it, which user,
how many; never a key, a message or a metadata value."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from aixgo import Message
from aixgo.audit import AuditLog, audit_actor, verify_lines
from aixgo.crypto import Keyring
from aixgo.session import SessionManager

KEY = bytes(range(32))
SECRET = "erase-me-text-2718"


def _records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.asyncio
async def test_erase_and_rekey_are_each_one_record_with_counts(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    k1, k2 = os.urandom(32), os.urandom(32)
    url = f"file://{tmp_path / 'sessions'}"
    async with (
        SessionManager(
            url, encryption=Keyring({"k1": k1}, active="k1"), audit=AuditLog(path, key=KEY)
        ) as mgr,
        audit_actor("ops"),
    ):
        for _ in range(2):
            s = await mgr.create("assistant", user_id="alice")
            await s.append_message(Message.user(SECRET))
    async with (
        SessionManager(
            url,
            encryption=Keyring({"k1": k1, "k2": k2}, active="k2"),
            audit=AuditLog(path, key=KEY),
        ) as mgr2,
        audit_actor("ops"),
    ):
        rekeyed = await mgr2.rekey()
        erased = await mgr2.erase_user("alice")
    records = _records(path)
    rekey = [r for r in records if r["op"] == "rekey"]
    erase = [r for r in records if r["op"] == "erase"]
    assert len(rekey) == 1 and rekey[0]["count"] == rekeyed.rewrapped == 1
    assert len(erase) == 1 and erase[0]["count"] == erased.sessions == 2
    assert erase[0]["user_id"] == "alice" and erase[0]["actor"] == "ops"
    assert erase[0]["outcome"] == "ok"
    # The erasure's own deletions go to the raw store: no per-session delete records.
    assert not [r for r in records if r["op"] == "delete"]
    text = path.read_text()
    assert SECRET not in text and k1.hex() not in text and k2.hex() not in text
    assert verify_lines(path.read_text().splitlines(), KEY).intact
