"""Every workflow of the repository: ``uvx nox -s tests lint typecheck installed demo``."""

from __future__ import annotations

import os
from pathlib import Path

import nox

nox.options.default_venv_backend = "uv"
nox.options.sessions = ["tests", "lint", "typecheck"]

ROOT = Path(__file__).parent
# Every top-level aixgo-* folder with a pyproject.toml is a distribution of the workspace.
MEMBERS = sorted(p.parent.name for p in ROOT.glob("aixgo-*/pyproject.toml"))
THIRD_PARTY_PLUGIN = "tests/integration/toy-plugin"
SQLITE_EXAMPLE = "examples/backend-sqlite"


def _sync(session: nox.Session, *how: str) -> None:
    """Install into the session's venv exactly what uv.lock pins: by default every workspace
    package (editable) and the dev tools."""
    session.run_install(
        "uv",
        "sync",
        "--locked",
        *(how or ("--all-packages", "--group", "dev")),
        env={"UV_PROJECT_ENVIRONMENT": session.virtualenv.location},
    )


@nox.session
def tests(session: nox.Session) -> None:
    """The whole test suite against the workspace sources (real Redis/PostgreSQL where used)."""
    _sync(session)
    session.run("pytest", "--ignore=tests/integration", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff: lint and formatting."""
    _sync(session, "--only-group", "dev")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict over every package."""
    _sync(session)
    session.run("mypy")
    for example in sorted(ROOT.glob("examples/*/main.py")):
        session.run("mypy", str(example.relative_to(ROOT)))
    session.run("mypy", f"{SQLITE_EXAMPLE}/src")


@nox.session
def installed(session: nox.Session) -> None:
    """Build real wheels, install them (not editable) with a third-party plugin into a fresh
    venv, and check that plugins are discovered through their entry points."""
    dist = Path(session.create_tmp()).resolve() / "dist"
    session.run("rm", "-rf", str(dist), external=True)
    for member in [*MEMBERS, THIRD_PARTY_PLUGIN, SQLITE_EXAMPLE]:
        session.run("uv", "build", "--wheel", "--out-dir", str(dist), member, external=True)
    wheels = sorted(str(p) for p in dist.glob("*.whl"))
    session.install(*wheels, "pytest", "pytest-asyncio")
    session.run(
        "pytest",
        "tests/integration",
        "-p",
        "no:cacheprovider",
        *session.posargs,
        env={"AIXGO_INSTALLED_TEST": "1"},
    )


@nox.session
def demo(session: nox.Session) -> None:
    """Run the examples on the embedded default store (a throwaway folder)."""
    _sync(session)
    home = Path(session.create_tmp()).resolve() / "aixgo-home"
    session.run("rm", "-rf", str(home), external=True)
    env = {"AIXGO_HOME": str(home), "AIXGO_SESSION_URL": os.environ.get("AIXGO_SESSION_URL", "")}
    for example in sorted((ROOT / "examples").glob("*/main.py")):
        session.run("python", str(example), env=env)


BENCH_PEERS = [
    "openai-agents",
    "langchain-community",
    "google-adk[db]",
    "aiosqlite",
    "redis[hiredis]",
    "psycopg[binary]",
    "matplotlib",
]


@nox.session
def bench(session: nox.Session) -> None:
    """Speed of every backend beside the raw floors and the peers, in one run; ``-- --quick``
    for a short run (~2-3 minutes), ``-- --publish`` to refresh docs/performance.md."""
    _sync(session)
    # Peers are installed here only, never as dependencies of our packages.
    session.install(*BENCH_PEERS)
    session.run("python", "bench/run.py", *session.posargs)
