"""The conformance kit against the real server, each test on a fresh schema."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from aixgo.session import Backend, open_backend
from aixgo.testing import BackendConformance


class TestPostgresConformance(BackendConformance):
    @pytest.fixture
    def backend_url(self, pg_url: str) -> str:
        return pg_url

    @pytest_asyncio.fixture
    async def backend(self, backend_url: str) -> AsyncIterator[Backend]:
        backend = open_backend(backend_url)
        yield backend
        await backend.close()
