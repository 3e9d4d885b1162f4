"""YAML config: Runtime.from_config builds agents, the session store and options; every error
names the file, the key path and the line."""

from __future__ import annotations

import asyncio
import re
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aixgo import Message, Runtime, hookimpl, plugins
from aixgo.config import MAX_CONFIG_BYTES, interpolate, load_config
from aixgo.errors import ConfigError
from aixgo.session import SessionManager


class Greeter:
    def __init__(self, greeting: str = "hello", punct: str = "!") -> None:
        self.greeting, self.punct = greeting, punct

    async def execute(self, input: Message) -> Message:
        return Message.assistant(f"{self.greeting} {input.text}{self.punct}")


class AgentsPlugin:
    @hookimpl
    def aixgo_register_agents(self, register):  # type: ignore[no-untyped-def]
        register("greeter", Greeter)


@pytest.fixture(autouse=True)
def greeter_type() -> Iterator[None]:
    plugins.register_plugin(AgentsPlugin(), "greeters", "aixgo-greeters")
    yield
    plugins.unregister_plugin("greeters")


@pytest.fixture
def write(tmp_path: Path) -> Any:
    def make(text: str, name: str = "aixgo.yaml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text).lstrip("\n"))
        return path

    return make


def test_a_full_config_builds_a_runtime_that_remembers(
    write: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STORE", str(tmp_path / "store"))
    monkeypatch.delenv("GREETING", raising=False)
    path = write("""
        session:
          url: file://${STORE}
        agents:
          - name: assistant
            role: greeter
            options: {greeting: "${GREETING:-hi}", punct: "$$"}
          - name: classifier
            role: greeter
            session_mode: disabled
        runtime:
          timeout: 30
          max_concurrent_calls: 4
    """)
    rt = Runtime.from_config(path)
    assert rt.list() == ["assistant", "classifier"]
    assert rt.options.timeout == 30.0 and rt.options.max_concurrent_calls == 4
    assert rt.session_mode("classifier") == "disabled"

    async def run() -> list[str]:
        async with rt:
            out = await rt.call("assistant", Message.user("Alice"), user="alice")
            await rt.call("classifier", Message.user("x"), user="alice")
            return [out.text]

    assert asyncio.run(run()) == ["hi Alice$"]

    async def stored() -> list[tuple[str, int]]:
        async with SessionManager(f"file://{tmp_path / 'store'}") as mgr:
            return [(i.agent, i.message_count) for i in (await mgr.list()).items]

    assert asyncio.run(stored()) == [("assistant", 2)]  # the YAML session block is honoured


def test_session_shorthand_and_url_options(write: Any) -> None:
    cfg = load_config(write("session: memory://\n"))
    assert cfg.session_url == "memory://"
    cfg = load_config(
        write("""
        session:
          url: redis://cache:6379/0
          options: {prefix: "app:", timeout: 2, tls: true}
    """)
    )
    assert cfg.session_url == "redis://cache:6379/0?prefix=app:&timeout=2&tls=true"
    assert load_config(write("")).agents == []


def test_runtime_options_from_yaml_and_environment(
    write: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write("session: memory://\nruntime:\n  timeout: 30\n")
    monkeypatch.setenv("AIXGO_RUNTIME_TIMEOUT", "5")
    assert Runtime.from_config(path).options.timeout == 5.0


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("runtime:\n  timout: 3\n", r"runtime\.timout \(line 2\).*valid options: max_conc"),
        ("runtime:\n  timeout: soon\n", r"runtime\.timeout \(line 2\) is invalid"),
        ("sesion: memory://\n", r"sesion \(line 1\): unknown key; valid top-level keys"),
        ("agents:\n  - name: a\n", r"agents\[0\] \(line 2\): needs a text 'role'"),
        (
            "agents:\n  - name: a\n    role: greeter\n    session_mode: off\n",
            r"agents\[0\]\.session_mode \(line 4\): must be 'enabled' or 'disabled', not False",
        ),
        (
            "agents:\n  - name: a\n    role: greeter\n    colour: red\n",
            r"agents\[0\]\.colour \(line 4\): unknown key",
        ),
        (
            "agents:\n  - {name: a, role: greeter}\n  - {name: a, role: greeter}\n",
            r"agents\[1\]\.name \(line 3\): agent 'a' is defined twice",
        ),
        ("agents: {a: 1}\n", r"agents \(line 1\): must be a list"),
        ("session:\n  url: 5\n", r"session\.url \(line 2\): must be a backend URL"),
        ("session:\n  url: memory://\n  options: {a: [1]}\n", r"session\.options\.a \(line 3\)"),
        ("runtime:\n  timeout: 1\n  timeout: 2\n", r"runtime\.timeout \(line 3\): .*twice"),
        ("runtime:\n  timeout: ${NOPE_UNSET}\n", r"runtime\.timeout \(line 2\): .*NOPE_UNSET"),
        ("- just\n- a list\n", r"\(top level\) \(line 1\): the file must be a mapping"),
        ("runtime: [\n", r"aixgo\.yaml \(line 2, column 1\): not valid YAML"),
        ("runtime: !!python/object:os.system {}\n", r"runtime \(line 1\): cannot be read"),
        ("runtime:\n  a: !!python/name:os.system\n", r"runtime\.a \(line 2\): cannot be read"),
    ],
)
def test_errors_name_file_key_path_and_line(
    write: Any, text: str, where: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NOPE_UNSET", raising=False)
    path = write(text)
    with pytest.raises(ConfigError, match=r"aixgo\.yaml") as info:
        Runtime.from_config(path)
    assert str(path) in str(info.value)
    assert re.search(where, str(info.value)), str(info.value)


def test_agent_errors_name_the_entry(write: Any) -> None:
    path = write("agents:\n  - name: a\n    role: nosuchtype\n")
    with pytest.raises(ConfigError, match=r"agents\[0\]\.role \(line 3\): no plugin provides"):
        Runtime.from_config(path)
    path = write("agents:\n  - name: a\n    role: greeter\n    options: {colour: red}\n")
    with pytest.raises(ConfigError, match=r"agents\[0\]\.role \(line 3\): agent type 'greeter'"):
        Runtime.from_config(path)


def test_limits(write: Any, tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    big.write_bytes(b"# " + b"x" * MAX_CONFIG_BYTES)
    with pytest.raises(ConfigError, match="larger than"):
        load_config(big)
    deep = "a: " + "[" * 40 + "]" * 40 + "\n"
    with pytest.raises(ConfigError, match="nested deeper than 32"):
        load_config(write(deep))
    # Deep enough that PyYAML's own recursive composer gives up before our check runs.
    for opener, closer in (("[", "]"), ("{a: ", "}")):
        deeper = "a: " + opener * 20_000 + closer * 20_000 + "\n"
        with pytest.raises(ConfigError, match="nested far deeper than 32"):
            load_config(write(deeper))
    bomb = 'a: &a ["x","x","x","x","x","x","x","x","x","x"]\n'
    for i in range(1, 7):
        bomb += f"{chr(97 + i)}: &{chr(97 + i)} [" + ",".join([f"*{chr(96 + i)}"] * 10) + "]\n"
    with pytest.raises(ConfigError, match="more than 100,000 values"):
        load_config(write(bomb))
    (tmp_path / "bin.yaml").write_bytes(b"\xff\xfe")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(tmp_path / "bin.yaml")
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path / "missing.yaml")


def test_interpolate() -> None:
    env = {"HOST": "db", "EMPTY": ""}
    assert interpolate("${HOST}:${PORT:-5432} $${HOST} ${EMPTY}", env) == "db:5432 ${HOST} "
    with pytest.raises(ConfigError, match="MISSING is not set"):
        interpolate("${MISSING}", env)


def test_session_encryption_block_encrypts_the_runtime_store(
    write: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from aixgo.crypto import Keyring
    from aixgo.errors import DecryptionError

    key = bytes(range(32))
    monkeypatch.setenv("TEST_CFG_K1", key.hex())
    store = tmp_path / "store"
    path = write(f"""
        session:
          url: file://{store}
          encryption:
            keys: {{k1: "env:TEST_CFG_K1"}}
        agents:
          - name: assistant
            role: greeter
    """)
    cfg = load_config(path)
    assert cfg.encryption is not None and cfg.encryption.active == "k1"
    assert key.hex() not in repr(cfg)  # references only: keys load when the store opens
    rt = Runtime.from_config(path)

    async def run() -> str:
        async with rt:
            return (await rt.call("assistant", Message.user("Alice"), user="alice")).text

    assert asyncio.run(run()) == "hello Alice!"
    assert b"Alice" not in b"".join(p.read_bytes() for p in store.rglob("*") if p.is_file())

    async def read(keyring: Keyring | None) -> list[str]:
        async with SessionManager(f"file://{store}", encryption=keyring) as mgr:
            (info,) = (await mgr.list(user_id="alice")).items
            return [m.text for m in await (await mgr.get(info.id)).get_messages()]

    assert asyncio.run(read(Keyring({"k1": key}, active="k1"))) == ["Alice", "hello Alice!"]
    with pytest.raises(DecryptionError):
        asyncio.run(read(Keyring({"k1": bytes(32)}, "k1")))  # the wrong key


@pytest.mark.parametrize(
    ("block", "problem"),
    [
        ("encryption: [k1]", "session.encryption.*must be a mapping"),
        ("encryption: {keys: {}}", "session.encryption.keys.*must map key ids"),
        ("encryption: {keys: {k1: nope}}", "session.encryption.keys.k1.*key reference"),
        ("encryption: {keys: {k1: 'env:X'}, active: k2}", "active.*must be one of"),
        ("encryption: {keys: {k1: 'env:X'}, allow_plaintext: 1}", "allow_plaintext"),
        ("encryption: {keys: {k1: 'env:X'}, color: red}", "unknown key"),
    ],
)
def test_session_encryption_errors_name_the_key_path(write: Any, block: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        load_config(write(f"session:\n  url: memory://\n  {block}\n"))


def test_a_runtime_without_a_file_encrypts_with_the_environment_keyring(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_ENV_K1", bytes(range(32)).hex())
    monkeypatch.setenv("AIXGO_ENCRYPTION_KEYS", "k1=env:TEST_ENV_K1")
    store = tmp_path / "store"
    rt = Runtime(session_manager=f"file://{store}")
    rt.register("assistant", Greeter())

    async def run() -> str:
        async with rt:
            return (await rt.call("assistant", Message.user("Bobby"), user="bob")).text

    assert asyncio.run(run()) == "hello Bobby!"
    assert b"Bobby" not in b"".join(p.read_bytes() for p in store.rglob("*") if p.is_file())
