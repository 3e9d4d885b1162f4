"""Runtime options: one pydantic model, set from code, YAML or the environment; plugins add."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from aixgo import Runtime, hookimpl, plugins
from aixgo.errors import ConfigError, PluginError
from aixgo.options import Option
from aixgo.runtime_options import describe_options, options_model, resolve_options
from aixgo.session import SessionManager

CORE = (
    "audit, max_concurrent_calls, retention, retention_interval, session_manager, timeout, "
    "tracing, turn_lease_ttl, turn_policy"
)


class RetryPlugin:
    @hookimpl
    def aixgo_register_options(self, register):  # type: ignore[no-untyped-def]
        register(Option("retry_budget", default=3, description="Retries per call", type=int))
        register(Option("flavour", default="plain"))


@pytest.fixture
def retry_plugin() -> Iterator[None]:
    plugins.register_plugin(RetryPlugin(), "retry", "aixgo-retry")
    yield
    plugins.unregister_plugin("retry")


def test_core_defaults() -> None:
    opts = resolve_options({}, environ={})
    assert (opts.session_manager, opts.timeout, opts.max_concurrent_calls, opts.tracing) == (
        None,
        None,
        None,
        True,
    )
    assert (opts.turn_policy, opts.turn_lease_ttl) == ("queue", 30.0)
    assert [row[0] for row in describe_options()] == CORE.split(", ")


@pytest.mark.parametrize(
    ("options", "names"),
    [
        ({"timout": 3}, "unknown runtime option 'timout' (keyword argument)"),
        ({"timeout": "soon"}, "runtime option 'timeout' from keyword argument is invalid"),
        ({"timeout": -1}, "greater than 0"),
        ({"max_concurrent_calls": 0}, "'max_concurrent_calls'"),
        ({"max_concurrent_calls": 2.5}, "'max_concurrent_calls'"),
        ({"tracing": "maybe"}, "'tracing'"),
        ({"session_manager": 42}, "'session_manager'"),
        ({"turn_policy": "wait"}, "'turn_policy'"),
        ({"turn_lease_ttl": 0}, "'turn_lease_ttl'"),
        ({"turn_lease_ttl": float("inf")}, "'turn_lease_ttl'"),
        ({"turn_lease_ttl": "soon"}, "'turn_lease_ttl'"),
    ],
)
def test_unknown_or_ill_typed_options_name_the_option_and_list_the_valid_ones(
    options: dict[str, object], names: str
) -> None:
    with pytest.raises(ConfigError, match="valid options: " + CORE) as info:
        Runtime(**options)
    assert names in str(info.value)


def test_environment_sets_options_and_code_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIXGO_RUNTIME_TIMEOUT", "12.5")
    monkeypatch.setenv("AIXGO_RUNTIME_TRACING", "false")
    monkeypatch.setenv("AIXGO_RUNTIME_MAX_CONCURRENT_CALLS", "")  # empty means unset
    rt = Runtime()
    assert rt.options.timeout == 12.5 and rt.options.tracing is False
    assert Runtime(timeout=1).options.timeout == 1.0
    file = {"timeout": (99, "aixgo.yaml: runtime.timeout (line 3)"), "tracing": (True, "f")}
    rt = Runtime.from_options(file=file)
    assert rt.options.timeout == 12.5  # the environment beats the file


def test_bad_environment_variables_are_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIXGO_RUNTIME_TIMEOUT", "soon")
    with pytest.raises(ConfigError, match="environment variable AIXGO_RUNTIME_TIMEOUT"):
        Runtime()
    monkeypatch.delenv("AIXGO_RUNTIME_TIMEOUT")
    monkeypatch.setenv("AIXGO_RUNTIME_TIMOUT", "3")
    with pytest.raises(ConfigError, match="'timout' .environment variable AIXGO_RUNTIME_TIMOUT"):
        Runtime()


def test_file_errors_say_where() -> None:
    where = "aixgo.yaml: runtime.timeout (line 3)"
    with pytest.raises(ConfigError, match=r"from aixgo.yaml: runtime.timeout \(line 3\)"):
        resolve_options({}, file={"timeout": ("x", where)}, environ={})
    with pytest.raises(ConfigError, match=r"'speed' \(aixgo.yaml: runtime.speed"):
        resolve_options({}, file={"speed": (1, "aixgo.yaml: runtime.speed (line 4)")}, environ={})


def test_session_manager_accepts_a_manager_or_a_url() -> None:
    assert Runtime(session_manager="memory://").options.session_manager == "memory://"
    mgr = SessionManager("memory://")
    assert Runtime(mgr).options.session_manager is mgr


@pytest.mark.usefixtures("retry_plugin")
def test_plugins_add_options(monkeypatch: pytest.MonkeyPatch) -> None:
    rt = Runtime()
    assert rt.options.get("retry_budget") == 3 and rt.options.get("flavour") == "plain"
    assert Runtime(retry_budget="5").options.get("retry_budget") == 5
    monkeypatch.setenv("AIXGO_RUNTIME_FLAVOUR", "spicy")
    assert Runtime().options.get("flavour") == "spicy"
    with pytest.raises(ConfigError, match="'retry_budget'.*Retries per call.*flavour, max_conc"):
        Runtime(retry_budget="many")
    with pytest.raises(ConfigError, match="unknown runtime option 'nope'"):
        rt.options.get("nope")
    assert "retry_budget" in options_model().model_fields


def test_a_plugin_may_not_take_a_core_option_name() -> None:
    class Clash:
        @hookimpl
        def aixgo_register_options(self, register):  # type: ignore[no-untyped-def]
            register(Option("timeout", default=5))

    plugins.register_plugin(Clash(), "clash")
    try:
        with pytest.raises(PluginError, match="'timeout', which is a core runtime option"):
            Runtime()
    finally:
        plugins.unregister_plugin("clash")


def test_an_explicit_none_overrides_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIXGO_RUNTIME_TIMEOUT", "5")
    assert Runtime().options.timeout == 5.0
    assert Runtime(timeout=None).options.timeout is None


def test_turn_options_come_from_code_yaml_and_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert Runtime(turn_policy="reject", turn_lease_ttl=2).options.turn_lease_ttl == 2.0
    path = tmp_path / "aixgo.yaml"
    path.write_text("session: memory://\nruntime:\n  turn_policy: reject\n  turn_lease_ttl: 5\n")
    rt = Runtime.from_config(path)
    assert (rt.options.turn_policy, rt.options.turn_lease_ttl) == ("reject", 5.0)
    monkeypatch.setenv("AIXGO_RUNTIME_TURN_POLICY", "queue")
    assert Runtime.from_config(path).options.turn_policy == "queue"
    monkeypatch.delenv("AIXGO_RUNTIME_TURN_POLICY")
    path.write_text("runtime:\n  turn_policy: later\n")
    with pytest.raises(ConfigError, match=r"aixgo.yaml: runtime.turn_policy \(line 2\)"):
        Runtime.from_config(path)
