"""Models: what the agent asks for the next step, chosen by a string or given as an object.

A model is anything with ``async def complete(messages, tools) -> Message`` returning an
assistant message, with ``tool_calls`` when it wants tools run; a model that can also send its
reply as it is produced implements :class:`StreamingModel` (``stream``), which the agent uses
when its call is streamed. A string ``"provider:name"``
picks a registered provider: ``openai:gpt-4o-mini`` (any OpenAI-compatible Chat Completions
endpoint: OpenAI, vLLM, Ollama, llama.cpp server) or ``scripted:...`` (offline, deterministic).

>>> m = resolve_model("scripted:echo")
>>> type(m).__name__, sorted(providers())
('ScriptedModel', ['openai', 'scripted'])
"""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, Protocol, runtime_checkable

from aixgo import Message
from aixgo.errors import AixgoError, ConfigError

from aixgo_agent_react.tools import Tool

__all__ = [
    "Model",
    "ModelError",
    "StreamingModel",
    "providers",
    "register_provider",
    "resolve_model",
]


class ModelError(AixgoError):
    """The model could not answer (unreachable, refused the request, kept failing after
    retries, or timed out). The message names the model and never a key."""


@runtime_checkable
class Model(Protocol):
    """A chat model that may ask for tools."""

    async def complete(self, messages: Sequence[Message], tools: Sequence[Tool]) -> Message:
        """The next assistant message for ``messages``, given the ``tools`` it may call."""
        ...


@runtime_checkable
class StreamingModel(Model, Protocol):
    """A chat model that can send its reply as it is produced."""

    def stream(
        self, messages: Sequence[Message], tools: Sequence[Tool]
    ) -> AsyncIterator[str | Message]:
        """Chunks of the reply's text as they come, then the whole reply (what
        :meth:`~Model.complete` would return; its text is the chunks joined)."""
        ...


# prefix -> a factory of (name after the colon, **options), or "module:attr" loaded on use.
_PROVIDERS: dict[str, Callable[..., Model] | str] = {
    "openai": "aixgo_agent_react.models.openai:OpenAIModel.from_spec",
    "scripted": "aixgo_agent_react.models.scripted:ScriptedModel.from_spec",
}


def register_provider(prefix: str, factory: Callable[..., Model] | str) -> None:
    """Make ``"prefix:name"`` strings build models with ``factory(name, **options)``."""
    if not prefix.isidentifier():
        raise ConfigError(f"model provider prefix {prefix!r} must be a plain word")
    _PROVIDERS[prefix] = factory


def providers() -> list[str]:
    """The registered model provider prefixes."""
    return sorted(_PROVIDERS)


def resolve_model(model: Model | str, **options: Any) -> Model:
    """``model`` itself, or the model a ``"provider:name"`` string names (``options`` go to
    the provider: ``base_url``, ``api_key``, ``timeout``, ``max_retries`` for ``openai``)."""
    if not isinstance(model, str):
        if not isinstance(model, Model):
            raise ConfigError(
                f"model must be a 'provider:name' string or have 'async def complete(messages, "
                f"tools)', not {type(model).__name__}"
            )
        return model
    prefix, sep, name = model.partition(":")
    if not sep:
        raise ConfigError(
            f"model {model!r} needs a provider prefix, e.g. 'openai:{model}'; "
            f"providers: {', '.join(providers())}"
        )
    factory = _PROVIDERS.get(prefix)
    if factory is None:
        raise ConfigError(
            f"no model provider {prefix!r} (in {model!r}); providers: {', '.join(providers())}"
        )
    if isinstance(factory, str):
        module, _, attr = factory.partition(":")
        obj: Any = importlib.import_module(module)
        for part in attr.split("."):
            obj = getattr(obj, part)
        factory = obj
    assert callable(factory)
    built: Model = factory(name, **options)
    return built
