"""aixgo-agent-react: a ReAct agent with typed tools that remembers its sessions, resumes a
turn a crash interrupted, and talks to OpenAI-compatible models (or an offline scripted one).

>>> from aixgo_agent_react import ReActAgent, tool
>>> @tool
... def shout(text: str) -> str:
...     '''The text in capitals.'''
...     return text.upper()
>>> ReActAgent(model="scripted:calls", tools=[shout], max_steps=4)
ReActAgent(model=ScriptedModel(calls_policy), tools=['shout'])
"""

from aixgo_agent_react.agent import ReActAgent
from aixgo_agent_react.budget import estimate_tokens
from aixgo_agent_react.models import Model, ModelError, register_provider, resolve_model
from aixgo_agent_react.models.openai import OpenAIModel
from aixgo_agent_react.models.scripted import ScriptedModel
from aixgo_agent_react.tools import Tool, ToolResult, tool

__all__ = [
    "Model",
    "ModelError",
    "OpenAIModel",
    "ReActAgent",
    "ScriptedModel",
    "Tool",
    "ToolResult",
    "estimate_tokens",
    "register_provider",
    "resolve_model",
    "tool",
]
