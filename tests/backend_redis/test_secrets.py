"""Issue #15: a password in a Redis URL, however it is written, never reaches an error,
a repr or the CLI's output, and the message still names the server."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from urllib.parse import quote, unquote

import pytest
from aixgo.errors import BackendUnavailable, ConfigError
from aixgo_backend_redis import RedisBackend, parse_url

#: Unescaped '/', '?' or '#' could end the host: such a URL is refused (ConfigError).
REFUSED = ["pa/ss#w?rd%", "p@ss/w#rd?x%", "::@@//??##%%"]
#: Unescaped '@', ':', '%' and quotes, and percent-escapes: these work.
ACCEPTED = ["p@ss:w@rd", "50%off:now", "p%40ss%2Fw%3Fr%23d", "a b'c\\d\"e"]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def assert_clean(text: str, password: str, where: str) -> None:
    for secret in {password, unquote(password)}:
        assert secret not in text, text
    assert where in text, text


@pytest.mark.parametrize("password", REFUSED + ACCEPTED)
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
    assert_clean(str(err.value), password, where)


@pytest.mark.parametrize("url", ["redis://alice:6379#x@127.0.0.1:6379/0", "redis://:1/2@127.0.0.1"])
def test_a_password_urllib_would_misread_is_refused(url: str) -> None:
    # urllib reads "alice:6379" as the host: the backend was built, its repr showed all.
    with pytest.raises(ConfigError) as err:
        RedisBackend(url)
    assert_clean(str(err.value), url.split(":")[2].rpartition("@")[0], "127.0.0.1")


@pytest.mark.parametrize("password", ACCEPTED)
def test_backend_and_options_never_show_the_password(password: str) -> None:
    key_password = quote(unquote(password), safe="")
    url = f"rediss://alice:{password}@127.0.0.1:6380/2?ssl_password={key_password}"
    backend = RedisBackend(url)
    assert backend.options.password == unquote(password)
    assert backend.options.ssl["ssl_password"] == unquote(password)
    for text in (repr(backend), str(backend), repr(backend.options), str(backend.options)):
        assert_clean(text, password, "127.0.0.1")
    assert backend.options.shown == "rediss://alice:***@127.0.0.1:6380/2?ssl_password=***"


@pytest.mark.asyncio
@pytest.mark.parametrize("password", ACCEPTED)
async def test_an_unreachable_server_is_named_but_not_the_password(password: str) -> None:
    port = closed_port()
    backend = RedisBackend(f"redis://alice:{password}@127.0.0.1:{port}/0?retry_window=0")
    with pytest.raises(BackendUnavailable) as err:
        await backend.open()
    await backend.close()
    assert_clean(str(err.value), password, f"127.0.0.1:{port}")


def run_cli(*args: str, env: dict[str, str] | None = None) -> str:
    """stderr of a failing ``aixgo`` run, checked to be an ``error:`` message."""
    script = shutil.which("aixgo")
    assert script is not None
    environ = {k: v for k, v in os.environ.items() if k != "AIXGO_SESSION_URL"}
    proc = subprocess.run(
        [script, *args], capture_output=True, text=True, timeout=60, env={**environ, **(env or {})}
    )
    assert proc.returncode == 1 and proc.stdout == "", proc
    assert proc.stderr.startswith("error: "), proc.stderr
    return proc.stderr


@pytest.mark.parametrize("password", REFUSED + ACCEPTED)
def test_the_cli_prints_no_password(password: str) -> None:
    port = closed_port()
    url = f"redis://alice:{password}@127.0.0.1:{port}/0?retry_window=0"
    where = f"127.0.0.1:{port}" if password in ACCEPTED else "127.0.0.1"
    assert_clean(run_cli("sessions", "--url", url, "list"), password, where)


def test_the_cli_prints_no_password_from_any_source() -> None:
    password = "pa/ss#w?rd%"
    url = f"redis://alice:{password}@127.0.0.1:6379/0"
    where = "127.0.0.1:6379"
    assert_clean(run_cli("sessions", f"--url={url}", "list", "--json"), password, where)
    assert_clean(run_cli("sessions", "list", env={"AIXGO_SESSION_URL": url}), password, where)
