"""Encryption at rest on every backend (issue #19 section 1), against the real servers."""

from __future__ import annotations

import logging
import os
from typing import Any

import pytest
from aixgo import Message
from aixgo.crypto import Keyring
from aixgo.errors import BackendClosed, DecryptionError, MessageIdConflict, SessionNotFound
from aixgo.message import ToolCall
from aixgo.session import SessionManager
from aixgo.session._encrypted import DATA_KEY_AGENT, SEALED

from tests.core.governance import Store, key, store

__all__ = ["store"]
pytestmark = pytest.mark.asyncio


def _secret() -> str:
    return f"secret-{os.urandom(6).hex()}"


async def test_everything_round_trips_and_the_store_holds_no_plaintext(store: Store) -> None:
    title, text, tool, arg, name, meta = (_secret() for _ in range(6))
    mgr = store.manager(Keyring({"k1": key()}, active="k1"))
    s = await mgr.create("assistant", user_id="alice", metadata={"title": title})
    sent = [
        Message.user(text, metadata={"note": meta}),
        Message.assistant(tool_calls=[ToolCall(name=tool, arguments={"q": arg})], name=name),
        Message.tool([{"type": "text", "text": text + "-part"}], tool_call_id="call-1"),
    ]
    stored = await s.append_messages(sent)
    assert [m.seq for m in stored] == [1, 2, 3]
    got = await (await mgr.get(s.id)).get_messages()
    assert [m.model_copy(update={"seq": None}) for m in got] == sent
    assert (await s.get_messages(last=1))[0].content == sent[2].content
    assert (await mgr.list(user_id="alice")).items[0].metadata == {"title": title}
    assert (await s.info()).metadata == {"title": title}
    raw = await store.raw()
    for secret in (title, text, tool, arg, name, meta):
        assert secret.encode() not in raw
    # What stays in the clear, because listing needs it.
    assert b"alice" in raw and s.id.encode() in raw


async def test_a_retry_is_idempotent_and_a_reused_id_is_a_conflict(store: Store) -> None:
    mgr = store.manager(Keyring({"k1": key()}, active="k1"))
    s = await mgr.create("assistant", user_id="alice")
    first = await s.append_message(Message.user("hello"))
    again = await s.append_message(Message.user("hello", id=first.id))
    assert (again.seq, again.content) == (1, "hello")
    with pytest.raises(MessageIdConflict):
        await s.append_messages([Message.user("new"), Message.user("changed", id=first.id)])
    assert [m.text for m in await s.get_messages()] == ["hello"]


async def test_ciphertext_moved_to_another_session_or_id_is_refused(store: Store) -> None:
    mgr = store.manager(Keyring({"k1": key()}, active="k1"))
    a = await mgr.create("assistant", user_id="alice")
    b = await mgr.create("assistant", user_id="alice")  # same user: same data key
    await a.append_message(Message.user("from a"))
    await b.append_message(Message.user("from b"))
    # Read first, so this process has opened (and remembers) the record it then finds moved.
    assert [m.text for m in await a.get_messages()] == ["from a"]
    (sealed,) = await store.backend.get_messages(a.id)
    moved = sealed.model_copy(update={"seq": None})
    await store.backend.append_messages(b.id, [moved])
    with pytest.raises(DecryptionError, match="copied from another session") as err:
        await b.get_messages()
    assert err.value.key_id is not None
    renamed = sealed.model_copy(update={"seq": None, "id": "0" * 32})
    await store.backend.append_messages(a.id, [renamed])
    with pytest.raises(DecryptionError):
        await a.get_messages(last=1)


async def test_a_wrong_or_missing_key_is_named_and_changes_nothing(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    k1 = key()
    mgr = store.manager(Keyring({"k1": k1}, active="k1"))
    s = await mgr.create("assistant", user_id="alice", metadata={"title": "t"})
    await s.append_message(Message.user("hello"))
    wrong_key = key()
    wrong = store.manager(Keyring({"k1": wrong_key}, active="k1"))
    with pytest.raises(DecryptionError, match="'k1'") as err:
        await (await wrong.get(s.id)).get_messages()
    assert err.value.key_id == "k1"
    missing = store.manager(Keyring({"k2": key()}, active="k2"))
    with pytest.raises(DecryptionError) as err2:
        await missing.get(s.id)
    assert err2.value.key_id == "k1"
    with pytest.raises(DecryptionError):  # a write refused before anything is stored
        await missing.create("assistant", user_id="alice")
    assert (await store.backend.get_session(s.id)).message_count == 1
    page = await store.backend.list_sessions(user_id="alice")
    assert len(page.items) == 2  # the session and its data key record: nothing added
    for text in (str(err.value), str(err2.value), repr(wrong.backend), caplog.text):
        for k in (k1, wrong_key):
            assert k.hex() not in text and k.hex().upper() not in text
    assert "k1" in repr(mgr.backend) and k1.hex() not in repr(mgr.backend)


async def test_plaintext_records_are_refused_unless_the_migration_flag_is_set(
    store: Store,
) -> None:
    plain = store.manager()
    s = await plain.create("assistant", user_id="alice", metadata={"title": "old"})
    await s.append_message(Message.user("written before encryption"))
    keyring = Keyring({"k1": key()}, active="k1")
    with pytest.raises(DecryptionError, match="not encrypted"):
        await store.manager(keyring).get(s.id)
    enc = store.manager(keyring)
    s2 = await enc.create("assistant", user_id="alice")
    await s2.append_message(Message.user("new"))
    (planted,) = await store.backend.get_messages(s.id)
    await store.backend.append_messages(s2.id, [planted.model_copy(update={"seq": None})])
    with pytest.raises(DecryptionError, match="not encrypted"):
        await s2.get_messages()
    migrating = store.manager(keyring, allow_plaintext=True)
    old = await migrating.get(s.id)
    assert old.metadata == {"title": "old"}
    assert [m.text for m in await old.get_messages()] == ["written before encryption"]


async def test_ten_thousand_messages_survive_a_rotation_and_the_old_key_going(
    store: Store,
) -> None:
    k1, k2 = key(), key()
    first = store.manager(Keyring({"k1": k1}, active="k1"))
    sessions = [await first.create("assistant", user_id=f"user-{i}") for i in range(4)]
    anonymous = await first.create("assistant")
    sessions.append(anonymous)
    for n, s in enumerate(sessions):
        for start in range(0, 2000, 500):
            await s.append_messages([Message.user(f"{n}:{i}") for i in range(start, start + 500)])
    both = store.manager(Keyring({"k1": k1, "k2": k2}, active="k2"))
    seen: list[int] = []
    report = await both.rekey(progress=lambda r: seen.append(r.rewrapped), batch=2)
    assert (report.data_keys, report.rewrapped, report.remaining) == (5, 5, 0)
    assert seen == [2, 4, 5]
    assert (await both.rekey()).rewrapped == 0  # resumable: nothing left to do
    only_k2 = store.manager(Keyring({"k2": k2}, active="k2"))
    for n, s in enumerate(sessions):
        got = await (await only_k2.get(s.id)).get_messages()
        assert [m.text for m in got] == [f"{n}:{i}" for i in range(2000)]
    records = await store.backend.list_sessions(agent=DATA_KEY_AGENT)
    assert {r.metadata["aixgo.data_key"]["master"] for r in records.items} == {"k2"}  # type: ignore[index,call-overload]


async def test_data_key_records_are_hidden_and_cannot_be_deleted_as_sessions(
    store: Store,
) -> None:
    mgr = store.manager(Keyring({"k1": key()}, active="k1"))
    s = await mgr.create("assistant", user_id="alice")
    page = await mgr.list()
    assert [i.id for i in page.items] == [s.id]
    (record,) = (await store.backend.list_sessions(agent=DATA_KEY_AGENT)).items
    with pytest.raises(SessionNotFound):
        await mgr.delete(record.id)
    with pytest.raises(SessionNotFound):
        await mgr.get(record.id)
    assert SEALED in (await store.backend.get_session(s.id)).metadata


async def test_get_or_create_seals_and_finds_the_session(store: Store) -> None:
    mgr = store.manager(Keyring({"k1": key()}, active="k1"))
    s = await mgr.get_or_create("assistant", "bob")
    await s.append_message(Message.user("hi"))
    again = await mgr.get_or_create("assistant", "bob")
    assert again.id == s.id
    assert [m.text for m in await again.get_messages()] == ["hi"]


async def test_turning_encryption_on_is_an_export_and_a_resumable_import(
    store: Store,
) -> None:
    import io

    from aixgo.session import open_backend
    from aixgo.session.archive import export_sessions, import_sessions

    plain = store.manager()
    s = await plain.create("assistant", user_id="alice", metadata={"title": "old title"})
    await s.append_messages([Message.user("old text"), Message.assistant("old reply")])
    cp = await s.checkpoint(label="cp")
    buf = io.StringIO()
    await export_sessions(plain, buf.write)
    target = open_backend("memory://")  # the new, encrypted store
    keyring = Keyring({"k1": key()}, active="k1")
    enc = SessionManager(target, encryption=keyring)
    lines = buf.getvalue().splitlines()
    assert (await import_sessions(enc, lines)).sessions == 1
    # Run again (as after a crash part-way): what is there already reads back as the same.
    assert (await import_sessions(enc, lines)).sessions_unchanged == 1
    moved = await enc.get(s.id)
    assert moved.metadata == {"title": "old title"}
    assert [m.text for m in await moved.get_messages()] == ["old text", "old reply"]
    assert [c.id for c in await moved.list_checkpoints()] == [cp.id]
    raw = repr(vars(target)).encode()
    assert b"old text" not in raw and b"old title" not in raw


async def test_session_metadata_moved_to_another_session_is_refused(store: Store) -> None:
    mgr = store.manager(Keyring({"k1": key()}, active="k1"))
    a = await mgr.create("assistant", user_id="alice", metadata={"title": "a's"})
    sealed = await store.backend.get_session(a.id)
    other = sealed.model_copy(update={"id": "f" * 32, "message_count": 0})
    await store.backend.create_session(other)
    with pytest.raises(DecryptionError, match="metadata of session 'f{32}'"):
        await mgr.get(other.id)
    with pytest.raises(DecryptionError):  # listing refuses it too, never skips it silently
        await mgr.list(user_id="alice")


async def test_a_tail_mixing_sealed_and_plaintext_records_reads_in_order_while_migrating(
    store: Store,
) -> None:
    keyring = Keyring({"k1": key()}, active="k1")
    plain = store.manager()
    s = await plain.create("assistant", user_id="alice")
    await s.append_messages([Message.user("p1"), Message.user("p2")])
    migrating = store.manager(keyring, allow_plaintext=True)
    s2 = await migrating.get(s.id)
    await s2.append_messages([Message.user("e3"), Message.assistant("e4")])
    await plain.backend.append_messages(s.id, [Message.user("p5")])
    await s2.append_message(Message.user("e6"))
    got = await s2.get_messages()
    assert [(m.seq, m.text) for m in got] == [
        (1, "p1"), (2, "p2"), (3, "e3"), (4, "e4"), (5, "p5"), (6, "e6"),
    ]  # fmt: skip
    assert [(m.seq, m.text) for m in await s2.get_messages(last=3)] == [
        (4, "e4"), (5, "p5"), (6, "e6"),
    ]  # fmt: skip
    with pytest.raises(DecryptionError, match="not encrypted"):
        await (await store.manager(keyring).get(s.id)).get_messages(last=2)


async def test_messages_read_back_share_no_lists_or_dicts(store: Store) -> None:
    mgr = store.manager(Keyring({"k1": key()}, active="k1"))
    s = await mgr.create("assistant", user_id="alice")
    call = ToolCall(name="f", arguments={"q": ["a"]})
    await s.append_messages([
        Message.user([{"type": "text", "text": "hi"}], metadata={"tags": ["x"]}),
        Message.assistant(tool_calls=[call]),
    ])  # fmt: skip
    first = await s.get_messages()
    first[0].metadata["tags"].append("changed")
    first[0].content[0]["text"] = "changed"  # type: ignore[index]
    assert first[1].tool_calls is not None
    first[1].tool_calls[0].arguments["q"].append("changed")
    for _ in range(2):  # read again (this process remembers what it opened): copies each time
        again = await s.get_messages()
        assert again[0].metadata == {"tags": ["x"]}
        assert again[0].content == [{"type": "text", "text": "hi"}]
        assert again[1].tool_calls == [call] and call.arguments == {"q": ["a"]}
        again[0].metadata["tags"].append("changed")
        assert again[1].tool_calls is not None
        again[1].tool_calls[0].arguments["q"].append("changed")
    assert [m.seq for m in await s.get_messages(last=1)] == [2]


async def test_a_record_altered_in_the_clear_after_it_was_read_is_refused(store: Store) -> None:
    from aixgo.session._encrypted import EncryptedBackend

    mgr = store.manager(Keyring({"k1": key()}, active="k1"))
    s = await mgr.create("assistant", user_id="alice")
    await s.append_message(Message.tool("as written", tool_call_id="call-1"))
    assert [m.role for m in await s.get_messages()] == ["tool"]  # opened and remembered
    (sealed,) = await store.backend.get_messages(s.id)
    enc = mgr.backend
    assert isinstance(enc, EncryptedBackend)
    # Opened once as a store without ReadThrough hands it over: now in the cache.
    assert [m.text for m in await enc._open_messages(s.id, [sealed])] == ["as written"]
    # What a store could hand back after its clear fields were edited: each is refused.
    for change in ({"tool_call_id": "call-2"}, {"id": "0" * 32}, {"role": "user"}):
        with pytest.raises(DecryptionError):
            await enc._open_messages(s.id, [sealed.model_copy(update=change)])
    with pytest.raises(DecryptionError):
        await enc._open_messages("1" * 32, [sealed])  # under another session id
    assert [m.text for m in await enc._open_messages(s.id, [sealed])] == ["as written"]


async def test_a_sealed_record_that_is_not_a_message_is_a_decryption_error(store: Store) -> None:
    from aixgo.session._encrypted import EncryptedBackend

    mgr = store.manager(Keyring({"k1": key()}, active="k1"))
    s = await mgr.create("assistant", user_id="alice")
    await s.append_message(Message.user("fine"))
    enc = mgr.backend
    assert isinstance(enc, EncryptedBackend)
    dk = await enc._writing_key("alice")
    # Sealed with the right key and bound to the right ids, but not a message inside.
    bad = enc._seal_message(s.id, Message.user("x", id="m-bad"), b'{"not":"a message"}', dk)
    await store.backend.append_messages(s.id, [bad])
    with pytest.raises(DecryptionError, match="'m-bad'.*not a message"):
        await s.get_messages()
    assert len(await store.backend.get_messages(s.id)) == 2  # the read changed nothing


async def test_records_sealed_with_only_the_hidden_fields_still_read(store: Store) -> None:
    # Development builds of 2026-12-07 sealed content, name, tool calls and metadata only.
    from aixgo.session._encrypted import EncryptedBackend

    mgr = store.manager(Keyring({"k1": key()}, active="k1"))
    s = await mgr.create("assistant", user_id="alice")
    enc = mgr.backend
    assert isinstance(enc, EncryptedBackend)
    dk = await enc._writing_key("alice")
    m = Message.tool("result", tool_call_id="call-9", metadata={"n": 1})
    partial = b'{"content":"result","name":null,"tool_calls":null,"metadata":{"n":1}}'
    await store.backend.append_messages(s.id, [enc._seal_message(s.id, m, partial, dk)])
    await s.append_message(Message.user("after"))
    got = await s.get_messages()
    assert got[0] == m.model_copy(update={"seq": 1})
    assert [x.text for x in got] == ["result", "after"]


async def _resealed(mgr: SessionManager, session_id: str, message: Message) -> Message:
    """``message`` sealed for ``session_id`` as the wrapper seals it, not yet stored."""
    from aixgo.session._encrypted import EncryptedBackend
    from aixgo.session.codec import check_batch

    enc = mgr.backend
    assert isinstance(enc, EncryptedBackend)
    dk = await enc._writing_key("alice")
    return enc._seal_message(session_id, message, check_batch([message])[0], dk)


async def test_a_record_read_before_is_never_reused_once_its_envelope_changed(
    store: Store,
) -> None:
    mgr = store.manager(Keyring({"k1": key()}, active="k1"))
    s = await mgr.create("assistant", user_id="alice")
    empty = await s.checkpoint()
    first = await s.append_message(Message.user("as written"))
    for _ in range(2):  # the second read reuses what the first opened
        assert [m.text for m in await s.get_messages()] == ["as written"]
    # The same id at the same place, sealed anew with other content: read as itself.
    await s.restore(empty.id)
    other = await _resealed(mgr, s.id, Message.user("written again", id=first.id))
    await store.backend.append_messages(s.id, [other])
    assert [(m.seq, m.text) for m in await s.get_messages()] == [(1, "written again")]
    # One character of that envelope changed: refused, however often it was read before.
    envelope = other.metadata[SEALED]
    assert isinstance(envelope, str)
    flipped = envelope[:-6] + ("A" if envelope[-6] != "A" else "B") + envelope[-5:]
    await s.restore(empty.id)
    await store.backend.append_messages(
        s.id, [other.model_copy(update={"metadata": {SEALED: flipped}})]
    )
    with pytest.raises(DecryptionError):
        await s.get_messages()
    with pytest.raises(DecryptionError):
        await s.get_messages(last=1)


async def test_a_record_read_in_one_session_is_refused_in_another(store: Store) -> None:
    mgr = store.manager(Keyring({"k1": key()}, active="k1"))
    a = await mgr.create("assistant", user_id="alice")
    b = await mgr.create("assistant", user_id="alice")  # same data key
    await a.append_message(Message.user("from a"))
    assert [m.text for m in await a.get_messages()] == ["from a"]  # opened and kept
    (sealed,) = await store.backend.get_messages(a.id)
    await store.backend.append_messages(b.id, [sealed.model_copy(update={"seq": None})])
    assert [m.seq for m in await store.backend.get_messages(b.id)] == [1]  # the same place
    for _ in range(2):
        with pytest.raises(DecryptionError, match="copied from another session"):
            await b.get_messages()
    assert [m.text for m in await a.get_messages()] == ["from a"]


async def test_reads_go_through_the_store_where_it_can_and_keep_within_bounds(
    store: Store,
) -> None:
    from aixgo.session import ReadThrough
    from aixgo.session._encrypted import EncryptedBackend

    mgr = store.manager(Keyring({"k1": key()}, active="k1"))
    enc = mgr.backend
    assert isinstance(enc, EncryptedBackend) and isinstance(store.backend, ReadThrough)
    assert not isinstance(enc, ReadThrough)  # a wrapper never passes it through
    s = await mgr.create("assistant", user_id="alice")
    await s.append_messages([Message.user(f"m{i}") for i in range(5)])
    got = await s.get_messages()
    assert [m.text for m in got] == [f"m{i}" for i in range(5)]
    # What a plain reader of the same store gets is the sealed records, never the opened ones.
    plain = await store.backend.get_messages(s.id)
    assert all(m.text.startswith("sealed:") for m in plain)
    assert len(enc._recent.of(s.id)) == 5 and not enc._opened
    await s.delete()
    assert enc._recent.of(s.id) == {}
    await enc.close()
    with pytest.raises(BackendClosed):
        await s.get_messages()


@pytest.mark.parametrize(
    "test",
    [
        test_a_record_read_before_is_never_reused_once_its_envelope_changed,
        test_a_record_read_in_one_session_is_refused_in_another,
        test_messages_read_back_share_no_lists_or_dicts,
        test_a_tail_mixing_sealed_and_plaintext_records_reads_in_order_while_migrating,
    ],
    ids=lambda f: f.__name__.removeprefix("test_"),
)
async def test_a_store_without_read_through_keeps_every_guarantee(test: Any) -> None:
    # A third-party store (SimpleBackend has no ReadThrough): the wrapper opens what
    # get_messages returns, through its own cache of opened messages.
    from aixgo.session import ReadThrough
    from aixgo.session.simple import SimpleBackend

    from tests.core.test_simple_store import DictStore

    backend = SimpleBackend(DictStore(), "dicts://")
    assert not isinstance(backend, ReadThrough)
    await backend.open()
    try:
        await test(Store("dicts", "dicts://", backend))
    finally:
        await backend.close()


async def test_without_read_through_reads_again_come_from_the_cache_of_opened_messages() -> None:
    from aixgo.session._encrypted import EncryptedBackend
    from aixgo.session.simple import SimpleBackend

    from tests.core.test_simple_store import DictStore

    mgr = SessionManager(SimpleBackend(DictStore()), encryption=Keyring({"k1": key()}, "k1"))
    enc = mgr.backend
    assert isinstance(enc, EncryptedBackend)
    s = await mgr.create("assistant", user_id="alice")
    await s.append_messages([Message.user(f"m{i}") for i in range(3)])
    first = await s.get_messages()
    assert len(enc._opened) == 3 and enc._recent.of(s.id) == {}
    first[0].metadata["changed"] = True
    again = await s.get_messages()
    assert again == [m.model_copy(update={"metadata": {}}) for m in first]
    assert all(a is not b for a, b in zip(again, first, strict=True))
    await mgr.close()
