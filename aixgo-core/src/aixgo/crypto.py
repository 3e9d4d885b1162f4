"""Master keys for encryption at rest: a :class:`Keyring` of versioned keys, and the
providers that load them.

A keyring maps key ids (``"k1"``, ``"2026-12"``) to 32-byte AES-256 keys and names the
*active* one, which wraps every new data key; the others stay available to read data whose
data keys they wrapped until ``SessionManager.rekey()`` has moved everything onto the active
key. Keys never appear in a ``repr``, an error or a log line: only their ids do.

>>> keyring = Keyring({"k1": bytes(32), "k2": bytes(range(32))}, active="k2")
>>> keyring
Keyring(ids=['k1', 'k2'], active='k2')
>>> keyring.without("k1").ids
('k2',)

Where keys come from: a *key reference* names a provider and what it needs. Built in are
``env:NAME`` (the environment variable ``NAME`` holds the key as 64 hex digits or base64)
and ``file:PATH`` (a file holding the 32 raw bytes, or the same text); plugins add others
(a cloud KMS) with the ``aixgo_register_key_providers`` hook.

>>> import os
>>> os.environ["DEMO_KEY"] = "00" * 32
>>> Keyring.from_references({"k1": "env:DEMO_KEY"}, active="k1").active
'k1'
>>> del os.environ["DEMO_KEY"]

Without a configuration file, ``$AIXGO_ENCRYPTION_KEYS`` (``k1=env:VAR,k2=file:/path``) and
``$AIXGO_ENCRYPTION_ACTIVE`` (default: the last id listed) make the keyring the CLI uses
(:func:`keyring_from_env`).
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import stat
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from aixgo.errors import ConfigError

__all__ = [
    "KEY_BYTES",
    "KeyProvider",
    "Keyring",
    "check_key_id",
    "keyring_from_env",
    "load_key",
    "parse_key",
]

#: Master and data keys are AES-256 keys: 32 bytes.
KEY_BYTES = 32
_KEY_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")

#: A key provider: given what follows ``scheme:`` in a key reference, the key's 32 bytes.
KeyProvider = Callable[[str], bytes]


class Keyring:
    """Versioned master keys, one of them ``active``. Immutable; :meth:`without` and
    :meth:`with_key` make changed copies."""

    __slots__ = ("_active", "_aead")

    def __init__(self, keys: Mapping[str, bytes], active: str) -> None:
        if not isinstance(keys, Mapping) or not keys:
            raise ConfigError("a keyring needs at least one key: Keyring({'k1': key}, active='k1')")
        aead: dict[str, AESGCM] = {}
        for key_id, key in keys.items():
            check_key_id(key_id)
            if not isinstance(key, bytes | bytearray) or len(key) != KEY_BYTES:
                # Say what is wrong with it, never what it is.
                size = len(key) if isinstance(key, bytes | bytearray) else type(key).__name__
                raise ConfigError(f"key {key_id!r} must be {KEY_BYTES} bytes, not {size}")
            aead[key_id] = AESGCM(bytes(key))
        if active not in aead:
            raise ConfigError(
                f"the active key {active!r} is not in the keyring (ids: {', '.join(aead)})"
            )
        self._aead = aead
        self._active = active

    def __repr__(self) -> str:
        return f"Keyring(ids={list(self._aead)!r}, active={self._active!r})"

    def __reduce__(self) -> str | tuple[Any, ...]:
        # Pickling would write the keys out; nothing in aixgo needs it.
        raise TypeError("a Keyring cannot be pickled (it holds secret keys)")

    @property
    def active(self) -> str:
        """The id of the key that wraps new data keys."""
        return self._active

    @property
    def ids(self) -> tuple[str, ...]:
        """Every key id, in the order given (the active one included)."""
        return tuple(self._aead)

    def __contains__(self, key_id: object) -> bool:
        return key_id in self._aead

    def without(self, key_id: str) -> Keyring:
        """This keyring without ``key_id`` (which must not be the active one)."""
        if key_id == self._active:
            raise ConfigError(f"cannot remove the active key {key_id!r}; activate another first")
        copy = object.__new__(Keyring)
        copy._aead = {k: v for k, v in self._aead.items() if k != key_id}
        copy._active = self._active
        return copy

    def cipher(self, key_id: str) -> AESGCM | None:
        """The AES-GCM cipher of ``key_id``, or ``None`` if the keyring lacks it."""
        return self._aead.get(key_id)

    @classmethod
    def from_references(cls, refs: Mapping[str, str], active: str) -> Keyring:
        """A keyring whose keys are loaded from key references (``env:NAME``,
        ``file:PATH`` or a plugin provider's scheme)."""
        return cls({key_id: load_key(ref, key_id) for key_id, ref in refs.items()}, active)


def check_key_id(key_id: object) -> None:
    """:class:`ConfigError` unless ``key_id`` is a key id: 1-64 letters, digits, ``.``,
    ``_`` or ``-``, starting with a letter or digit."""
    if not isinstance(key_id, str) or not _KEY_ID.fullmatch(key_id):
        raise ConfigError(
            f"invalid key id {key_id!r}: 1-64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )


def parse_key(text: str | bytes, what: str) -> bytes:
    """A key written as 64 hex digits or as base64 of 32 bytes (surrounding whitespace
    ignored), or 32 raw bytes; :class:`ConfigError` naming ``what`` (never the value)."""
    if isinstance(text, bytes):
        if len(text) == KEY_BYTES:
            return text
        try:
            text = text.decode("ascii")
        except UnicodeDecodeError:
            raise ConfigError(f"{what} is not a {KEY_BYTES}-byte key") from None
    text = text.strip()
    if len(text) == 2 * KEY_BYTES:
        try:
            return bytes.fromhex(text)
        except ValueError:
            pass
    try:
        key = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != KEY_BYTES:
        raise ConfigError(
            f"{what} is not a {KEY_BYTES}-byte key written as 64 hex digits or base64 "
            "(make one with: python -c 'import os; print(os.urandom(32).hex())')"
        )
    return key


def _env_key(name: str) -> bytes:
    value = os.environ.get(name)
    if not value:
        raise ConfigError(f"environment variable {name!r} (a key) is not set")
    return parse_key(value, f"environment variable {name!r}")


def _file_key(path: str) -> bytes:
    file = Path(path).expanduser()
    try:
        mode = file.stat().st_mode
        data = file.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read key file {str(file)!r}: {exc.strerror}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(
            f"key file {str(file)!r} is readable by others; chmod 600 it (keys are secrets)"
        )
    return parse_key(data, f"key file {str(file)!r}")


_BUILT_IN: dict[str, KeyProvider] = {"env": _env_key, "file": _file_key}


def load_key(ref: str, key_id: str = "") -> bytes:
    """The key a reference names: ``env:NAME``, ``file:PATH``, or ``scheme:...`` of a
    provider a plugin registered. Errors name the reference's scheme and the key id."""
    from aixgo import plugins  # the plugin table loads lazily; keep import cheap

    label = f"key {key_id!r}" if key_id else "key"
    if not isinstance(ref, str) or ":" not in ref:
        raise ConfigError(f"{label}: a key reference looks like 'env:NAME' or 'file:PATH'")
    scheme, rest = ref.split(":", 1)
    provider = _BUILT_IN.get(scheme) or plugins.key_provider(scheme)
    if provider is None:
        known = ", ".join(sorted({*_BUILT_IN, *plugins.key_provider_schemes()}))
        raise ConfigError(f"{label}: no key provider {scheme!r} (known: {known})")
    try:
        key = provider(rest)
    except ConfigError as exc:
        raise ConfigError(f"{label}: {exc}") from None
    except Exception as exc:
        # A plugin's error may quote what it read; show only its type.
        raise ConfigError(
            f"{label}: key provider {scheme!r} failed ({type(exc).__name__})"
        ) from None
    if not isinstance(key, bytes) or len(key) != KEY_BYTES:
        raise ConfigError(f"{label}: key provider {scheme!r} did not return {KEY_BYTES} bytes")
    return key


def keyring_from_env(environ: Mapping[str, str] | None = None) -> Keyring | None:
    """The keyring ``$AIXGO_ENCRYPTION_KEYS`` (``id=ref,id=ref``) and
    ``$AIXGO_ENCRYPTION_ACTIVE`` describe, or ``None`` when the first is unset."""
    env = os.environ if environ is None else environ
    spec = env.get("AIXGO_ENCRYPTION_KEYS", "").strip()
    if not spec:
        return None
    refs: dict[str, str] = {}
    for item in spec.split(","):
        key_id, sep, ref = item.strip().partition("=")
        if not sep:
            raise ConfigError(
                "AIXGO_ENCRYPTION_KEYS must list id=reference pairs, e.g. "
                "'k1=env:AIXGO_KEY_K1,k2=file:/etc/aixgo/k2.key'"
            )
        refs[key_id.strip()] = ref.strip()
    active = env.get("AIXGO_ENCRYPTION_ACTIVE", "").strip() or list(refs)[-1]
    return Keyring.from_references(refs, active)
