"""The error tree: developer mistakes apart from runtime failures."""

from __future__ import annotations

import json

from aixgo.errors import (
    AixgoError,
    BackendClosed,
    BackendError,
    BackendTimeout,
    BackendUnavailable,
    CheckpointNotFound,
    ConfigError,
    ConflictError,
    CorruptedData,
    InvalidArgument,
    InvalidIdentifier,
    InvalidMessage,
    PluginError,
    SessionNotFound,
    UsageError,
)


def test_error_tree_separates_mistakes_from_failures() -> None:
    for mistake in (InvalidIdentifier, InvalidArgument, InvalidMessage, ConfigError):
        assert issubclass(mistake, UsageError) and issubclass(mistake, ValueError)
    for failure in (
        SessionNotFound,
        CheckpointNotFound,
        ConflictError,
        BackendUnavailable,
        BackendTimeout,
        BackendClosed,
        CorruptedData,
        PluginError,
    ):
        assert issubclass(failure, AixgoError) and not issubclass(failure, UsageError)
    assert issubclass(SessionNotFound, LookupError)
    assert issubclass(BackendUnavailable, ConnectionError)
    assert issubclass(BackendTimeout, BackendError) and issubclass(BackendTimeout, TimeoutError)
    err = ConflictError("x", expected_seq=1, actual_seq=2)
    assert (err.expected_seq, err.actual_seq) == (1, 2)
    assert "list_checkpoints" in str(CheckpointNotFound("c", "s"))
    assert json.dumps(str(SessionNotFound("s")))
