"""Issue #15: a password in a Redis URL, however it is written, never reaches an error or a
repr, and the message still names the server. The CLI is checked in tests/core/test_redaction.py."""

from __future__ import annotations

from urllib.parse import quote, unquote

import pytest
from aixgo.errors import BackendUnavailable, ConfigError
from aixgo.testing.passwords import ACCEPTED, REFUSED, assert_no_secret, closed_port
from aixgo_backend_redis import RedisBackend, parse_url


@pytest.mark.parametrize("password", [*REFUSED, *ACCEPTED])
@pytest.mark.parametrize(
    "form",
    [
        "redis://:{pw}@127.0.0.1:6379/0?colour=red",
        "redis://alice:{pw}@127.0.0.1:6379/0?ttl=never",
        "rediss://alice:{pw}@127.0.0.1:6379?ssl_password={pw}&ssl_cert_reqs=maybe",
        "redis+cluster://:{pw}@127.0.0.1:7000,127.0.0.1:7001?colour=red",
        "unix://:{pw}@/run/redis.sock?colour=red",
    ],
)
def test_config_errors_never_show_the_password(form: str, password: str) -> None:
    url = form.format(pw=password)
    with pytest.raises(ConfigError) as err:
        parse_url(url)
    where = "/run/redis.sock" if url.startswith("unix") else "127.0.0.1"
    if "@" in password and "ssl_password" in url:
        # Which '@' ends the user name and password is ambiguous: the host is hidden too.
        where = "rediss://alice:***"
    assert_no_secret(str(err.value), password, where)


@pytest.mark.parametrize("url", ["redis://alice:6379#x@127.0.0.1:6379/0", "redis://:1/2@127.0.0.1"])
def test_a_password_urllib_would_misread_is_refused(url: str) -> None:
    # urllib reads "alice:6379" as the host: the backend was built, its repr showed all.
    with pytest.raises(ConfigError) as err:
        RedisBackend(url)
    assert_no_secret(str(err.value), url.split(":")[2].rpartition("@")[0], "127.0.0.1")


@pytest.mark.parametrize("password", ACCEPTED)
def test_backend_and_options_never_show_the_password(password: str) -> None:
    key_password = quote(unquote(password), safe="")
    url = f"rediss://alice:{password}@127.0.0.1:6380/2?ssl_password={key_password}"
    backend = RedisBackend(url)
    assert backend.options.password == unquote(password)
    assert backend.options.ssl["ssl_password"] == unquote(password)
    for text in (repr(backend), str(backend), repr(backend.options), str(backend.options)):
        assert_no_secret(text, password, "127.0.0.1")
    assert backend.options.shown == "rediss://alice:***@127.0.0.1:6380/2?ssl_password=***"


@pytest.mark.asyncio
@pytest.mark.parametrize("password", ACCEPTED)
async def test_an_unreachable_server_is_named_but_not_the_password(password: str) -> None:
    port = closed_port()
    backend = RedisBackend(f"redis://alice:{password}@127.0.0.1:{port}/0?retry_window=0")
    with pytest.raises(BackendUnavailable) as err:
        await backend.open()
    await backend.close()
    assert_no_secret(str(err.value), password, f"127.0.0.1:{port}")
