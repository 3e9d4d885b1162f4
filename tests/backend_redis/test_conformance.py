"""The conformance kit against a real standalone Redis and a real 3-master Redis Cluster."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from aixgo.session import Backend, open_backend
from aixgo.testing import BackendConformance


class TestRedisConformance(BackendConformance):
    @pytest.fixture
    def backend_url(self, redis_url: str) -> str:
        return redis_url

    @pytest_asyncio.fixture
    async def backend(self, backend_url: str) -> AsyncIterator[Backend]:
        backend = open_backend(backend_url)
        yield backend
        await backend.close()


class TestRedisClusterConformance(BackendConformance):
    @pytest.fixture
    def backend_url(self, cluster_url: str) -> str:
        return cluster_url

    @pytest_asyncio.fixture
    async def backend(self, backend_url: str) -> AsyncIterator[Backend]:
        backend = open_backend(backend_url)
        yield backend
        await backend.close()
