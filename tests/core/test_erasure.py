"""Per-user erasure on every backend (issue #19 section 3), verified by a raw scan of the store."""

from __future__ import annotations

import os

import pytest
from aixgo import Message
from aixgo.crypto import Keyring
from aixgo.errors import DecryptionError
from aixgo.session import Backend, SessionManager

from tests.core.governance import Store, key, store

__all__ = ["store"]
pytestmark = pytest.mark.asyncio


async def _fill(mgr: SessionManager, user: str, text: str, sessions: int = 3) -> list[str]:
    ids = []
    for n in range(sessions):
        s = await mgr.create(f"agent-{n % 2}", user_id=user, metadata={"title": f"{text} t{n}"})
        await s.append_messages([Message.user(f"{text} {n} {i}") for i in range(n + 1)])
        await s.checkpoint(label="cp")
        if n == 2:
            await s.append_message(Message.assistant(f"{text} after"))
            await s.restore((await s.list_checkpoints())[0].id)  # a discarded tail, too
        ids.append(s.id)
    return ids


@pytest.mark.parametrize("encrypted", [False, True], ids=["plain", "encrypted"])
async def test_erase_leaves_no_trace_of_the_user_and_others_untouched(
    store: Store, encrypted: bool
) -> None:
    keyring = Keyring({"k1": key()}, active="k1") if encrypted else None
    mgr = store.manager(keyring)
    alice, bob = f"alice-{os.urandom(4).hex()}", f"bob-{os.urandom(4).hex()}"
    a_text, b_text = f"ATEXT{os.urandom(4).hex()}", f"BTEXT{os.urandom(4).hex()}"
    await _fill(mgr, alice, a_text)
    bob_ids = await _fill(mgr, bob, b_text)
    leases = getattr(store.backend, "acquire_turn", None)
    if leases is not None:  # a turn lease of alice's is erased too
        first = (await mgr.list(user_id=alice)).items[0].id
        assert await leases(first, "owner-1", 30.0) is not None
    assert alice.encode() in await store.raw()

    report = await mgr.erase_user(alice)
    assert (report.sessions, report.messages, report.checkpoints) == (3, 1 + 2 + 3, 1 + 1 + 2)
    assert report.data_keys == (1 if encrypted else 0)
    raw = await store.raw()
    assert alice.encode() not in raw
    assert a_text.encode() not in raw
    assert (await mgr.list(user_id=alice)).items == []
    # Bob is untouched: every session, message and checkpoint.
    for n, sid in enumerate(bob_ids):
        s = await mgr.get(sid)
        assert s.metadata == {"title": f"{b_text} t{n}"}
        assert len(await s.get_messages()) == n + 1
    if not encrypted:
        assert b_text.encode() in raw
    again = await mgr.erase_user(alice)
    assert (again.sessions, again.messages, again.checkpoints, again.data_keys) == (0, 0, 0, 0)


class _CrashOnDelete:
    """The raw backend, dying (as a killed process would) at its ``n``-th session delete."""

    def __init__(self, inner: Backend, n: int) -> None:
        self._inner = inner
        self._left = n

    def __getattr__(self, name: str) -> object:
        return getattr(self._inner, name)

    async def delete_session(self, session_id: str) -> None:
        self._left -= 1
        if self._left == 0:
            raise SystemExit("killed")
        await self._inner.delete_session(session_id)


async def test_an_erasure_cut_short_has_shredded_the_keys_and_a_rerun_finishes(
    store: Store,
) -> None:
    keyring = Keyring({"k1": key()}, active="k1")
    mgr = store.manager(keyring)
    await _fill(mgr, "alice", "alice-text")
    await _fill(mgr, "bob", "bob-text", sessions=1)
    crashing = SessionManager(_CrashOnDelete(store.backend, 3), encryption=keyring)  # type: ignore[arg-type]
    with pytest.raises(SystemExit):
        await crashing.erase_user("alice")
    # The data key went first: what is left of alice cannot be read, by anyone.
    left = (await store.backend.list_sessions(user_id="alice")).items
    assert len(left) == 2
    with pytest.raises(DecryptionError):
        await (await store.manager(keyring).get(left[0].id)).get_messages()
    report = await store.manager(keyring).erase_user("alice")
    assert (report.sessions, report.data_keys) == (2, 0)
    assert b"alice" not in await store.raw()
    assert len((await mgr.list(user_id="bob")).items) == 1


async def test_a_copy_taken_before_erasure_cannot_be_read_after_it(store: Store) -> None:
    """Crypto-shredding: a backup restored after the erasure is ciphertext without a key,
    also for the process that erased (its cached keys go too)."""
    mgr = store.manager(Keyring({"k1": key()}, active="k1"))
    s = await mgr.create("assistant", user_id="alice", metadata={"title": "private"})
    await s.append_message(Message.user("private text"))
    assert [m.text for m in await s.get_messages()] == ["private text"]
    backup_info = await store.backend.get_session(s.id)
    backup_messages = await store.backend.get_messages(s.id)
    await mgr.erase_user("alice")
    await store.backend.create_session(backup_info.model_copy(update={"message_count": 0}))
    await store.backend.append_messages(
        s.id, [m.model_copy(update={"seq": None}) for m in backup_messages]
    )
    with pytest.raises(DecryptionError, match="not in the store") as err:
        await mgr.get(s.id)
    assert err.value.key_id is not None
    with pytest.raises(DecryptionError, match="not in the store"):
        await mgr.backend.get_messages(s.id)
