"""The conformance kit for session backends: ``pip install aixgo-core[testing]``.

A third-party backend proves it keeps the contract of :mod:`aixgo.session.backend` by
subclassing :class:`BackendConformance` in its own tests and providing one fixture::

    import pytest_asyncio
    from aixgo.session import open_backend
    from aixgo.testing import BackendConformance

    class TestMyStoreConformance(BackendConformance):
        @pytest_asyncio.fixture
        async def backend(self):
            backend = open_backend("mystore://...")   # an empty store
            yield backend
            await backend.close()

See :mod:`aixgo.testing.conformance` for the optional ``backend_url`` fixture and the
capability-gated tests, and ``docs/writing-a-backend.md`` for a walk-through.
:class:`EncryptedConformance` (wrapper mode) runs the kit through encryption at rest and
checks encryption, key rotation and per-user erasure on your store;
:class:`AuditedConformance` runs it through the audit log and checks the audit records,
the failure policy of a sink, erasure and retention sweeps on your store.
"""

from aixgo.testing.conformance import BackendConformance
from aixgo.testing.conformance_audit import AuditedConformance, FailingSink
from aixgo.testing.conformance_checkpoints import CheckpointsConformance
from aixgo.testing.conformance_governance import EncryptedConformance, encrypted
from aixgo.testing.conformance_history import HistoryConformance
from aixgo.testing.conformance_lifecycle import LifecycleConformance
from aixgo.testing.conformance_reads import ReadThroughConformance
from aixgo.testing.conformance_sessions import SessionsConformance
from aixgo.testing.conformance_turns import TurnsConformance

__all__ = [
    "BackendConformance",
    "SessionsConformance",
    "HistoryConformance",
    "CheckpointsConformance",
    "LifecycleConformance",
    "TurnsConformance",
    "ReadThroughConformance",
    "EncryptedConformance",
    "AuditedConformance",
    "FailingSink",
    "encrypted",
]
