"""The proto is self-sufficient: a client that is not ours (Node.js, ``@grpc/grpc-js`` and
``@grpc/proto-loader`` installed from the npm registry into a temporary folder) calls a node
over mutual TLS with nothing but ``aixgo/v1/agent.proto``."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from aixgo_runtime_grpc import proto_path

from .certs import Certs
from .nodes import Node

CLIENT = r"""
const grpc = require("@grpc/grpc-js");
const loader = require("@grpc/proto-loader");
const fs = require("fs");
const [root, address, ca, cert, key] = process.argv.slice(2);
const def = loader.loadSync("aixgo/v1/agent.proto",
  {includeDirs: [root], keepCase: true, longs: String, defaults: true, oneofs: true});
const v1 = grpc.loadPackageDefinition(def).aixgo.v1;
const creds = grpc.credentials.createSsl(
  fs.readFileSync(ca), fs.readFileSync(key), fs.readFileSync(cert));
const client = new v1.AgentService(address, creds);
const out = (o) => console.log(JSON.stringify(o));
const message = {id: "js-" + Date.now(), role: "user", text: 'mark(tag="js")'};
client.Call({agent: "assistant", message, user: "node-js"}, (err, res) => {
  if (err) { out({error: err.code, details: err.details}); process.exit(1); }
  out({call: res.reply});
  const events = [];
  const stream = client.Stream(
    {agent: "assistant", message: {id: message.id + "-2", role: "user", text: "hello"},
     user: "node-js"});
  stream.on("data", (e) => events.push(e));
  stream.on("error", (e) => { out({error: e.code, details: e.details}); process.exit(1); });
  stream.on("end", () => {
    out({stream: events});
    client.Call({agent: "nobody", message, user: "node-js"}, (err2) => {
      out({unknown: err2.code, name: err2.metadata.get("aixgo-error")[0]});
      client.Tail({agent: "assistant", session: "0".repeat(32), user: "node-js"}, (err3) => {
        out({tail: err3.code});
        client.close();
      });
    });
  });
});
"""


@pytest.fixture(scope="module")
def grpc_js(tmp_path_factory: pytest.TempPathFactory) -> Path:
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        if os.environ.get("CI"):
            pytest.fail("node and npm are needed for the Node.js client test (.ci/run installs)")
        pytest.skip("node/npm not installed")
    folder = tmp_path_factory.mktemp("grpc-js")
    subprocess.run(
        [npm, "install", "--no-audit", "--no-fund", "--silent", "--prefix", str(folder),
         "@grpc/grpc-js@^1.10", "@grpc/proto-loader@^0.8"],
        check=True, timeout=600,
    )  # fmt: skip
    return folder


def test_a_node_js_client_calls_a_node_with_the_proto_alone(
    grpc_js: Path, mtls_node: Node, certs: Certs
) -> None:
    script = grpc_js / "client.js"
    script.write_text(CLIENT)
    root = proto_path().parents[2]  # the folder holding aixgo/v1/agent.proto
    done = subprocess.run(
        ["node", str(script), str(root), mtls_node.address, str(certs.ca),
         str(certs.client.cert), str(certs.client.key)],
        capture_output=True, text=True, timeout=120, cwd=grpc_js,
        env={**os.environ, "NODE_PATH": str(grpc_js / "node_modules")},
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    call, stream, unknown, tail = (line for line in lines)
    assert call["call"]["role"] == "assistant"
    assert call["call"]["text"] == "Results: marked js"
    assert call["call"]["seq"] == "4"  # input, tool request, tool result, reply
    kinds = [e["event"] for e in stream["stream"]]
    assert kinds[-1] == "reply"
    assert set(kinds[:-1]) <= {"delta"}
    reply = stream["stream"][-1]["reply"]
    deltas = "".join(e["delta"]["text"] for e in stream["stream"][:-1])
    assert deltas in ("", reply["message"]["text"])
    assert reply["message"]["text"] == "No tools to call."
    assert reply["message"]["seq"] == "6"
    assert unknown == {"unknown": 5, "name": "AgentNotFound"}  # NOT_FOUND
    assert tail == {"tail": 5}  # no such session for this user
