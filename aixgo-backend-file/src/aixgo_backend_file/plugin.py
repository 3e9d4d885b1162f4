"""Registers ``file://`` through the same hook every third-party backend uses."""

from __future__ import annotations

from aixgo.hookspecs import BackendRegister, hookimpl


@hookimpl
def aixgo_register_backends(register: BackendRegister) -> None:
    """Register the embedded file store; imported only when a ``file://`` URL is opened."""
    register("file", "aixgo_backend_file.backend:FileBackend")
