"""Safe by construction: private modes, no path built from user input, links refused."""

# ruff: noqa: ASYNC240 - tests poke at store files directly, on purpose

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from aixgo import Message
from aixgo.errors import ConfigError, CorruptedData, InvalidIdentifier, SessionNotFound
from aixgo.session import SessionManager
from aixgo.session.models import SessionInfo
from aixgo_backend_file import FileBackend
from aixgo_backend_file.backend import parse_url


@pytest.fixture
def open_umask() -> Iterator[None]:
    old = os.umask(0)
    yield
    os.umask(old)


def tree(root: Path) -> list[Path]:
    return [root, *root.rglob("*")]


@pytest.mark.asyncio
@pytest.mark.usefixtures("open_umask")
async def test_dirs_are_0700_and_files_0600_whatever_the_umask(
    store_url: str, store_dir: Path
) -> None:
    async with SessionManager(store_url) as mgr:
        s = await mgr.create("a", user_id="u")
        await s.append_message(Message.user("hi"))
        cp = await s.checkpoint()
        await s.restore(cp.id)
    for path in tree(store_dir):
        mode = stat.S_IMODE(path.lstat().st_mode)
        assert mode == (0o700 if path.is_dir() else 0o600), (path, oct(mode))
    assert {p.suffix for p in store_dir.rglob("*") if p.is_file()} >= {".log", ".idx", ".meta"}


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "name",
    ["../escape", "../../etc/passwd", "/abs/path", "a/b\\c", "..", ".", "x" * 256, "foo..bar"],
)
async def test_hostile_names_stay_inside_the_store(
    name: str, store_url: str, tmp_path: Path
) -> None:
    before = set(tmp_path.parent.iterdir())
    async with SessionManager(store_url) as mgr:
        s = await mgr.create(name, user_id=name, metadata={"path": name})
        await s.append_message(Message.user(name))
        page = await mgr.list(agent=name, user_id=name)
        assert [i.id for i in page.items] == [s.id]
        assert page.items[0].agent == name and page.items[0].user_id == name
    assert set(tmp_path.parent.iterdir()) == before
    store = Path(store_url[len("file://") :])
    assert {p.relative_to(store).parts[0] for p in store.rglob("*")} <= {"s", "i", "FORMAT"}
    for p in store.rglob("*"):
        assert name not in p.name or name in {".", "x"}


@pytest.mark.asyncio
async def test_names_with_nul_are_refused_before_anything_is_written(store_url: str) -> None:
    async with SessionManager(store_url) as mgr:
        with pytest.raises(InvalidIdentifier):
            await mgr.create("a\x00b")
        with pytest.raises(InvalidIdentifier):
            await mgr.create("a", user_id="\x00")
        assert (await mgr.list()).items == []


@pytest.mark.asyncio
async def test_session_ids_never_reach_the_file_system_raw(backend: FileBackend) -> None:
    for bad in ["../../etc/passwd", "/etc/passwd", "a" * 27, "AAAAAAAAAAAAAAAAAAAAAAAAAA", ""]:
        with pytest.raises(SessionNotFound):
            await backend.get_session(bad)
        with pytest.raises(SessionNotFound):
            await backend.append_messages(bad, [Message.user("x")])


@pytest.mark.asyncio
async def test_a_planted_symlink_is_refused_not_followed(
    store_url: str, store_dir: Path, tmp_path: Path
) -> None:
    async with SessionManager(store_url) as mgr:
        s = await mgr.create("a")
        await s.append_message(Message.user("hi"))
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"precious\n")
    (log,) = store_dir.glob("s/*/*.log")
    log.unlink()
    log.symlink_to(victim)
    async with SessionManager(store_url) as mgr:
        with pytest.raises(CorruptedData, match="symbolic link"):
            await mgr.get(s.id)
    assert victim.read_bytes() == b"precious\n"
    # A link in place of a listing index is refused too, and nothing is written through it.
    ix = store_dir / "i" / "g.ix"
    ix.unlink()
    ix.symlink_to(victim)
    async with SessionManager(store_url) as mgr:
        with pytest.raises(CorruptedData, match="symbolic link"):
            await mgr.create("b")
    assert victim.read_bytes() == b"precious\n"


@pytest.mark.asyncio
async def test_a_planted_shard_directory_link_is_refused(
    store_url: str, store_dir: Path, tmp_path: Path
) -> None:
    async with SessionManager(store_url) as mgr:
        s = await mgr.create("a")
    shard = store_dir / "s" / s.id[:2]
    elsewhere = tmp_path / "elsewhere"
    shard.rename(elsewhere)
    shard.symlink_to(elsewhere, target_is_directory=True)
    async with SessionManager(store_url) as mgr:
        with pytest.raises(CorruptedData, match="symbolic link"):
            await mgr.get(s.id)


@pytest.mark.asyncio
async def test_a_world_writable_store_is_refused(store_dir: Path, store_url: str) -> None:
    store_dir.mkdir(mode=0o700)
    store_dir.chmod(0o777)
    with pytest.raises(ConfigError, match="writable by group or others"):
        await SessionManager(store_url).open()
    store_dir.chmod(0o720)
    with pytest.raises(ConfigError, match="chmod 700"):
        await SessionManager(store_url).open()


@pytest.mark.asyncio
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give a directory away")
async def test_a_store_owned_by_someone_else_is_refused(store_dir: Path, store_url: str) -> None:
    store_dir.mkdir(mode=0o700)
    os.chown(store_dir, 4242, -1)
    with pytest.raises(ConfigError, match="belongs to uid 4242"):
        await SessionManager(store_url).open()


def test_url_forms(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("AIXGO_HOME", str(tmp_path / "ah"))
    assert parse_url("file:///var/x") == (Path("/var/x"), {})
    assert parse_url("file://~/x")[0] == tmp_path / "home" / "x"
    assert parse_url("file://$AIXGO_HOME/sessions")[0] == tmp_path / "ah" / "sessions"
    assert parse_url("file:///a%20b?durability=fsync") == (Path("/a b"), {"durability": "fsync"})
    with pytest.raises(ConfigError, match="valid options: durability=flush|fsync"):
        parse_url("file:///x?durabilty=fsync")
    with pytest.raises(ConfigError, match="choose one of flush, fsync"):
        parse_url("file:///x?durability=sometimes")
    with pytest.raises(ConfigError, match="absolute"):
        parse_url("file://relative/path")
    monkeypatch.delenv("AIXGO_HOME")
    with pytest.raises(ConfigError, match="not set"):
        parse_url("file://$AIXGO_HOME/sessions")


def test_a_repeated_option_is_refused_not_last_wins() -> None:
    # Used to become durability=flush silently: the weaker guarantee, with no word said.
    with pytest.raises(ConfigError, match="'durability' is given twice"):
        parse_url("file:///x?durability=fsync&durability=flush")
    with pytest.raises(ConfigError, match="given twice"):
        FileBackend("file:///x?durability=fsync&durability=fsync")


@pytest.mark.asyncio
async def test_default_store_is_aixgo_home_sessions(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("AIXGO_SESSION_URL", raising=False)
    monkeypatch.setenv("AIXGO_HOME", str(tmp_path / "home"))
    async with SessionManager() as mgr:
        assert isinstance(mgr.backend, FileBackend)
        await mgr.create("a")
    assert (tmp_path / "home" / "sessions" / "FORMAT").exists()
    assert stat.S_IMODE((tmp_path / "home").stat().st_mode) == 0o700


@pytest.mark.asyncio
async def test_create_of_an_existing_id_is_a_conflict(backend: FileBackend) -> None:
    from aixgo.errors import ConflictError
    from aixgo.identifiers import new_id
    from aixgo.message import utc_now

    now = utc_now()
    info = SessionInfo(id=new_id(), agent="a", user_id=None, created_at=now, updated_at=now)
    await backend.create_session(info)
    with pytest.raises(ConflictError):
        await backend.create_session(info)
