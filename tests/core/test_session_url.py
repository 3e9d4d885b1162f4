"""Session URLs: passwords redacted for showing, and the default store."""

from __future__ import annotations

import pytest
from aixgo.session.url import default_session_url, redact_url


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:hunter2@h:6379/0", "redis://:***@h:6379/0"),
        (
            "postgresql://bob:s3cr%40t@db/x?sslmode=require",
            "postgresql://bob:***@db/x?sslmode=require",
        ),
        (
            "rediss://h/0?password=hunter2&ssl_cert_reqs=required",
            "rediss://h/0?password=***&ssl_cert_reqs=required",
        ),
        ("file:///var/lib/x?durability=fsync", "file:///var/lib/x?durability=fsync"),
        ("postgresql:///db?host=/run/pg", "postgresql:///db?host=/run/pg"),
        ("postgresql://u:pw@/db", "postgresql://u:***@/db"),
        ("unix:///tmp/redis.sock?db=0", "unix:///tmp/redis.sock?db=0"),
        ("memory://", "memory://"),
    ],
)
def test_redact_url_hides_passwords(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_default_session_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIXGO_SESSION_URL", raising=False)
    monkeypatch.delenv("AIXGO_HOME", raising=False)
    assert default_session_url() == "file://~/.aixgo/sessions"
    monkeypatch.setenv("AIXGO_HOME", "/srv/aixgo")
    assert default_session_url() == "file:///srv/aixgo/sessions"
    monkeypatch.setenv("AIXGO_SESSION_URL", "memory://")
    assert default_session_url() == "memory://"
