"""aixgo-runtime-grpc: agents on many machines.

A node serves a runtime's agents (:class:`AgentServer`, ``aixgo serve``); a client calls one
as a :class:`RemoteAgent` (``role: remote`` in YAML) through ``rt.call`` like any agent. The
wire contract is ``proto/aixgo/v1/agent.proto`` (:func:`proto_path`).
"""

from __future__ import annotations

from pathlib import Path

from aixgo_runtime_grpc.client import RemoteAgent, build_remote
from aixgo_runtime_grpc.server import AgentServer
from aixgo_runtime_grpc.tls import ClientTLS, ServerTLS
from aixgo_runtime_grpc.wire import NodeUnavailable, PermissionDenied, RemoteError

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
