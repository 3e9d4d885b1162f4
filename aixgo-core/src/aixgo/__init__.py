"""aixgo for Python: agents that remember.

>>> from aixgo import Message
>>> Message.user("hi").role
'user'
"""

from importlib.metadata import PackageNotFoundError, version

from aixgo.hookspecs import hookimpl
from aixgo.message import Message, ToolCall
from aixgo.runtime import Runtime

try:
    __version__ = version("aixgo-core")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0+unknown"

__all__ = ["Message", "Runtime", "ToolCall", "hookimpl", "__version__"]
