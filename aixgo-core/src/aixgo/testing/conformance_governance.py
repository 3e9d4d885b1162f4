"""Wrapper mode of the conformance kit: the whole kit run through encryption at rest, plus the
encryption, rotation and erasure properties, on any backend.

Encryption and erasure live in core, between the manager and the backend, so a backend needs
no code for them; this class proves that holds for yours. Provide ``plain_backend`` (an empty
store, as the ``backend`` fixture of :class:`~aixgo.testing.BackendConformance` would be)
instead of ``backend``::

    class TestMyStoreEncrypted(EncryptedConformance):
        @pytest_asyncio.fixture
        async def plain_backend(self):
            backend = open_backend("mystore://...")
            yield backend
            await backend.close()

Every test of :class:`~aixgo.testing.BackendConformance` then runs with ``backend`` being
your store wrapped in the encryption layer (tests that reopen the store by URL skip: a URL
opens it without the wrapper), and the tests below check on your store itself that no text
reaches it in the clear, that moved ciphertext is refused, that a rotation leaves everything
readable without the old key, and that ``erase_user`` leaves nothing of the user.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from aixgo.crypto import Keyring
from aixgo.errors import DecryptionError
from aixgo.message import Message
from aixgo.session import Backend, SessionManager
from aixgo.session._encrypted import DATA_KEY_AGENT, EncryptedBackend
from aixgo.testing.base import unique
from aixgo.testing.conformance import BackendConformance

__all__ = ["EncryptedConformance", "encrypted"]


def encrypted(backend: Backend, keyring: Keyring | None = None) -> Backend:
    """``backend`` behind the encryption layer, with a fresh random key unless given one."""
    return EncryptedBackend(backend, keyring or Keyring({"k1": os.urandom(32)}, active="k1"))


async def _everything(backend: Backend, user_id: str) -> str:
    """All a backend gives back about a user's sessions, as text to search."""
    out: list[str] = []
    page = await backend.list_sessions(user_id=user_id, limit=1000)
    for info in page.items:
        out.append(info.model_dump_json())
        out += [m.model_dump_json() for m in await backend.get_messages(info.id)]
        out += [c.model_dump_json() for c in await backend.list_checkpoints(info.id)]
    return "\n".join(out)


class EncryptedConformance(BackendConformance):
    """The kit in wrapper mode (see the module docs). Override ``plain_backend``."""

    @pytest_asyncio.fixture
    def plain_backend(self) -> AsyncIterator[Backend]:
        """Override with an async fixture that yields an empty backend and closes it."""
        pytest.fail(
            f"{type(self).__name__} must override the `plain_backend` fixture: an async "
            "fixture (@pytest_asyncio.fixture) that yields an empty backend and closes it"
        )

    @pytest_asyncio.fixture
    async def backend(self, plain_backend: Backend) -> AsyncIterator[Backend]:  # type: ignore[override]  # pytest injects fixtures by name
        """Your store behind the encryption layer (closing it closes yours)."""
        yield encrypted(plain_backend)

    @pytest.fixture
    def backend_url(self) -> str | None:
        return None  # a URL would reopen the store without the encryption layer

    @pytest.mark.asyncio
    async def test_no_text_reaches_the_store_in_the_clear(self, plain_backend: Backend) -> None:
        secret, title = unique("secret-text"), unique("secret-title")
        user = unique("user")
        mgr = SessionManager(encrypted(plain_backend))
        s = await mgr.create("assistant", user_id=user, metadata={"title": title})
        await s.append_message(Message.user(secret, name=unique("name")))
        assert [m.text for m in await s.get_messages()] == [secret]
        seen = await _everything(plain_backend, user)
        assert secret not in seen
        assert title not in seen

    @pytest.mark.asyncio
    async def test_ciphertext_moved_to_another_session_is_refused(
        self, plain_backend: Backend
    ) -> None:
        user = unique("user")
        mgr = SessionManager(encrypted(plain_backend))
        a = await mgr.create("assistant", user_id=user)
        b = await mgr.create("assistant", user_id=user)
        await a.append_message(Message.user("from a"))
        (sealed,) = await plain_backend.get_messages(a.id)
        await plain_backend.append_messages(b.id, [sealed.model_copy(update={"seq": None})])
        with pytest.raises(DecryptionError):
            await b.get_messages()

    @pytest.mark.asyncio
    async def test_a_rotation_leaves_everything_readable_without_the_old_key(
        self, plain_backend: Backend
    ) -> None:
        k1, k2 = os.urandom(32), os.urandom(32)
        user = unique("user")
        old = SessionManager(encrypted(plain_backend, Keyring({"k1": k1}, active="k1")))
        s = await old.create("assistant", user_id=user, metadata={"title": "t"})
        await s.append_messages([Message.user(f"m{i}") for i in range(20)])
        both = Keyring({"k1": k1, "k2": k2}, active="k2")
        rotating = SessionManager(plain_backend, encryption=both)
        assert (await rotating.rekey()).rewrapped >= 1
        assert (await rotating.rekey()).rewrapped == 0
        new = SessionManager(plain_backend, encryption=both.without("k1"))
        got = await new.get(s.id)
        assert got.metadata == {"title": "t"}
        assert [m.text for m in await got.get_messages()] == [f"m{i}" for i in range(20)]

    @pytest.mark.asyncio
    @pytest.mark.parametrize("with_encryption", [False, True], ids=["plain", "encrypted"])
    async def test_erase_user_leaves_nothing_of_the_user_and_others_untouched(
        self, plain_backend: Backend, with_encryption: bool
    ) -> None:
        keyring = Keyring({"k1": os.urandom(32)}, active="k1") if with_encryption else None
        mgr = SessionManager(plain_backend, encryption=keyring)
        gone, kept = unique("alice"), unique("bob")
        for user in (gone, kept):
            for n in range(2):
                s = await mgr.create("assistant", user_id=user)
                await s.append_messages([Message.user(f"{user} {i}") for i in range(n + 1)])
                await s.checkpoint()
        report = await mgr.erase_user(gone)
        assert (report.sessions, report.messages, report.checkpoints) == (2, 3, 2)
        assert report.data_keys == (1 if with_encryption else 0)
        for agent in (None, DATA_KEY_AGENT):
            page = await plain_backend.list_sessions(agent=agent, user_id=gone)
            assert page.items == []
        left = (await mgr.list(user_id=kept)).items
        assert sorted(i.message_count for i in left) == [1, 2]
        again = await mgr.erase_user(gone)
        assert (again.sessions, again.data_keys) == (0, 0)
