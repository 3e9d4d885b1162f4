"""Plugin discovery: the only module that calls hooks.

Plugins are found through the ``aixgo`` entry-point group and loaded lazily, on the first call
that needs them. A plugin that fails to import is an error naming its distribution, never a
silent skip. Two environment variables choose what loads, by entry-point name (comma-separated):

* ``AIXGO_DISABLE_PLUGINS``: never load these;
* ``AIXGO_LOAD_PLUGINS``: load only these (include ``memory`` to keep ``memory://``).

Both lists block names in pluggy (``set_blocked``), so a blocked plugin is never imported,
and a plugin registered in-process under a blocked name is skipped too.

Each registration is recorded with the plugin and distribution that made it, so a scheme, agent
type, option or command registered twice is an error naming both. A hook implementation with
no matching spec (a misspelled hook name) is an error naming its distribution, not a silent
no-op (mark one meant for a newer aixgo ``@hookimpl(optionalhook=True)``).
"""

from __future__ import annotations

import difflib
import importlib
import logging
import os
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from typing import TYPE_CHECKING, Any, cast

import pluggy

from aixgo import hookspecs
from aixgo.errors import PluginError
from aixgo.options import Option

if TYPE_CHECKING:
    import click

__all__ = [
    "ENTRY_POINT_GROUP",
    "PluginInfo",
    "Registration",
    "agent_factory",
    "agent_types",
    "audit_sink_factory",
    "backend_factory",
    "backend_schemes",
    "commands",
    "key_provider",
    "key_provider_schemes",
    "lazy_exports",
    "options",
    "plugins",
    "register_plugin",
    "reset",
    "unregister_plugin",
]

ENTRY_POINT_GROUP = "aixgo"
_SCHEME = re.compile(r"[a-z][a-z0-9+.\-]{0,31}")
_AGENT = re.compile(r"[A-Za-z][A-Za-z0-9_.\-]{0,63}")
_log = logging.getLogger("aixgo.plugins")


@dataclass(frozen=True, slots=True)
class Registration:
    """One thing a plugin registered: a backend scheme, an agent type, an option or a
    command of the ``aixgo`` command line."""

    key: str
    target: Any
    plugin: str
    distribution: str

    def origin(self) -> str:
        return f"plugin {self.plugin!r} (distribution {self.distribution})"


@dataclass(slots=True)
class PluginInfo:
    """A loaded plugin and what it registered, as ``aixgo plugins`` shows it."""

    name: str
    distribution: str
    version: str
    backends: list[str] = field(default_factory=list)
    agents: list[str] = field(default_factory=list)
    options: list[str] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)
    key_providers: list[str] = field(default_factory=list)
    audit_sinks: list[str] = field(default_factory=list)


@dataclass(slots=True)
class _State:
    pm: pluggy.PluginManager
    dists: dict[str, tuple[str, str]] = field(default_factory=dict)  # plugin -> (dist, version)
    tables: dict[str, dict[str, Registration]] = field(default_factory=dict)  # kind -> table


_lock = threading.RLock()
_state: _State | None = None
_extra: list[tuple[object, str, str]] = []  # plugins registered in-process: (obj, name, dist)


def _names(var: str) -> set[str] | None:
    raw = os.environ.get(var)
    if raw is None:
        return None
    return {n.strip() for n in raw.split(",") if n.strip()}


def _dist_of(ep: EntryPoint) -> tuple[str, str]:
    dist = ep.dist
    if dist is None:  # pragma: no cover - entry points always come from a distribution
        return "unknown distribution", "?"
    return dist.metadata["Name"] or dist.name, dist.version


def _load() -> _State:
    global _state
    with _lock:
        if _state is not None:
            return _state
        pm = pluggy.PluginManager(ENTRY_POINT_GROUP)
        pm.add_hookspecs(hookspecs)
        state = _State(pm=pm)
        eps = sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name)
        found = {ep.name for ep in eps}
        _block(pm, found)
        for ep in eps:
            if pm.is_blocked(ep.name):
                _log.debug("plugin %r is blocked by AIXGO_*_PLUGINS; not loaded", ep.name)
                continue
            dist, version = _dist_of(ep)
            try:
                obj = ep.load()
            except Exception as exc:
                raise PluginError(
                    f"plugin {ep.name!r} from distribution {dist} {version} failed to import "
                    f"({type(exc).__name__}: {exc}); reinstall or upgrade it, or skip it with "
                    f"AIXGO_DISABLE_PLUGINS={ep.name}"
                ) from exc
            _add(state, obj, ep.name, dist, version)
        for obj, name, dist in _extra:
            _add(state, obj, name, dist, "")
        _state = state
        return state


def _block(pm: pluggy.PluginManager, found: set[str]) -> None:
    """Block what ``AIXGO_DISABLE_PLUGINS`` names, and with ``AIXGO_LOAD_PLUGINS`` every
    installed plugin it does not name (refusing names no distribution provides)."""
    for name in _names("AIXGO_DISABLE_PLUGINS") or ():
        pm.set_blocked(name)
    allowed = _names("AIXGO_LOAD_PLUGINS")
    if allowed is None:
        return
    if missing := sorted(allowed - found):
        raise PluginError(
            f"AIXGO_LOAD_PLUGINS names {', '.join(missing)}, which no installed distribution "
            f"provides; installed plugins: {', '.join(sorted(found)) or 'none'}"
        )
    for name in found - allowed:
        pm.set_blocked(name)


def _add(state: _State, obj: object, name: str, dist: str, version: str) -> None:
    if name in state.dists:
        other = state.dists[name][0]
        raise PluginError(
            f"two plugins are named {name!r}: one from {other}, one from {dist}; "
            f"uninstall one, or skip one with AIXGO_DISABLE_PLUGINS={name}"
        )
    try:
        registered = state.pm.register(obj, name=name)
    except (ValueError, pluggy.PluginValidationError) as exc:
        raise PluginError(f"plugin {name!r} from {dist} cannot be registered: {exc}") from exc
    if registered is None:  # blocked by name
        _log.debug("plugin %r is blocked by AIXGO_*_PLUGINS; not registered", name)
        return
    try:
        state.pm.check_pending()
    except pluggy.PluginValidationError:
        message = _unknown_hooks(state.pm, obj, name, f"{dist} {version}".strip())
        state.pm.unregister(name=name)
        raise PluginError(message) from None
    state.dists[name] = (dist, version)
    _log.debug("loaded plugin %r from %s %s", name, dist, version)


def _unknown_hooks(pm: pluggy.PluginManager, plugin: object, name: str, dist: str) -> str:
    """The error for ``plugin`` implementing hooks no spec declares: which, and the valid
    names (a misspelling is the usual cause)."""
    valid = sorted(n for n, hc in vars(pm.hook).items() if not n.startswith("_") and hc.has_spec())
    unknown = sorted(hc.name for hc in pm.get_hookcallers(plugin) or () if not hc.has_spec())
    hints = [
        f" (did you mean {close[0]}?)" if (close := difflib.get_close_matches(u, valid, 1)) else ""
        for u in unknown
    ]
    listed = ", ".join(u + h for u, h in zip(unknown, hints, strict=True))
    return (
        f"plugin {name!r} (distribution {dist}) implements unknown hook(s) {listed}; valid "
        f"hooks: {', '.join(valid)}. Fix or upgrade the distribution, or skip it with "
        f"AIXGO_DISABLE_PLUGINS={name}"
    )


def register_plugin(plugin: object, name: str, distribution: str = "in-process") -> None:
    """Register a plugin object (a module or an instance with ``@hookimpl`` methods) without
    an entry point, e.g. from an application or a test. Registrations are recomputed."""
    with _lock:
        if _state is not None:
            _add(_state, plugin, name, distribution, "")
            _invalidate(_state)
        _extra.append((plugin, name, distribution))


def unregister_plugin(name: str) -> None:
    """Undo :func:`register_plugin`."""
    with _lock:
        _extra[:] = [e for e in _extra if e[1] != name]
        if _state is not None and name in _state.dists:
            _state.pm.unregister(name=name)
            del _state.dists[name]
            _invalidate(_state)


def reset() -> None:
    """Forget everything loaded, so the next call discovers plugins again (after installing
    one, or changing ``AIXGO_*_PLUGINS``). In-process registrations are kept."""
    global _state
    with _lock:
        _state = None


def _invalidate(state: _State) -> None:
    state.tables.clear()


def _collect(state: _State, hook: _Hook) -> dict[str, Registration]:
    """Call ``hook`` on each plugin, recording who registered what. Implementations are
    called one by one (not through a single hook call) so that each registration is
    attributed to its plugin."""
    table: dict[str, Registration] = {}
    caller = getattr(state.pm.hook, hook.name)
    for impl in reversed(caller.get_hookimpls()):  # registration order
        plugin = impl.plugin_name
        dist = state.dists.get(plugin, ("unknown distribution", ""))[0]

        def register(*args: Any, _plugin: str = plugin, _dist: str = dist) -> None:
            key, target = hook.entry(*args)
            if key in table:
                first = table[key]
                raise PluginError(
                    f"{hook.label} {key!r} is registered twice: by {first.origin()} and by "
                    f"plugin {_plugin!r} (distribution {_dist}); uninstall one, or skip one "
                    f"with AIXGO_DISABLE_PLUGINS"
                )
            table[key] = Registration(key, target, _plugin, _dist)

        try:
            hook.call(impl, register)
        except PluginError:
            raise
        except Exception as exc:
            raise PluginError(
                f"plugin {plugin!r} (distribution {dist}) failed in {hook.name}: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
    return table


def _pass_register(impl: pluggy.HookImpl, register: Callable[..., None]) -> None:
    kwargs = {"register": register}
    impl.function(**{a: kwargs[a] for a in impl.argnames if a in kwargs})


def _pass_group(impl: pluggy.HookImpl, register: Callable[..., None]) -> None:
    """Give the plugin a group of its own, then register what it added: so a command name
    used twice is caught and attributed instead of silently replacing the first."""
    import click  # the command line's dependency, loaded only when commands are wanted

    group = click.Group("aixgo")
    kwargs = {"cli": group}
    impl.function(**{a: kwargs[a] for a in impl.argnames if a in kwargs})
    for name, command in group.commands.items():
        register(name, command)


def _backend_entry(scheme: object, factory: object = None) -> tuple[str, Any]:
    if not isinstance(scheme, str) or not _SCHEME.fullmatch(scheme):
        raise PluginError(
            f"backend scheme {scheme!r} is invalid: use lowercase letters, digits, + - . "
            "without '://', e.g. 'redis'"
        )
    _check_factory(factory, f"backend {scheme!r}")
    return scheme, factory


def _audit_sink_entry(scheme: object, factory: object = None) -> tuple[str, Any]:
    if not isinstance(scheme, str) or not _SCHEME.fullmatch(scheme):
        raise PluginError(
            f"audit sink scheme {scheme!r} is invalid: use lowercase letters, digits, + - . "
            "without '://', e.g. 'postgresql'"
        )
    _check_factory(factory, f"audit sink {scheme!r}")
    return scheme, factory


def _agent_entry(name: object, factory: object = None) -> tuple[str, Any]:
    if not isinstance(name, str) or not _AGENT.fullmatch(name):
        raise PluginError(f"agent type {name!r} is invalid: use letters, digits, _ . -")
    _check_factory(factory, f"agent type {name!r}")
    return name, factory


def _key_provider_entry(scheme: object, provider: object = None) -> tuple[str, Any]:
    if not isinstance(scheme, str) or not _SCHEME.fullmatch(scheme):
        raise PluginError(f"key provider scheme {scheme!r} is invalid: use lowercase letters")
    _check_factory(provider, f"key provider {scheme!r}")
    return scheme, provider


def _option_entry(option: object) -> tuple[str, Any]:
    if not isinstance(option, Option):
        raise PluginError(f"register() takes an aixgo.options.Option, not {option!r}")
    return option.name, option


def _command_entry(name: str, command: click.Command) -> tuple[str, Any]:
    return name, command


def _check_factory(factory: object, what: str) -> None:
    if isinstance(factory, str):
        if factory.count(":") != 1 or not all(factory.split(":")):
            raise PluginError(f"{what}: factory {factory!r} must look like 'module:attribute'")
    elif not callable(factory):
        raise PluginError(f"{what}: factory must be callable or a 'module:attribute' string")


@dataclass(frozen=True, slots=True)
class _Hook:
    name: str
    entry: Callable[..., tuple[str, Any]]  # validates one registration: (key, target)
    label: str
    call: Callable[[pluggy.HookImpl, Callable[..., None]], None]


_HOOKS: dict[str, _Hook] = {
    "backends": _Hook("aixgo_register_backends", _backend_entry, "backend scheme", _pass_register),
    "agents": _Hook("aixgo_register_agents", _agent_entry, "agent type", _pass_register),
    "options": _Hook("aixgo_register_options", _option_entry, "option", _pass_register),
    "commands": _Hook("aixgo_register_commands", _command_entry, "command", _pass_group),
    "key_providers": _Hook(
        "aixgo_register_key_providers", _key_provider_entry, "key provider", _pass_register
    ),
    "audit_sinks": _Hook(
        "aixgo_register_audit_sinks", _audit_sink_entry, "audit sink scheme", _pass_register
    ),
}


def _table(kind: str) -> dict[str, Registration]:
    with _lock:
        state = _load()
        if kind not in state.tables:
            state.tables[kind] = _collect(state, _HOOKS[kind])
        return state.tables[kind]


def _backends() -> dict[str, Registration]:
    return _table("backends")


def _agents() -> dict[str, Registration]:
    return _table("agents")


def options() -> dict[str, Option]:
    """Every option plugins registered, by name."""
    return {k: r.target for k, r in _table("options").items()}


def commands() -> dict[str, Registration]:
    """The subcommands plugins add to ``aixgo``, by name; each target is a click command."""
    return _table("commands")


def key_provider(scheme: str) -> Callable[[str], bytes] | None:
    """The key provider a plugin registered for ``scheme`` (see :mod:`aixgo.crypto`), or
    ``None``."""
    reg = _table("key_providers").get(scheme)
    return None if reg is None else _resolve(reg, f"key provider {scheme!r}")


def key_provider_schemes() -> list[str]:
    """The key reference schemes plugins provide, sorted."""
    return sorted(_table("key_providers"))


def backend_schemes() -> list[str]:
    """The URL schemes installed plugins provide, sorted."""
    return sorted(_backends())


def agent_types() -> list[str]:
    """The agent types installed plugins provide, sorted."""
    return sorted(_agents())


def _resolve(reg: Registration, what: str) -> Callable[..., Any]:
    target = reg.target
    if isinstance(target, str):
        module_name, attr = target.split(":")
        try:
            obj = importlib.import_module(module_name)
            for part in attr.split("."):
                obj = getattr(obj, part)
        except Exception as exc:
            raise PluginError(
                f"{what} from {reg.origin()} cannot be loaded from {target!r} "
                f"({type(exc).__name__}: {exc}); reinstall the distribution"
            ) from exc
        if not callable(obj):
            raise PluginError(f"{what} from {reg.origin()}: {target!r} is not callable")
        return cast("Callable[..., Any]", obj)
    return cast("Callable[..., Any]", target)


def backend_factory(scheme: str) -> tuple[Callable[[str], Any], Registration]:
    """The factory registered for ``scheme`` and who registered it. Raises
    :class:`PluginError` (listing what is installed) when no plugin provides the scheme."""
    table = _backends()
    reg = table.get(scheme)
    if reg is None:
        raise PluginError(_unknown_scheme_message(scheme, table))
    return _resolve(reg, f"backend {scheme!r}"), reg


def agent_factory(name: str) -> tuple[Callable[..., Any], Registration]:
    """The factory registered for agent type ``name`` and who registered it."""
    table = _agents()
    reg = table.get(name)
    if reg is None:
        installed = ", ".join(sorted(table)) or "none"
        hint = " (pip install aixgo-agent-react)" if name == "react" else ""
        raise PluginError(f"no plugin provides agent type {name!r}{hint}; installed: {installed}")
    return _resolve(reg, f"agent type {name!r}"), reg


def audit_sink_factory(scheme: str) -> tuple[Callable[..., Any], Registration]:
    """The audit sink factory registered for ``scheme`` and who registered it."""
    table = _table("audit_sinks")
    reg = table.get(scheme)
    if reg is None:
        installed = ", ".join(f"{s}://" for s in sorted(table)) or "none"
        hint = f"; install it with: pip install {_KNOWN[scheme]}" if scheme in _KNOWN else ""
        raise PluginError(
            f"no installed plugin provides the audit sink scheme {scheme!r}{hint}. "
            f"Installed audit sink schemes: {installed}"
        )
    return _resolve(reg, f"audit sink {scheme!r}"), reg


# Well-known schemes and the distribution that provides each.
_KNOWN = {
    "file": "aixgo-backend-file",
    "redis": "aixgo-backend-redis",
    "rediss": "aixgo-backend-redis",
    "unix": "aixgo-backend-redis",
    "redis+cluster": "aixgo-backend-redis",
    "postgresql": "aixgo-backend-postgres",
    "postgres": "aixgo-backend-postgres",
}


def _unknown_scheme_message(scheme: str, table: dict[str, Registration]) -> str:
    installed = ", ".join(f"{s}://" for s in sorted(table)) or "none"
    msg = f"no installed plugin provides the URL scheme {scheme!r}"
    if scheme in _KNOWN:
        msg += f"; install it with: pip install {_KNOWN[scheme]}"
    return msg + f". Installed schemes: {installed}"


def lazy_exports(module: str, names: dict[str, tuple[str, str]]) -> Callable[[str], Any]:
    """A module ``__getattr__`` (PEP 562) importing each of ``names`` on first use.

    ``names`` maps an attribute to ``(module, attribute)`` where it is defined. Loading
    plugins imports every plugin's package, so a package whose ``__init__`` imported its
    client library would make every process that opens any store pay for it::

        __getattr__ = lazy_exports(__name__, {"RedisBackend": ("mypkg.backend", "RedisBackend")})

    The value found is stored in the module, so later lookups are plain attribute reads.
    """

    def __getattr__(name: str) -> Any:
        where = names.get(name)
        if where is None:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(where[0]), where[1])
        setattr(importlib.import_module(module), name, value)
        return value

    return __getattr__


def plugins() -> list[PluginInfo]:
    """Every loaded plugin with its distribution, version and registrations."""
    with _lock:
        state = _load()
        infos = {
            name: PluginInfo(name=name, distribution=dist, version=version)
            for name, (dist, version) in state.dists.items()
        }
        for kind in _HOOKS:
            for reg in _table(kind).values():
                getattr(infos[reg.plugin], kind).append(reg.key)
        return sorted(infos.values(), key=lambda i: i.name)
