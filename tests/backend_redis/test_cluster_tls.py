"""redis+cluster://...?tls=true against a real 3-master Redis Cluster that speaks only TLS.

The nodes listen only on TLS ports, talk TLS to each other on the cluster bus
(``tls-cluster yes``), want the password and, as redis-server does by default, a client
certificate signed by the test CA. Their certificate names only IP 127.0.0.1; they also
listen on 127.0.0.2, a name the certificate does not cover, for the hostname checks.

Each ``ssl_*`` option is shown to reach the cluster's connections by a pair of real opens:
one that fails without it (or with a wrong value) and one that works with it.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import AsyncIterator, Callable, Iterator

import pytest
import pytest_asyncio
from aixgo import Message
from aixgo.errors import BackendUnavailable, SessionNotFound
from aixgo.session import Backend, Session, SessionManager, open_backend
from aixgo.testing import BackendConformance
from aixgo.testing.base import listed
from aixgo_backend_redis._connection import TlsConnection, make_client
from aixgo_backend_redis.options import parse_url
from redis.asyncio.cluster import ClusterNode, RedisCluster

from .helpers import manager, short_round_trip
from .servers import RedisCluster3, TlsFiles

PASSWORD = "s3cret-cluster"
FAST = {"timeout": "2", "connect_timeout": "2", "retry_window": "2"}


@pytest.fixture(scope="module")
def tls_cluster(
    tmp_path_factory: pytest.TempPathFactory, tls_files: TlsFiles
) -> Iterator[RedisCluster3]:
    folder = tmp_path_factory.mktemp("tls-cluster")
    cluster = RedisCluster3(
        folder, tls=tls_files, password=PASSWORD, extra=("--bind", "127.0.0.1", "127.0.0.2")
    )
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(folder, ignore_errors=True)


def url_of(cluster: RedisCluster3, hosts: str | None = None, **options: str) -> str:
    """The cluster's URL (with its password) and ``options``; ``hosts`` replaces its nodes."""
    base = cluster.url if hosts is None else f"redis+cluster://:{PASSWORD}@{hosts}"
    return base + "?" + "&".join(f"{k}={v}" for k, v in {**FAST, **options}.items())


def trusted(files: TlsFiles, **options: str) -> dict[str, str]:
    """The options of a client that trusts the test CA and shows its client certificate."""
    return {
        "tls": "true",
        "ssl_ca_certs": files.path("ca.crt"),
        "ssl_certfile": files.path("client.crt"),
        "ssl_keyfile": files.path("client.key"),
        **options,
    }


@pytest_asyncio.fixture
async def raw_tls(tls_cluster: RedisCluster3, tls_files: TlsFiles) -> AsyncIterator[RedisCluster]:
    """A plain redis-py cluster client over TLS, set up here rather than by the backend, to
    see where keys live."""
    node = tls_cluster.nodes[0]
    client = RedisCluster(
        startup_nodes=[ClusterNode("127.0.0.1", node.port)],
        password=PASSWORD,
        ssl=True,
        ssl_ca_certs=tls_files.path("ca.crt"),
        ssl_certfile=tls_files.path("client.crt"),
        ssl_keyfile=tls_files.path("client.key"),
    )
    await client.initialize()
    yield client
    await client.aclose()


@pytest.mark.asyncio
async def test_sessions_on_every_node_round_trip_over_tls(
    tls_cluster: RedisCluster3, tls_files: TlsFiles, raw_tls: RedisCluster, prefix: str
) -> None:
    async with manager(url_of(tls_cluster, **trusted(tls_files, prefix=prefix))) as mgr:
        # Sessions until one lives on each of the three nodes (ids are random).
        sessions: list[Session] = []
        owners: dict[int, Session] = {}  # node port -> the first session stored there
        while len(owners) < 3:
            assert len(sessions) < 64, "no session landed on some node"
            s = await mgr.create("bot", user_id="u", metadata={"n": len(sessions)})
            sessions.append(s)
            key = f"{prefix}{{s:{s.id}}}:s"
            assert await raw_tls.exists(key) == 1
            node = raw_tls.get_node_from_key(key)
            assert node is not None
            owners.setdefault(int(node.port), s)
        assert set(owners) == {n.port for n in tls_cluster.nodes}

        for port, s in owners.items():
            await s.append_message(Message.user(f"hello {port}"))
            await s.append_messages([Message.assistant("hi"), Message.user("how are you?")])
            tail = await s.get_messages(last=2)
            assert [(m.seq, m.text) for m in tail] == [(2, "hi"), (3, "how are you?")]
            cp = await s.checkpoint(label="three")
            await s.append_message(Message.assistant("fine"))
            await s.restore(cp.id)
            history = await s.get_messages()
            assert [m.text for m in history] == [f"hello {port}", "hi", "how are you?"]
            labels = {c.label for c in await s.list_checkpoints()}
            assert labels == {"three", "before-restore"}

        shown = await listed(mgr, agent="bot", user_id="u", limit=2)  # paging by cursor
        assert sorted(shown) == sorted(s.id for s in sessions)
        assert shown[: len(owners)] == [s.id for s in reversed(owners.values())]

        for s in sessions:
            await mgr.delete(s.id)
            with pytest.raises(SessionNotFound):
                await mgr.get(s.id)
            assert await raw_tls.exists(f"{prefix}{{s:{s.id}}}:s") == 0
        assert (await mgr.list(agent="bot", user_id="u")).items == []


@pytest.mark.asyncio
async def test_an_encrypted_client_key_opens_with_ssl_password(
    tls_cluster: RedisCluster3, tls_files: TlsFiles, prefix: str
) -> None:
    key = tls_files.path("client-encrypted.key")
    pw = TlsFiles.KEY_PASSWORD
    await short_round_trip(
        url_of(tls_cluster, **trusted(tls_files, ssl_keyfile=key, ssl_password=pw, prefix=prefix))
    )


@pytest.mark.asyncio
async def test_ssl_cert_reqs_none_trusts_a_server_without_its_ca(
    tls_cluster: RedisCluster3, tls_files: TlsFiles, prefix: str
) -> None:
    options = trusted(tls_files, ssl_cert_reqs="none", prefix=prefix)
    del options["ssl_ca_certs"]
    await short_round_trip(url_of(tls_cluster, **options))


@pytest.mark.asyncio
async def test_ssl_check_hostname_false_accepts_a_name_the_certificate_lacks(
    tls_cluster: RedisCluster3, tls_files: TlsFiles, prefix: str
) -> None:
    hosts = f"127.0.0.2:{tls_cluster.nodes[0].port}"
    options = trusted(tls_files, ssl_check_hostname="false", prefix=prefix)
    await short_round_trip(url_of(tls_cluster, hosts, **options))


def _no_ca(options: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in options.items() if k != "ssl_ca_certs"}


#: Options that must not open the cluster, and what the error says about why (when the
#: client is the one that refuses; when the server refuses a client certificate, the
#: client sees either the server's TLS alert or a reset, depending on timing).
REFUSED: dict[str, tuple[Callable[[TlsFiles], dict[str, str]], str]] = {
    "no-tls": (lambda f: {}, ""),
    "wrong-ca": (lambda f: trusted(f, ssl_ca_certs=f.path("other-ca.crt")), "verify failed"),
    "required-untrusted": (lambda f: _no_ca(trusted(f, ssl_cert_reqs="required")), "verify failed"),
    # Verification is on unless the URL turns it off.
    "default-untrusted": (lambda f: _no_ca(trusted(f)), "verify failed"),
    "no-client-certificate": (
        lambda f: {"tls": "true", "ssl_ca_certs": f.path("ca.crt")},
        "",  # the server's alert, or a reset if it closes before the alert is read
    ),
    "client-certificate-of-another-ca": (
        lambda f: trusted(
            f, ssl_certfile=f.path("other-client.crt"), ssl_keyfile=f.path("other-client.key")
        ),
        "",  # as above
    ),
    "wrong-key-password": (
        lambda f: trusted(
            f, ssl_keyfile=f.path("client-encrypted.key"), ssl_password="not-the-key-pa55"
        ),
        "pem lib",  # OpenSSL could not decrypt the key
    ),
    "name-not-in-certificate": (lambda f: trusted(f), "mismatch"),  # at 127.0.0.2
}


@pytest.mark.asyncio
@pytest.mark.parametrize("case", list(REFUSED))
async def test_opening_is_refused_with_the_url_but_no_secret(
    tls_cluster: RedisCluster3, tls_files: TlsFiles, case: str
) -> None:
    options, why = REFUSED[case]
    hosts = f"127.0.0.2:{tls_cluster.nodes[0].port}" if case == "name-not-in-certificate" else None
    url = url_of(tls_cluster, hosts, **options(tls_files))
    mgr = SessionManager(open_backend(url))
    started = time.monotonic()
    with pytest.raises(BackendUnavailable) as err:
        await mgr.open()
    await mgr.close()
    message = str(err.value)
    assert time.monotonic() - started < 5  # at once, not after retries
    assert f"redis+cluster://:***@{hosts or '127.0.0.1'}" in message
    assert PASSWORD not in message and "not-the-key-pa55" not in message
    assert why in message.lower()


@pytest.mark.asyncio
async def test_every_node_shares_the_clients_one_tls_context(
    tls_cluster: RedisCluster3, tls_files: TlsFiles
) -> None:
    """Nodes found by discovery too, not only the startup node of the URL."""
    hosts = f"127.0.0.1:{tls_cluster.nodes[0].port}"
    client = make_client(parse_url(url_of(tls_cluster, hosts, **trusted(tls_files))))
    assert isinstance(client, RedisCluster)
    try:
        await client.initialize()
        assert await client.ping(target_nodes=RedisCluster.ALL_NODES)
        nodes = client.get_nodes()
        assert {int(n.port) for n in nodes} == {n.port for n in tls_cluster.nodes}
        assert all(n.connection_class is TlsConnection for n in nodes)
        assert len({id(n.connection_kwargs["tls_context"]) for n in nodes}) == 1
    finally:
        await client.aclose()


class TestRedisClusterTlsConformance(BackendConformance):
    """The whole conformance kit, once, on the TLS cluster. With the default timeouts: its
    concurrency tests open ~150 connections at once (up to 50 per node), and each costs a TLS
    handshake, ~7 ms of client CPU on the loaded 2-core development machine."""

    @pytest.fixture
    def backend_url(self, tls_cluster: RedisCluster3, tls_files: TlsFiles, prefix: str) -> str:
        options = trusted(tls_files, prefix=prefix)
        return f"{tls_cluster.url}?" + "&".join(f"{k}={v}" for k, v in options.items())

    @pytest_asyncio.fixture
    async def backend(self, backend_url: str) -> AsyncIterator[Backend]:
        backend = open_backend(backend_url)
        yield backend
        await backend.close()
