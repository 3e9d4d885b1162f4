"""Secrets in backend URLs: showing a URL without them, and keeping them out of any text.

The one place every path that shows a URL, a DSN or a client library's message about one
goes through (errors, reprs, dumps, logs, the CLI). A backend keeps a :class:`Redactor` of
its URL, shows ``redactor.shown``, and passes any text it did not write itself (a driver's
error message) through the redactor::

    redactor = Redactor(url)
    raise BackendUnavailable(f"cannot reach {redactor.shown}: {redactor.describe(exc)}")

A password may be written raw in a URL: ``redis://:pa/ss#w?rd%@host`` is not RFC 3986, but
people paste passwords as they are. URL parsers (urllib, libpq, redis-py) end the host at the
first ``/``, ``?`` or ``#`` and the userinfo at the first ``@``, so they would show pieces of
such a password. With raw passwords, *any* ``@`` may be the one that ends the userinfo (the
last one, usually; one in a query value otherwise), so :func:`redact_url` hides what is
secret under every one of these readings. An ambiguous URL shows too little, never too much.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import quote, unquote, unquote_plus

from aixgo.errors import ConfigError

__all__ = ["MASK", "Redactor", "escape_userinfo", "redact_url", "scrub", "url_secrets"]

#: What a secret is replaced with.
MASK = "***"

# Query and DSN keys whose values are secrets: password, sslpassword, ssl_keyfile_password...
_SECRET_WORDS = ("password", "passwd", "pwd", "secret", "token", "apikey", "api_key")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://")
# What may follow the userinfo '@': host[:port], [v6], comma-separated lists; no '@'.
_HOSTS = re.compile(r"[\w.~%:,\[\]\-]*")
# libpq key=value pairs; a quoted value may hold spaces and \' escapes, or run to the end.
_DSN_PAIR = re.compile(r"(\w+)(\s*=\s*)('(?:[^'\\]|\\.)*(?:'|\Z)|[^\s']\S*|)", re.DOTALL)
_DSN = re.compile(r"\s*\w+\s*=")
_QUERY_ITEM = re.compile(r"[\w.\-]+=")
# Characters a parser may take as the end of a raw password's host.
_HOST_ENDERS = "/?#"
_ESCAPE = re.compile(r"%[0-9A-Fa-f]{2}")
# Kept as written in a userinfo: RFC 3986 unreserved and sub-delims (':' and '@' are not).
_USERINFO_SAFE = "!$&'()*+,;=-._~"


def _is_secret_key(key: str) -> bool:
    low = unquote(key).lower()
    return any(word in low for word in _SECRET_WORDS)


def _split(url: str) -> tuple[str, str | None, str | None, str]:
    """``(scheme://, user, password, rest)`` as a parser should read ``url``: the userinfo
    ends at the last '@' that a host list follows. ``user`` is None without a userinfo,
    ``password`` None without a ':' in it; nothing is percent-decoded."""
    m = _SCHEME.match(url)
    head = m.group() if m else ""
    candidates = [at for at in _ats(url, len(head)) if _host_follows(url, at + 1)]
    if not candidates:
        return head, None, None, url[len(head) :]
    at = candidates[-1]
    user, colon, password = url[len(head) : at].partition(":")
    return head, user, password if colon else None, url[at + 1 :]


def _ats(url: str, start: int) -> list[int]:
    """Every '@' that may end a userinfo beginning at ``start``."""
    if url.startswith("/", start):  # no authority: file:///path, postgresql:///db
        return []
    return [i for i in range(start, len(url)) if url[i] == "@"]


def _host_follows(url: str, start: int) -> bool:
    m = _HOSTS.match(url, start)
    return m is not None and (m.end() == len(url) or url[m.end()] in "/?#")


def _secret_spans(url: str, *, likely: bool = False) -> list[tuple[int, int]]:
    """Where the secrets of ``url`` are, as ``(start, end)`` indexes, under every reading:
    no userinfo, or one that ends at any of its '@'s (``likely``: at the last one, or one
    that a host list follows)."""
    m = _SCHEME.match(url)
    start = m.end() if m else 0
    ats = _ats(url, start)
    if likely:
        ats = [at for at in ats if at == ats[-1] or _host_follows(url, at + 1)]
    spans = []
    for at in [start - 1, *ats]:
        if at >= start:
            colon = url.find(":", start, at)
            if colon >= 0:
                spans.append((colon + 1, at))
        spans += _query_spans(url, at + 1)
    return [(a, b) for a, b in spans if a < b]


def _query_spans(url: str, start: int) -> list[tuple[int, int]]:
    """The values of secret query items after ``start``. A '#' stays in the value before it:
    a raw secret may hold one, and libpq knows no fragments. So may an '&': the items after
    a secret that are no ``key=value`` are taken as part of it."""
    question = url.find("?", start)
    if question < 0:
        return []
    spans = []
    pos = question + 1
    items = url[pos:].split("&")
    while items:
        item = items.pop(0)
        key, eq, _ = item.partition("=")
        end = pos + len(item)
        if eq and _is_secret_key(key):
            while items and not _QUERY_ITEM.match(items[0]):
                end += 1 + len(items.pop(0))
            spans.append((pos + len(key) + 1, end))
        pos = end + 1
    return spans


def _is_dsn(text: str) -> bool:
    return _SCHEME.match(text) is None and _DSN.match(text) is not None


def _redact_dsn(dsn: str) -> str:
    def hide(m: re.Match[str]) -> str:
        return m.group(1) + m.group(2) + (MASK if _is_secret_key(m.group(1)) else m.group(3))

    return _DSN_PAIR.sub(hide, dsn)


def _dsn_secrets(dsn: str) -> list[str]:
    found = []
    for m in _DSN_PAIR.finditer(dsn):
        value = m.group(3)
        if _is_secret_key(m.group(1)) and value:
            if value.startswith("'"):
                value = re.sub(r"\\(.)", r"\1", value[1:-1] if value.endswith("'") else value[1:])
            found.append(value)
    return found


def redact_url(url: str) -> str:
    """``url`` with its password and secret query values (or a libpq DSN's ``password=``
    values) replaced by ``***``, however they are written.

    >>> redact_url("redis://:hunter2@cache:6379/0?ssl_keyfile_password=x&db=1")
    'redis://:***@cache:6379/0?ssl_keyfile_password=***&db=1'
    >>> redact_url("postgresql://app:p@ss/w#rd?x%@db/app")
    'postgresql://app:***@db/app'
    >>> redact_url("host=db password='a secret' dbname=app")
    'host=db password=*** dbname=app'
    """
    if _is_dsn(url):
        return _redact_dsn(url)
    out: list[str] = []
    shown_to = 0
    for start, end in sorted(_secret_spans(url)):
        if not out or start > shown_to:  # overlapping and touching spans share one mask
            out += [url[shown_to:start], MASK]
        shown_to = max(shown_to, end)
    return "".join([*out, url[shown_to:]])


def url_secrets(url: str) -> frozenset[str]:
    """Every form in which the secrets of ``url`` (or a libpq DSN) may show up in a message:
    as written, percent-decoded, percent-encoded, and quoted by ``repr`` or libpq.

    Unlike :func:`redact_url`, only readings whose '@' a host follows (and the last '@')
    count: a reading nothing would connect with would add fragments ("p" of "p@ss") that
    then scrub unrelated words.
    """
    if _is_dsn(url):
        return _forms(_dsn_secrets(url))
    return _forms(url[start:end] for start, end in _secret_spans(url, likely=True))


def _forms(raw: Iterable[str]) -> frozenset[str]:
    forms: set[str] = set()
    for secret in raw:
        for plain in {secret, unquote(secret), unquote_plus(secret)}:
            libpq_quoted = plain.replace("\\", "\\\\").replace("'", "\\'")
            forms.update(
                {plain, repr(plain)[1:-1], libpq_quoted, _escape_part(plain),
                 quote(plain, safe=""), quote(plain, safe=_USERINFO_SAFE)}
            )  # fmt: skip
    forms.discard("")
    return frozenset(forms)


def scrub(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every occurrence of each of ``secrets`` replaced by ``***``.

    Longest first, so a secret that contains another is hidden whole. Use it on any text a
    client library wrote (its messages may quote a password); :class:`Redactor` does it with
    the secrets of a URL.
    """
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text


def _escape_part(text: str) -> str:
    """``text`` (a user name or password as written) with what parsers misread encoded: a
    '%' that starts no escape, ':', '@', spaces and the like; escapes are kept."""
    out = []
    i = 0
    while i < len(text):
        if _ESCAPE.match(text, i):
            out.append(text[i : i + 3])
            i += 3
        else:
            out.append(quote(text[i], safe=_USERINFO_SAFE))
            i += 1
    return "".join(out)


def escape_userinfo(url: str) -> str:
    """``url`` with its user name and password percent-encoded wherever a URL parser would
    misread them, so a raw password with '@', ':', '%' or spaces still works.

    A password holding '/', '?' or '#' is refused with a :class:`ConfigError` (URL shown
    without it): parsers take those as the end of the host, and an '@' later in a query
    value would read the same way, so the URL means two things.

    >>> escape_userinfo("postgresql://u:50%off@db/app")
    'postgresql://u:50%25off@db/app'
    """
    head, user, password, rest = _split(url)
    if user is None or not head:
        return url
    enders = any(c in _HOST_ENDERS for c in user + (password or ""))
    if password is None and enders:
        return url  # an '@' after the host and no password: the RFC reading, and no secret
    if enders:
        raise ConfigError(
            f"in {redact_url(url)!r} the user name or password (before the last '@') holds "
            "'/', '?' or '#', which read as the end of the host; percent-encode them (%2F, "
            "%3F, %23, and '%' as %25). An '@' in a path or query value is written %40."
        )
    userinfo = _escape_part(user) + ("" if password is None else ":" + _escape_part(password))
    return f"{head}{userinfo}@{rest}"


class Redactor:
    """A URL's redacted form (``shown``) and a scrubber of its secrets for any text.

    ``also`` adds secrets the URL does not spell out (a password a driver decoded itself).

    >>> r = Redactor("redis://:p%40ss@cache:6379/0")
    >>> r.shown, r("AUTH p@ss failed")
    ('redis://:***@cache:6379/0', 'AUTH *** failed')
    """

    __slots__ = ("_secrets", "shown")

    def __init__(self, url: str, *also: str) -> None:
        self.shown = redact_url(url)
        secrets = url_secrets(url) | _forms(also)
        self._secrets = tuple(sorted(secrets, key=len, reverse=True))

    def __call__(self, text: str) -> str:
        return scrub(text, self._secrets)

    def describe(self, exc: BaseException) -> str:
        """``"ErrorType: message"`` of ``exc``, its message scrubbed."""
        return f"{type(exc).__name__}: {self(str(exc).strip())}"

    def __repr__(self) -> str:
        return f"Redactor({self.shown!r})"
