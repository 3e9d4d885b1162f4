"""The conformance kit, imported from the installed aixgo-core wheel, on the toy plugin and
on the sqlite:// example plugin (also in its encryption and audit wrapper modes): what a
third-party author runs in their own repository."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from aixgo.session import Backend, open_backend
from aixgo.testing import AuditedConformance, BackendConformance, EncryptedConformance

pytestmark = pytest.mark.skipif(
    os.environ.get("AIXGO_INSTALLED_TEST") != "1",
    reason="runs in `nox -s installed`, against wheels installed in a fresh venv",
)


class TestToyConformance(BackendConformance):
    @pytest_asyncio.fixture
    async def backend(self) -> AsyncIterator[Backend]:
        backend = open_backend("toy://")
        yield backend
        await backend.close()

    @pytest.fixture
    def backend_url(self) -> str:
        return "toy://"


class TestSqliteConformance(BackendConformance):
    @pytest.fixture
    def backend_url(self, tmp_path: Path) -> str:
        return f"sqlite://{tmp_path}/sessions.db"

    @pytest_asyncio.fixture
    async def backend(self, backend_url: str) -> AsyncIterator[Backend]:
        backend = open_backend(backend_url)
        yield backend
        await backend.close()


class TestSqliteEncrypted(EncryptedConformance):
    @pytest_asyncio.fixture
    async def plain_backend(self, tmp_path: Path) -> AsyncIterator[Backend]:
        backend = open_backend(f"sqlite://{tmp_path}/sessions.db")
        yield backend
        await backend.close()


class TestSqliteAudited(AuditedConformance):
    @pytest_asyncio.fixture
    async def plain_backend(self, tmp_path: Path) -> AsyncIterator[Backend]:
        backend = open_backend(f"sqlite://{tmp_path}/sessions.db")
        yield backend
        await backend.close()
