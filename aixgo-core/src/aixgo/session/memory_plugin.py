"""The core's own plugin: registers ``memory://`` through the same hook every plugin uses."""

from __future__ import annotations

from aixgo.hookspecs import BackendRegister, hookimpl


@hookimpl
def aixgo_register_backends(register: BackendRegister) -> None:
    """Register the in-process reference backend under ``memory://``."""
    register("memory", "aixgo.session.memory:MemoryBackend")
