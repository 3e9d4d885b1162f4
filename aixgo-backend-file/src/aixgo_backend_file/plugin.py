"""Registers ``file://`` and ``aixgo file ...`` through the same hooks every third-party
plugin uses."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aixgo.hookspecs import BackendRegister, hookimpl

if TYPE_CHECKING:  # loading plugins must not import the command line's library
    import click

__all__ = ["aixgo_register_backends", "aixgo_register_commands"]


@hookimpl
def aixgo_register_backends(register: BackendRegister) -> None:
    """Register the embedded file store; imported only when a ``file://`` URL is opened."""
    register("file", "aixgo_backend_file.backend:FileBackend")


@hookimpl
def aixgo_register_commands(cli: click.Group) -> None:
    """Add ``aixgo file repair [--check] URL-OR-PATH``."""
    from aixgo_backend_file.commands import file_group

    cli.add_command(file_group)
