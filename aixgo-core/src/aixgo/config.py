"""YAML configuration for :meth:`aixgo.Runtime.from_config`.

.. code-block:: yaml

    session:                       # where sessions live (default: $AIXGO_SESSION_URL)
      url: redis://cache:6379/0    # or simply  session: redis://cache:6379/0
      options: {prefix: "app:"}    # added to the URL's query string
      encryption:                  # encryption at rest (docs/governance.md)
        active: k2
        keys: {k1: "env:AIXGO_KEY_K1", k2: "file:/etc/aixgo/k2.key"}
    agents:
      - name: assistant
        role: react                # an agent type a plugin registers
        options: {model: "${MODEL:-gpt-4o-mini}"}   # passed to the agent type's factory
      - name: classifier
        role: react
        session_mode: disabled     # stateless
    runtime:                       # any runtime option (see aixgo.runtime_options)
      timeout: 30

``${NAME}`` is replaced by the environment variable ``NAME`` (an error if unset),
``${NAME:-default}`` falls back to ``default``, ``$$`` is a literal ``$``. Files are read with
``yaml.safe_load`` (no tags that build objects) and refused above 1 MiB, 32 levels of nesting
or 100,000 nodes (alias bombs included). Every error names the file, the key path and the line.

>>> import pathlib, tempfile
>>> path = pathlib.Path(tempfile.mkdtemp()) / "aixgo.yaml"
>>> _ = path.write_text("session: memory://\\nruntime:\\n  timeout: 30\\n")
>>> cfg = load_config(path)
>>> cfg.session_url, cfg.runtime["timeout"][0]
('memory://', 30)
>>> sorted(cfg.options())
['session_manager', 'timeout']
"""

from __future__ import annotations

import os
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any, get_args
from urllib.parse import urlencode

import yaml

from aixgo.agent import SessionMode
from aixgo.crypto import Keyring, check_key_id
from aixgo.errors import ConfigError

__all__ = [
    "MAX_CONFIG_BYTES",
    "AgentSpec",
    "Config",
    "EncryptionSpec",
    "interpolate",
    "load_config",
]

MAX_CONFIG_BYTES = 1024 * 1024
MAX_DEPTH = 32
MAX_NODES = 100_000
_TOP = ("session", "agents", "runtime")
_AGENT_KEYS = ("name", "role", "options", "session_mode")
_VAR = re.compile(r"\$(?:(\$)|\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\})")

# A key reference: a provider's scheme, a colon, and what the provider reads (at most 4 KiB).
_REF = re.compile(r"[A-Za-z][A-Za-z0-9+.-]{0,31}:.{1,4096}", re.ASCII | re.DOTALL)

_PLAIN = ("tag:yaml.org,2002:map", "tag:yaml.org,2002:seq")

Path_ = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class AgentSpec:
    """One entry of ``agents:``: a name, an agent type (``role``) and its options."""

    name: str
    role: str
    options: dict[str, Any] = field(default_factory=dict)
    session_mode: SessionMode = "enabled"
    where: str = ""


@dataclass(frozen=True, slots=True)
class EncryptionSpec:
    """``session: encryption:``: key references by key id, the active id, and the migration
    flag. Keys are loaded (:meth:`keyring`) only when the runtime opens its store."""

    keys: dict[str, str]
    active: str
    allow_plaintext: bool = False
    where: str = ""

    def keyring(self) -> Keyring:
        """The keyring, its keys loaded from their providers."""
        try:
            return Keyring.from_references(self.keys, self.active)
        except ConfigError as exc:
            raise ConfigError(f"{self.where}: {exc}") from None


@dataclass(slots=True)
class Config:
    """A parsed, checked configuration file: plain data. :meth:`aixgo.Runtime.from_config`
    builds the runtime from it."""

    path: Path
    session_url: str | None = None
    session_where: str = ""
    encryption: EncryptionSpec | None = None
    runtime: dict[str, tuple[object, str]] = field(default_factory=dict)
    agents: list[AgentSpec] = field(default_factory=list)

    def options(self) -> dict[str, tuple[object, str]]:
        """The runtime options the file sets, ``name -> (value, where)``; the ``session:``
        URL is the ``session_manager`` option."""
        options = dict(self.runtime)
        if self.session_url is not None:
            options["session_manager"] = (self.session_url, self.session_where)
        return options


def interpolate(text: str, environ: Mapping[str, str] | None = None, where: str = "") -> str:
    """``text`` with ``${NAME}`` and ``${NAME:-default}`` replaced from ``environ``.

    >>> interpolate("redis://${HOST:-localhost}:6379 costs $$0", {})
    'redis://localhost:6379 costs $0'
    """
    env = os.environ if environ is None else environ

    def repl(m: re.Match[str]) -> str:
        if m.group(1):
            return "$"
        name, default = m.group(2), m.group(3)
        value = env.get(name)
        if value is not None:
            return value
        if default is not None:
            return default
        raise ConfigError(
            f"{where + ': ' if where else ''}environment variable {name} is not set; "
            f"set it, or give a default as ${{{name}:-value}}"
        )

    return _VAR.sub(repl, text)


def _show(path: Path_) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif not part or _unprintable(part) or len(part) > 64:
            # A key that would be invisible, break the line or flood it: quoted, cut short.
            out += f"[{part[:64]!r}]"
        else:
            out += f".{part}" if out else part
    return out or "(top level)"


class _Doc:
    """Values of the file with the line of every key path, for error messages."""

    def __init__(self, path: Path, environ: Mapping[str, str] | None) -> None:
        self.path = path
        self.environ = environ
        self.lines: dict[Path_, int] = {}
        # Scalars only: collections are built above, so the safe constructor never recurses.
        self._loader = yaml.SafeLoader("")

    def where(self, at: Path_) -> str:
        line = self.lines.get(at)
        return f"{self.path}: {_show(at)}" + (f" (line {line})" if line else "")

    def fail(self, at: Path_, problem: str) -> ConfigError:
        return ConfigError(f"{self.where(at)}: {problem}")

    def value(self, node: yaml.Node, at: Path_, depth: int, budget: list[int]) -> Any:
        # Built from the node tree by hand: it bounds depth and node count (an alias is
        # walked every time it is used, so alias bombs hit the limit), catches duplicate
        # keys, and records lines.
        budget[0] += 1
        if budget[0] > MAX_NODES:
            raise self.fail(at, f"more than {MAX_NODES:,} values (an alias bomb?)")
        if depth > MAX_DEPTH:
            raise self.fail(at, f"nested deeper than {MAX_DEPTH} levels")
        self.lines.setdefault(at, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode | yaml.SequenceNode) and node.tag not in _PLAIN:
            raise self.fail(at, f"cannot be read: the tag {node.tag!r} is not allowed")
        if isinstance(node, yaml.MappingNode):
            out: dict[Any, Any] = {}
            for key_node, value_node in node.value:
                key = self.value(key_node, at, depth + 1, budget)
                if not isinstance(key, str | int):
                    raise self.fail(at, f"key {key!r} must be text")
                sub = (*at, key)
                self.lines[sub] = key_node.start_mark.line + 1
                if key in out:
                    raise self.fail(sub, "the key appears twice")
                out[key] = self.value(value_node, sub, depth + 1, budget)
            return out
        if isinstance(node, yaml.SequenceNode):
            items = []
            for i, item in enumerate(node.value):
                sub = (*at, i)
                self.lines[sub] = item.start_mark.line + 1
                items.append(self.value(item, sub, depth + 1, budget))
            return items
        try:
            value = self._loader.construct_object(node, deep=True)
        except yaml.YAMLError as exc:
            problem = getattr(exc, "problem", None) or exc
            raise self.fail(at, f"cannot be read: {problem}") from None
        if isinstance(value, str):
            return interpolate(value, self.environ, self.where(at))
        return value


def load_config(path: str | PathLike[str], environ: Mapping[str, str] | None = None) -> Config:
    """Read and check ``path`` (see the module docs); :class:`ConfigError` names the file,
    the key path and the line of anything wrong."""
    p = Path(path).expanduser()
    try:
        with p.open("rb") as f:
            raw = f.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"cannot read config file {p}: {exc.strerror or exc}") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{p}: larger than {MAX_CONFIG_BYTES:,} bytes; is it the right file?")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{p}: not UTF-8 text (byte {exc.start})") from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise ConfigError(f"{p}{line}: not valid YAML: {exc.problem or exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: not valid YAML: {exc}") from None
    except RecursionError:
        # PyYAML composes recursively, before our own depth check can see the tree.
        raise ConfigError(
            f"{p}: nested far deeper than {MAX_DEPTH} levels; is it the right file?"
        ) from None
    doc = _Doc(p, environ)
    if node is None:
        return Config(path=p)
    data = doc.value(node, (), 0, [0])
    if not isinstance(data, dict):
        raise doc.fail((), "the file must be a mapping with keys " + ", ".join(_TOP))
    cfg = Config(path=p)
    for key in data:
        if key not in _TOP:
            raise doc.fail((key,), f"unknown key; valid top-level keys: {', '.join(_TOP)}")
    _session(doc, cfg, data.get("session"))
    _runtime(doc, cfg, data.get("runtime"))
    _agents(doc, cfg, data.get("agents"))
    return cfg


def _session(doc: _Doc, cfg: Config, block: Any) -> None:
    if block is None:
        return
    if isinstance(block, str):
        cfg.session_url, cfg.session_where = block, doc.where(("session",))
        return
    if not isinstance(block, dict):
        raise doc.fail(("session",), "must be a backend URL or a mapping with url and options")
    for key in block:
        if key not in ("url", "options", "encryption"):
            raise doc.fail(("session", key), "unknown key; valid keys: url, options, encryption")
    url = block.get("url")
    if not isinstance(url, str) or not url:
        raise doc.fail(("session", "url"), "must be a backend URL such as 'file://~/sessions'")
    options = block.get("options") or {}
    if not isinstance(options, dict):
        raise doc.fail(("session", "options"), "must be a mapping of URL options")
    for key, value in options.items():
        if isinstance(value, dict | list) or value is None:
            raise doc.fail(("session", "options", key), "must be a single value")
    if options:
        pairs = [(k, str(v).lower() if isinstance(v, bool) else str(v)) for k, v in options.items()]
        url += ("&" if "?" in url else "?") + urlencode(pairs, safe="/:")
    cfg.session_url, cfg.session_where = url, doc.where(("session", "url"))
    if block.get("encryption") is not None:
        cfg.encryption = _encryption(doc, block["encryption"])


def _encryption(doc: _Doc, block: Any) -> EncryptionSpec:
    at: Path_ = ("session", "encryption")
    if not isinstance(block, dict):
        raise doc.fail(at, "must be a mapping with keys, active and allow_plaintext")
    for key in block:
        if key not in ("keys", "active", "allow_plaintext"):
            raise doc.fail((*at, key), "unknown key; valid keys: keys, active, allow_plaintext")
    keys = block.get("keys")
    if not isinstance(keys, dict) or not keys:
        raise doc.fail((*at, "keys"), "must map key ids to references such as 'env:AIXGO_KEY_K1'")
    refs: dict[str, str] = {}
    for key_id, ref in keys.items():
        # Checked here, not when the keys load as the store opens: a bad file fails before
        # anything is started or written.
        if str(key_id) in refs:
            raise doc.fail((*at, "keys", key_id), "the key id appears twice")
        try:
            check_key_id(str(key_id))
        except ConfigError as exc:
            raise doc.fail((*at, "keys", key_id), str(exc)) from None
        if not isinstance(ref, str) or not _REF.fullmatch(ref) or _unprintable(ref):
            raise doc.fail((*at, "keys", key_id), "must be a key reference: env:NAME or file:PATH")
        refs[str(key_id)] = ref
    active = block.get("active", list(refs)[-1])
    if isinstance(active, bool) or not isinstance(active, str | int) or str(active) not in refs:
        raise doc.fail((*at, "active"), f"must be one of the key ids: {', '.join(refs)}")
    allow = block.get("allow_plaintext", False)
    if not isinstance(allow, bool):
        raise doc.fail((*at, "allow_plaintext"), "must be true or false")
    return EncryptionSpec(refs, str(active), allow, doc.where(at))


def _unprintable(text: str) -> bool:
    return any(unicodedata.category(ch) in ("Cc", "Cs", "Zl", "Zp") for ch in text)


def _runtime(doc: _Doc, cfg: Config, block: Any) -> None:
    if block is None:
        return
    if not isinstance(block, dict):
        raise doc.fail(("runtime",), "must be a mapping of runtime options")
    for key, value in block.items():
        if key == "session_manager" and cfg.session_url is not None:
            raise doc.fail(("runtime", key), "the store is already chosen by 'session:'")
        cfg.runtime[str(key)] = (value, doc.where(("runtime", key)))


def _agents(doc: _Doc, cfg: Config, block: Any) -> None:
    if block is None:
        return
    if not isinstance(block, list):
        raise doc.fail(("agents",), "must be a list of agents (each with name and role)")
    seen: set[str] = set()
    for i, item in enumerate(block):
        at: Path_ = ("agents", i)
        if not isinstance(item, dict):
            raise doc.fail(at, "must be a mapping with name, role, options, session_mode")
        for key in item:
            if key not in _AGENT_KEYS:
                raise doc.fail((*at, key), f"unknown key; valid keys: {', '.join(_AGENT_KEYS)}")
        for key in ("name", "role"):
            if not isinstance(item.get(key), str) or not item[key]:
                raise doc.fail((*at, key) if key in item else at, f"needs a text '{key}'")
        if item["name"] in seen:
            raise doc.fail((*at, "name"), f"agent {item['name']!r} is defined twice")
        seen.add(item["name"])
        options = item.get("options") or {}
        if not isinstance(options, dict) or not all(isinstance(k, str) for k in options):
            raise doc.fail((*at, "options"), "must be a mapping of option names to values")
        mode = item.get("session_mode", "enabled")
        if mode not in get_args(SessionMode):
            raise doc.fail((*at, "session_mode"), f"must be 'enabled' or 'disabled', not {mode!r}")
        cfg.agents.append(
            AgentSpec(item["name"], item["role"], options, mode, doc.where((*at, "role")))
        )
