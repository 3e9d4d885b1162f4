"""Runtime options that plugins declare through ``aixgo_register_options``."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from aixgo.errors import PluginError

__all__ = ["Option"]

_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")


@dataclass(frozen=True, slots=True)
class Option:
    """A named runtime option with a default and a one-line description.

    >>> Option("retry_budget", default=3, description="Retries per call").name
    'retry_budget'
    """

    name: str
    default: Any = None
    description: str = ""
    type: type | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.fullmatch(self.name):
            raise PluginError(
                f"option name {self.name!r} is invalid: use lowercase letters, digits and _ "
                "(starting with a letter, at most 64 characters)"
            )
