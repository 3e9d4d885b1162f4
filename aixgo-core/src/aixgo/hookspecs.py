"""Hook specifications: what a plugin may implement. Specs only; :mod:`aixgo.plugins` calls them.

A plugin is a module (or object) named by an entry point in the ``aixgo`` group::

    # pyproject.toml of your distribution
    [project.entry-points.aixgo]
    mybackend = "my_package.plugin"

    # my_package/plugin.py
    from aixgo import hookimpl

    @hookimpl
    def aixgo_register_backends(register):
        register("mystore", "my_package.backend:MyBackend")   # imported on first use

Every hook receives a ``register`` callback (``aixgo_register_commands`` a click group) and
returns nothing. Arguments may be added to a
spec in later versions, never removed; a hook implementation may accept fewer of them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

import pluggy

if TYPE_CHECKING:
    import click

__all__ = [
    "AgentRegister",
    "BackendFactory",
    "BackendRegister",
    "KeyProviderRegister",
    "OptionRegister",
    "hookimpl",
    "hookspec",
]

hookspec = pluggy.HookspecMarker("aixgo")
hookimpl = pluggy.HookimplMarker("aixgo")

#: Makes a backend from the full URL string, or names such a callable as ``"module:attr"``.
BackendFactory = Callable[[str], Any] | str


class BackendRegister(Protocol):
    """The ``register`` callback of :func:`aixgo_register_backends`."""

    def __call__(self, scheme: str, factory: BackendFactory) -> None: ...


class AgentRegister(Protocol):
    """The ``register`` callback of :func:`aixgo_register_agents`."""

    def __call__(self, name: str, factory: Callable[..., Any] | str) -> None: ...


class OptionRegister(Protocol):
    """The ``register`` callback of :func:`aixgo_register_options`."""

    def __call__(self, option: Any) -> None: ...


@hookspec
def aixgo_register_backends(register: BackendRegister) -> None:
    """Register session backends: ``register(scheme, factory)``.

    ``scheme`` is the URL scheme without ``://`` (lowercase letters, digits, ``+ - .``);
    ``factory(url)`` returns an object implementing :class:`aixgo.session.Backend`.

    >>> from aixgo import hookimpl
    >>> @hookimpl
    ... def aixgo_register_backends(register):
    ...     register("mystore", "my_package.backend:MyBackend")
    """


@hookspec
def aixgo_register_agents(register: AgentRegister) -> None:
    """Register agent types: ``register(name, factory)``, where ``factory(**options)`` builds
    an agent (``role: name`` in YAML config).

    >>> from aixgo import hookimpl
    >>> @hookimpl
    ... def aixgo_register_agents(register):
    ...     register("echo", "my_package.agents:EchoAgent")
    """


@hookspec
def aixgo_register_options(register: OptionRegister) -> None:
    """Register runtime options: ``register(Option(name, default=..., description=...))``.

    >>> from aixgo import hookimpl
    >>> from aixgo.options import Option
    >>> @hookimpl
    ... def aixgo_register_options(register):
    ...     register(Option("retry_budget", default=3, description="Retries per call"))
    """


class KeyProviderRegister(Protocol):
    """The ``register`` callback of :func:`aixgo_register_key_providers`."""

    def __call__(self, scheme: str, provider: Callable[[str], bytes] | str) -> None: ...


@hookspec
def aixgo_register_key_providers(register: KeyProviderRegister) -> None:
    """Register key providers for encryption at rest: ``register(scheme, provider)``, where
    ``provider(rest)`` returns the 32-byte key that the reference ``scheme:rest`` names
    (a cloud KMS, a secrets manager). ``env:`` and ``file:`` are built in.

    >>> from aixgo import hookimpl
    >>> @hookimpl
    ... def aixgo_register_key_providers(register):
    ...     register("vault", "my_package.keys:from_vault")
    """


@hookspec
def aixgo_register_commands(cli: click.Group) -> None:
    """Add subcommands to the ``aixgo`` command line: ``cli.add_command(command)``, or the
    ``@cli.command()`` / ``@cli.group()`` decorators. A name the core or another plugin
    already uses is an error naming both.

    Called when the command line needs its commands (running one, ``--help``), never for
    ``aixgo --version``; import what a command needs inside its callback, so listing the
    commands stays cheap.

    >>> import click
    >>> from aixgo import hookimpl
    >>> @hookimpl
    ... def aixgo_register_commands(cli):
    ...     @cli.group("mystore")
    ...     def mystore():
    ...         "Maintain mystore:// stores."
    """
