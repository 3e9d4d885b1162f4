"""Registers the agent type ``remote`` and the command ``aixgo serve`` through the same hooks
every third-party plugin uses.

.. code-block:: yaml

    agents:
      - name: assistant
        role: remote
        options: {url: "grpcs://10.0.0.5:50051", agent: assistant,
                  ca_file: ca.pem, cert_file: client.pem, key_file: client.key}
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aixgo.hookspecs import AgentRegister, hookimpl

if TYPE_CHECKING:  # loading plugins must not import the command line's library
    import click

__all__ = ["aixgo_register_agents", "aixgo_register_commands"]


@hookimpl
def aixgo_register_agents(register: AgentRegister) -> None:
    """Register ``remote``; gRPC loads only when such an agent is built."""
    register("remote", "aixgo_runtime_grpc.client:build_remote")


@hookimpl
def aixgo_register_commands(cli: click.Group) -> None:
    """Add ``aixgo serve``."""
    from aixgo_runtime_grpc.commands import serve

    cli.add_command(serve)
