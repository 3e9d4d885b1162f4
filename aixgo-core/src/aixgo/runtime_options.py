"""Runtime options: declared once as a pydantic model, set from code, YAML or the environment.

The core declares ``session_manager``, ``timeout``, ``max_concurrent_calls``, ``tracing``,
``turn_policy``, ``turn_lease_ttl`` (see :mod:`aixgo.turn`), ``audit`` (see
:mod:`aixgo.audit`), ``retention`` and ``retention_interval`` (see
:mod:`aixgo.session.retention`); plugins add theirs with the
``aixgo_register_options`` hook (:class:`aixgo.options.Option`).
Each option can be set, from weakest to strongest, in the YAML ``runtime:`` block, in an
environment variable ``AIXGO_RUNTIME_<NAME>`` (e.g. ``AIXGO_RUNTIME_TIMEOUT=30``), or as a
keyword argument of :class:`aixgo.Runtime`. An unknown or ill-typed option is a
:class:`~aixgo.errors.ConfigError` that names it, says where it came from, and lists the valid
ones.

>>> resolve_options({"timeout": "2.5"}, environ={}).timeout
2.5
>>> resolve_options({"timout": 3}, environ={})
Traceback (most recent call last):
...
aixgo.errors.ConfigError: unknown runtime option 'timout' (keyword argument); valid options: ...
"""

from __future__ import annotations

import os
import unicodedata
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    ValidationError,
    create_model,
    field_validator,
    model_serializer,
)

from aixgo import plugins
from aixgo.audit import AuditLog, key_from_env
from aixgo.errors import AixgoError, ConfigError, PluginError
from aixgo.session.manager import SessionManager
from aixgo.session.redaction import redact_url
from aixgo.session.retention import RetentionPolicy, policies_from_config

__all__ = ["ENV_PREFIX", "CoreOptions", "describe_options", "options_model", "resolve_options"]

ENV_PREFIX = "AIXGO_RUNTIME_"


class CoreOptions(BaseModel):
    """The options every runtime has. Plugin options are added as extra fields."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    session_manager: SessionManager | str | None = Field(
        default=None,
        description="where sessions live: a SessionManager, or a backend URL "
        "(default: $AIXGO_SESSION_URL, else the embedded file store)",
    )
    timeout: float | None = Field(
        default=None, gt=0, description="seconds an agent may take per call (default: no limit)"
    )
    max_concurrent_calls: int | None = Field(
        default=None, ge=1, description="calls running at once; more wait (default: no limit)"
    )
    tracing: bool = Field(
        default=True,
        description="OpenTelemetry spans and metrics (no-op until the application "
        "configures an OpenTelemetry SDK)",
    )
    turn_policy: Literal["queue", "reject"] = Field(
        default="queue",
        description="while another turn runs on the session (in any process): 'queue' waits "
        "for it (at most the turn bound), 'reject' raises ConflictError at once",
    )
    turn_lease_ttl: float = Field(
        default=30.0,
        ge=0.05,
        le=3600.0,
        allow_inf_nan=False,
        description="seconds a turn's lease on its session lasts unless renewed (it is "
        "renewed every third of that while the agent runs); a process that dies mid-turn "
        "holds its session at most this long",
    )

    audit: AuditLog | None = Field(
        default=None,
        description="an aixgo.audit.AuditLog, or a log path or sink URL, or a mapping "
        "{target, fsync, on_failure}, with the key in $AIXGO_AUDIT_KEY (hex): every session "
        "operation on the store the runtime opens is recorded (see docs/audit.md)",
    )

    @field_validator("audit", mode="before")
    @classmethod
    def _audit_log(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = {"target": value}
        if not isinstance(value, dict):
            return value
        unknown = set(value) - {"target", "fsync", "on_failure"}
        if unknown or "target" not in value:
            raise ValueError("audit takes target (a path or URL), fsync and on_failure")
        target = _audit_target(value["target"])
        fsync = value.get("fsync", False)
        if not isinstance(fsync, bool):
            raise ValueError(f"audit fsync must be true or false, not {fsync!r}")
        try:
            # Nothing is opened yet: the log's file or table is first touched by a record.
            return AuditLog(target, key=key_from_env(), fsync=fsync,
                            on_failure=value.get("on_failure", "fatal"))  # fmt: skip
        except AixgoError as exc:
            if isinstance(exc, ValueError):
                raise
            raise ConfigError(str(exc)) from None  # e.g. no plugin for the sink's scheme

    retention: dict[str, RetentionPolicy] = Field(
        default_factory=dict,
        description="retention policies by agent, {agent: {idle, max_age, keep_last}} "
        "(see aixgo.session.retention), enforced by 'aixgo sessions sweep --config' and, "
        "with retention_interval, by the runtime",
    )
    retention_interval: float | None = Field(
        default=None,
        gt=0,
        allow_inf_nan=False,
        description="seconds between the runtime's background retention sweeps (default: none)",
    )

    @field_validator("retention", mode="before")
    @classmethod
    def _retention(cls, value: Any) -> Any:
        if isinstance(value, dict) and not all(
            isinstance(v, RetentionPolicy) for v in value.values()
        ):
            return policies_from_config(value)
        return value

    # A URL-valued option (session_manager, or a plugin's) may carry a password. The
    # attribute keeps the real URL, which the runtime connects with; repr and dumps, which
    # are for showing and logging, carry it redacted.
    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        for name, value in super().__repr_args__():
            yield name, _shown(value)

    @model_serializer(mode="wrap")
    def _dump_redacted(self, handler: SerializerFunctionWrapHandler) -> Any:
        data = handler(self)
        return {k: _shown(v) for k, v in data.items()} if isinstance(data, dict) else data

    def get(self, name: str) -> Any:
        """The value of option ``name`` (core or plugin), or :class:`ConfigError`.

        >>> CoreOptions().get("tracing")
        True
        """
        if name not in type(self).model_fields:
            raise ConfigError(_unknown(name, "lookup", type(self)))
        return getattr(self, name)


def _audit_target(target: object) -> str:
    """An audit log path or sink URL, checked before anything is made of it."""
    if not isinstance(target, str | os.PathLike) or isinstance(target, bytes):
        kind = type(target).__name__
        raise ValueError(f"audit target must be a file path or a sink URL, not {kind}")
    text = os.fspath(target)
    if not isinstance(text, str) or not text.strip():
        raise ValueError("audit target must be a file path or a sink URL, not empty")
    if len(text) > 4096:
        raise ValueError(f"audit target is {len(text):,} characters long; at most 4,096")
    for i, ch in enumerate(text):
        if unicodedata.category(ch) in ("Cc", "Cs", "Zl", "Zp"):
            raise ValueError(f"audit target has a control character {ch!r} at position {i}")
    if "://" not in text:
        for part in Path(text).expanduser().parts:
            if len(part.encode()) > 255:
                raise ValueError(f"audit target has a name over 255 bytes: {part[:40]!r}…")
        if Path(text).expanduser().is_dir():
            raise ValueError(f"audit target {text!r} is a folder; name a file in it")
    return text


def _shown(value: Any) -> Any:
    return redact_url(value) if isinstance(value, str) and "://" in value else value


def options_model() -> type[CoreOptions]:
    """The options model of this installation: the core options plus every plugin's."""
    fields: dict[str, Any] = {}
    for name, option in plugins.options().items():
        if name in CoreOptions.model_fields:
            raise PluginError(
                f"a plugin registers the option {name!r}, which is a core runtime option; "
                "plugin options need names of their own"
            )
        kind: Any = option.type if option.type is not None else Any
        fields[name] = (kind, Field(default=option.default, description=option.description))
    if not fields:
        return CoreOptions
    model: type[CoreOptions] = create_model("RuntimeOptions", __base__=CoreOptions, **fields)
    return model


def describe_options(model: type[CoreOptions] | None = None) -> list[tuple[str, str, str]]:
    """``(name, default, description)`` of every option, sorted by name."""
    model = model or options_model()
    rows = []
    for name, f in sorted(model.model_fields.items()):
        rows.append((name, repr(f.default), f.description or ""))
    return rows


def _unknown(name: str, source: str, model: type[CoreOptions]) -> str:
    valid = ", ".join(sorted(model.model_fields))
    return f"unknown runtime option {name!r} ({source}); valid options: {valid}"


def resolve_options(
    code: Mapping[str, object],
    *,
    file: Mapping[str, tuple[object, str]] | None = None,
    environ: Mapping[str, str] | None = None,
) -> CoreOptions:
    """Validate options from all sources: ``file`` (name -> (value, where)) is overridden by
    ``environ`` (``AIXGO_RUNTIME_*``, default ``os.environ``), which ``code`` overrides."""
    model = options_model()
    environ = os.environ if environ is None else environ
    values: dict[str, object] = {}
    sources: dict[str, str] = {}
    for name, (value, where) in (file or {}).items():
        if name not in model.model_fields:
            raise ConfigError(_unknown(name, where, model))
        values[name], sources[name] = value, where
    for var, value in environ.items():
        if var.startswith(ENV_PREFIX) and value != "":
            name = var[len(ENV_PREFIX) :].lower()
            if name not in model.model_fields:
                raise ConfigError(_unknown(name, f"environment variable {var}", model))
            values[name], sources[name] = value, f"environment variable {var}"
    for name, value in code.items():
        if name not in model.model_fields:
            raise ConfigError(_unknown(name, "keyword argument", model))
        values[name], sources[name] = value, "keyword argument"
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        err = exc.errors()[0]
        name = str(err["loc"][0]) if err["loc"] else "?"
        field = model.model_fields.get(name)
        hint = f" ({field.description})" if field is not None and field.description else ""
        valid = ", ".join(sorted(model.model_fields))
        # pydantic says "Value error, " before a validator's own words: they speak for
        # themselves. A huge input is cut short.
        problem = str(err["msg"]).removeprefix("Value error, ")
        got = repr(_shown(err.get("input")))
        got = got if len(got) <= 200 else got[:200] + "…"
        raise ConfigError(
            f"runtime option {name!r} from {sources.get(name, 'defaults')} is invalid: "
            f"{problem}, got {got}{hint}; valid options: {valid}"
        ) from None
