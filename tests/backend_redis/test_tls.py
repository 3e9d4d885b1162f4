"""rediss:// against a real TLS redis-server with certificates made for the test."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from aixgo import Message
from aixgo.errors import BackendUnavailable
from aixgo.session import SessionManager, open_backend

from .helpers import manager
from .servers import free_port, redis_binary

EC_KEY = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")  # fast to make


def _openssl(*args: str, cwd: Path) -> None:
    openssl = shutil.which("openssl")
    assert openssl, "openssl is needed to make the TLS test certificates"
    subprocess.run([openssl, *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path]]:
    """A redis-server speaking only TLS (password "s3cret"); yields its port and cert folder."""
    d = tmp_path_factory.mktemp("tls")
    _openssl("req", "-x509", *EC_KEY, "-keyout", "ca.key", "-out",
             "ca.crt", "-days", "2", "-subj", "/CN=aixgo-test-ca", cwd=d)  # fmt: skip
    _openssl("req", *EC_KEY, "-keyout", "server.key", "-out",
             "server.csr", "-subj", "/CN=localhost", cwd=d)  # fmt: skip
    (d / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
             "-CAcreateserial", "-out", "server.crt", "-days", "2", "-extfile", "ext.cnf",
             cwd=d)  # fmt: skip
    port = free_port()
    proc = subprocess.Popen(
        [redis_binary(), "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
         "--tls-cert-file", "server.crt", "--tls-key-file", "server.key",
         "--tls-ca-cert-file", "ca.crt", "--tls-auth-clients", "no", "--requirepass", "s3cret",
         "--save", "", "--appendonly", "no", "--logfile", "redis.log"],
        cwd=d, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                proc.wait()
                raise RuntimeError((d / "redis.log").read_text()) from None
            time.sleep(0.02)
    yield port, d
    proc.terminate()
    proc.wait(timeout=10)


@pytest.mark.asyncio
async def test_sessions_over_tls(tls_server: tuple[int, Path], prefix: str) -> None:
    port, d = tls_server
    url = f"rediss://:s3cret@localhost:{port}/0?ssl_ca_certs={d}/ca.crt&prefix={prefix}"
    async with manager(url) as mgr:
        s = await mgr.create("bot", user_id="u")
        await s.append_message(Message.user("over TLS"))
        assert [m.text for m in await s.get_messages(last=5)] == ["over TLS"]
        await mgr.delete(s.id)


@pytest.mark.asyncio
async def test_an_untrusted_server_certificate_is_refused(
    tls_server: tuple[int, Path], tmp_path: Path
) -> None:
    port, _ = tls_server
    _openssl("req", "-x509", *EC_KEY, "-keyout", "other.key", "-out",
             "other.crt", "-days", "2", "-subj", "/CN=someone-else", cwd=tmp_path)  # fmt: skip
    url = f"rediss://:s3cret@localhost:{port}/0?ssl_ca_certs={tmp_path}/other.crt"
    mgr = SessionManager(open_backend(url))
    with pytest.raises(BackendUnavailable) as err:
        await mgr.open()
    await mgr.close()
    assert "s3cret" not in str(err.value)


@pytest.mark.asyncio
async def test_a_wrong_password_fails_at_once_and_is_never_shown(
    tls_server: tuple[int, Path],
) -> None:
    port, d = tls_server
    url = f"rediss://:wrong-pw@localhost:{port}/0?ssl_ca_certs={d}/ca.crt&retry_window=30"
    backend = open_backend(url)
    started = time.monotonic()
    with pytest.raises(BackendUnavailable) as err:
        await backend.get_session("a" * 26)  # not retried: waiting will not fix a password
    await backend.close()
    assert time.monotonic() - started < 5
    assert "wrong-pw" not in str(err.value) and ":***@localhost" in str(err.value)
