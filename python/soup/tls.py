"""TLS policy: which backend serves a connection, and Python ``ssl`` contexts.

grpcio's BoringSSL accepts only RSA, P-256 and P-384 signatures from the peer
(docs/tls-interop.md), so a connection whose peer presents a P-521 or Ed25519
certificate goes through the OpenSSL bridge (``soup.bridge``) instead of grpcio's
own TLS. Contexts built here are used by the bridge and by the host's TLS probe:
TLS >= 1.2, ALPN ``h2``, peer certificate required and verified against the
pinned PEM (the only trusted root), server name ``localhost``.

One policy on every backend: TLS 1.2 or newer, and a peer certificate whose extended
key usage allows its role (``certs.key_usage_problem``). OpenSSL and Go check the key
usage during the handshake; grpcio's BoringSSL does not, so a peer known in advance
that fails the check is served through OpenSSL (which refuses it with an alert, as a
Go plugin does), and grpcio's TLS is never used for a peer it could not check.
"""

from __future__ import annotations

import os
import shutil
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from soup.certs import CertKey

__all__ = [
    "BACKENDS",
    "GRPCIO_VERIFIABLE",
    "NATIVE_CANNOT_CHECK_UNKNOWN_PEER",
    "SERVER_NAME",
    "TLSEvidence",
    "choose_backend",
    "client_ssl_context",
    "explain_native_failure",
    "is_grpcio_verifiable",
    "server_ssl_context",
]

SERVER_NAME = "localhost"
BACKENDS: tuple[str, ...] = ("auto", "native", "openssl")

GRPCIO_VERIFIABLE: frozenset[str] = frozenset(
    {"rsa-2048", "rsa-3072", "rsa-4096", "ec-p256", "ec-p384"}
)
"""Peer key types whose TLS signatures grpcio (BoringSSL defaults) can verify."""


@dataclass
class TLSEvidence:
    """What one connection's TLS was (``None`` where unknown or not applicable)."""

    mode: str = "auto"
    version: str | None = None
    version_source: str | None = None  # "live" | "probe" | None
    backend: str | None = None  # "native" | "openssl" | None
    client_key: str | None = None
    server_key: str | None = None
    client_fingerprint: str | None = None
    server_fingerprint: str | None = None
    alpn: str | None = None


def is_grpcio_verifiable(key_type: str | None) -> bool:
    """True if grpcio's native TLS can verify a peer presenting a key of this type."""
    if key_type is None:
        return False
    return key_type in GRPCIO_VERIFIABLE or key_type.startswith("rsa-")


NATIVE_CANNOT_CHECK_UNKNOWN_PEER = (
    "--tls-backend native cannot check the peer certificate's extended key usage "
    "(grpcio's BoringSSL does not, and in manual mode the peer's certificate is not known "
    "before the connection): use --tls-backend auto or openssl"
)


def choose_backend(requested: str, peer_key_type: str | None, refusal: str | None = None) -> str:
    """The TLS backend for one connection: ``"native"`` (grpcio) or ``"openssl"`` (bridge).

    ``auto`` picks native iff grpcio can verify the peer's key type; an unknown peer
    key type (manual mode: only the CA is known beforehand) goes to OpenSSL, which
    verifies every key type. ``refusal`` is ``certs.key_usage_problem`` of a peer
    certificate known in advance: such a peer goes to OpenSSL, which refuses it during
    the handshake. A forced ``native`` is honoured unless soup's policy could then not
    be applied (``ValueError`` naming the fix); ``openssl`` always is.
    """
    if requested not in BACKENDS:
        raise ValueError(
            f"unknown TLS backend {requested!r} (expected one of: auto, native, openssl)"
        )
    if requested == "native":
        if refusal is not None:
            raise ValueError(
                f"{refusal}; --tls-backend native would accept it: use auto or openssl"
            )
        if peer_key_type is None:
            raise ValueError(NATIVE_CANNOT_CHECK_UNKNOWN_PEER)
        return requested
    if requested == "openssl" or refusal is not None:
        return "openssl"
    return "native" if is_grpcio_verifiable(peer_key_type) else "openssl"


def explain_native_failure(peer_key_type: str, detail: str) -> str:
    """Error text for a failed grpcio-native TLS connection, naming the cause when known."""
    if not is_grpcio_verifiable(peer_key_type):
        return (
            f"grpcio's native TLS cannot verify the plugin's {peer_key_type} signature "
            "(grpcio accepts only RSA, P-256 and P-384 peer signatures); use --tls-backend "
            f"auto or openssl: {detail}"
        )
    return f"TLS connection with grpcio's native TLS failed: {detail}"


def _load_own(context: ssl.SSLContext, cert_pem: bytes, key_pem: bytes) -> None:
    # SSLContext only loads keys from files: write them into a private directory
    # (0700, files 0600) and remove it right away.
    directory = Path(tempfile.mkdtemp(prefix="soup-tls-"))
    try:
        os.chmod(directory, 0o700)
        cert_file, key_file = directory / "cert.pem", directory / "key.pem"
        for path, data in ((cert_file, cert_pem), (key_file, key_pem)):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
        context.load_cert_chain(str(cert_file), str(key_file))
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _common(
    context: ssl.SSLContext, own_pem: tuple[bytes, bytes], trusted_pem: bytes
) -> ssl.SSLContext:
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(cadata=trusted_pem.decode("ascii"))
    context.set_alpn_protocols(["h2"])
    _load_own(context, *own_pem)
    return context


def server_ssl_context(own: CertKey, trusted_pem: bytes) -> ssl.SSLContext:
    """Plugin side: present ``own``, require a client certificate issued by ``trusted_pem``."""
    return server_ssl_context_pem((own.cert_pem, own.key_pem), trusted_pem)


def server_ssl_context_pem(own_pem: tuple[bytes, bytes], trusted_pem: bytes) -> ssl.SSLContext:
    """:func:`server_ssl_context` from PEM (certificate, key): the bridge process loads
    no cryptography."""
    return _common(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER), own_pem, trusted_pem)


def client_ssl_context(own: CertKey, trusted_pem: bytes) -> ssl.SSLContext:
    """Host side: present ``own``, verify the plugin against ``trusted_pem`` as ``localhost``."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = True
    return _common(context, (own.cert_pem, own.key_pem), trusted_pem)
