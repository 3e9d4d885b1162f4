"""schemathesis against the app's own OpenAPI schema, served by ``aixgo web`` as a real
process: no generated input, valid or not, gets a 5xx, and every answer (status, content
type, body, stream events) is one the schema documents. Bounded: a fixed number of examples
per operation and a time budget for the whole run.

Two of schemathesis's checks are left out, for reasons of the schema language and of
Starlette, not of the API: ``positive_data_acceptance`` (what makes a name or a message
acceptable, such as no control characters, or an agent's own input limits, is not expressible
in JSON Schema, so schema-valid requests are rightly refused with 422) and
``allow_header_conformance`` (Starlette answers a wrong method per route, so ``Allow`` names
the methods of one route, not of every route on the path).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from .servers import aixgo_web

EXCLUDED = "positive_data_acceptance,allow_header_conformance"


def test_no_generated_input_gets_a_server_error(tmp_path: Path) -> None:
    st = shutil.which("schemathesis")
    assert st, "schemathesis is not on PATH (it is in the workspace's dev group)"
    with aixgo_web(tmp_path, "--user", "fuzzer") as url:
        args = [st, "run", f"{url}/openapi.json", "--checks", "all",
                "--exclude-checks", EXCLUDED, "--max-examples", "20", "--max-time", "90",
                "--workers", "1", "--seed", "20", "--request-timeout", "30",
                "--no-color"]  # fmt: skip
        run = subprocess.run(
            args,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
    summary = run.stdout[-6000:]
    assert run.returncode == 0, summary
    # A run that tested nothing passes too: make sure every operation was exercised.
    assert "Tested: 11" in run.stdout, summary
