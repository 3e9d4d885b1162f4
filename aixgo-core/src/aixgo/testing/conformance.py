"""The backend conformance kit: one base class whose tests prove a backend keeps the contract.

Subclass :class:`BackendConformance` in a test module (with a name pytest collects, such as
``TestMyStoreConformance``), give it a ``backend`` fixture, and run pytest. Every rule of
:mod:`aixgo.session.backend` is its own small test, named after the rule, so a failure says
which rule was broken.

Fixtures:

* ``backend`` (required): an async fixture (``@pytest_asyncio.fixture``) that yields an
  **empty** backend and closes it afterwards.
* ``backend_url`` (optional, ``None`` by default): a URL that ``open_backend()`` opens to the
  same store as ``backend``. It enables the discovery test (your scheme is registered through
  the ``aixgo`` entry points) and, for backends that declare the capabilities, the tests that
  close and reopen the store (:attr:`Capability.PERSISTENT`) or open a second instance on it
  (:attr:`Capability.MULTI_PROCESS`). Tests whose fixture or capability is missing skip with
  a reason saying what to provide; they never fail. The optional protocols
  :class:`~aixgo.session.SessionPerUser` and :class:`~aixgo.session.TurnLeases`
  (:mod:`aixgo.testing.conformance_turns`) and :class:`~aixgo.session.ReadThrough`
  (:mod:`aixgo.testing.conformance_reads`) are tested when the backend implements them.

Tests use unique agent and user names and filter listings by them, so a store shared between
tests (one database for the whole run) passes too. Every async test carries
``@pytest.mark.asyncio``, so the kit runs under pytest-asyncio's strict and auto modes alike.
To leave a test out, override it in the subclass with ``@pytest.mark.skip(reason=...)``.
"""

from __future__ import annotations

from aixgo.testing.conformance_checkpoints import CheckpointsConformance
from aixgo.testing.conformance_history import HistoryConformance
from aixgo.testing.conformance_lifecycle import LifecycleConformance
from aixgo.testing.conformance_loop import EventLoopConformance
from aixgo.testing.conformance_reads import ReadThroughConformance
from aixgo.testing.conformance_sessions import SessionsConformance
from aixgo.testing.conformance_turns import TurnsConformance

__all__ = ["BackendConformance"]


class BackendConformance(
    SessionsConformance,
    HistoryConformance,
    CheckpointsConformance,
    LifecycleConformance,
    EventLoopConformance,
    TurnsConformance,
    ReadThroughConformance,
):
    """Every conformance test for a session backend. Subclass it and provide ``backend``.

    A test module for a backend registered as ``mystore://``, which keeps its data in a
    folder (so each test gets a fresh one from ``tmp_path``)::

        from collections.abc import AsyncIterator
        from pathlib import Path

        import pytest
        import pytest_asyncio

        from aixgo.session import Backend, open_backend
        from aixgo.testing import BackendConformance


        class TestMyStoreConformance(BackendConformance):
            @pytest.fixture
            def backend_url(self, tmp_path: Path) -> str:
                return f"mystore://{tmp_path}/sessions"

            @pytest_asyncio.fixture
            async def backend(self, backend_url: str) -> AsyncIterator[Backend]:
                backend = open_backend(backend_url)
                yield backend
                await backend.close()

    The kit tests itself the same way against the built-in ``memory://`` backend, in
    ``tests/core/test_conformance_memory.py`` of the aixgo repository.

    Run it with ``pytest``; pytest-asyncio must be installed (``pip install
    aixgo-core[testing]``).
    """
