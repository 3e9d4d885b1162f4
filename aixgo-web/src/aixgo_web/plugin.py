"""Registers ``aixgo web`` through the same hook every third-party plugin uses."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aixgo.hookspecs import hookimpl

if TYPE_CHECKING:  # loading plugins must not import the command line's library
    import click


@hookimpl
def aixgo_register_commands(cli: click.Group) -> None:
    """Add ``aixgo web``."""
    from aixgo_web.commands import web

    cli.add_command(web)
