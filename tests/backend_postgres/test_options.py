"""URL options: ours parsed strictly and removed, libpq's passed through, passwords hidden."""

from __future__ import annotations

import pytest
from aixgo import plugins
from aixgo.errors import ConfigError
from aixgo.session import open_backend
from aixgo_backend_postgres import PostgresBackend, parse_url
from psycopg.conninfo import conninfo_to_dict


def test_ours_are_removed_and_libpq_options_pass_through() -> None:
    o = parse_url(
        "postgresql://app:pw@db.example:6432/app?schema=aixgo&pool_min_size=2&pool_max_size=4"
        "&pool_timeout=2.5&statement_timeout_ms=750&retries=0&migrate=false"
        "&sslmode=verify-full&sslrootcert=/etc/ca.pem&sslcert=/c.pem&sslkey=/k.pem"
        "&application_name=bot&target_session_attrs=read-write"
    )
    assert (o.schema, o.pool_min_size, o.pool_max_size, o.pool_timeout) == ("aixgo", 2, 4, 2.5)
    assert (o.statement_timeout_ms, o.retries, o.migrate) == (750, 0, False)
    params = conninfo_to_dict(o.conninfo)
    assert params["host"] == "db.example" and params["port"] == "6432"
    assert params["dbname"] == "app" and params["user"] == "app" and params["password"] == "pw"
    assert params["sslmode"] == "verify-full" and params["sslrootcert"] == "/etc/ca.pem"
    assert params["sslcert"] == "/c.pem" and params["sslkey"] == "/k.pem"
    assert params["application_name"] == "bot"
    assert params["target_session_attrs"] == "read-write"
    assert "statement_timeout=750" in str(params["options"])
    assert not {"schema", "pool_min_size", "retries", "migrate"} & set(params)


def test_defaults_and_the_users_own_server_options_are_kept() -> None:
    o = parse_url("postgres://localhost/db?options=-c%20search_path%3Dx")
    assert (o.schema, o.pool_min_size, o.pool_max_size, o.retries, o.migrate) == (
        "public",
        1,
        10,
        3,
        True,
    )
    assert o.statement_timeout_ms is None
    params = conninfo_to_dict(o.conninfo)
    assert str(params["options"]).startswith("-c search_path=x ")
    assert params["connect_timeout"] == "10"


def test_host_lists_and_unix_sockets_are_libpqs_business() -> None:
    o = parse_url("postgresql://u@h1:5432,h2:5433/db?target_session_attrs=any")
    assert conninfo_to_dict(o.conninfo)["host"] == "h1,h2"
    o = parse_url("postgresql:///db?host=/var/run/postgresql")
    assert conninfo_to_dict(o.conninfo)["host"] == "/var/run/postgresql"


def test_an_unknown_option_lists_the_valid_ones() -> None:
    with pytest.raises(ConfigError) as info:
        parse_url("postgresql://u:hunter2@h/db?shema=x")
    text = str(info.value)
    assert "'shema'" in text and "schema" in text and "sslmode" in text
    assert "hunter2" not in text


@pytest.mark.parametrize(
    "query",
    [
        "schema=1abc",
        "schema=a;drop",
        "schema=" + "a" * 64,
        "pool_max_size=0",
        "pool_min_size=-1",
        "pool_min_size=5&pool_max_size=2",
        "pool_timeout=0",
        "pool_timeout=soon",
        "statement_timeout_ms=0",
        "retries=many",
        "migrate=maybe",
        "schema=a&schema=b",
    ],
)
def test_bad_values_are_config_errors(query: str) -> None:
    with pytest.raises(ConfigError):
        parse_url(f"postgresql://u:hunter2@h/db?{query}")


def test_the_password_is_never_shown() -> None:
    backend = PostgresBackend("postgresql://app:hunter2@db/app?schema=s")
    assert "hunter2" not in repr(backend) and "hunter2" not in backend.url
    assert "hunter2" not in repr(backend.options)


@pytest.mark.parametrize("scheme", ["postgresql", "postgres"])
def test_both_schemes_are_registered_through_the_entry_point(scheme: str) -> None:
    assert scheme in plugins.backend_schemes()
    backend = open_backend(f"{scheme}://u@127.0.0.1/db")
    assert isinstance(backend, PostgresBackend)
    registered = {p.name: p for p in plugins.plugins()}["postgres"]
    assert registered.distribution == "aixgo-backend-postgres"


def test_libpq_values_reach_libpq_exactly_as_written() -> None:
    o = parse_url("postgresql://u@h/db?password=a+b%2Bc&application_name=x%20y")
    params = conninfo_to_dict(o.conninfo)
    assert params["password"] == "a+b+c" and params["application_name"] == "x y"
    assert o.redactor("auth a+b+c a+b%2Bc") == "auth *** ***"
