"""Test certificates made with ``cryptography``: a CA, a node's certificate for 127.0.0.1 and
localhost, a client's, and for the refusal tests an expired client certificate and one from
another CA."""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class Pair:
    cert: Path
    key: Path


@dataclass(frozen=True)
class Certs:
    ca: Path
    #: the CA's key, for tests that issue certificates of their own (:func:`issue`)
    ca_key: Path
    server: Pair
    client: Pair
    expired: Pair
    other_ca: Path
    wrong_ca_client: Pair
    #: a node certificate from the other CA (a client trusting ``ca`` must refuse it)
    wrong_ca_server: Pair


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


_CA_USAGE = x509.KeyUsage(
    digital_signature=True,
    key_cert_sign=True,
    crl_sign=True,
    content_commitment=False,
    key_encipherment=False,
    data_encipherment=False,
    key_agreement=False,
    encipher_only=False,
    decipher_only=False,
)


def _ca(cn: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(_name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(_CA_USAGE, critical=True)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _leaf(
    ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey],
    cn: str,
    *,
    server: bool,
    expired: bool = False,
    sans: list[x509.GeneralName] | None = None,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    start, end = (
        (now - dt.timedelta(days=10), now - dt.timedelta(days=1))
        if expired
        else (now - dt.timedelta(days=1), now + dt.timedelta(days=30))
    )
    usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn) if cn else x509.Name([]))
        .issuer_name(ca[0].subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    )
    if sans is None:
        sans = [x509.DNSName(cn)]
        if server:
            sans = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(ca[1], hashes.SHA256()), key


def _write(
    folder: Path, stem: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey
) -> Pair:
    c, k = folder / f"{stem}.pem", folder / f"{stem}.key"
    c.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    k.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    k.chmod(0o600)
    return Pair(c, k)


def make_certs(folder: Path) -> Certs:
    ca = _ca("aixgo test CA")
    other = _ca("another CA")
    (folder / "ca.pem").write_bytes(ca[0].public_bytes(serialization.Encoding.PEM))
    ca_key = _write(folder, "ca", *ca).key
    (folder / "other-ca.pem").write_bytes(other[0].public_bytes(serialization.Encoding.PEM))
    return Certs(
        ca=folder / "ca.pem",
        ca_key=ca_key,
        server=_write(folder, "server", *_leaf(ca, "localhost", server=True)),
        client=_write(folder, "client", *_leaf(ca, "client-a", server=False)),
        expired=_write(folder, "expired", *_leaf(ca, "client-old", server=False, expired=True)),
        other_ca=folder / "other-ca.pem",
        wrong_ca_client=_write(folder, "wrong", *_leaf(other, "client-x", server=False)),
        wrong_ca_server=_write(folder, "wrong-server", *_leaf(other, "localhost", server=True)),
    )


def issue(certs: Certs, stem: str, cn: str, sans: list[x509.GeneralName] | None = None) -> Pair:
    """A client certificate the test CA signs, with common name ``cn`` (taken as is: odd
    characters included) and ``sans`` (default: none), written beside the others."""
    ca_cert = x509.load_pem_x509_certificate(certs.ca.read_bytes())
    ca_key = serialization.load_pem_private_key(certs.ca_key.read_bytes(), None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    cert, key = _leaf((ca_cert, ca_key), cn, server=False, sans=sans or [])
    return _write(certs.ca.parent, stem, cert, key)
