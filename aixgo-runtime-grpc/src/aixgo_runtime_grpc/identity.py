"""Client identities: the allow-lists of ``aixgo serve --allow AGENT=IDENTITY``, checked when
the node starts, and the identities a client certificate names, read when it calls.

An identity is the certificate's common name or one of its subject alternative names (DNS
name, URI, e-mail address, IP address), compared exactly: case, Unicode and all, with no
normalisation and no patterns, so a look-alike or a near miss never matches by accident.
The names are read from the certificate itself with ``cryptography``: gRPC's own
``x509_common_name`` and ``x509_subject_alternative_name`` properties end a name at its first
NUL, which would make a certificate for ``client-a\\x00.evil`` pass as ``client-a``.

>>> check_allow({"payroll": ["web-frontend"]})
{'payroll': frozenset({'web-frontend'})}
>>> check_allow({"payroll": ["*.internal"]})
Traceback (most recent call last):
...
aixgo.errors.InvalidArgument: allowed identity '*.internal' for agent 'payroll': ...
"""

from __future__ import annotations

import functools
import ipaddress
import unicodedata
from collections.abc import Collection, Mapping

from aixgo.errors import InvalidArgument, InvalidIdentifier
from aixgo.identifiers import validate_name
from cryptography import x509
from cryptography.x509.oid import NameOID

__all__ = ["MAX_IDENTITY_LENGTH", "check_allow", "peer_identities"]

#: The longest identity an allow-list takes (a URI SAN can be long; a common name is <= 64).
MAX_IDENTITY_LENGTH = 1024
# Control (Cc), invisible format (Cf: zero-width, bidi overrides), surrogate (Cs) and line
# and paragraph separators (Zl, Zp): no certificate identity an operator can type has them.
_BAD_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})


def check_allow(allow: Mapping[str, Collection[str]]) -> dict[str, frozenset[str]]:
    """``allow`` (agent name -> identities) checked: :class:`InvalidArgument` for an agent
    name that is not one, or an identity that is empty, too long, padded with spaces, holds a
    control or invisible character, or looks like a pattern or a distinguished name."""
    if not isinstance(allow, Mapping):
        raise InvalidArgument(f"allow maps agent names to identities, not {type(allow).__name__}")
    out: dict[str, frozenset[str]] = {}
    for agent, identities in allow.items():
        try:
            validate_name(agent, "agent name")
        except InvalidIdentifier as exc:
            raise InvalidArgument(f"allow-list: {exc}") from None
        if isinstance(identities, str) or not isinstance(identities, Collection):
            raise InvalidArgument(f"the allow-list of agent {agent!r} must be a list of identities")
        for identity in identities:
            _check_identity(agent, identity)
        out[agent] = frozenset(identities)
    return out


def _check_identity(agent: str, identity: object) -> None:
    def bad(problem: str) -> InvalidArgument:
        shown = repr(identity[:64]) + "…" if isinstance(identity, str) and len(identity) > 64 \
            else repr(identity)  # fmt: skip
        return InvalidArgument(f"allowed identity {shown} for agent {agent!r}: {problem}")

    if not isinstance(identity, str):
        raise bad("must be text")
    if not identity:
        raise bad("must not be empty")
    if len(identity) > MAX_IDENTITY_LENGTH:
        raise bad(f"is {len(identity):,} characters long; at most {MAX_IDENTITY_LENGTH} allowed")
    for i, ch in enumerate(identity):
        if unicodedata.category(ch) in _BAD_CATEGORIES:
            raise bad(f"has a control or invisible character {ch!r} at position {i}")
    if identity != identity.strip():
        raise bad("starts or ends with white space")
    if "*" in identity:
        raise bad("identities are matched exactly, not as patterns; list each one")
    if identity[:3].upper() == "CN=":
        raise bad("give the common name itself, without 'CN='")


def peer_identities(pem: bytes | None) -> frozenset[str]:
    """The identities the PEM client certificate ``pem`` names (none without one, or for
    one that cannot be parsed)."""
    if not pem:
        return frozenset()
    return _identities(pem)


@functools.lru_cache(maxsize=256)  # a client sends the same certificate on every call
def _identities(pem: bytes) -> frozenset[str]:
    try:
        cert = x509.load_pem_x509_certificate(pem)
        names: set[str] = {
            attr.value if isinstance(attr.value, str) else attr.value.decode("utf-8", "replace")
            for attr in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        }
        try:
            san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except x509.ExtensionNotFound:
            return frozenset(names)
        for kind in (x509.DNSName, x509.UniformResourceIdentifier, x509.RFC822Name):
            names.update(san.get_values_for_type(kind))
        names.update(str(ip) for ip in san.get_values_for_type(x509.IPAddress)
                     if isinstance(ip, ipaddress.IPv4Address | ipaddress.IPv6Address))  # fmt: skip
    except ValueError:
        return frozenset()  # TLS accepted it, so this cannot happen; refuse rather than crash
    return frozenset(names)
