"""aixgo's embedded session store: ``file://``, append-only JSON lines on local disk.

See the package README for the URL options, the on-disk format and the durability trade-off.
``FileBackend`` is imported on first access, so plugin discovery (which imports
:mod:`aixgo_backend_file.plugin`) stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aixgo_backend_file.backend import FileBackend

__all__ = ["FileBackend"]


def __getattr__(name: str) -> Any:
    if name == "FileBackend":
        from aixgo_backend_file.backend import FileBackend

        return FileBackend
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
