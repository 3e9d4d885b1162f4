"""URL parsing: every scheme, strict options, and no password in any error."""

from __future__ import annotations

import pytest
from aixgo.errors import ConfigError
from aixgo_backend_redis.options import parse_url


def test_defaults() -> None:
    o = parse_url("redis://localhost")
    assert (o.hosts, o.db, o.prefix, o.ttl, o.pool_size, o.timeout) == (
        [("localhost", 6379)], 0, "aixgo:", None, 50, 5.0,
    )  # fmt: skip
    assert not o.tls and not o.cluster


def test_every_option() -> None:
    o = parse_url(
        "rediss://bob:p%40ss@cache.example:6380/3?prefix=app:v1:&ttl=60&pool_size=7&timeout=0.5"
        "&connect_timeout=2&retry_window=0&ssl_ca_certs=/ca.pem&ssl_cert_reqs=none"
        "&ssl_check_hostname=false"
    )
    assert (o.username, o.password, o.hosts, o.db) == ("bob", "p@ss", [("cache.example", 6380)], 3)
    assert (o.prefix, o.ttl, o.pool_size, o.timeout, o.connect_timeout, o.retry_window) == (
        "app:v1:", 60, 7, 0.5, 2.0, 0.0,
    )  # fmt: skip
    assert o.tls
    assert o.ssl == {
        "ssl_ca_certs": "/ca.pem",
        "ssl_cert_reqs": "none",
        "ssl_check_hostname": False,
    }


def test_unix_socket_and_db_option() -> None:
    o = parse_url("unix:///run/redis/redis.sock?db=2&prefix=x:")
    assert (o.unix_path, o.db, o.prefix, o.hosts) == ("/run/redis/redis.sock", 2, "x:", [])


def test_cluster_with_several_seed_nodes_and_tls() -> None:
    o = parse_url("redis+cluster://:pw@10.0.0.1:7000,[::1]:7001,node3?tls=true&ttl=0")
    assert o.cluster and o.tls and o.ttl is None and o.password == "pw"
    assert o.hosts == [("10.0.0.1", 7000), ("::1", 7001), ("node3", 6379)]


def test_ttl_zero_means_no_expiry() -> None:
    assert parse_url("redis://h?ttl=0").ttl is None


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("redis://h?colour=red", "valid options: prefix, ttl, pool_size"),
        ("redis://h?ttl=1&ttl=2", "given twice"),
        ("redis://h?ttl=-1", "ttl"),
        ("redis://h?ttl=soon", "ttl"),
        ("redis://h?pool_size=0", "pool_size"),
        ("redis://h?timeout=nan", "timeout"),
        ("redis://h?timeout=0", "timeout"),
        ("redis://h/1?db=2", "database twice"),
        ("redis://h/x", "db"),
        ("redis://h?prefix=a{b}:", "braces"),
        ("redis://h?prefix=a b", "braces"),
        ("redis://h?ssl_ca_certs=/ca.pem", "needs TLS"),
        ("redis+cluster://h?ssl_ca_certs=/ca.pem", "no TLS"),
        ("rediss://h?ssl_cert_reqs=maybe", "none, optional, required"),
        ("redis+cluster://h:1/2", "only database 0"),
        ("redis+cluster://h:1?db=1", "unknown option 'db'"),
        ("redis+cluster://h:x", "not a host"),
        ("unix://", "names no socket"),
        ("unix:///s.sock?tls=true", "unknown option 'tls'"),
        ("redis://h:99999", "not a valid URL"),
        ("memcached://h", "not a Redis URL"),
    ],
)
def test_bad_urls_are_config_errors(url: str, says: str) -> None:
    with pytest.raises(ConfigError, match=None) as err:
        parse_url(url)
    assert says in str(err.value)


@pytest.mark.parametrize(
    "url",
    [
        "redis://:hunter2@h?colour=red",
        "redis://u:hunter2@h:99999",
        "rediss://u:hunter2@h?ssl_password=hunter2&ssl_cert_reqs=maybe",
        "redis+cluster://:hunter2@h:x",
        "unix://:hunter2@/s.sock?ttl=x",
    ],
)
def test_errors_never_show_the_password(url: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_url(url)
    assert "hunter2" not in str(err.value)
    assert "***" in str(err.value)


def test_options_repr_hides_the_password() -> None:
    o = parse_url("redis://:hunter2@h")
    assert "hunter2" not in repr(o)
    assert o.shown == "redis://:***@h"
