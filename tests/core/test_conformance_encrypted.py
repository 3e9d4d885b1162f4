"""The conformance kit in wrapper mode (encryption at rest) against every backend."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from aixgo.session import Backend, open_backend
from aixgo.testing import EncryptedConformance


class TestEncryptedConformance(EncryptedConformance):
    @pytest.fixture(params=["memory", "file", "redis", "postgresql"])
    def store_url(self, request: pytest.FixtureRequest, tmp_path: object) -> str:
        return {
            "memory": lambda: "memory://",
            "file": lambda: f"file://{tmp_path}/store",
            "redis": lambda: str(request.getfixturevalue("redis_url")),
            "postgresql": lambda: str(request.getfixturevalue("pg_url")),
        }[request.param]()

    @pytest_asyncio.fixture
    async def plain_backend(self, store_url: str) -> AsyncIterator[Backend]:
        backend = open_backend(store_url)
        yield backend
        await backend.close()
