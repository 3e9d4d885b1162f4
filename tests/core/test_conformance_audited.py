"""The conformance kit in audit wrapper mode against every backend."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from aixgo.errors import BackendError, SessionNotFound
from aixgo.identifiers import new_id
from aixgo.message import utc_now
from aixgo.session import Backend, SessionInfo, open_backend
from aixgo.session.kit import BackendWrapper
from aixgo.session.memory import MemoryBackend
from aixgo.testing import AuditedConformance
from aixgo.testing.conformance_audit import audited_store


def _info() -> SessionInfo:
    now = utc_now()
    return SessionInfo(id=new_id(), agent="agent", user_id="user", created_at=now, updated_at=now)


class TestAuditedConformance(AuditedConformance):
    @pytest_asyncio.fixture
    async def plain_backend(self, store_url: str) -> AsyncIterator[Backend]:
        backend = open_backend(store_url)
        yield backend
        await backend.close()


# Backends that each break one rule the audit mode checks, to show the kit notices.


class DeletesNothing(MemoryBackend):
    """Says it deleted a session, but keeps it."""

    async def delete_session(self, session_id: str) -> None:
        await self.get_session(session_id)


class SilentOnMissing(MemoryBackend):
    """Deleting a missing session succeeds quietly instead of raising SessionNotFound."""

    async def delete_session(self, session_id: str) -> None:
        with contextlib.suppress(SessionNotFound):
            await super().delete_session(session_id)


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("broken", "test", "raises"),
    [
        (DeletesNothing, "test_erase_user_is_one_record_and_leaves_nothing_of_the_user",
         BackendError),
        (DeletesNothing, "test_a_retention_sweep_deletes_what_its_policy_selects_and_is_recorded",
         pytest.fail.Exception),
        (SilentOnMissing, "test_a_failed_operation_records_the_error_type",
         pytest.fail.Exception),
    ],
)  # fmt: skip
async def test_the_audit_kit_fails_a_broken_backend(
    broken: type[MemoryBackend], test: str, raises: type[BaseException], tmp_path: Path
) -> None:
    backend = broken()
    try:
        with pytest.raises(raises):
            await getattr(AuditedConformance(), test)(backend, tmp_path / "audit.jsonl")
    finally:
        await backend.close()


@pytest.mark.asyncio
async def test_the_audit_kit_fails_a_write_that_leaves_no_record(tmp_path: Path) -> None:
    # The check after every kit test: a write that reached the store without going through
    # the audit layer (here: straight to the wrapped store) is an audit record missing.
    plain = MemoryBackend()
    steps = audited_store(plain, tmp_path / "audit.jsonl")
    audited = await steps.__anext__()
    assert isinstance(audited, BackendWrapper)
    await audited.create_session(_info())
    await audited.inner.create_session(_info())
    with pytest.raises(AssertionError, match="audit records by operation"):
        await steps.__anext__()
    await plain.close()
