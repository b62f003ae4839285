"""The TLS settings of one side (host or plugin), validated once where they are made.

One value travels from the CLI or the public API to the code that makes certificates,
chooses a backend and builds the connection, instead of six loose arguments.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from soup import tls
from soup.defaults import KEY_TYPES
from soup.handshake import DEFAULT_KEY_TYPE

if TYPE_CHECKING:  # soup.certs loads cryptography, which plaintext goes without
    from soup.certs import CertKey

__all__ = ["TLS_MODES", "TRANSPORTS", "TLSMode", "TLSSettings", "Transport", "own_material"]

TLSMode = Literal["auto", "manual", "disabled"]
Transport = Literal["unix", "tcp"]
TLS_MODES: tuple[TLSMode, ...] = ("auto", "manual", "disabled")
TRANSPORTS: tuple[Transport, ...] = ("unix", "tcp")


@dataclass(frozen=True)
class TLSSettings:
    """How one side does TLS.

    ``mode``: ``auto`` is go-plugin's AutoMTLS (a fresh self-signed certificate of
    ``key_type`` per run, the peer's pinned from the handshake); ``manual`` uses
    ``cert_file``/``key_file`` and trusts ``ca_file``; ``disabled`` is plaintext.
    ``backend``: ``auto`` uses grpcio's TLS when it can verify the peer's key,
    otherwise the OpenSSL bridge; ``native``/``openssl`` force one.
    """

    mode: TLSMode = "auto"
    key_type: str = DEFAULT_KEY_TYPE
    cert_file: Path | None = None
    key_file: Path | None = None
    ca_file: Path | None = None
    backend: str = "auto"

    def __post_init__(self) -> None:
        if self.mode not in TLS_MODES:
            raise ValueError(f"unknown tls mode {self.mode!r} (expected auto, manual or disabled)")
        if self.backend not in tls.BACKENDS:
            raise ValueError(
                f"unknown TLS backend {self.backend!r} (expected one of: auto, native, openssl)"
            )
        if self.key_type not in KEY_TYPES:
            raise ValueError(
                f"unknown key type {self.key_type!r} (expected one of: {', '.join(KEY_TYPES)})"
            )
        if self.mode == "manual":
            missing = [
                name for name in ("cert_file", "key_file", "ca_file") if getattr(self, name) is None
            ]
            if missing:
                flags = ", ".join("--" + name.replace("_", "-") for name in missing)
                raise ValueError(f"--tls-mode manual requires {flags}")


def own_material(settings: TLSSettings) -> tuple[CertKey | None, bytes | None]:
    """Own certificate and (manual mode) the trusted CA PEM; ``ValueError`` says why not."""
    if settings.mode == "disabled":
        return None, None
    from soup import certs  # noqa: PLC0415 - cryptography only where TLS is on

    if settings.mode == "auto":
        return certs.self_signed(settings.key_type), None
    return certs.load_manual(settings.cert_file, settings.key_file, settings.ca_file)
