"""Hostile YAML in the governance keys (``session.encryption``, ``runtime.audit``,
``runtime.retention``): wrong types, control characters, huge and negative numbers, look-alike
digits, unknown and duplicate keys. Each is a ConfigError naming the file, the key path and the
line, raised while the file is read, and nothing is created on disk: no store, no audit log."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from aixgo import Runtime
from aixgo.errors import ConfigError

KEY_HEX = "ab" * 32

ENC = "session:\n  url: file://{store}\n  encryption: {block}\n"
RUNTIME = "session: file://{store}\nruntime:\n  {block}\n"

# (template, block, key path the message names, what it says)
CASES: dict[str, tuple[str, str, str, str]] = {
    # session.encryption
    "key ids as a list": (ENC, "{keys: [k1]}", r"session\.encryption\.keys", "must map key ids"),
    "a control character in a key id": (ENC, '{keys: {"k\\x07": "env:K"}}',
        r"session\.encryption\.keys\['k\\x07'\]", "invalid key id"),
    "an empty key id": (ENC, '{keys: {"": "env:K"}}', r"keys\[''\]", "invalid key id"),
    "a key id twice (1 and '1')": (ENC, '{keys: {1: "env:K", "1": "env:K"}}',
        r"session\.encryption\.keys\.1", "appears twice"),
    "NUL in a key reference": (ENC, '{keys: {k1: "file:/tmp/k\\0x"}}',
        r"session\.encryption\.keys\.k1", "must be a key reference"),
    "a line break in a key reference": (ENC, '{keys: {k1: "env:K\\nX"}}',
        r"session\.encryption\.keys\.k1", "must be a key reference"),
    "a huge key reference": (ENC, '{keys: {k1: "file:/' + "a" * 5000 + '"}}',
        r"session\.encryption\.keys\.k1", "must be a key reference"),
    "a nested key reference": (ENC, "{keys: {k1: {a: {b: {c: 1}}}}}",
        r"session\.encryption\.keys\.k1", "must be a key reference"),
    "the active key as a list": (ENC, '{keys: {k1: "env:K"}, active: [k1]}',
        r"session\.encryption\.active", "must be one of the key ids"),
    "the active key as a boolean": (ENC, '{keys: {"1": "env:K"}, active: true}',
        r"session\.encryption\.active", "must be one of the key ids"),
    "an unknown encryption key": (ENC, '{keys: {k1: "env:K"}, rotate: daily}',
        r"session\.encryption\.rotate", "unknown key"),
    # runtime.audit
    "an audit target as a list": (RUNTIME, "audit: {target: [a, b]}", r"runtime\.audit",
        "must be a file path or a sink URL, not list"),
    "an empty audit target": (RUNTIME, "audit: ''", r"runtime\.audit", "not empty"),
    "NUL in the audit target": (RUNTIME, 'audit: "audit\\0.jsonl"', r"runtime\.audit",
        "control character '\\\\x00'"),
    "a line break in the audit target": (RUNTIME, 'audit: "a\\nb.jsonl"', r"runtime\.audit",
        "control character '\\\\n'"),
    "a huge audit target": (RUNTIME, "audit: " + "a" * 5000, r"runtime\.audit",
        "5,000 characters long"),
    "an audit file name over 255 bytes": (RUNTIME, "audit: " + "a" * 300 + ".jsonl",
        r"runtime\.audit", "over 255 bytes"),
    "an audit target that is a folder": (RUNTIME, "audit: .", r"runtime\.audit", "is a folder"),
    "audit fsync not a boolean": (RUNTIME, "audit: {target: a.jsonl, fsync: maybe}",
        r"runtime\.audit", "fsync must be true or false"),
    "an unknown audit failure policy": (RUNTIME, "audit: {target: a.jsonl, on_failure: 7}",
        r"runtime\.audit", "on_failure must be"),
    "an unknown audit key": (RUNTIME, "audit: {target: a.jsonl, rotate: daily}",
        r"runtime\.audit", "audit takes target"),
    "an audit sink nobody provides": (RUNTIME, "audit: nosuch://x", r"runtime\.audit",
        "no installed plugin provides the audit sink scheme 'nosuch'"),
    # runtime.retention
    "a duration beyond a float": (RUNTIME, "retention: {a: {idle: " + "9" * 400 + "}}",
        r"runtime\.retention", "idle must be positive and under"),
    "a negative duration": (RUNTIME, "retention: {a: {max_age: -5}}", r"runtime\.retention",
        "max_age must be positive"),
    "a negative duration in text": (RUNTIME, "retention: {a: {idle: '-5d'}}",
        r"runtime\.retention", "must be a duration"),
    "an infinite duration": (RUNTIME, "retention: {a: {idle: .inf}}", r"runtime\.retention",
        "must be positive and under"),
    "NaN as a duration": (RUNTIME, "retention: {a: {idle: .nan}}", r"runtime\.retention",
        "must be positive and under"),
    "fullwidth digits": (RUNTIME, "retention: {a: {idle: '\uff11d'}}", r"runtime\.retention",
        "must be a duration"),
    "a huge duration in text": (RUNTIME, "retention: {a: {idle: '" + "9" * 400 + "d'}}",
        r"runtime\.retention", "must be a duration"),
    "NUL in a duration": (RUNTIME, 'retention: {a: {idle: "1d\\0"}}', r"runtime\.retention",
        "must be a duration"),
    "a control character in an agent name": (RUNTIME, 'retention: {"a\\x07": {idle: 1d}}',
        r"runtime\.retention", "control or invalid character"),
    "keep_last as text": (RUNTIME, "retention: {a: {keep_last: '3'}}", r"runtime\.retention",
        "keep_last must be a positive integer"),
    "an unknown rule": (RUNTIME, "retention: {a: {idle: 1d, trim: 5}}", r"runtime\.retention",
        "unknown rule"),
    "rules nested deeper": (RUNTIME, "retention: {a: {idle: {b: {c: {d: 1}}}}}",
        r"runtime\.retention", "must be a duration"),
    "retention as a list": (RUNTIME, "retention: [a]", r"runtime\.retention",
        "valid dictionary"),
    "a negative sweep interval": (RUNTIME, "retention_interval: -1",
        r"runtime\.retention_interval", "greater than 0"),
}  # fmt: skip


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty working folder (relative audit paths land in it), the audit key set."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AIXGO_AUDIT_KEY", KEY_HEX)
    monkeypatch.setenv("K", KEY_HEX)
    return tmp_path


@pytest.mark.parametrize("case", list(CASES))
def test_bad_governance_config_is_a_config_error_and_creates_nothing(
    folder: Path, case: str
) -> None:
    template, block, where, problem = CASES[case]
    path = folder / "aixgo.yaml"
    path.write_text(template.format(store=folder / "store", block=block))
    with pytest.raises(ConfigError) as info:
        Runtime.from_config(path)
    message = str(info.value)
    assert message.count(str(path)) == 1, message
    assert re.search(where + r".{0,80}\(line \d+\)", message), message
    assert re.search(problem, message), message
    assert len(message) < 2000
    assert sorted(p.name for p in folder.iterdir()) == ["aixgo.yaml"]


@pytest.mark.parametrize("case", ["a duration beyond a float", "fullwidth digits"])
def test_aixgo_sessions_sweep_says_it_in_one_line(folder: Path, case: str) -> None:
    template, block, _, problem = CASES[case]
    path = folder / "aixgo.yaml"
    path.write_text(template.format(store=folder / "store", block=block))
    aixgo = Path(sys.executable).parent / "aixgo"
    run = subprocess.run(
        [str(aixgo), "sessions", "sweep", "--config", str(path)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert run.returncode == 1, run.stderr
    assert run.stderr.startswith("error: ") and "Traceback" not in run.stderr, run.stderr
    assert re.search(problem, run.stderr)
    assert sorted(p.name for p in folder.iterdir()) == ["aixgo.yaml"]
