"""``aixgo serve``: serve the agents of a YAML config over gRPC, added to the ``aixgo``
command line by this package's plugin (``aixgo_register_commands``).

Prints ``serving HOST:PORT (mode)`` on standard output once it accepts calls (port 0 binds a
free port, printed there). SIGTERM or SIGINT stop it gracefully: health turns NOT_SERVING,
new calls are refused, and running turns get ``--grace`` seconds to finish.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:  # imported by the command when it runs, not when it is listed
    from aixgo.runtime import Runtime

    from aixgo_runtime_grpc.server import AgentServer

__all__ = ["serve"]


@click.command("serve")
@click.option(
    "--config",
    "-c",
    "config",
    type=click.Path(dir_okay=False, path_type=Path),
    default="aixgo.yaml",
    show_default=True,
    help="YAML config of the agents served.",
)
@click.option(
    "--listen",
    default="127.0.0.1:50051",
    show_default=True,
    metavar="HOST:PORT",
    help="Address to bind (port 0: any free port).",
)
@click.option("--cert", type=click.Path(dir_okay=False), help="Server certificate chain (PEM).")
@click.option("--key", type=click.Path(dir_okay=False), help="Server private key (PEM).")
@click.option(
    "--client-ca",
    type=click.Path(dir_okay=False),
    help="CA of client certificates: mutual TLS, clients without one are refused.",
)
@click.option("--insecure", is_flag=True, help="Plaintext (no TLS); logs a warning.")
@click.option(
    "--mesh", is_flag=True, help="Plaintext behind a service mesh sidecar that terminates TLS."
)
@click.option(
    "--allow",
    "allow",
    multiple=True,
    metavar="AGENT=IDENTITY",
    help="Only clients whose certificate names IDENTITY (common name or subject "
    "alternative name, matched exactly: no patterns) may call AGENT; repeat for more. "
    "Needs --client-ca.",
)
@click.option("--grace", type=float, default=30.0, show_default=True,
              help="Seconds running turns get to finish on shutdown.")  # fmt: skip
def serve(
    config: Path,
    listen: str,
    cert: str | None,
    key: str | None,
    client_ca: str | None,
    insecure: bool,
    mesh: bool,
    allow: tuple[str, ...],
    grace: float,
) -> None:
    """Serve the agents of a config file over gRPC (TLS; mutual TLS with --client-ca)."""
    from aixgo.errors import ConfigError
    from aixgo.runtime import Runtime

    from aixgo_runtime_grpc.server import AgentServer
    from aixgo_runtime_grpc.tls import ServerTLS

    plaintext = insecure or mesh
    if insecure and mesh:
        raise click.UsageError("--insecure and --mesh are two plaintext modes: give one")
    if plaintext and (cert or key or client_ca):
        raise click.UsageError("--cert/--key/--client-ca make no sense with plaintext")
    if not plaintext and not (cert and key):
        raise click.UsageError("--cert and --key are required (or --insecure for plaintext)")
    allowed = _allow_list(allow)
    if allowed and not client_ca:
        raise click.UsageError(
            "--allow needs --client-ca (mutual TLS): without client certificates no client "
            "has an identity to allow"
        )
    logging.basicConfig(level=logging.INFO, format="aixgo serve: %(levelname)s: %(message)s")
    tls = None
    if cert and key:
        tls = ServerTLS.from_files(cert, key, client_ca)
    rt = Runtime.from_config(config)
    if not rt.list():
        raise ConfigError(f"{config}: no agents to serve")
    unknown = sorted(set(allowed) - set(rt.list()))
    if unknown:
        # A misspelt agent would leave the agent meant open to every client.
        raise click.UsageError(
            f"--allow names agent(s) {', '.join(map(repr, unknown))} that {config} does not "
            f"serve; it serves {', '.join(rt.list())}"
        )
    server = AgentServer(rt, listen, tls=tls, insecure=insecure, mesh=mesh, allow=allowed)
    asyncio.run(_serve(rt, server, grace))


def _allow_list(items: tuple[str, ...]) -> dict[str, list[str]]:
    """``--allow AGENT=IDENTITY`` options as allow-lists, each entry checked
    (:func:`aixgo_runtime_grpc.identity.check_allow`); a bad one is a usage error."""
    from aixgo.errors import InvalidArgument

    from aixgo_runtime_grpc.identity import check_allow

    allowed: dict[str, list[str]] = {}
    for item in items:
        agent, sep, identity = item.partition("=")
        if not sep or not agent or not identity:
            raise click.UsageError(f"--allow takes AGENT=IDENTITY, not {item[:80]!r}")
        allowed.setdefault(agent, []).append(identity)
    try:
        check_allow(allowed)
    except InvalidArgument as exc:
        raise click.UsageError(f"--allow: {exc}") from None
    return allowed


async def _serve(rt: Runtime, server: AgentServer, grace: float) -> None:
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    async with rt:
        port = await server.start()
        host = server.address.rpartition(":")[0]
        mode = "plaintext" if server.tls is None else "mTLS" if server.tls.mutual else "TLS"
        click.echo(f"serving {host}:{port} ({mode}); agents: {', '.join(rt.list())}")
        try:
            await stopping.wait()
        finally:
            click.echo(f"stopping: running turns get {grace:g} s", err=True)
            await server.stop(grace)
