"""Tools: typed Python functions a model may call.

:func:`tool` turns a function (sync or async) into a :class:`Tool` whose JSON schema and
argument validation come from pydantic, built from the function's type hints. Running a tool
never raises: bad arguments, an exception or a timeout become a :class:`ToolResult` with
``error=True`` whose text the model reads and can react to.

>>> import asyncio
>>> @tool
... def add(a: int, b: int = 1) -> int:
...     '''Add two integers.'''
...     return a + b
>>> add.name, add.description, add.parameters["required"]
('add', 'Add two integers.', ['a'])
>>> asyncio.run(add.run({"a": 2, "b": "3"})).text
'5'
>>> print(asyncio.run(add.run({"a": "two"})).text)  # doctest: +ELLIPSIS
error: invalid arguments for tool 'add': a: Input should be a valid integer...
"""

from __future__ import annotations

import asyncio
import inspect
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, get_type_hints, overload

from aixgo.errors import InvalidArgument
from pydantic import BaseModel, ConfigDict, ValidationError, create_model
from pydantic_core import to_jsonable_python

__all__ = ["Tool", "ToolResult", "tool"]

_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")  # what the Chat Completions API accepts
#: The longest tool result (in characters) sent back to the model and stored; longer output
#: is cut, with a note saying so.
MAX_RESULT_CHARS = 64_000


@dataclass(frozen=True, slots=True)
class ToolResult:
    """What running a tool gave: the text the model sees, and whether it is an error."""

    text: str
    error: bool = False


class Tool:
    """A callable the model may ask for, with a name, a description, a JSON schema for its
    arguments and an optional timeout in seconds. Build one with :func:`tool`."""

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        name: str | None = None,
        description: str | None = None,
        timeout: float | None = None,
    ) -> None:
        self.fn = fn
        self.name = name or fn.__name__
        if not _NAME.fullmatch(self.name):
            raise InvalidArgument(
                f"tool name {self.name!r} must be 1-64 letters, digits, '_' or '-'"
            )
        doc = inspect.getdoc(fn) or ""
        self.description = description or doc.split("\n\n")[0].replace("\n", " ").strip()
        if timeout is not None and timeout <= 0:
            raise InvalidArgument(f"timeout of tool {self.name!r} must be positive, not {timeout}")
        self.timeout = timeout
        self.is_async = inspect.iscoroutinefunction(fn)
        self.arguments: type[BaseModel] = _arguments_model(fn, self.name)
        schema = self.arguments.model_json_schema()
        schema.pop("title", None)
        self.parameters: dict[str, Any] = schema

    def __repr__(self) -> str:
        return f"Tool({self.name!r})"

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Call the underlying function directly (no validation, no timeout)."""
        return self.fn(*args, **kwargs)

    def spec(self) -> dict[str, Any]:
        """The tool as the Chat Completions API describes one (``{"type": "function", ...}``)."""
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": self.parameters,
            },
        }

    async def run(
        self, arguments: Mapping[str, Any], *, default_timeout: float | None = None
    ) -> ToolResult:
        """Validate ``arguments`` and call the tool; never raises (except cancellation).
        ``default_timeout`` applies when the tool has none of its own."""
        try:
            parsed = self.arguments.model_validate(dict(arguments))
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'arguments'}: {e['msg']}"
                for e in exc.errors()
            )
            return ToolResult(f"error: invalid arguments for tool {self.name!r}: {problems}", True)
        kwargs = {field: getattr(parsed, field) for field in type(parsed).model_fields}
        limit = self.timeout if self.timeout is not None else default_timeout
        try:
            async with asyncio.timeout(limit):
                if self.is_async:
                    value = await self.fn(**kwargs)
                else:
                    # A thread keeps the event loop (and other sessions) responsive; the
                    # contextvars, such as the current session, go with it.
                    value = await asyncio.to_thread(self.fn, **kwargs)
        except TimeoutError:
            return ToolResult(f"error: tool {self.name!r} did not finish within {limit} s", True)
        except Exception as exc:
            return ToolResult(
                f"error: tool {self.name!r} failed: {type(exc).__name__}: {exc}", True
            )
        return ToolResult(_as_text(value))


def _as_text(value: Any) -> str:
    if isinstance(value, str):
        text = value
    else:
        try:
            text = json.dumps(to_jsonable_python(value), ensure_ascii=False)
        except Exception:  # not JSON-able: its text is the best the model can get
            text = str(value)
    text = text.replace("\x00", "")
    if len(text) > MAX_RESULT_CHARS:
        cut = len(text) - MAX_RESULT_CHARS
        text = text[:MAX_RESULT_CHARS] + f"\n[... {cut:,} more characters cut]"
    return text


def _arguments_model(fn: Callable[..., Any], name: str) -> type[BaseModel]:
    try:
        hints = get_type_hints(fn, include_extras=True)
    except Exception as exc:
        raise InvalidArgument(f"tool {name!r}: cannot read its type hints: {exc}") from exc
    fields: dict[str, Any] = {}
    for param in inspect.signature(fn).parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise InvalidArgument(f"tool {name!r}: *args and **kwargs cannot be described")
        default = ... if param.default is param.empty else param.default
        fields[param.name] = (hints.get(param.name, Any), default)
    config = ConfigDict(extra="forbid")
    model: type[BaseModel] = create_model(f"{name}_arguments", __config__=config, **fields)
    return model


@overload
def tool(fn: Callable[..., Any], /) -> Tool: ...


@overload
def tool(
    *, name: str | None = None, description: str | None = None, timeout: float | None = None
) -> Callable[[Callable[..., Any]], Tool]: ...


def tool(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    timeout: float | None = None,
) -> Tool | Callable[[Callable[..., Any]], Tool]:
    """Make a :class:`Tool` of a typed function, as ``@tool`` or ``@tool(timeout=5)``.
    The description is the docstring's first paragraph unless given.

    >>> @tool(timeout=2.0)
    ... async def weather(city: str) -> str:
    ...     '''Today's weather in a city.'''
    ...     return f"12°C in {city}"
    >>> weather.spec()["function"]["parameters"]["properties"]
    {'city': {'title': 'City', 'type': 'string'}}
    """
    if fn is not None:
        return Tool(fn, name=name, description=description, timeout=timeout)

    def wrap(f: Callable[..., Any]) -> Tool:
        return Tool(f, name=name, description=description, timeout=timeout)

    return wrap
