"""The aixgo plugin: registers the agent type ``react`` (``role: react`` in YAML).

.. code-block:: yaml

    agents:
      - name: assistant
        role: react
        options:
          model: "${MODEL:-openai:gpt-4o-mini}"     # or scripted:calls offline
          tools: ["my_tools:get_weather"]   # "module:attribute", beside the file or in cwd
          system_prompt: You are concise.
          max_steps: 8

>>> agent = build_agent(model="scripted:echo", max_steps=3)
>>> agent.max_steps
3
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from aixgo import hookimpl
from aixgo.errors import ConfigError
from aixgo.hookspecs import AgentRegister

if TYPE_CHECKING:  # loading plugins (every aixgo command) must not import the model SDKs
    from aixgo_agent_react.agent import ReActAgent

__all__ = ["aixgo_register_agents", "build_agent"]


@hookimpl
def aixgo_register_agents(register: AgentRegister) -> None:
    """Register ``react``."""
    register("react", build_agent)


def build_agent(*, model: Any, tools: list[Any] | None = None, **options: Any) -> ReActAgent:
    """A :class:`ReActAgent` from YAML options; ``tools`` may name functions or tools as
    ``"module:attribute"``. Other options are :class:`ReActAgent`'s keywords."""
    from aixgo_agent_react.agent import ReActAgent

    loaded = [_load(t) if isinstance(t, str) else t for t in tools or []]
    return ReActAgent(model, loaded, **options)


def _load(target: str) -> Any:
    module, sep, attr = target.partition(":")
    if not sep or not module or not attr:
        raise ConfigError(f"tool {target!r} must be written 'module:attribute'")
    try:
        obj: Any = importlib.import_module(module)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"tool {target!r} cannot be loaded: {exc}") from exc
    return obj
