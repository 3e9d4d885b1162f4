"""examples/session-react: two separate processes, and the second remembers the name."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).parents[2] / "examples" / "session-react" / "main.py"


@pytest.mark.parametrize("store", ["file", "memory"])
def test_the_example_remembers_across_runs(tmp_path: Path, store: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "AIXGO_"))}
    env["AIXGO_HOME"] = str(tmp_path)
    if store == "memory":
        env["AIXGO_SESSION_URL"] = "memory://"
    done = subprocess.run(
        [sys.executable, str(EXAMPLE)], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "[run 1] assistant: Nice to meet you, Alice! Your name has 5 letters." in out
    assert "[run 2] assistant: Of course: you are Alice. Backwards: ecilA." in out
    assert "holds 8 messages" in out
