"""The toy store: the in-memory reference backend under another scheme."""

from __future__ import annotations

from aixgo.session.memory import MemoryBackend


class ToyBackend(MemoryBackend):
    """``toy://``: behaves exactly like ``memory://``."""
