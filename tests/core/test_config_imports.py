"""What a YAML file names is found where its author put it: modules beside the file or in the
current directory (also from the ``aixgo`` script), and a store URL no plugin opens is refused
when the file is loaded, with file and line."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from aixgo import Runtime
from aixgo.errors import ConfigError

TOOL = '''
def shout(text: str) -> str:
    """The text, louder."""
    return text.upper() + "!"
'''


def _config(folder: Path, tool: str, store: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "aixgo.yaml"
    path.write_text(
        f"session: file://{store}\n"
        "agents:\n"
        "  - name: assistant\n"
        "    role: react\n"
        f'    options: {{model: "scripted:calls", tools: ["{tool}:shout"]}}\n'
    )
    return path


def _chat(config: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    aixgo = shutil.which("aixgo")
    assert aixgo is not None
    return subprocess.run(
        [aixgo, "chat", "assistant", "--config", str(config), "--user", "alice"],
        input='shout(text="hi")\n',
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
    )


def test_the_script_imports_tools_beside_the_config_and_in_the_current_folder(
    tmp_path: Path,
) -> None:
    # Beside the config, run from elsewhere.
    conf = tmp_path / "app"
    (tmp_path / "app").mkdir()
    (conf / "beside_tools.py").write_text(TOOL)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    proc = _chat(_config(conf, "beside_tools", tmp_path / "s1"), elsewhere)
    assert proc.returncode == 0, proc.stderr
    assert "HI!" in proc.stdout
    # In the current folder, the config elsewhere.
    (elsewhere / "here_tools.py").write_text(TOOL)
    proc = _chat(_config(tmp_path / "conf2", "here_tools", tmp_path / "s2"), elsewhere)
    assert proc.returncode == 0, proc.stderr
    assert "HI!" in proc.stdout
    # Neither: a config error naming the tool, from the folder that has no such module.
    proc = _chat(_config(tmp_path / "conf3", "nowhere_tools", tmp_path / "s3"), elsewhere)
    assert proc.returncode == 1
    assert "agents[0].role" in proc.stderr and "nowhere_tools" in proc.stderr


def test_the_import_folders_are_taken_off_sys_path_afterwards(tmp_path: Path) -> None:
    (tmp_path / "inproc_tools_1.py").write_text(TOOL)
    before = list(sys.path)
    rt = Runtime.from_config(_config(tmp_path, "inproc_tools_1", tmp_path / "store"))
    assert rt.get("assistant") is not None
    assert sys.path == before
    assert "inproc_tools_1" in sys.modules  # imported once, stays imported


@pytest.mark.parametrize(
    ("text", "line", "key"),
    [
        ("session: foo://x\n", 1, "session"),
        ("session:\n  url: foo://x\n", 2, "session.url"),
        ("runtime:\n  timeout: 5\n  session_manager: foo://x\n", 3, "runtime.session_manager"),
    ],
)
def test_an_unknown_store_scheme_fails_at_load_with_file_and_line(
    tmp_path: Path, text: str, line: int, key: str
) -> None:
    path = tmp_path / "aixgo.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as refused:
        Runtime.from_config(path)
    message = str(refused.value)
    assert message.startswith(f"{path}: {key} (line {line}): ")
    assert "no installed plugin provides the URL scheme 'foo'" in message


def test_a_store_url_without_scheme_fails_at_load(tmp_path: Path) -> None:
    path = tmp_path / "aixgo.yaml"
    path.write_text("agents: []\nsession: ./sessions\n")
    with pytest.raises(ConfigError, match=r"session \(line 2\): a backend URL needs a scheme"):
        Runtime.from_config(path)


def test_the_script_reports_an_unknown_scheme_with_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "aixgo.yaml"
    path.write_text("agents:\n  - {name: a, role: react, options: {model: 'scripted:echo'}}\n"
                    "session: fo0://x\n")  # fmt: skip
    aixgo = shutil.which("aixgo")
    assert aixgo is not None
    proc = subprocess.run([aixgo, "chat", "a", "-c", str(path), "-u", "u"], input="",
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert proc.returncode == 1
    assert proc.stderr.startswith(f"error: {path}: session (line 3): ")
    assert "'fo0'" in proc.stderr and proc.stdout == ""
