"""Passwords in backend URLs never reach errors, reprs, dumps or output (issue #15).

The core scrubber, the runtime options and the ``aixgo`` script (on closed ports of both
backends) are checked here over crafted and generated passwords; the backends' parsing,
reprs and client messages in ``tests/backend_redis`` and ``tests/backend_postgres``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from typing import Any
from urllib.parse import unquote

import pytest
from aixgo import Runtime
from aixgo.cli import main
from aixgo.errors import ConfigError
from aixgo.session import Redactor, escape_userinfo, redact_url, scrub, url_secrets
from aixgo.testing.passwords import (
    ACCEPTED,
    REFUSED,
    assert_no_secret,
    closed_port,
    secret_forms,
)
from hypothesis import assume, given
from hypothesis import strategies as st

#: Passwords as written in a URL: unescaped delimiters, lone '%', and percent-escapes.
PASSWORDS = [
    "pa/ss#w?rd%",
    "p@ss/w#rd?x%",
    "p@ss:w@rd",
    "50%off:now",
    "p%40ss%2Fw%3Fr%23d",
    "::@@//??##%%",
    "a b'c\\d\"e",
]

URL_FORMS = [
    "redis://:{pw}@127.0.0.1:6379/0",
    "redis://alice:{pw}@127.0.0.1:6379/0?prefix=app:&ttl=60",
    "rediss://alice:{pw}@cache.example:6380?ssl_cert_reqs=required",
    "redis+cluster://:{pw}@10.0.0.1:7000,[::1]:7001,node3?tls=true",
    "unix://:{pw}@/run/redis.sock?db=2",
    "postgresql://u:{pw}@127.0.0.1/db",
    "postgres://u:{pw}@db1:5432,db2:5433/app?sslmode=require&schema=s",
    "postgresql://u:{pw}@/db?host=/run/pg",
]


@pytest.mark.parametrize("form", URL_FORMS)
@pytest.mark.parametrize("password", PASSWORDS)
def test_redact_url_hides_any_password_and_keeps_the_rest(form: str, password: str) -> None:
    shown = redact_url(form.format(pw=password))
    assert shown == form.format(pw="***")
    for secret in secret_forms(password):
        assert secret not in shown


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("rediss://h/0?ssl_password=k3y&x=1", "rediss://h/0?ssl_password=***&x=1"),
        (
            "postgresql://u@h/db?sslpassword=k3y&password=p%40w",
            "postgresql://u@h/db?sslpassword=***&password=***",
        ),
        (
            "postgresql://u@h/db?application_name=x#password=k3y",
            "postgresql://u@h/db?application_name=x#password=k3y",
        ),
        ("redis://h/0?token=a#b", "redis://h/0?token=***"),
        ("file:///srv/a:b@c/x", "file:///srv/a:b@c/x"),
        ("postgresql:///db?host=/run/pg", "postgresql:///db?host=/run/pg"),
        ("memory://", "memory://"),
        ("user:hunter2@db:5432", "user:***@db:5432"),
        ("host=db port=5432 password=hunter2 dbname=x", "host=db port=5432 password=*** dbname=x"),
        (
            "host=db password = 'it\\'s a secret' sslpassword=k",
            "host=db password = *** sslpassword=***",
        ),
        ("password='unterminated secret", "password=***"),
    ],
)
def test_redact_url_hides_query_secrets_and_libpq_dsn_passwords(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_an_at_sign_after_the_host_hides_too_much_never_too_little() -> None:
    # With an unescaped password, "pw@h/db?a" could be the password: it is hidden.
    assert redact_url("postgresql://u:pw@h/db?application_name=a@b") == "postgresql://u:***@b"


_ANY = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="*"), min_size=1)


@given(password=_ANY)
def test_redact_url_property(password: str) -> None:
    for form in URL_FORMS[:2] + URL_FORMS[5:6]:
        assert redact_url(form.format(pw=password)) == form.format(pw="***")


@given(password=_ANY, noise=st.text(max_size=20))
def test_a_redactor_scrubs_every_form_of_its_secrets_from_any_text(
    password: str, noise: str
) -> None:
    decoded = unquote(password)
    assume("*" not in decoded and not any(c in password for c in "/?#"))
    url = f"redis://alice:{password}@127.0.0.1:6379/0"
    redactor = Redactor(url)
    escaped = escape_userinfo(url)  # what a client library is given, and may echo
    text = f"{noise} AUTH {password} failed for {decoded!r} at {escaped}{noise}"
    out = redactor(text)
    for secret in (password, decoded, repr(decoded)[1:-1], escaped.split("@")[0]):
        assert secret not in out
    assert redactor.shown == "redis://alice:***@127.0.0.1:6379/0"


def test_scrub_takes_the_secrets_it_is_given() -> None:
    assert scrub("login x:hunter2 failed", ["hunter2", ""]) == "login x:*** failed"
    assert url_secrets("postgresql://u@h/db?password=a+b%2Bc") >= {"a+b%2Bc", "a+b+c"}
    assert "hunter2" in url_secrets("host=h password='hunter2'")
    assert url_secrets("memory://") == frozenset()


def test_a_redactor_describes_an_exception_without_its_secrets() -> None:
    r = Redactor("redis://:p%40ss@h:1/0")
    assert r.describe(OSError("bad p@ss and p%40ss")) == "OSError: bad *** and ***"
    assert "p%40ss" not in repr(r) and "p@ss" not in repr(r)


@pytest.mark.parametrize("password", ["pa/ss#w?rd%", "p@ss/w#rd?x%", "a?b", "x#y"])
def test_a_password_that_could_end_the_host_is_refused_without_showing_it(password: str) -> None:
    with pytest.raises(ConfigError) as err:
        escape_userinfo(f"redis://:{password}@127.0.0.1:6379/0")
    message = str(err.value)
    assert "127.0.0.1:6379" in message and "%2F" in message
    for secret in secret_forms(password):
        assert secret not in message


@pytest.mark.parametrize(
    ("url", "escaped"),
    [
        ("postgresql://u:p@ss:w@rd@h/db", "postgresql://u:p%40ss%3Aw%40rd@h/db"),
        ("redis://:50%off@h/0", "redis://:50%25off@h/0"),
        ("redis://:p%40ss@h/0?x=1", "redis://:p%40ss@h/0?x=1"),
        (
            "postgresql://u:pw@h/db?application_name=a%40b",
            "postgresql://u:pw@h/db?application_name=a%40b",
        ),
        ("postgresql:///db?host=/run/pg", "postgresql:///db?host=/run/pg"),
        ("redis://h:6379/0", "redis://h:6379/0"),
    ],
)
def test_escape_userinfo_encodes_what_parsers_misread(url: str, escaped: str) -> None:
    assert escape_userinfo(url) == escaped


@pytest.mark.parametrize("password", PASSWORDS)
@pytest.mark.parametrize("form", [URL_FORMS[0], URL_FORMS[5]])
def test_runtime_options_show_and_dump_the_url_without_its_password(
    form: str, password: str
) -> None:
    url = form.format(pw=password)
    rt = Runtime(session_manager=url)
    assert rt.options.session_manager == url  # what the runtime connects with
    for shown in (
        repr(rt.options),
        str(rt.options),
        str(rt.options.model_dump()),
        rt.options.model_dump_json(),
        str(rt.options.model_dump(mode="json")),
    ):
        for secret in secret_forms(password):
            assert secret not in shown, shown
        assert "127.0.0.1" in shown


CARELESS_PLUGIN = """
from aixgo import hookimpl
from aixgo.errors import BackendUnavailable

def careless(url):
    raise BackendUnavailable(f"cannot reach {url}")

def crashing(url):
    raise RuntimeError(f"bad url {url}")

@hookimpl
def aixgo_register_backends(register):
    register("careless", careless)
    register("crashing", crashing)
"""


@pytest.mark.parametrize("scheme", ["careless", "crashing"])
def test_the_cli_never_prints_a_password_even_from_a_careless_backend(
    fake_dist: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], scheme: str
) -> None:
    fake_dist(
        "careless-dist", {"careless": "careless_plugin"}, {"careless_plugin": CARELESS_PLUGIN}
    )
    password = "p@ss:w%40rd"
    url = f"{scheme}://u:{password}@db.example:1/x"
    for argv, env in (
        (["sessions", "--url", url, "list"], None),
        (["sessions", f"--url={url}", "list"], None),
        (["sessions", "list"], url),
    ):
        monkeypatch.setattr(sys, "argv", ["aixgo", *argv])
        if env is None:
            monkeypatch.delenv("AIXGO_SESSION_URL", raising=False)
        else:
            monkeypatch.setenv("AIXGO_SESSION_URL", env)
        with pytest.raises(SystemExit):
            main()
        err = capsys.readouterr().err
        assert err.startswith("error: ") and "db.example:1" in err, err
        for secret in secret_forms(password):
            assert secret not in err, err


def test_an_invalid_url_valued_option_is_reported_without_its_password() -> None:
    with pytest.raises(ConfigError) as err:
        Runtime(timeout="redis://:hunter2@cache:6379/0")  # type: ignore[arg-type]
    assert "hunter2" not in str(err.value) and "redis://:***@cache:6379/0" in str(err.value)


# -- the aixgo script, on real backends ------------------------------------------------------

CLOSED_PORT_URLS = {
    "redis": "redis://alice:{pw}@127.0.0.1:{port}/0?retry_window=0",
    "postgres": "postgresql://u:{pw}@127.0.0.1:{port}/db",
}


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


@pytest.mark.parametrize("password", [*REFUSED, *ACCEPTED])
@pytest.mark.parametrize("backend", list(CLOSED_PORT_URLS))
def test_the_cli_prints_no_password(backend: str, password: str) -> None:
    port = closed_port()
    url = CLOSED_PORT_URLS[backend].format(pw=password, port=port)
    where = f"127.0.0.1:{port}" if password in ACCEPTED else "127.0.0.1"
    assert_no_secret(run_cli("sessions", "--url", url, "list"), password, where)


@pytest.mark.parametrize(
    ("backend", "password", "command"),
    [("redis", "pa/ss#w?rd%", "list"), ("postgres", "50%off:now", "migrate")],
)
def test_the_cli_prints_no_password_from_any_source(
    backend: str, password: str, command: str
) -> None:
    port = closed_port()
    url = CLOSED_PORT_URLS[backend].format(pw=password, port=port)
    where = "127.0.0.1"
    assert_no_secret(run_cli("sessions", f"--url={url}", command), password, where)
    env = {"AIXGO_SESSION_URL": url}
    assert_no_secret(run_cli("sessions", command, env=env), password, where)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (
            "postgresql://u@h/db?password=a&b&c&sslmode=require",
            "postgresql://u@h/db?password=***&sslmode=require",
        ),
        ("redis://h/0?token=&]x&ttl=60", "redis://h/0?token=***&ttl=60"),
        ("redis://h/0?token=x&&ttl=60", "redis://h/0?token=***&ttl=60"),
    ],
)
def test_a_raw_ampersand_in_a_secret_value_hides_what_is_no_option(url: str, shown: str) -> None:
    assert redact_url(url) == shown
