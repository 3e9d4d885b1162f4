"""@tool: schemas and validation from pydantic; errors become messages, never crashes."""

from __future__ import annotations

import asyncio
import time
from typing import Annotated, Literal

import pytest
from aixgo.errors import InvalidArgument
from aixgo_agent_react import Tool, tool
from aixgo_agent_react.tools import MAX_RESULT_CHARS
from pydantic import BaseModel, Field


class Place(BaseModel):
    city: str
    country: str = "NO"


@tool
def forecast(
    place: Place,
    days: Annotated[int, Field(ge=1, le=7, description="How many days ahead")] = 1,
    unit: Literal["C", "F"] = "C",
) -> dict[str, object]:
    """Weather forecast for a place.

    Longer text that is not part of the description.
    """
    return {"city": place.city, "days": days, "unit": unit}


def test_schema_and_description_come_from_the_signature() -> None:
    assert forecast.name == "forecast"
    assert forecast.description == "Weather forecast for a place."
    params = forecast.parameters
    assert params["type"] == "object"
    assert params["required"] == ["place"]
    assert params["properties"]["days"]["maximum"] == 7
    assert params["properties"]["days"]["description"] == "How many days ahead"
    assert params["properties"]["unit"]["enum"] == ["C", "F"]
    assert params["additionalProperties"] is False
    assert "Place" in params["$defs"]
    spec = forecast.spec()
    assert spec["type"] == "function"
    assert spec["function"]["name"] == "forecast"


@pytest.mark.asyncio
async def test_arguments_are_validated_and_results_become_text() -> None:
    ok = await forecast.run({"place": {"city": "Oslo"}, "days": "3"})
    assert not ok.error
    assert ok.text == '{"city": "Oslo", "days": 3, "unit": "C"}'
    for bad in ({}, {"place": {"city": "Oslo"}, "days": 9}, {"place": "x", "extra": 1}):
        res = await forecast.run(bad)
        assert res.error
        assert res.text.startswith("error: invalid arguments for tool 'forecast'")
    res = await forecast.run({"place": {"city": "Oslo"}, "zzz": 1})
    assert "zzz" in res.text


@pytest.mark.asyncio
async def test_exceptions_and_timeouts_become_tool_errors() -> None:
    @tool
    def broken(x: int) -> int:
        """Always fails."""
        raise ZeroDivisionError("no")

    @tool(timeout=0.1)
    async def slow() -> str:
        """Too slow."""
        await asyncio.sleep(5)
        return "late"

    @tool
    def slow_sync() -> str:
        """Blocks (in a thread, so the loop stays free)."""
        time.sleep(0.5)
        return "late"

    res = await broken.run({"x": 1})
    assert res.error
    assert res.text == "error: tool 'broken' failed: ZeroDivisionError: no"
    res = await slow.run({}, default_timeout=10)  # the tool's own timeout wins
    assert res.error
    assert "did not finish within 0.1 s" in res.text
    res = await slow_sync.run({}, default_timeout=0.1)
    assert res.error
    assert "within 0.1 s" in res.text


@pytest.mark.asyncio
async def test_async_tools_and_odd_results() -> None:
    @tool(name="lookup-v2", description="Custom text.")
    async def lookup(key: str) -> object:
        return {"key": key, "when": None}

    @tool
    def huge() -> str:
        """Big output."""
        return "x" * (MAX_RESULT_CHARS + 10)

    @tool
    def nul() -> str:
        """NUL output."""
        return "a\x00b"

    assert lookup.name == "lookup-v2"
    assert lookup.description == "Custom text."
    assert (await lookup.run({"key": "k"})).text == '{"key": "k", "when": null}'
    big = (await huge.run({})).text
    assert big.endswith("[... 10 more characters cut]")
    assert (await nul.run({})).text == "ab"
    assert await lookup("z") == {"key": "z", "when": None}  # still callable directly


def test_bad_tools_are_refused_when_made() -> None:
    def variadic(*args: int) -> int:
        return 0

    with pytest.raises(InvalidArgument, match="args"):
        tool(variadic)
    with pytest.raises(InvalidArgument, match="tool name"):
        Tool(lambda: 1, name="has space")
    with pytest.raises(InvalidArgument, match="timeout of tool"):
        tool(timeout=0)(variadic)
