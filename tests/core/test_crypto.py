"""Keyrings and key providers (aixgo.crypto): keys load from env, files and plugins, and never
show up in a repr or an error."""

from __future__ import annotations

import base64
import os
import pickle
import subprocess
from pathlib import Path

import pytest
from aixgo import hookimpl, plugins
from aixgo.crypto import Keyring, keyring_from_env, load_key, parse_key
from aixgo.errors import ConfigError
from aixgo.hookspecs import KeyProviderRegister
from aixgo.identifiers import new_id

KEY = bytes(range(32))


def test_a_key_reads_as_hex_base64_or_raw_bytes() -> None:
    assert parse_key(KEY.hex(), "k") == KEY
    assert parse_key(f"  {KEY.hex().upper()}\n", "k") == KEY
    assert parse_key(base64.b64encode(KEY).decode(), "k") == KEY
    assert parse_key(KEY, "k") == KEY
    for bad in ("00" * 31, "zz" * 32, "", base64.b64encode(bytes(16)).decode()):
        with pytest.raises(ConfigError, match="32-byte key") as err:
            parse_key(bad, "environment variable 'X'")
        assert bad.strip() == "" or bad not in str(err.value)


def test_the_keyring_validates_and_never_shows_a_key() -> None:
    ring = Keyring({"k1": KEY, "k2": bytes(32)}, active="k2")
    assert repr(ring) == "Keyring(ids=['k1', 'k2'], active='k2')"
    assert KEY.hex() not in repr(ring) and str(KEY) not in repr(ring)
    assert "k1" in ring and ring.without("k1").ids == ("k2",)
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(ring)
    with pytest.raises(ConfigError, match="active"):
        ring.without("k2")
    with pytest.raises(ConfigError, match="not in the keyring"):
        Keyring({"k1": KEY}, active="k2")
    with pytest.raises(ConfigError, match="must be 32 bytes, not 16") as err:
        Keyring({"k1": KEY[:16]}, active="k1")
    assert KEY[:16].hex() not in str(err.value)
    with pytest.raises(ConfigError, match="invalid key id"):
        Keyring({"../x": KEY}, active="../x")


def test_env_and_file_providers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_KEY_A", KEY.hex())
    assert load_key("env:TEST_KEY_A") == KEY
    with pytest.raises(ConfigError, match="'TEST_KEY_NONE'.* not set"):
        load_key("env:TEST_KEY_NONE", "k9")
    monkeypatch.setenv("TEST_KEY_BAD", "not-a-key-" + KEY.hex()[:20])
    with pytest.raises(ConfigError, match="key 'k3'") as err:
        load_key("env:TEST_KEY_BAD", "k3")
    assert KEY.hex()[:20] not in str(err.value)
    path = tmp_path / "k.key"
    path.write_bytes(KEY)
    path.chmod(0o600)
    assert load_key(f"file:{path}") == KEY
    path.chmod(0o640)
    with pytest.raises(ConfigError, match="readable by others"):
        load_key(f"file:{path}")
    with pytest.raises(ConfigError, match="cannot read key file"):
        load_key(f"file:{tmp_path}/missing")
    with pytest.raises(ConfigError, match="no key provider 'vault'"):
        load_key("vault:secret/x")


def test_a_plugin_provides_keys_through_the_hook() -> None:
    class VaultPlugin:
        @hookimpl
        def aixgo_register_key_providers(self, register: KeyProviderRegister) -> None:
            register("vault", lambda path: KEY if path == "team/k1" else b"short")
            register("broken", _leaky)

    plugins.register_plugin(VaultPlugin(), "vault-test")
    try:
        assert load_key("vault:team/k1", "k1") == KEY
        with pytest.raises(ConfigError, match="did not return 32 bytes"):
            load_key("vault:other", "k1")
        with pytest.raises(ConfigError, match=r"failed \(RuntimeError\)") as err:
            load_key("broken:x", "k1")
        assert "hunter2" not in str(err.value)
        (info,) = [i for i in plugins.plugins() if i.name == "vault-test"]
        assert sorted(info.key_providers) == ["broken", "vault"]
    finally:
        plugins.unregister_plugin("vault-test")


def _leaky(path: str) -> bytes:
    raise RuntimeError("token hunter2 rejected")


def test_keyring_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    assert keyring_from_env({}) is None
    monkeypatch.setenv("TEST_K1", KEY.hex())
    monkeypatch.setenv("TEST_K2", bytes(32).hex())
    env = {"AIXGO_ENCRYPTION_KEYS": "k1=env:TEST_K1, k2=env:TEST_K2"}
    ring = keyring_from_env(env)
    assert ring is not None and (ring.ids, ring.active) == (("k1", "k2"), "k2")
    ring = keyring_from_env({**env, "AIXGO_ENCRYPTION_ACTIVE": "k1"})
    assert ring is not None and ring.active == "k1"
    with pytest.raises(ConfigError, match="id=reference"):
        keyring_from_env({"AIXGO_ENCRYPTION_KEYS": "k1"})


def test_cli_erase_prints_the_receipt_and_list_reads_an_encrypted_store(tmp_path: Path) -> None:
    url = f"file://{tmp_path}/store"
    env = {**os.environ, "TEST_K1": KEY.hex(), "AIXGO_ENCRYPTION_KEYS": "k1=env:TEST_K1"}
    title = f"title-{new_id()[:8]}"
    script = (
        "import asyncio, sys\n"
        "from aixgo import Message\n"
        "from aixgo.crypto import keyring_from_env\n"
        "from aixgo.session import SessionManager\n"
        "async def main():\n"
        "    async with SessionManager(sys.argv[1], encryption=keyring_from_env()) as m:\n"
        f"        meta = {{'title': {title!r}}}\n"
        "        s = await m.create('assistant', user_id='alice', metadata=meta)\n"
        "        await s.append_messages([Message.user('a'), Message.user('b')])\n"
        "asyncio.run(main())\n"
    )
    subprocess.run(["python", "-c", script, url], env=env, check=True)
    listed = subprocess.run(["aixgo", "sessions", "--url", url, "list", "--json"], env=env,
                            capture_output=True, text=True, check=True)  # fmt: skip
    assert title in listed.stdout and "aixgo.data-key" not in listed.stdout
    no_keys = {k: v for k, v in env.items() if k != "AIXGO_ENCRYPTION_KEYS"}
    done = subprocess.run(["aixgo", "sessions", "--url", url, "erase", "--user", "alice", "-y"],
                          env=no_keys, capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == (
        "erased: 1 session(s), 2 message(s), 0 checkpoint(s), 1 data key(s)"
    )
    refused = subprocess.run(["aixgo", "sessions", "--url", url, "rekey"], env=no_keys,
                             capture_output=True, text=True)  # fmt: skip
    assert refused.returncode == 1 and "AIXGO_ENCRYPTION_KEYS" in refused.stderr
