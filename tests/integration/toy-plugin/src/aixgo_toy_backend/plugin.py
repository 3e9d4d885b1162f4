"""Registers ``toy://`` the way any outside author would."""

from __future__ import annotations

from aixgo import hookimpl
from aixgo.hookspecs import BackendRegister


@hookimpl
def aixgo_register_backends(register: BackendRegister) -> None:
    register("toy", "aixgo_toy_backend.backend:ToyBackend")
