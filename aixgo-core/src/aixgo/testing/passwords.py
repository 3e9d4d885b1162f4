"""Crafted passwords for checking that a backend never shows one, in any message or repr.

Use them in a backend's own tests, with a URL of its scheme::

    from aixgo.testing.passwords import ACCEPTED, REFUSED, assert_no_secret, closed_port

    @pytest.mark.parametrize("password", ACCEPTED)
    async def test_unreachable(password):
        port = closed_port()
        with pytest.raises(BackendUnavailable) as err:
            await open_backend(f"mystore://u:{password}@127.0.0.1:{port}/db").open()
        assert_no_secret(str(err.value), password, where=f"127.0.0.1:{port}")
"""

from __future__ import annotations

import socket
from urllib.parse import unquote

__all__ = ["ACCEPTED", "REFUSED", "assert_no_secret", "closed_port", "secret_forms"]

#: Written raw, '/', '?' and '#' could equally end the host: a backend that parses the URL
#: through :func:`aixgo.session.escape_userinfo` refuses these with a ConfigError.
REFUSED = ("pa/ss#w?rd%", "p@ss/w#rd?x%", "::@@//??##%%")
#: Raw '@', ':', '%', quotes, backslashes, spaces, and percent-escapes: these work.
ACCEPTED = ("p@ss:w@rd", "50%off:now", "p%40ss%2Fw%3Fr%23d", "a b'c\\d\"e", "p%zzw")


def secret_forms(password: str) -> set[str]:
    """``password`` as written in a URL and percent-decoded."""
    return {password, unquote(password)}


def assert_no_secret(text: str, password: str, where: str) -> None:
    """``text`` shows no form of ``password``, and names ``where`` (a host, a port), so that
    it is still of use."""
    for secret in secret_forms(password):
        assert secret not in text, text
    assert where in text, text


def closed_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (it was free a moment ago)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
