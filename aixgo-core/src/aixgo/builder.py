"""Builder: the agents a parsed configuration file names, made by their agent types' factories.

:mod:`aixgo.config` only parses; :meth:`aixgo.Runtime.from_config` checks the file's store URL,
resolves its options, builds each agent here and registers it. Every error names the file, the
key path and the line.

Modules a file names (an agent type's factory, the ``tools:`` of a ``react`` agent) are imported
while its agents are built with the file's folder, then the current directory, in front of
``sys.path``, as ``python -m`` puts the current directory there: ``tools: ["my_tools:f"]``
finds ``my_tools.py`` beside ``aixgo.yaml`` or where the command runs, also for the ``aixgo``
script, whose own folder is all Python would search. Both are taken out again afterwards;
what was imported stays imported.

>>> from aixgo.config import AgentSpec
>>> build_agent(AgentSpec("assistant", "no-such-type", where="aixgo.yaml: agents[0].role"))
Traceback (most recent call last):
...
aixgo.errors.ConfigError: aixgo.yaml: agents[0].role: ...
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from aixgo import plugins
from aixgo.agent import Agent
from aixgo.config import AgentSpec, Config
from aixgo.errors import AixgoError, ConfigError

__all__ = ["build_agent", "check_store", "import_roots"]


def check_store(config: Config) -> None:
    """Refuse a store URL no installed plugin can open, naming the file and line, when the
    file is loaded rather than when the runtime starts."""
    found = config.options().get("session_manager")
    if found is None:
        return
    url, where = found
    if not isinstance(url, str):
        return  # the option's own check reports what is not text
    scheme, sep, _ = url.partition("://")
    if not sep or not scheme:
        raise ConfigError(
            f"{where}: a backend URL needs a scheme, like 'file:///var/lib/app/sessions', "
            "'redis://host:6379/0' or 'memory://'"
        )
    try:
        plugins.backend_factory(scheme.lower())
    except AixgoError as exc:
        raise ConfigError(f"{where}: {exc}") from None


@contextlib.contextmanager
def import_roots(config_path: Path) -> Iterator[None]:
    """The folder of ``config_path``, then the current directory, first on ``sys.path`` for
    the duration (see the module docs); those already there stay where they are."""
    roots = dict.fromkeys([str(config_path.resolve().parent), os.getcwd()])
    added = [root for root in roots if root not in sys.path]
    sys.path[:0] = added
    importlib.invalidate_caches()  # folders added since the last import are searched
    try:
        yield
    finally:
        for root in added:
            with contextlib.suppress(ValueError):  # the code we ran removed it itself
                sys.path.remove(root)


def build_agent(spec: AgentSpec) -> Agent:
    """The agent ``spec`` describes: its agent type's factory called with its options."""
    try:
        factory, _ = plugins.agent_factory(spec.role)
    except AixgoError as exc:
        raise ConfigError(f"{spec.where}: {exc}") from None
    try:
        agent: Agent = factory(**spec.options)
    except Exception as exc:
        raise ConfigError(
            f"{spec.where}: agent type {spec.role!r} refused its options: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    return agent
