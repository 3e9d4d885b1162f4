"""EncryptedBackend: encryption at rest for any backend, as a wrapper between the manager and
the store. The store never sees plaintext content; it needs no change to hold sealed data.

Layout (see docs/governance.md):

* Every user (and "no user", for sessions without one) has a random 256-bit *data key*. It is
  kept in the store itself, wrapped (AES-256-GCM) by a master key of the :class:`Keyring`, as
  the metadata of a reserved session: agent :data:`DATA_KEY_AGENT`, the user's id, and an id
  derived from the master key id and the user id, so every process finds it with one
  ``get_session`` and two racing creators collide on ``create_session`` instead of making
  two keys. Rotating the master key writes a new record under the new key id and deletes
  the old one; erasing a user deletes their records, which makes every copy of their data
  unreadable (crypto-shredding).
* A stored message keeps ``id``, ``role``, ``tool_call_id``, ``created_at`` and ``seq`` in
  the clear; its ``content`` is a keyed fingerprint (so the store's own idempotence check
  still tells a repeat from a reused id), and its metadata holds one entry, :data:`SEALED`:
  the whole message, encrypted under the data key with a fresh 96-bit nonce and bound (as
  associated data) to the session id, message id, role and tool call id.
* Session metadata is sealed the same way, bound to the session id, agent and user.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import json
import os
from binascii import b2a_base64
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pydantic import JsonValue

from aixgo.crypto import KEY_BYTES, Keyring
from aixgo.errors import (
    ConflictError,
    CorruptedData,
    DecryptionError,
    InvalidIdentifier,
    SessionNotFound,
)
from aixgo.message import Message, utc_now
from aixgo.session.backend import Backend, ReadThrough
from aixgo.session.codec import check_batch, decode_batch, decode_message, stamp_seq, stored_copy
from aixgo.session.kit.recent import Recent
from aixgo.session.kit.wrapper import BackendWrapper
from aixgo.session.models import Checkpoint, Page, SessionInfo

__all__ = ["DATA_KEY_AGENT", "SEALED", "EncryptedBackend", "RekeyReport", "record_id"]

#: The agent name of the reserved sessions that hold wrapped data keys.
DATA_KEY_AGENT = "aixgo.data-key"
#: The metadata key under which a sealed record keeps its ciphertext.
SEALED = "aixgo.sealed"
_KEY_META = "aixgo.data_key"
_VERSION = "1"
_NONCE = 12
_FINGERPRINT = "sealed:"
# What the fingerprint covers: what the store's idempotence check compares besides the
# fields kept in the clear (codec.same_message).
_COMPARED = {"content", "name", "tool_calls"}
# Session id -> owner cache bound: owners never change, so this only bounds memory.
_OWNERS_MAX = 100_000
# Bounds of the cache of opened messages: plaintext bytes and entries. Past either, it is
# emptied (cheaper than tracking recency on every hit).
_OPENED_BYTES = 32 * 1024 * 1024
_OPENED_MAX = 20_000


def _owner_tag(owner: str | None) -> bytes:
    return b"-" if owner is None else b"u" + owner.encode()


def record_id(master: str, owner: str | None) -> str:
    """The id of the reserved session holding ``owner``'s data key wrapped by ``master``."""
    digest = hashlib.sha256(b"aixgo/1/key-record\0" + master.encode() + b"\0" + _owner_tag(owner))
    return digest.hexdigest()[:32]


class _DataKey:
    __slots__ = ("aead", "fingerprint", "id", "owner")

    def __init__(self, dk_id: str, key: bytes, owner: str | None) -> None:
        self.id = dk_id
        self.owner = owner
        self.aead = AESGCM(key)
        # Keyed once: each fingerprint copies this HMAC state instead of keying afresh.
        self.fingerprint = hmac.new(
            hmac.new(key, b"aixgo/1/fingerprint", hashlib.sha256).digest(), digestmod=hashlib.sha256
        )

    def __repr__(self) -> str:
        return f"DataKey({self.id!r})"


@dataclass(slots=True)
class RekeyReport:
    """What :meth:`SessionManager.rekey` did; also handed to its ``progress`` callback
    after each batch, counting so far."""

    #: Data key records looked at.
    data_keys: int = 0
    #: Records rewrapped onto the active master key by this run.
    rewrapped: int = 0
    #: Records still wrapped by another key (a user whose data got two data keys when two
    #: processes with different active keys raced on their first write); keep that key.
    remaining: int = 0


def _message_aad(session_id: str, m: Message) -> bytes:
    return f"aixgo/1/message\0{session_id}\0{m.id}\0{m.role}\0{m.tool_call_id or ''}".encode()


def _session_aad(info: SessionInfo) -> bytes:
    return b"aixgo/1/session\0%s\0%s\0%s" % (
        info.id.encode(), info.agent.encode(), _owner_tag(info.user_id)
    )  # fmt: skip


def _key_aad(dk_id: str, owner: str | None, master: str) -> bytes:
    return b"aixgo/1/data-key\0%s\0%s\0%s" % (dk_id.encode(), _owner_tag(owner), master.encode())


def _split(envelope: object) -> tuple[str, bytes] | None:
    """``(data key id, nonce + ciphertext)`` of an envelope ``1.<dk id>.<base64>``, or
    ``None`` if it is malformed."""
    parts = envelope.split(".", 2) if isinstance(envelope, str) else ()
    if len(parts) == 3 and parts[0] == _VERSION:
        try:
            return parts[1], binascii.a2b_base64(parts[2], strict_mode=True)
        except (ValueError, binascii.Error):
            pass
    return None


#: A cached opened message with what its record held: envelope, id, role, tool call id.
_Opened = tuple[str, str, str, str | None, Message]


class _KeyMissing(Exception):
    """A record is sealed with data key ``dk_id``, not loaded yet: loading it awaits the
    store, which opening (a synchronous step of a store's read) cannot."""

    def __init__(self, dk_id: str, what: str) -> None:
        super().__init__(dk_id)
        self.dk_id = dk_id
        self.what = what


def _malformed(what: str) -> DecryptionError:
    return DecryptionError(f"{what} has a malformed ciphertext envelope")


class EncryptedBackend(BackendWrapper):
    """A :class:`~aixgo.session.Backend` that encrypts what it stores in ``inner`` with the
    data keys of ``keyring`` (see the module docs). Made by
    ``SessionManager(url, encryption=keyring)``.

    >>> from aixgo.session import open_backend
    >>> enc = EncryptedBackend(open_backend("memory://"), Keyring({"k1": bytes(32)}, "k1"))
    >>> enc
    EncryptedBackend(<...MemoryBackend object at ...>, Keyring(ids=['k1'], active='k1'))
    """

    def __init__(self, inner: Backend, keyring: Keyring, *, allow_plaintext: bool = False) -> None:
        if not isinstance(keyring, Keyring):
            raise TypeError(
                f"encryption takes an aixgo.crypto.Keyring, not {type(keyring).__name__}"
            )
        super().__init__(inner)
        self.keyring = keyring
        self.allow_plaintext = allow_plaintext
        self._owners: dict[str, str | None] = {}
        self._keys: dict[str, _DataKey] = {}  # data key id -> key
        self._writing: dict[str | None, _DataKey] = {}  # owner -> key new records use
        # For stores without ReadThrough: messages this process decrypted, by (session id,
        # seq), each with what its decryption checked (the envelope, and the fields the
        # associated data binds besides the session id), so a tail read again (every turn of
        # a conversation) skips the decryption and the validation. A hit needs all of them
        # equal (exact string comparisons, no hash of the envelope), so a record moved or
        # altered misses and is decrypted (and refused) as without the cache; hits are
        # handed out as copies.
        self._opened: dict[tuple[str, int], _Opened] = {}
        self._opened_bytes = 0
        # Where the store has ReadThrough, reads go through this instead: the store compares
        # each record's stored bytes with the ones kept here, with what they opened to (the
        # bytes hold the envelope and every field the associated data binds; the Recent is
        # per session), so a record read again costs one copy, and anything changed is
        # decoded and opened (or refused) afresh.
        self._recent = Recent(make=self._made)
        self._through = inner.get_messages_through if isinstance(inner, ReadThrough) else None

    def __repr__(self) -> str:
        return f"EncryptedBackend({self.inner!r}, {self.keyring!r})"

    async def close(self) -> None:
        """Close the wrapped backend and drop what this wrapper remembers of it."""
        self._opened.clear()
        self._opened_bytes = 0
        self._recent.clear()
        await self.inner.close()

    def optional(self, name: str, fn: Any) -> Any:
        # Turn leases, migrate and a plugin's extras pass through; the one optional method
        # that carries session metadata is sealed.
        return self._get_or_create_session if name == "get_or_create_session" else fn

    # -- data keys ---------------------------------------------------------------------

    def _unwrap(self, info: SessionInfo) -> tuple[str, bytes, str]:
        """``(data key id, key, master id)`` of a data key record."""
        meta = info.metadata.get(_KEY_META)
        fields = (
            [meta.get(k) for k in ("id", "master", "wrapped")] if isinstance(meta, dict) else []
        )
        try:
            dk_id, master, wrapped = (f for f in fields if isinstance(f, str))
            blob = base64.b64decode(wrapped, validate=True)
        except (ValueError, binascii.Error):
            raise DecryptionError(f"data key record {info.id!r} is malformed") from None
        cipher = self.keyring.cipher(master)
        if cipher is None:
            raise DecryptionError(
                f"a data key of {_whose(info.user_id)} is wrapped by master key {master!r}, "
                f"which is not in the keyring ({', '.join(self.keyring.ids)}); add it, or "
                "run rekey while it is still there",
                key_id=master,
            )
        try:
            key = cipher.decrypt(
                blob[:_NONCE], blob[_NONCE:], _key_aad(dk_id, info.user_id, master)
            )
        except InvalidTag:
            raise DecryptionError(
                f"data key {dk_id!r} of {_whose(info.user_id)} does not open with master key "
                f"{master!r}: the key under that id is not the one it was wrapped with, or "
                "the record was altered",
                key_id=master,
            ) from None
        return dk_id, key, master

    def _record(self, owner: str | None, master: str, dk_id: str, key: bytes) -> SessionInfo:
        cipher = self.keyring.cipher(master)
        if cipher is None:  # only ever called with the active key or one just used
            raise DecryptionError(f"master key {master!r} is not in the keyring", key_id=master)
        nonce = os.urandom(_NONCE)
        wrapped = nonce + cipher.encrypt(nonce, key, _key_aad(dk_id, owner, master))
        now = utc_now()
        meta: dict[str, JsonValue] = {
            "v": 1, "id": dk_id, "master": master, "wrapped": base64.b64encode(wrapped).decode()
        }  # fmt: skip
        return SessionInfo(
            id=record_id(master, owner), agent=DATA_KEY_AGENT, user_id=owner, created_at=now,
            updated_at=now, metadata={_KEY_META: meta},
        )  # fmt: skip

    async def _load(self, owner: str | None) -> list[tuple[str, _DataKey]]:
        """``owner``'s data keys under the keyring's master keys, active first, as
        ``(master id, key)``; each is cached by its id."""
        found: list[tuple[str, _DataKey]] = []
        ids = [self.keyring.active, *(k for k in self.keyring.ids if k != self.keyring.active)]
        for master in ids:
            try:
                info = await self.inner.get_session(record_id(master, owner))
            except SessionNotFound:
                continue
            dk_id, key, _ = self._unwrap(info)
            dk = self._keys.get(dk_id) or _DataKey(dk_id, key, owner)
            self._keys[dk_id] = dk
            found.append((master, dk))
        return found

    async def _writing_key(self, owner: str | None) -> _DataKey:
        dk = self._writing.get(owner)
        if dk is not None:
            return dk
        found = await self._load(owner)
        if not found:
            await self._refuse_unknown_master(owner)
            key, dk_id = os.urandom(KEY_BYTES), os.urandom(8).hex()
            try:
                await self.inner.create_session(
                    self._record(owner, self.keyring.active, dk_id, key)
                )
                found = [(self.keyring.active, _DataKey(dk_id, key, owner))]
                self._keys[dk_id] = found[0][1]
            except ConflictError:
                found = await self._load(owner)  # another process made it first: use theirs
                if not found:
                    raise
        dk = found[0][1]
        self._writing[owner] = dk
        return dk

    async def _refuse_unknown_master(self, owner: str | None) -> None:
        """Never make a second data key for a user whose key the keyring cannot open."""
        if owner is None:
            return
        page = await self.inner.list_sessions(agent=DATA_KEY_AGENT, user_id=owner, limit=1)
        for info in page.items:
            self._unwrap(info)  # raises DecryptionError naming the missing master key

    async def _reading_key(self, owner: str | None, dk_id: str, what: str) -> _DataKey:
        dk = self._keys.get(dk_id)
        if dk is None:
            await self._load(owner)
            dk = self._keys.get(dk_id)
            if dk is None:
                await self._refuse_unknown_master(owner)
                raise DecryptionError(
                    f"{what} is sealed with data key {dk_id!r}, which is not in the store: "
                    "its user was erased, or the record was copied from another store",
                    key_id=dk_id,
                )
        return dk

    async def _owner(self, session_id: str) -> str | None:
        if session_id in self._owners:
            return self._owners[session_id]
        info = await self.inner.get_session(session_id)
        if info.agent == DATA_KEY_AGENT:
            raise SessionNotFound(session_id)
        self._remember(info)
        return info.user_id

    def _remember(self, info: SessionInfo) -> None:
        if len(self._owners) >= _OWNERS_MAX:
            self._owners.clear()
        self._owners[info.id] = info.user_id

    def forget(self, owner: str) -> None:
        """Drop cached data keys, sessions and messages of ``owner`` (after erasing them)."""
        self._writing.pop(owner, None)
        self._opened.clear()  # erasures are rare: every user's messages go, not only theirs
        self._opened_bytes = 0
        self._recent.clear()
        for dk_id in [k for k, dk in self._keys.items() if dk.owner == owner]:
            del self._keys[dk_id]
        for sid in [s for s, o in self._owners.items() if o == owner]:
            del self._owners[sid]

    # -- sealing -----------------------------------------------------------------------

    def _seal_info(self, info: SessionInfo, dk: _DataKey) -> SessionInfo:
        self._remember(info)
        data = json.dumps(info.metadata, ensure_ascii=False, separators=(",", ":")).encode()
        sealed: dict[str, JsonValue] = {SEALED: _envelope(dk, data, _session_aad(info))}
        return info.model_copy(update={"metadata": sealed})

    async def _open_info(self, info: SessionInfo) -> SessionInfo:
        self._remember(info)
        envelope = info.metadata.get(SEALED)
        if envelope is None:
            self._plaintext(f"session {info.id!r}")
            return info
        what = f"the metadata of session {info.id!r}"
        split = _split(envelope)
        if split is None:
            raise _malformed(what)
        dk_id, blob = split
        dk = self._keys.get(dk_id) or await self._reading_key(info.user_id, dk_id, what)
        data = _open(dk, blob, _session_aad(info), what)
        return info.model_copy(update={"metadata": json.loads(data)})

    def _plaintext(self, what: str) -> None:
        if not self.allow_plaintext:
            raise DecryptionError(
                f"{what} is not encrypted, in an encrypted store: refused (it may have been "
                "planted). Stores written before encryption was turned on are migrated "
                "(docs/governance.md), or read with allow_plaintext=True while migrating"
            )

    def _seal_message(self, session_id: str, m: Message, data: bytes, dk: _DataKey) -> Message:
        # ``data`` is the message's JSON as the plaintext checks made it: sealed whole.
        if type(m.content) is str and m.name is None and not m.tool_calls:
            compared = b"s" + m.content.encode()  # the common case, without serializing
        else:
            compared = b"j" + m.__pydantic_serializer__.to_json(m, include=_COMPARED)
        mac = dk.fingerprint.copy()
        mac.update(m.id.encode() + b"\0" + compared)
        fingerprint = b2a_base64(mac.digest()[:18], newline=False).decode()
        return _message(
            m.id, m.role, _FINGERPRINT + fingerprint, None, None, m.tool_call_id,
            {SEALED: _envelope(dk, data, _message_aad(session_id, m))}, m.created_at, None,
        )  # fmt: skip

    async def _open_messages(self, session_id: str, stored: Sequence[Message]) -> list[Message]:
        """``stored`` (sealed records as a store returned them) opened, through the cache of
        opened messages."""
        while True:
            try:
                return self._unseal(session_id, stored, cache=True)
            except _KeyMissing as missing:
                await self._load_missing(session_id, missing)

    def _made(self, session_id: str, decoded: list[Message]) -> list[Message]:
        # What the wrapper's Recent keeps: records a store just decoded (nobody else holds
        # them), opened; reads again reuse them by the store's byte comparison instead.
        return self._unseal(session_id, decoded, cache=False)

    async def _load_missing(self, session_id: str, missing: _KeyMissing) -> None:
        await self._reading_key(await self._owner(session_id), missing.dk_id, missing.what)

    def _unseal(self, session_id: str, stored: Sequence[Message], *, cache: bool) -> list[Message]:
        """``stored`` opened, plaintext records passed on (if allowed); with ``cache``, hits
        of the cache of opened messages are copied and misses added to it. A data key not
        loaded yet is :class:`_KeyMissing` (loading it awaits the store)."""
        # Each record is decrypted on its own (its nonce and associated data are its own),
        # then the plaintexts, each the JSON _seal_message sealed, are validated in one
        # decode_batch call, as a plaintext store reads its tail.
        sealed: list[bytes] = []
        seqs: list[int | None] = []
        sources: list[Message] = []
        out: list[Message | None] = []
        keys = self._keys
        opened = self._opened if cache else None
        # The hot loop of every encrypted read: _split, _message_aad and _open inlined.
        a2b, aad_prefix = binascii.a2b_base64, f"aixgo/1/message\0{session_id}\0"
        for s in stored:
            envelope = s.metadata.get(SEALED) if s.metadata else None
            if envelope is None:
                self._plaintext(f"message {s.id!r} of session {session_id!r}")
                out.append(s)  # a plaintext record (while migrating)
                continue
            if opened is not None:
                known = opened.get((session_id, cast(int, s.seq)))
                if (
                    known is not None
                    and known[0] == envelope
                    and known[1] == s.id
                    and known[2] == s.role
                    and known[3] == s.tool_call_id
                ):
                    out.append(stored_copy(known[4], cast(int, s.seq)))
                    continue
            aad = f"{aad_prefix}{s.id}\0{s.role}\0{s.tool_call_id or ''}".encode()
            if (
                not isinstance(envelope, str)
                or len(parts := envelope.split(".", 2)) != 3
                or parts[0] != _VERSION
            ):
                raise _malformed(f"message {s.id!r} of session {session_id!r}")
            try:
                blob = a2b(parts[2], strict_mode=True)
            except (ValueError, binascii.Error):
                raise _malformed(f"message {s.id!r} of session {session_id!r}") from None
            dk = keys.get(parts[1])
            if dk is None:
                raise _KeyMissing(parts[1], f"message {s.id!r} of session {session_id!r}")
            try:
                sealed.append(dk.aead.decrypt(blob[:_NONCE], blob[_NONCE:], aad))
            except InvalidTag:
                _open(dk, blob, aad, s.id, session_id)  # raises the DecryptionError
                raise
            seqs.append(s.seq)
            sources.append(s)
            out.append(None)
        if not sealed:
            return cast("list[Message]", out)  # every slot filled
        fresh = _decode(session_id, sealed, seqs, sources)
        if cache:
            self._keep(session_id, sources, sealed, fresh)
        it = iter(fresh)
        return [next(it) if m is None else m for m in out]

    def _keep(
        self, session_id: str, sources: list[Message], sealed: list[bytes], messages: list[Message]
    ) -> None:
        """Cache copies of ``messages``, freshly opened from the records ``sources`` (the
        caller keeps the originals)."""
        size = self._opened_bytes + sum(len(d) for d in sealed)
        if size > _OPENED_BYTES or len(self._opened) + len(sources) > _OPENED_MAX:
            self._opened.clear()
            size = sum(len(d) for d in sealed)
            if size > _OPENED_BYTES:
                self._opened_bytes = 0
                return
        self._opened_bytes = size
        for s, m in zip(sources, messages, strict=True):
            if s.seq is not None:
                envelope = cast(str, s.metadata[SEALED])
                kept = stored_copy(m, s.seq)
                self._opened[session_id, s.seq] = (envelope, s.id, s.role, s.tool_call_id, kept)

    # -- the backend protocol ----------------------------------------------------------

    async def create_session(self, info: SessionInfo) -> None:
        """Store ``info`` with its metadata sealed."""
        _not_reserved(info.agent)
        dk = await self._writing_key(info.user_id)
        await self.inner.create_session(self._seal_info(info, dk))

    async def _get_or_create_session(self, info: SessionInfo) -> tuple[SessionInfo, bool]:
        _not_reserved(info.agent)
        dk = await self._writing_key(info.user_id)
        stored, created = await self.inner.get_or_create_session(self._seal_info(info, dk))  # type: ignore[attr-defined]
        return (info if created else await self._open_info(stored)), created

    async def get_session(self, session_id: str) -> SessionInfo:
        """The session's summary, its metadata decrypted."""
        info = await self.inner.get_session(session_id)
        if info.agent == DATA_KEY_AGENT:
            raise SessionNotFound(session_id)
        return await self._open_info(info)

    async def list_sessions(
        self,
        *,
        agent: str | None = None,
        user_id: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page[SessionInfo]:
        """Sessions as the wrapped backend lists them, data key records left out."""
        if agent == DATA_KEY_AGENT:
            return Page()
        while True:
            page = await self.inner.list_sessions(
                agent=agent, user_id=user_id, limit=limit, cursor=cursor
            )
            items = [await self._open_info(i) for i in page.items if i.agent != DATA_KEY_AGENT]
            # A page of nothing but key records: go on, so only the last page is empty.
            if items or page.next_cursor is None:
                return Page(items, page.next_cursor)
            cursor = page.next_cursor

    async def delete_session(self, session_id: str) -> None:
        """Delete a session (never a data key record: those go with ``erase_user``)."""
        await self._owner(session_id)
        await self.inner.delete_session(session_id)
        self._owners.pop(session_id, None)
        self._recent.drop(session_id)

    async def append_messages(
        self, session_id: str, messages: Sequence[Message], *, expected_seq: int | None = None
    ) -> list[Message]:
        """Seal and append ``messages``; return them as stored, in the clear."""
        encoded = check_batch(messages)  # every check a plaintext append makes, up front
        owners = self._owners  # cached owner and key: the common case, without coroutines
        owner = owners[session_id] if session_id in owners else await self._owner(session_id)
        dk = self._writing.get(owner) or await self._writing_key(owner)
        sealed = [
            self._seal_message(session_id, m, d, dk) for m, d in zip(messages, encoded, strict=True)
        ]
        stored = await self.inner.append_messages(session_id, sealed, expected_seq=expected_seq)
        out: list[Message] = []
        for given, sent, got in zip(messages, sealed, stored, strict=True):
            if got.metadata.get(SEALED) == sent.metadata[SEALED] and got.seq is not None:
                out.append(stored_copy(given, got.seq))
            else:  # an idempotent repeat: the store gave back the copy stored before
                out.extend(await self._open_messages(session_id, [got]))
        return out

    async def get_messages(self, session_id: str, *, last: int | None = None) -> list[Message]:
        """The history, decrypted: through the wrapped store's comparison of stored bytes
        where it has :class:`~aixgo.session.ReadThrough`, else opened one by one."""
        through = self._through
        if through is None:
            stored = await self.inner.get_messages(session_id, last=last)
            return await self._open_messages(session_id, stored)
        while True:
            try:
                return await through(session_id, self._recent, last=last)
            except _KeyMissing as missing:  # the read kept nothing: load the key, read again
                await self._load_missing(session_id, missing)

    async def create_checkpoint(
        self, session_id: str, checkpoint_id: str, *, label: str | None = None
    ) -> Checkpoint:
        """Checkpoints hold no content; they pass through."""
        return await self.inner.create_checkpoint(session_id, checkpoint_id, label=label)

    async def list_checkpoints(self, session_id: str) -> list[Checkpoint]:
        """Checkpoints pass through."""
        return await self.inner.list_checkpoints(session_id)

    async def restore_checkpoint(
        self, session_id: str, checkpoint_id: str, *, undo_id: str
    ) -> Checkpoint:
        """Restores pass through: records keep their session and ids, so still decrypt."""
        return await self.inner.restore_checkpoint(session_id, checkpoint_id, undo_id=undo_id)

    # -- rotation ----------------------------------------------------------------------

    async def rekey(
        self, *, progress: Callable[[RekeyReport], None] | None = None, batch: int = 200
    ) -> RekeyReport:
        """Rewrap every data key onto the active master key (see ``SessionManager.rekey``)."""
        active = self.keyring.active
        report = RekeyReport()
        cursor: str | None = None
        while True:
            page = await self.inner.list_sessions(agent=DATA_KEY_AGENT, limit=batch, cursor=cursor)
            for info in page.items:
                report.data_keys += 1
                meta = info.metadata.get(_KEY_META)
                if isinstance(meta, dict) and meta.get("master") == active:
                    continue
                dk_id, key, _ = self._unwrap(info)
                new = self._record(info.user_id, active, dk_id, key)
                try:
                    # First the new record, then the old one goes: a crash between leaves
                    # both, and the next run only deletes the old one.
                    await self.inner.create_session(new)
                except ConflictError:
                    there, _, _ = self._unwrap(await self.inner.get_session(new.id))
                    if there != dk_id:
                        report.remaining += 1
                        continue
                with contextlib.suppress(SessionNotFound):  # a concurrent rekey got there first
                    await self.inner.delete_session(info.id)
                report.rewrapped += 1
            if progress is not None:
                progress(report)
            if page.next_cursor is None:
                return report
            cursor = page.next_cursor


_FIELDS = tuple(Message.model_fields)
_new = object.__new__
_set = object.__setattr__


def _message(
    id: str, role: str, content: Any, name: Any, tool_calls: Any, tool_call_id: str | None,
    metadata: Any, created_at: Any, seq: int | None,
) -> Message:  # fmt: skip
    """A :class:`Message` of trusted field values, without validation (as
    ``codec.with_seq`` builds one): the values come from a validated message."""
    out = _new(Message)
    _set(out, "__dict__", {
        "id": id, "role": role, "content": content, "name": name, "tool_calls": tool_calls,
        "tool_call_id": tool_call_id, "metadata": metadata, "created_at": created_at, "seq": seq,
    })  # fmt: skip
    _set(out, "__pydantic_fields_set__", set(_FIELDS))
    _set(out, "__pydantic_extra__", None)
    _set(out, "__pydantic_private__", None)
    return out


def _decode(
    session_id: str, data: list[bytes], seqs: list[int | None], stored: list[Message]
) -> list[Message]:
    """The decrypted records ``data`` (stored as messages ``seqs``) as messages, validated
    in one :func:`decode_batch`; a record that is not a message is a
    :class:`DecryptionError` naming it."""
    if not data:
        return []

    def careful(i: int) -> Message:
        try:
            return decode_message(data[i])
        except CorruptedData:
            pass
        try:
            return _partial(stored[i], data[i])
        except (ValueError, TypeError):
            raise DecryptionError(
                f"message {stored[i].id!r} of session {session_id!r} decrypts to something "
                "not a message"
            ) from None

    first = seqs[0]
    if first is not None and seqs == list(range(first, first + len(seqs))):
        return decode_batch(data, careful, first_seq=first)  # a tail: numbered in place
    # Not one run of seqs (never from a backend's history; kept correct anyway).
    data = [d if seq is None else stamp_seq(d, seq) for d, seq in zip(data, seqs, strict=True)]
    out = decode_batch(data, careful)
    for m, seq in zip(out, seqs, strict=True):
        if m.seq != seq:
            m.__dict__["seq"] = seq  # built afresh by decode_batch: nobody else holds it
    return out


_PARTIAL = {"content", "name", "tool_calls", "metadata"}


def _partial(s: Message, data: bytes) -> Message:
    """A record sealed in the form of development builds of 2026-12-07 (only the fields not
    kept in the clear), completed from the clear ones."""
    d = json.loads(data)
    if not isinstance(d, dict) or set(d) != _PARTIAL:
        raise ValueError("not a partial record")
    clear = {"id": s.id, "role": s.role, "tool_call_id": s.tool_call_id}
    return Message.model_validate({**d, **clear, "created_at": s.created_at, "seq": s.seq})


def _whose(owner: str | None) -> str:
    return "sessions without a user" if owner is None else f"user {owner!r}"


def _not_reserved(agent: str) -> None:
    if agent == DATA_KEY_AGENT:
        raise InvalidIdentifier(
            f"agent name {DATA_KEY_AGENT!r} is reserved for encryption keys; choose another"
        )


def _envelope(dk: _DataKey, data: bytes, aad: bytes) -> str:
    nonce = os.urandom(_NONCE)  # fresh for every record
    blob = nonce + dk.aead.encrypt(nonce, data, aad)
    return f"{_VERSION}.{dk.id}.{b2a_base64(blob, newline=False).decode()}"


def _open(dk: _DataKey, blob: bytes, aad: bytes, what: str, session_id: str = "") -> bytes:
    """Decrypt ``blob``; ``what`` names it in the error (a message id, with ``session_id``)."""
    try:
        return dk.aead.decrypt(blob[:_NONCE], blob[_NONCE:], aad)
    except InvalidTag:
        if session_id:
            what = f"message {what!r} of session {session_id!r}"
        raise DecryptionError(
            f"{what} does not decrypt with data key {dk.id!r}: it was altered, or copied "
            "from another session or message id",
            key_id=dk.id,
        ) from None
