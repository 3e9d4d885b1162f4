"""Builder: the agents a parsed configuration file names, made by their agent types' factories.

:mod:`aixgo.config` only parses; :meth:`aixgo.Runtime.from_config` resolves the file's options,
builds each agent here and registers it. Every error names the file, the key path and the line.

>>> from aixgo.config import AgentSpec
>>> build_agent(AgentSpec("assistant", "no-such-type", where="aixgo.yaml: agents[0].role"))
Traceback (most recent call last):
...
aixgo.errors.ConfigError: aixgo.yaml: agents[0].role: ...
"""

from __future__ import annotations

from aixgo import plugins
from aixgo.agent import Agent
from aixgo.config import AgentSpec
from aixgo.errors import AixgoError, ConfigError

__all__ = ["build_agent"]


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
