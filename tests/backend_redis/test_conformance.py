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

    # Known failure, reported for the store's owner: an append returns with_seq(caller's
    # message), a shallow copy that shares its metadata dict and content list with the caller.
    @pytest.mark.xfail(strict=True, reason="redis:// appends return the caller's containers")
    @pytest.mark.asyncio
    async def test_returned_messages_share_no_state_with_the_caller(self, backend: Backend) -> None:
        await super().test_returned_messages_share_no_state_with_the_caller(backend)


class TestRedisClusterConformance(BackendConformance):
    @pytest.fixture
    def backend_url(self, cluster_url: str) -> str:
        return cluster_url

    @pytest_asyncio.fixture
    async def backend(self, backend_url: str) -> AsyncIterator[Backend]:
        backend = open_backend(backend_url)
        yield backend
        await backend.close()

    # Known failure, reported for the store's owner: an append returns with_seq(caller's
    # message), a shallow copy that shares its metadata dict and content list with the caller.
    @pytest.mark.xfail(strict=True, reason="redis:// appends return the caller's containers")
    @pytest.mark.asyncio
    async def test_returned_messages_share_no_state_with_the_caller(self, backend: Backend) -> None:
        await super().test_returned_messages_share_no_state_with_the_caller(backend)
