"""Regenerates the committed protobuf code from ``proto/aixgo/v1/agent.proto``.

The generated modules are committed, so installing this package needs no code generator; a
test runs this with the locked ``grpcio-tools`` and fails when the output differs from what is
committed (``python -m aixgo_runtime_grpc._codegen`` rewrites it)::

    python -m aixgo_runtime_grpc._codegen          # rewrite _pb/agent_pb2.py(i)
    python -m aixgo_runtime_grpc._codegen --check  # exit 1 when they are stale
"""

from __future__ import annotations

import importlib
import sys
import tempfile
from pathlib import Path

__all__ = ["PROTO", "generate"]

HERE = Path(__file__).parent
PROTO_ROOT = HERE / "proto"
#: The published contract, relative to :data:`PROTO_ROOT` (its import path in other protos).
PROTO = "aixgo/v1/agent.proto"
OUT = HERE / "_pb"
SUFFIXES = ("_pb2.py", "_pb2.pyi")


def generate() -> dict[str, bytes]:
    """The generated files' names and contents, fresh from protoc."""
    # grpc_tools is a development dependency only: imported here, never at run time.
    protoc = importlib.import_module("grpc_tools.protoc")
    include = Path(importlib.import_module("grpc_tools").__file__ or "").parent / "_proto"
    with tempfile.TemporaryDirectory() as tmp:
        status = protoc.main(["protoc", f"-I{PROTO_ROOT}", f"-I{include}",
                              f"--python_out={tmp}", f"--pyi_out={tmp}", PROTO])  # fmt: skip
        if status != 0:
            raise RuntimeError(f"protoc failed on {PROTO} (status {status})")
        stem = Path(tmp) / PROTO.removesuffix(".proto")
        return {f"agent{s}": Path(f"{stem}{s}").read_bytes() for s in SUFFIXES}


def main(argv: list[str]) -> int:
    fresh = generate()
    stale = [n for n, data in fresh.items() if not (OUT / n).is_file()
             or (OUT / n).read_bytes() != data]  # fmt: skip
    if "--check" in argv:
        for name in stale:
            print(f"{OUT / name} differs from a fresh protoc run", file=sys.stderr)
        return 1 if stale else 0
    for name in stale:
        (OUT / name).write_bytes(fresh[name])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
