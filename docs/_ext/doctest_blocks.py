"""A griffe extension for the docs build: the ``>>>`` examples of every docstring become
``pycon`` code blocks, so Markdown shows them as code instead of reading ``>`` as quotes and
``x["a"][0]`` as reference links. The docstrings stay plain doctests that pytest runs."""

from __future__ import annotations

from typing import Any

import griffe


def fence_doctests(text: str) -> str:
    """``text`` with each run of doctest lines (a ``>>>`` line, its ``...`` continuations and
    its expected output, up to a blank line) in a fenced ``pycon`` block."""
    out: list[str] = []
    in_block = False
    for line in text.splitlines():
        starts = line.lstrip().startswith(">>>")
        if starts and not in_block:
            out.append(line[: len(line) - len(line.lstrip())] + "```pycon")
            in_block = True
        elif in_block and not line.strip():
            out.append("```")
            in_block = False
        out.append(line)
    if in_block:
        out.append("```")
    return "\n".join(out)


class DoctestBlocks(griffe.Extension):
    """Fence the doctests of every object of every package loaded."""

    def on_package(self, *, pkg: griffe.Module, loader: griffe.GriffeLoader, **kwargs: Any) -> None:
        self._fence(pkg, set())

    def _fence(self, obj: griffe.Object | griffe.Alias, seen: set[str]) -> None:
        if obj.is_alias or obj.path in seen:
            return  # an alias is fenced where it is defined
        seen.add(obj.path)
        if obj.docstring is not None:
            obj.docstring.value = fence_doctests(obj.docstring.value)
        for member in obj.members.values():
            self._fence(member, seen)
