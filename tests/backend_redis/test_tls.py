"""rediss:// against a real TLS redis-server with certificates made for the test."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator

import pytest
from aixgo.errors import BackendUnavailable
from aixgo.session import SessionManager, open_backend

from .helpers import short_round_trip
from .servers import RedisProcess, TlsFiles


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory, tls_files: TlsFiles) -> Iterator[int]:
    """A redis-server speaking only TLS (password "s3cret", no client certificates needed);
    yields its port."""
    folder = tmp_path_factory.mktemp("tls")
    server = RedisProcess(
        folder, tls=tls_files, password="s3cret", extra=("--tls-auth-clients", "no")
    )
    server.start()
    yield server.port
    server.stop()
    shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.asyncio
async def test_sessions_over_tls(tls_server: int, tls_files: TlsFiles, prefix: str) -> None:
    ca = tls_files.path("ca.crt")
    url = f"rediss://:s3cret@127.0.0.1:{tls_server}/0?ssl_ca_certs={ca}&prefix={prefix}"
    await short_round_trip(url)


@pytest.mark.asyncio
async def test_an_untrusted_server_certificate_is_refused(
    tls_server: int, tls_files: TlsFiles
) -> None:
    other = tls_files.path("other-ca.crt")
    url = f"rediss://:s3cret@127.0.0.1:{tls_server}/0?ssl_ca_certs={other}"
    mgr = SessionManager(open_backend(url))
    with pytest.raises(BackendUnavailable) as err:
        await mgr.open()
    await mgr.close()
    assert "s3cret" not in str(err.value)


@pytest.mark.asyncio
async def test_a_wrong_password_fails_at_once_and_is_never_shown(
    tls_server: int, tls_files: TlsFiles
) -> None:
    ca = tls_files.path("ca.crt")
    url = f"rediss://:wrong-pw@127.0.0.1:{tls_server}/0?ssl_ca_certs={ca}&retry_window=30"
    backend = open_backend(url)
    started = time.monotonic()
    with pytest.raises(BackendUnavailable) as err:
        await backend.get_session("a" * 26)  # not retried: waiting will not fix a password
    await backend.close()
    assert time.monotonic() - started < 5
    assert "wrong-pw" not in str(err.value) and ":***@127.0.0.1" in str(err.value)
