"""Durable sessions: create, resume, list, delete, checkpoint and restore conversations.

>>> from aixgo.session import SessionManager, open_backend
>>> mgr = SessionManager(open_backend("memory://"))
"""

from aixgo.session._encrypted import RekeyReport
from aixgo.session.backend import (
    Backend,
    Capability,
    Migratable,
    ReadThrough,
    SessionPerUser,
    TurnLeases,
)
from aixgo.session.context import current_session
from aixgo.session.erasure import ErasureReport
from aixgo.session.manager import SessionManager
from aixgo.session.models import Checkpoint, MigrationReport, Page, SessionInfo
from aixgo.session.redaction import Redactor, escape_userinfo, scrub, url_secrets
from aixgo.session.session import Session
from aixgo.session.simple import (
    HeadRow,
    MessageRow,
    SimpleBackend,
    SimpleStore,
    StoreTransaction,
)
from aixgo.session.url import default_session_url, open_backend, redact_url

__all__ = [
    "SessionManager",
    "Session",
    "SessionInfo",
    "Checkpoint",
    "Page",
    "Backend",
    "Capability",
    "Migratable",
    "SessionPerUser",
    "TurnLeases",
    "ReadThrough",
    "MigrationReport",
    "SimpleBackend",
    "SimpleStore",
    "StoreTransaction",
    "HeadRow",
    "MessageRow",
    "open_backend",
    "default_session_url",
    "redact_url",
    "Redactor",
    "scrub",
    "url_secrets",
    "escape_userinfo",
    "current_session",
    "RekeyReport",
    "ErasureReport",
]
