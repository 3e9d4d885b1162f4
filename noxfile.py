"""Every workflow of the repository, as ``uvx nox -s NAME``: tests, lint, typecheck, installed,
demo, bench, dist, docs."""

from __future__ import annotations

import os
from pathlib import Path

import nox

nox.options.default_venv_backend = "uv"
nox.options.sessions = ["tests", "lint", "typecheck"]

ROOT = Path(__file__).parent
# Every top-level aixgo-* folder with a pyproject.toml is a distribution: the workspace members
# and the umbrella `aixgo` (aixgo-umbrella/, which has no code and is not a uv workspace member).
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
    # The slowest tests are listed at the end, so a run that grows slow says where.
    session.run("pytest", "--ignore=tests/integration", "--durations=30", *session.posargs)


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


def _build_wheels(session: nox.Session, out: Path, folders: list[str]) -> None:
    """A wheel of every folder in ``folders`` into ``out``, emptied first."""
    session.run("rm", "-rf", str(out), external=True)
    for folder in folders:
        session.run("uv", "build", "--wheel", "--out-dir", str(out), folder, external=True)


@nox.session(venv_backend="none")
def dist(session: nox.Session) -> None:
    """Build the wheel of every distribution into dist/; then any composition installs from
    them: ``pip install --find-links dist 'aixgo[all]'``."""
    _build_wheels(session, ROOT / "dist", MEMBERS)


@nox.session
def docs(session: nox.Session) -> None:
    """Build the documentation site into site/ (mkdocs.yml) in strict mode: a broken link or
    a reference that does not resolve fails the build. ``-- serve`` to preview it."""
    _sync(session, "--only-group", "docs")
    # mkdocs-material's notice about its successor is not about this site; keep the log to ours.
    env = {"NO_MKDOCS_2_WARNING": "1"}
    if session.posargs[:1] == ["serve"]:
        session.run("mkdocs", "serve", "--strict", *session.posargs[1:], env=env)
        return
    session.run("mkdocs", "build", "--strict", "--clean", *session.posargs, env=env)


@nox.session
def installed(session: nox.Session) -> None:
    """Build real wheels, install them (not editable) with a third-party plugin into a fresh
    venv, and check that plugins are discovered through their entry points; then install
    ``aixgo`` alone and with each extra into fresh venvs of their own (tests/integration/
    test_extras.py) and check ``aixgo plugins`` shows exactly what each brings."""
    dist = Path(session.create_tmp()).resolve() / "dist"
    _build_wheels(session, dist, [*MEMBERS, THIRD_PARTY_PLUGIN, SQLITE_EXAMPLE])
    wheels = sorted(str(p) for p in dist.glob("*.whl"))
    session.install(*wheels, "pytest", "pytest-asyncio")
    session.run(
        "pytest",
        "tests/integration",
        "-p",
        "no:cacheprovider",
        *session.posargs,
        env={"AIXGO_INSTALLED_TEST": "1", "AIXGO_WHEELS": str(dist)},
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
