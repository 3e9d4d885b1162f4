"""TLS material for nodes and clients, read from PEM files.

Errors name the option a file was given for, never the file's content: a key must not end up
in a log because a path was wrong.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import grpc
from aixgo.errors import ConfigError

__all__ = ["ClientTLS", "ServerTLS", "read_pem"]


def read_pem(path: str | Path, what: str) -> bytes:
    """The PEM file at ``path``; :class:`ConfigError` naming ``what`` when it cannot be read."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"the {what} cannot be read ({type(exc).__name__}: "
                          f"{exc.strerror or 'unreadable'})") from None  # fmt: skip
    if b"-----BEGIN " not in data:
        raise ConfigError(f"the {what} is not a PEM file")
    return data


@dataclass(frozen=True, slots=True, repr=False)
class ServerTLS:
    """A node's certificate chain and key; with ``client_ca``, mutual TLS: a client must
    present a certificate that CA signed, or it is refused before any agent code runs."""

    cert_chain: bytes
    private_key: bytes
    client_ca: bytes | None = None

    @classmethod
    def from_files(
        cls, cert: str | Path, key: str | Path, client_ca: str | Path | None = None
    ) -> ServerTLS:
        return cls(
            read_pem(cert, "server certificate (--cert)"),
            read_pem(key, "server key (--key)"),
            None if client_ca is None else read_pem(client_ca, "client CA (--client-ca)"),
        )

    @property
    def mutual(self) -> bool:
        return self.client_ca is not None

    def credentials(self) -> grpc.ServerCredentials:
        return grpc.ssl_server_credentials(
            [(self.private_key, self.cert_chain)],
            root_certificates=self.client_ca,
            require_client_auth=self.client_ca is not None,
        )

    def __repr__(self) -> str:  # never the key
        return f"ServerTLS(mutual={self.mutual})"


@dataclass(frozen=True, slots=True, repr=False)
class ClientTLS:
    """What a client trusts (``ca``: the CA that signed the nodes' certificates; ``None``: the
    system's roots) and, for mutual TLS, the client's own certificate and key."""

    ca: bytes | None = None
    cert_chain: bytes | None = None
    private_key: bytes | None = None

    @classmethod
    def from_files(
        cls,
        ca_file: str | Path | None = None,
        cert_file: str | Path | None = None,
        key_file: str | Path | None = None,
    ) -> ClientTLS:
        if (cert_file is None) != (key_file is None):
            raise ConfigError("cert_file and key_file go together: give both or neither")
        return cls(
            None if ca_file is None else read_pem(ca_file, "CA file (ca_file)"),
            None if cert_file is None else read_pem(cert_file, "client certificate (cert_file)"),
            None if key_file is None else read_pem(key_file, "client key (key_file)"),
        )

    def credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(self.ca, self.private_key, self.cert_chain)

    def __repr__(self) -> str:  # never the key
        return f"ClientTLS(ca={self.ca is not None}, client_cert={self.cert_chain is not None})"
