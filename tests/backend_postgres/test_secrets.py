"""Issue #15: a password in a PostgreSQL URL, however it is written, never reaches an error
(ours, the server's or libpq's) or a repr, and the message still names the server. The CLI is
checked in tests/core/test_redaction.py."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from aixgo.errors import BackendUnavailable, ConfigError
from aixgo.session import SessionManager
from aixgo.testing.passwords import ACCEPTED, REFUSED, assert_no_secret, closed_port
from aixgo_backend_postgres import PostgresBackend, parse_url


@pytest.mark.parametrize("password", [*REFUSED, *ACCEPTED])
@pytest.mark.parametrize(
    "form",
    [
        "postgresql://u:{pw}@127.0.0.1:5432/db?shema=x",
        "postgres://u:{pw}@127.0.0.1:5432,127.0.0.1:5433/db?pool_min_size=9&pool_max_size=2",
        "postgresql://u@127.0.0.1:5432/db?sslpassword={pw}&colour=red",
    ],
)
def test_config_errors_never_show_the_password(form: str, password: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_url(form.format(pw=password))
    assert_no_secret(str(err.value), password, "127.0.0.1")


@pytest.mark.parametrize("password", ACCEPTED)
def test_libpqs_own_parse_error_is_passed_on_without_the_password(password: str) -> None:
    # urllib accepts this host; libpq refuses it and quotes the whole URL in its message.
    with pytest.raises(ConfigError) as err:
        parse_url(f"postgresql://u:{password}@[::1]x/db")
    assert "unexpected character" in str(err.value)
    assert_no_secret(str(err.value), password, "[::1]x/db")


@pytest.mark.parametrize("password", ["5432/x", "5432?x", "5432#x"])
def test_a_password_urllib_or_libpq_would_misread_is_refused(password: str) -> None:
    # Both read "u:5432" as host and port: the backend was built, its repr showed all.
    with pytest.raises(ConfigError) as err:
        PostgresBackend(f"postgresql://u:{password}@127.0.0.1/db")
    assert_no_secret(str(err.value), password, "127.0.0.1")


@pytest.mark.parametrize("password", ACCEPTED)
def test_backend_and_options_never_show_the_password(password: str) -> None:
    backend = PostgresBackend(f"postgresql://u:{password}@127.0.0.1:5432/db?schema=s")
    for text in (
        repr(backend),
        str(backend),
        backend.url,
        repr(backend.options),
        str(backend.options),
        backend.options.shown,
    ):
        assert_no_secret(text, password, "127.0.0.1:5432")


@pytest.mark.asyncio
@pytest.mark.parametrize("password", ACCEPTED)
async def test_an_unreachable_server_is_named_but_not_the_password(password: str) -> None:
    port = closed_port()
    backend = PostgresBackend(f"postgresql://u:{password}@127.0.0.1:{port}/db")
    with pytest.raises(BackendUnavailable) as err:
        await backend.open()
    await backend.close()
    assert_no_secret(str(err.value), password, f"127.0.0.1:{port}")


@pytest.mark.asyncio
@pytest.mark.parametrize("password", ["p@ss:w@rd", "50%off:now"])
async def test_a_password_with_at_signs_colons_or_percent_reaches_the_server(
    pg_url: str, password: str
) -> None:
    # The test server trusts every login, so any password opens it, if the URL parses right.
    p = urlsplit(pg_url)
    url = f"postgresql://postgres:{password}@{p.hostname}:{p.port or 5432}{p.path}?{p.query}"
    async with SessionManager(url) as mgr:
        s = await mgr.create("assistant", user_id="alice")
        assert (await mgr.get(s.id)).id == s.id
