"""aixgo-runtime-grpc: agents on many machines.

A node serves a runtime's agents (:class:`AgentServer`, ``aixgo serve``); a client calls one
as a :class:`RemoteAgent` (``role: remote`` in YAML) through ``rt.call`` like any agent. The
wire contract is ``proto/aixgo/v1/agent.proto`` (:func:`proto_path`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from aixgo.plugins import lazy_exports

if TYPE_CHECKING:
    from aixgo_runtime_grpc.client import RemoteAgent, build_remote
    from aixgo_runtime_grpc.server import AgentServer
    from aixgo_runtime_grpc.tls import ClientTLS, ServerTLS
    from aixgo_runtime_grpc.wire import NodeUnavailable, PermissionDenied, RemoteError

#: Imported on first use: loading plugins imports this package, and must not import
#: its dependencies (every process that opens any store would pay for them).
_LAZY = {
    "RemoteAgent": ("aixgo_runtime_grpc.client", "RemoteAgent"),
    "build_remote": ("aixgo_runtime_grpc.client", "build_remote"),
    "AgentServer": ("aixgo_runtime_grpc.server", "AgentServer"),
    "ClientTLS": ("aixgo_runtime_grpc.tls", "ClientTLS"),
    "ServerTLS": ("aixgo_runtime_grpc.tls", "ServerTLS"),
    "NodeUnavailable": ("aixgo_runtime_grpc.wire", "NodeUnavailable"),
    "PermissionDenied": ("aixgo_runtime_grpc.wire", "PermissionDenied"),
    "RemoteError": ("aixgo_runtime_grpc.wire", "RemoteError"),
}

__all__ = [
    "AgentServer",
    "ServerTLS",
    "RemoteAgent",
    "ClientTLS",
    "build_remote",
    "RemoteError",
    "NodeUnavailable",
    "PermissionDenied",
    "proto_path",
]


def proto_path() -> Path:
    """The published ``aixgo/v1/agent.proto`` (any gRPC client can call a node with it)."""
    return Path(__file__).parent / "proto" / "aixgo" / "v1" / "agent.proto"


__getattr__ = lazy_exports(__name__, _LAZY)
