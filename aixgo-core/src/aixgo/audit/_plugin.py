"""The core's audit sink plugin: ``file://`` targets are JSONL files."""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

from aixgo.audit._sink import JsonlSink
from aixgo.hookspecs import AuditSinkRegister, hookimpl


def file_sink(target: str, *, fsync: bool = False) -> JsonlSink:
    """``file:///var/log/aixgo/audit.jsonl`` (or ``file://~/audit.jsonl``) as a JSONL sink."""
    parts = urlsplit(target)
    path = unquote(parts.netloc + parts.path)
    return JsonlSink(path, fsync=fsync)


@hookimpl
def aixgo_register_audit_sinks(register: AuditSinkRegister) -> None:
    """Register the append-only JSONL file under ``file://``."""
    register("file", "aixgo.audit._plugin:file_sink")
