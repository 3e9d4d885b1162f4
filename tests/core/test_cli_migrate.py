"""``aixgo sessions migrate``: backends without a schema, and a third-party one with a schema.

PostgreSQL's own migrations are tested in tests/backend_postgres/test_cli_migrate.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from aixgo.cli import cli
from aixgo.errors import ConfigError
from aixgo.session import Migratable, MigrationReport, open_backend
from click.testing import CliRunner, Result

from .conftest import FakeDist


def aixgo(*args: str) -> Result:
    return CliRunner().invoke(cli, ["sessions", *args], catch_exceptions=True)


# A store with a schema: its version lives in the JSON file the URL names, so the test can
# read what the CLI did (migrated? opened the backend? closed it?).
VERSIONED = """
import json
from pathlib import Path
from aixgo import hookimpl
from aixgo.errors import ConfigError
from aixgo.session import MigrationReport
from aixgo.session.memory import MemoryBackend

LATEST = 3

class VersionedBackend(MemoryBackend):
    def __init__(self, url):
        super().__init__(url)
        self.path = Path(url.partition("://")[2])

    def _state(self):
        return json.loads(self.path.read_text()) if self.path.exists() else {"events": []}

    def _save(self, state, event):
        state["events"].append(event)
        self.path.write_text(json.dumps(state))

    async def open(self):
        self._save(self._state(), "open")

    async def close(self):
        self._save(self._state(), "close")
        await super().close()

    async def migrate(self, *, check=False):
        state = self._state()
        found = state.get("version")
        if found is not None and found > LATEST:
            raise ConfigError(f"store {self.path.name} is at version {found}, newer than {LATEST}")
        report = MigrationReport(f"store {self.path.name}", found=found, latest=LATEST)
        if check or found == LATEST:
            return report
        state["version"] = LATEST
        self._save(state, "migrate")
        return MigrationReport(report.target, found=found, latest=LATEST,
                               applied=tuple(range((found or 0) + 1, LATEST + 1)))

@hookimpl
def aixgo_register_backends(register):
    register("versioned", VersionedBackend)
"""


@pytest.fixture
def versioned(fake_dist: FakeDist, tmp_path: Path) -> Path:
    fake_dist("versioned-dist", {"versioned": "versioned_plugin"}, {"versioned_plugin": VERSIONED})
    return tmp_path / "state.json"


def _state(path: Path) -> dict[str, object]:
    return dict(json.loads(path.read_text()))


def test_a_third_party_schema_is_checked_migrated_and_refused_when_newer(
    versioned: Path,
) -> None:
    url = f"versioned://{versioned}"
    assert isinstance(open_backend(url), Migratable)

    due = aixgo("migrate", "--url", url, "--check")
    assert due.exit_code == 1, (due.output, due.exception)
    assert due.output == (
        f"store {versioned.name} has no schema yet; version 3 is due; "
        "run `aixgo sessions migrate` to apply it\n"
    )
    # --check changed nothing, and the CLI never opened the backend (opening may migrate);
    # it closed it.
    assert _state(versioned) == {"events": ["close"]}

    done = aixgo("migrate", "--url", url, "--json")
    assert done.exit_code == 0, (done.output, done.exception)
    assert json.loads(done.stdout) == {
        "url": url, "migratable": True, "target": f"store {versioned.name}", "found": None,
        "version": 3, "latest": 3, "applied": [1, 2, 3], "pending": False,
        "message": f"store {versioned.name}: applied migration(s) 1, 2, 3; now at version 3",
    }  # fmt: skip
    ok = aixgo("--url", url, "migrate", "--check")
    assert (ok.exit_code, ok.output) == (0, f"store {versioned.name} is at version 3, up to date\n")
    assert _state(versioned)["events"] == ["close", "migrate", "close", "close"]

    versioned.write_text(json.dumps({"version": 4, "events": []}))
    for args in ((), ("--check",)):
        refused = aixgo("migrate", "--url", url, *args)
        assert refused.exit_code == 1 and isinstance(refused.exception, ConfigError)
        assert "newer than 3" in str(refused.exception)
    assert _state(versioned) == {"version": 4, "events": ["close", "close"]}


@pytest.mark.parametrize("check", [False, True])
def test_stores_without_a_schema_have_nothing_to_migrate(
    tmp_path: Path, redis_url: str, check: bool
) -> None:
    store = tmp_path / "store"
    for url in ("memory://", f"file://{store}", redis_url):
        assert not isinstance(open_backend(url), Migratable)
        flag = ("--check",) if check else ()
        result = aixgo("migrate", "--url", url, *flag)
        scheme = url.partition("://")[0]
        assert result.exit_code == 0, (url, result.output, result.exception)
        assert result.output.startswith(f"{scheme}:// has no schema to migrate (")
        data = json.loads(aixgo("migrate", "--url", url, "--json", *flag).stdout)
        assert (data["migratable"], data["pending"]) == (False, False)
        assert data["message"].startswith(f"{scheme}:// has no schema to migrate")
    assert not store.exists(), "nothing to migrate means nothing written"


def test_no_password_is_printed() -> None:
    result = aixgo("migrate", "--url", "redis://:hunter2@127.0.0.1:1/0")
    assert result.exit_code == 0
    assert "hunter2" not in result.output and "redis://:***@127.0.0.1:1/0" in result.output


def test_report_lines() -> None:
    at = MigrationReport("db", found=2, latest=3)
    assert (at.pending, at.version, str(at)) == (True, 2, "db is at version 2; version 3 is due")
    with pytest.raises(AttributeError):
        at.found = 3  # type: ignore[misc]
