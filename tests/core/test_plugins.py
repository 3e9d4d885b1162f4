"""Plugin discovery through real entry points, and every error path of it."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from aixgo import plugins
from aixgo.cli import cli
from aixgo.errors import ConfigError, PluginError
from aixgo.options import Option
from aixgo.session import open_backend
from aixgo.session.memory import MemoryBackend
from click.testing import CliRunner

from .conftest import FakeDist

HOOK_HEAD = "from aixgo import hookimpl\n@hookimpl\ndef aixgo_register_backends(register):\n"
TOY_BACKEND = """
from aixgo.session.memory import MemoryBackend

class ToyBackend(MemoryBackend):
    pass
"""
TOY = (
    TOY_BACKEND
    + """
from aixgo import hookimpl

@hookimpl
def aixgo_register_backends(register):
    register("toy", "{module}:ToyBackend")
"""
)


def test_core_registers_memory_through_its_own_entry_point() -> None:
    (memory,) = [p for p in plugins.plugins() if p.name == "memory"]
    assert memory.distribution == "aixgo-core"
    assert memory.backends == ["memory"]
    assert isinstance(open_backend("memory://"), MemoryBackend)


def test_third_party_scheme_is_discovered_and_imported_lazily(fake_dist: FakeDist) -> None:
    plugin = TOY.replace(TOY_BACKEND, "").format(module="toy_impl")
    fake_dist("toy-dist", {"toy": "toy_plugin"}, {"toy_plugin": plugin, "toy_impl": TOY_BACKEND})
    assert "toy" in plugins.backend_schemes()
    assert "toy_impl" not in sys.modules  # the factory string is imported on first use only
    backend = open_backend("toy://anything")
    assert type(backend).__name__ == "ToyBackend"
    (info,) = [p for p in plugins.plugins() if p.name == "toy"]
    assert (info.distribution, info.version, info.backends) == ("toy-dist", "1.2.3", ["toy"])


def test_plugin_that_fails_to_import_names_its_distribution(fake_dist: FakeDist) -> None:
    fake_dist("broken-dist", {"broken": "broken_plugin"}, {"broken_plugin": "import nope_x\n"})
    with pytest.raises(PluginError, match=r"'broken' from distribution broken-dist 1\.2\.3"):
        plugins.backend_schemes()


def test_disable_plugins_skips_a_broken_plugin(
    fake_dist: FakeDist, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_dist("broken-dist", {"broken": "broken_plugin"}, {"broken_plugin": "raise SystemError\n"})
    monkeypatch.setenv("AIXGO_DISABLE_PLUGINS", "other, broken")
    plugins.reset()
    assert "memory" in plugins.backend_schemes()


def test_load_plugins_is_an_allow_list(
    fake_dist: FakeDist, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_dist("toy-dist", {"toy": "toy_plugin"}, {"toy_plugin": TOY.format(module="toy_plugin")})
    monkeypatch.setenv("AIXGO_LOAD_PLUGINS", "toy")
    plugins.reset()
    assert plugins.backend_schemes() == ["toy"]
    monkeypatch.setenv("AIXGO_LOAD_PLUGINS", "toy,ghost")
    plugins.reset()
    with pytest.raises(PluginError, match="ghost, which no installed distribution provides"):
        plugins.backend_schemes()


def test_a_misspelled_hook_names_the_distribution_and_the_valid_hooks(
    fake_dist: FakeDist,
) -> None:
    src = "from aixgo import hookimpl\n@hookimpl\ndef aixgo_register_backend(register):\n    pass\n"
    fake_dist("typo-dist", {"typo": "typo_plugin"}, {"typo_plugin": src})
    with pytest.raises(PluginError) as err:
        plugins.backend_schemes()
    text = str(err.value)
    assert "plugin 'typo' (distribution typo-dist 1.2.3)" in text
    assert "unknown hook(s) aixgo_register_backend (did you mean aixgo_register_backends?)" in text
    assert (
        "valid hooks: aixgo_register_agents, aixgo_register_audit_sinks, aixgo_register_backends"
        in text
    )
    assert "AIXGO_DISABLE_PLUGINS=typo" in text


def test_an_optional_hook_of_a_newer_aixgo_is_not_an_error(fake_dist: FakeDist) -> None:
    src = """
from aixgo import hookimpl
@hookimpl(optionalhook=True)
def aixgo_register_future_things(register):
    pass
"""
    fake_dist("newer-dist", {"newer": "newer_plugin"}, {"newer_plugin": src})
    assert "newer" in [p.name for p in plugins.plugins()]


def test_disable_plugins_also_blocks_an_in_process_plugin_of_that_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class Plugin:
        @staticmethod
        @plugins.hookspecs.hookimpl
        def aixgo_register_backends(register: plugins.hookspecs.BackendRegister) -> None:
            register("blockedmem", MemoryBackend)

    monkeypatch.setenv("AIXGO_DISABLE_PLUGINS", "blocked-plugin")
    plugins.reset()
    plugins.register_plugin(Plugin(), "blocked-plugin")
    try:
        assert "blockedmem" not in plugins.backend_schemes()
        assert "blocked-plugin" not in [p.name for p in plugins.plugins()]
    finally:
        plugins.unregister_plugin("blocked-plugin")
        plugins.reset()


def test_duplicate_scheme_names_both_distributions(fake_dist: FakeDist) -> None:
    fake_dist("one-dist", {"one": "one_plugin"}, {"one_plugin": TOY.format(module="one_plugin")})
    fake_dist("two-dist", {"two": "two_plugin"}, {"two_plugin": TOY.format(module="two_plugin")})
    with pytest.raises(PluginError, match="'toy' is registered twice") as err:
        plugins.backend_schemes()
    assert "one-dist" in str(err.value)
    assert "two-dist" in str(err.value)


def test_duplicate_plugin_names_across_distributions(fake_dist: FakeDist) -> None:
    fake_dist("one-dist", {"same": "one_plugin"}, {"one_plugin": TOY.format(module="one_plugin")})
    fake_dist("two-dist", {"same": "two_plugin"}, {"two_plugin": "\n"})
    with pytest.raises(PluginError, match="two plugins are named 'same'") as err:
        plugins.plugins()
    assert "one-dist" in str(err.value)
    assert "two-dist" in str(err.value)


def test_duplicate_of_a_builtin_scheme_is_refused(fake_dist: FakeDist) -> None:
    src = HOOK_HEAD + "    register('memory', lambda url: None)\n"
    fake_dist("evil-dist", {"evil": "evil_plugin"}, {"evil_plugin": src})
    with pytest.raises(PluginError, match="aixgo-core.*evil-dist|evil-dist.*aixgo-core"):
        open_backend("memory://")


@pytest.mark.parametrize(
    ("call", "error"),
    [
        ("register('Bad Scheme', 'x:y')", "backend scheme 'Bad Scheme' is invalid"),
        ("register('ok', 'no-colon')", "must look like 'module:attribute'"),
        ("register('ok', 42)", "must be callable"),
        ("raise RuntimeError('boom')", "failed in aixgo_register_backends: RuntimeError: boom"),
    ],
)
def test_bad_registrations_are_plugin_errors(fake_dist: FakeDist, call: str, error: str) -> None:
    src = HOOK_HEAD + f"    {call}\n"
    fake_dist("bad-dist", {"bad": "bad_plugin"}, {"bad_plugin": src})
    with pytest.raises(PluginError, match=error):
        plugins.backend_schemes()


def test_factory_problems_surface_with_the_plugin_and_a_redacted_url(fake_dist: FakeDist) -> None:
    src = """
from aixgo import hookimpl
def explode(url):
    raise RuntimeError("cannot connect")
@hookimpl
def aixgo_register_backends(register):
    register("boom", explode)
    register("notabackend", lambda url: object())
    register("missing", "f_plugin:Nope")
"""
    fake_dist("f-dist", {"f": "f_plugin"}, {"f_plugin": src})
    with pytest.raises(PluginError, match="could not open") as err:
        open_backend("boom://user:hunter2@host/db")
    assert "hunter2" not in str(err.value)
    assert "user:***@host" in str(err.value)
    with pytest.raises(PluginError, match="does not implement aixgo.session.Backend"):
        open_backend("notabackend://")
    with pytest.raises(PluginError, match="cannot be loaded from 'f_plugin:Nope'"):
        open_backend("missing://")


def test_unknown_scheme_lists_installed_and_names_the_package(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AIXGO_DISABLE_PLUGINS", "redis")  # as if it were not installed
    plugins.reset()
    with pytest.raises(PluginError) as err:
        open_backend("redis://localhost:6379")
    assert "pip install aixgo-backend-redis" in str(err.value)
    assert "memory://" in str(err.value)
    with pytest.raises(PluginError, match="'zzz'.*Installed schemes: .*memory://"):
        open_backend("zzz://x")


@pytest.mark.parametrize("url", ["", "memory", "/var/lib/x", "://x"])
def test_url_without_scheme_is_a_config_error(url: str) -> None:
    with pytest.raises(ConfigError, match="has no scheme"):
        open_backend(url)


def test_non_string_url_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="must be a string"):
        open_backend(42)  # type: ignore[arg-type]


def test_agents_and_options_are_collected_and_attributed(fake_dist: FakeDist) -> None:
    src = """
from aixgo import hookimpl
from aixgo.options import Option
class Echo:
    pass
@hookimpl
def aixgo_register_agents(register):
    register("echo", Echo)
@hookimpl
def aixgo_register_options(register):
    register(Option("retry_budget", default=3, description="Retries per call"))
"""
    fake_dist("agents-dist", {"agents": "agents_plugin"}, {"agents_plugin": src})
    assert "echo" in plugins.agent_types()
    factory, reg = plugins.agent_factory("echo")
    assert factory.__name__ == "Echo"
    assert reg.distribution == "agents-dist"
    assert plugins.options()["retry_budget"].default == 3
    (info,) = [p for p in plugins.plugins() if p.name == "agents"]
    assert (info.agents, info.options) == (["echo"], ["retry_budget"])


def test_missing_agent_type_names_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIXGO_DISABLE_PLUGINS", "react")  # as if it were not installed
    plugins.reset()
    with pytest.raises(PluginError, match="agent type 'react'.*pip install aixgo-agent-react"):
        plugins.agent_factory("react")


def test_option_names_are_validated() -> None:
    with pytest.raises(PluginError, match="option name 'Bad-Name' is invalid"):
        Option("Bad-Name")


def test_in_process_registration_and_removal() -> None:
    class Plugin:
        @staticmethod
        @plugins.hookspecs.hookimpl
        def aixgo_register_backends(register: plugins.hookspecs.BackendRegister) -> None:
            register("inproc", MemoryBackend)

    plugins.register_plugin(Plugin(), "inproc-plugin")
    try:
        assert isinstance(open_backend("inproc://"), MemoryBackend)
        (info,) = [p for p in plugins.plugins() if p.name == "inproc-plugin"]
        assert info.distribution == "in-process"
    finally:
        plugins.unregister_plugin("inproc-plugin")
    assert "inproc" not in plugins.backend_schemes()


def test_cli_version_and_plugins() -> None:
    runner = CliRunner()
    out = runner.invoke(cli, ["--version"])
    assert out.exit_code == 0
    assert "aixgo, version" in out.output
    out = runner.invoke(cli, ["plugins"])
    assert out.exit_code == 0
    assert "memory" in out.output
    assert "aixgo-core" in out.output
    data = {p["name"]: p for p in json.loads(runner.invoke(cli, ["plugins", "--json"]).output)}
    assert data["memory"]["distribution"] == "aixgo-core"
    assert data["memory"]["backends"] == ["memory"]


COMMANDS = """
import click
from aixgo import hookimpl

@hookimpl
def aixgo_register_commands(cli):
    @cli.group("{name}")
    def group():
        "Maintain {name} stores."

    @group.command("hello")
    @click.argument("who")
    def hello(who):
        "Say hello."
        click.echo(f"hello {{who}} from {name}")
"""


def test_plugins_add_commands_listed_by_help_and_plugins(fake_dist: FakeDist) -> None:
    fake_dist("cmd-dist", {"cmd": "cmd_plugin"}, {"cmd_plugin": COMMANDS.format(name="toyctl")})
    runner = CliRunner()
    out = runner.invoke(cli, ["toyctl", "hello", "bob"])
    assert (out.exit_code, out.output) == (0, "hello bob from toyctl\n"), out.output
    assert "toyctl" in runner.invoke(cli, ["--help"]).output
    assert "sessions" in runner.invoke(cli, ["--help"]).output
    table = runner.invoke(cli, ["plugins"]).output
    assert "command toyctl" in table
    data = {p["name"]: p for p in json.loads(runner.invoke(cli, ["plugins", "--json"]).output)}
    assert data["cmd"]["commands"] == ["toyctl"]
    assert data["memory"]["commands"] == []


def test_a_command_name_used_twice_names_both_plugins(fake_dist: FakeDist) -> None:
    for n in ("one", "two"):
        fake_dist(f"{n}-dist", {n: f"{n}_plugin"}, {f"{n}_plugin": COMMANDS.format(name="dup")})
    out = CliRunner().invoke(cli, ["dup", "hello", "x"])
    assert isinstance(out.exception, PluginError)
    text = str(out.exception)
    assert "command 'dup' is registered twice" in text
    assert "one-dist" in text and "two-dist" in text


def test_a_plugin_command_may_not_replace_a_core_command(fake_dist: FakeDist) -> None:
    src = COMMANDS.format(name="sessions")
    fake_dist("evil-dist", {"evil": "evil_plugin"}, {"evil_plugin": src})
    out = CliRunner().invoke(cli, ["sessions", "list"])
    assert isinstance(out.exception, PluginError)
    assert "command 'sessions' is registered twice: built into aixgo" in str(out.exception)
    assert "evil-dist" in str(out.exception)


def test_version_loads_no_plugin(fake_dist: FakeDist) -> None:
    import subprocess

    fake_dist("broken-dist", {"broken": "broken_plugin"}, {"broken_plugin": "import nope_x\n"})
    proc = subprocess.run(
        [sys.executable, "-c", "from aixgo.cli import main; main()", "--version"],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": ":".join(sys.path)},
        check=False,
    )
    assert (proc.returncode, proc.stderr) == (0, ""), proc.stderr
    assert "aixgo, version" in proc.stdout


def test_cli_reports_plugin_errors_on_one_line(fake_dist: FakeDist) -> None:
    import subprocess

    fake_dist("broken-dist", {"broken": "broken_plugin"}, {"broken_plugin": "import nope_x\n"})
    env_path = ":".join(sys.path)
    proc = subprocess.run(
        [sys.executable, "-c", "from aixgo.cli import main; main()", "plugins"],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": env_path},
        check=False,
    )
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: plugin 'broken' from distribution broken-dist")
    assert "Traceback" not in proc.stderr


def test_lazy_exports_import_on_first_use_and_keep_the_value(fake_dist: FakeDist) -> None:
    fake_dist(
        "lazy-dist",
        {},
        {
            "lazy_pkg": """
                from aixgo.plugins import lazy_exports
                __getattr__ = lazy_exports(__name__, {"Thing": ("lazy_impl", "Thing")})
            """,
            "lazy_impl": "class Thing:\n    pass\n",
        },
    )
    import lazy_pkg  # type: ignore[import-not-found]

    assert "lazy_impl" not in sys.modules
    thing = lazy_pkg.Thing
    assert thing is sys.modules["lazy_impl"].Thing
    assert vars(lazy_pkg)["Thing"] is thing  # kept: the next lookup is a plain attribute read
    with pytest.raises(AttributeError, match="'lazy_pkg' has no attribute 'Nope'"):
        _ = lazy_pkg.Nope


def test_loading_every_plugin_imports_no_client_library() -> None:
    """Every process that opens a store loads every plugin; none of them may pull in redis-py,
    psycopg, grpc or FastAPI until a URL or agent needs it (a fresh interpreter, so what
    other tests imported does not count)."""
    code = (
        "import sys; from aixgo import plugins; plugins.backend_schemes(); plugins.commands(); "
        "print(sorted(m for m in ('redis', 'psycopg', 'grpc', 'fastapi', 'openai') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stderr
