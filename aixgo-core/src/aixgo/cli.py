"""The ``aixgo`` command line: ``aixgo --version``, ``aixgo plugins``, ``aixgo sessions ...``,
``aixgo chat``, and the commands plugins add through ``aixgo_register_commands``."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import sys

import click

from aixgo import __version__, plugins
from aixgo.errors import AixgoError, PluginError

__all__ = ["cli", "main"]

# Where a URL starts in an argument such as --url=redis://...
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://")


class _Commands(click.Group):
    """The ``aixgo`` group: the core's commands plus the ones plugins add. Plugins are asked
    only when a command is looked up or listed, so ``aixgo --version`` loads none; nothing
    is cached here, so :func:`aixgo.plugins.reset` takes effect."""

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return self._every_command().get(cmd_name)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(self._every_command())

    def _every_command(self) -> dict[str, click.Command]:
        found = dict(self.commands)
        for name, reg in plugins.commands().items():
            if name in found:
                raise PluginError(
                    f"command {name!r} is registered twice: built into aixgo (distribution "
                    f"aixgo-core) and by {reg.origin()}; uninstall the plugin, or skip it with "
                    f"AIXGO_DISABLE_PLUGINS={reg.plugin}"
                )
            found[name] = reg.target
        return found


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", "-V", prog_name="aixgo")
def cli() -> None:
    """aixgo: agents that remember."""


@cli.command("plugins")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def plugins_command(as_json: bool) -> None:
    """List installed plugins: distribution, version and what each registers (schemes,
    agent types, options, commands)."""
    infos = plugins.plugins()
    if as_json:
        click.echo(json.dumps([dataclasses.asdict(i) for i in infos], indent=2))
        return
    if not infos:
        click.echo("no plugins installed")
        return
    rows = [
        (
            i.name,
            i.distribution,
            i.version or "-",
            ", ".join(
                [f"{s}://" for s in i.backends]
                + [f"agent {a}" for a in i.agents]
                + [f"option {o}" for o in i.options]
                + [f"command {c}" for c in i.commands]
                + [f"key provider {k}:" for k in i.key_providers]
            )
            or "-",
        )
        for i in infos
    ]
    header = ("PLUGIN", "DISTRIBUTION", "VERSION", "REGISTERS")
    widths = [max(len(r[c]) for r in [header, *rows]) for c in range(3)]
    for row in [header, *rows]:
        click.echo(
            "  ".join(cell.ljust(w) for cell, w in zip(row[:3], widths, strict=True))
            + "  "
            + row[3]
        )


def _add_commands() -> None:
    # Imported here: the subcommands pull in the runtime and session layers, which plain
    # `aixgo --version` does not need.
    from aixgo import cli_governance  # noqa: F401  (adds rekey and erase to sessions)
    from aixgo.cli_chat import chat
    from aixgo.cli_sessions import sessions

    cli.add_command(sessions)
    cli.add_command(chat)


_add_commands()


def main() -> None:
    """Entry point of the ``aixgo`` script. Exit status: 0 done; 1 the operation failed, was
    refused or interrupted (aixgo errors and unreadable or unwritable files print as one line,
    ``error: ...``, never a traceback); 2 the command line is wrong (click's usage errors)."""
    try:
        # Outside standalone mode click returns the code of a ctx.exit(n) instead of exiting.
        status = cli.main(standalone_mode=False)
        if isinstance(status, int) and status:
            sys.exit(status)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("Aborted!", err=True)
        sys.exit(1)
    except (AixgoError, OSError) as exc:
        _report(exc)
        sys.exit(1)


def _report(exc: BaseException) -> None:
    from aixgo.cli_errors import cli_message
    from aixgo.cli_sessions import printable

    # Messages quote stored or user-given text: escaped, so it cannot drive the terminal,
    # and scrubbed, so a password that reached one is never printed.
    click.echo(f"error: {printable(_scrubbed(cli_message(exc)), lines=True)}", err=True)
    for note in getattr(exc, "__notes__", ()):
        click.echo(f"  {printable(_scrubbed(str(note)), lines=True)}", err=True)


def _scrubbed(message: str) -> str:
    """``message`` without the secrets of any URL on the command line or in
    ``$AIXGO_SESSION_URL``: the last guard before a terminal or a CI log, should a message
    have come from somewhere that did not redact."""
    from aixgo.session.redaction import scrub, url_secrets  # not needed by a plain --version

    sources = [*sys.argv[1:], os.environ.get("AIXGO_SESSION_URL", "")]
    urls = [arg[m.start() :] for arg in sources if (m := _URL.search(arg))]
    return scrub(message, [secret for url in urls for secret in url_secrets(url)])
