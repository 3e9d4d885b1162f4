"""Every ``pip install`` line in the READMEs and docs works from a clone: aixgo is not on PyPI
yet, and pip takes a package's dependencies from the index only, so a line that installs an
aixgo package must point pip at the wheels ``uvx nox -s dist`` builds (``--find-links``, or
``PIP_FIND_LINKS`` exported earlier in the same document)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = sorted(
    p
    for pattern in ("*.md", "aixgo-*/*.md", "docs/*.md", "examples/*/*.md")
    for p in ROOT.glob(pattern)
)
_INSTALL = re.compile(r"\b(?:uv )?pip install\b(.*)")


def _unfound_lines(text: str) -> list[str]:
    """The install lines of ``text`` that name an aixgo package or a local folder and give pip
    no way to find aixgo's wheels."""
    bad = []
    found_links = False
    for line in text.splitlines():
        if "PIP_FIND_LINKS" in line:
            found_links = True
        match = _INSTALL.search(line)
        if not match:
            continue
        args = match.group(1)
        ours = re.search(r"aixgo|\./|\s\.\s|-e|\"\.\[", args)
        if ours and "--find-links" not in args and not found_links:
            bad.append(line.strip())
    return bad


def test_the_check_catches_the_lines_that_failed() -> None:
    assert _unfound_lines("pip install aixgo-agent-react aixgo-backend-file") != []
    assert _unfound_lines('```bash\npip install -e ".[test]"\n```') != []
    assert _unfound_lines("export PIP_FIND_LINKS=d\n\nthen `uv pip install -e .`") == []
    assert _unfound_lines("`pip install uv`") == []


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_install_line_finds_the_wheels(doc: Path) -> None:
    assert _unfound_lines(doc.read_text(encoding="utf-8")) == []
