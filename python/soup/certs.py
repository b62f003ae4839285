"""Keys and X.509 certificates for AutoMTLS and manual TLS (on ``cryptography``).

``self_signed`` makes certificates like go-plugin's own AutoMTLS ones (CN and SAN
``localhost``, both EKUs, CA=true, valid from 30 s ago for about 30 years, random
128-bit serial), for any of ``KEY_TYPES``. ``issue_ca``/``issue_leaf`` make a
small PKI for manual mode and tests; ``load_manual`` loads manual mode's files.
``key_usage_problem`` is soup's one certificate policy (Go's crypto/x509 rule), which
soup applies itself where grpcio's BoringSSL does not.

Long because issuing certificates and judging them (key usage, validity, pinning) must
agree to the byte, so soup's one certificate policy stays in the module that makes them.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import secrets
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple, TypeAlias

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from soup.defaults import KEY_TYPES

__all__ = [
    "INCOMPATIBLE_KEY_USAGE",
    "KEY_TYPES",
    "TLS_ROLES",
    "CertKey",
    "PrivateKey",
    "fingerprint",
    "generate_key",
    "issue_ca",
    "issue_leaf",
    "key_type_of",
    "key_usage_problem",
    "load_cert_der",
    "load_cert_pem",
    "load_manual",
    "load_pair",
    "pinned_peer_problem",
    "require_key_usage",
    "self_signed",
    "signature_hash",
    "validity_problem",
    "write_pair",
]

PrivateKey: TypeAlias = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
PublicKey: TypeAlias = rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey

HOST = "localhost"
ORGANIZATION = "soup"
CA_COMMON_NAME = "soup test CA"
BACKDATE = datetime.timedelta(seconds=30)
# go-plugin: 262980 hours (about 30 years).
VALIDITY = datetime.timedelta(hours=262980)
SERIAL_BITS = 128

_CURVES: dict[str, type[ec.EllipticCurve]] = {
    "ec-p256": ec.SECP256R1,
    "ec-p384": ec.SECP384R1,
    "ec-p521": ec.SECP521R1,
}
_CURVE_NAMES: dict[str, str] = {
    "secp256r1": "ec-p256",
    "secp384r1": "ec-p384",
    "secp521r1": "ec-p521",
}


class CertKey(NamedTuple):
    """A certificate and its private key."""

    cert: x509.Certificate
    key: PrivateKey

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        """PKCS#8, unencrypted."""
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    @property
    def cert_der(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.DER)

    @property
    def key_type(self) -> str:
        return key_type_of(self.cert)

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.cert)


def _unknown_key_type(key_type: object) -> ValueError:
    return ValueError(f"unknown key type {key_type!r} (expected one of: {', '.join(KEY_TYPES)})")


def generate_key(key_type: str) -> PrivateKey:
    """A new private key of ``key_type`` (one of ``KEY_TYPES``)."""
    if key_type in ("rsa-2048", "rsa-4096"):
        return rsa.generate_private_key(public_exponent=65537, key_size=int(key_type[4:]))
    curve = _CURVES.get(key_type)
    if curve is not None:
        return ec.generate_private_key(curve())
    if key_type == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    raise _unknown_key_type(key_type)


def _key_type_of_public(key: object) -> str:
    if isinstance(key, rsa.RSAPublicKey):
        return f"rsa-{key.key_size}"
    if isinstance(key, ec.EllipticCurvePublicKey):
        name = key.curve.name
        return _CURVE_NAMES.get(name, f"ec-{name}")
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "ed25519"
    if isinstance(key, ed448.Ed448PublicKey):
        return "ed448"
    if isinstance(key, dsa.DSAPublicKey):
        return f"dsa-{key.key_size}"
    return f"unknown-{type(key).__name__}"


def key_type_of(cert: x509.Certificate) -> str:
    """The key type of ``cert``'s public key: one of ``KEY_TYPES``, or e.g. ``rsa-3072``."""
    return _key_type_of_public(cert.public_key())


def fingerprint(cert: x509.Certificate) -> str:
    """Lowercase hex SHA-256 of the DER certificate, no separators."""
    return cert.fingerprint(hashes.SHA256()).hex()


def signature_hash(key: PrivateKey) -> hashes.SHA256 | hashes.SHA384 | hashes.SHA512 | None:
    """The hash a certificate signed by ``key`` uses (as Go's x509 picks it)."""
    if isinstance(key, ec.EllipticCurvePrivateKey):
        size = key.curve.key_size
        if size > 384:
            return hashes.SHA512()
        if size > 256:
            return hashes.SHA384()
        return hashes.SHA256()
    if isinstance(key, rsa.RSAPrivateKey):
        return hashes.SHA256()
    return None


def _serial() -> int:
    # Exactly SERIAL_BITS bits: random, with the top bit set.
    return secrets.randbits(SERIAL_BITS) | (1 << (SERIAL_BITS - 1))


def _validity() -> tuple[datetime.datetime, datetime.datetime]:
    now = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    return now - BACKDATE, now + VALIDITY


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION),
        ]
    )


def _key_usage(
    *,
    digital_signature: bool,
    key_encipherment: bool,
    key_agreement: bool,
    cert_sign: bool,
    crl_sign: bool,
) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=False,
        key_encipherment=key_encipherment,
        data_encipherment=False,
        key_agreement=key_agreement,
        key_cert_sign=cert_sign,
        crl_sign=crl_sign,
        encipher_only=False,
        decipher_only=False,
    )


_BOTH_USAGES = (ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH)
_BOTH_EKUS = x509.ExtendedKeyUsage(list(_BOTH_USAGES))


Validity: TypeAlias = tuple[datetime.datetime, datetime.datetime]


def _builder(
    subject: x509.Name, issuer: x509.Name, key: PrivateKey, validity: Validity | None = None
) -> x509.CertificateBuilder:
    """Subject, issuer, ``key``'s public key, a random serial and the validity period."""
    not_before, not_after = validity or _validity()
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(_serial())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
    )


def _ski(key: PrivateKey) -> x509.SubjectKeyIdentifier:
    return x509.SubjectKeyIdentifier.from_public_key(key.public_key())


def self_signed(
    key_type: str,
    *,
    usages: Sequence[x509.ObjectIdentifier] | None = _BOTH_USAGES,
    validity: Validity | None = None,
) -> CertKey:
    """A go-plugin style AutoMTLS certificate (self-signed, CA=true) with a new key.

    ``usages`` (extended key usages; None: no such extension) and ``validity`` (not
    before, not after) differ from go-plugin's only in tests of refusals.
    """
    key = generate_key(key_type)
    name = _name(HOST)
    builder = (
        _builder(name, name, key, validity)
        .add_extension(
            _key_usage(
                digital_signature=True,
                key_encipherment=True,
                key_agreement=True,
                cert_sign=True,
                crl_sign=False,
            ),
            critical=True,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(_ski(key), critical=False)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(HOST)]), critical=False)
    )
    if usages is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage(list(usages)), critical=False)
    cert = builder.sign(key, signature_hash(key))
    return CertKey(cert=cert, key=key)


def issue_ca(key_type: str = "ec-p256") -> CertKey:
    """A self-signed CA (CN "soup test CA") for manual-mode PKIs."""
    key = generate_key(key_type)
    name = _name(CA_COMMON_NAME)
    builder = (
        _builder(name, name, key)
        .add_extension(
            _key_usage(
                digital_signature=True,
                key_encipherment=False,
                key_agreement=False,
                cert_sign=True,
                crl_sign=True,
            ),
            critical=True,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_ski(key), critical=False)
    )
    cert = builder.sign(key, signature_hash(key))
    return CertKey(cert=cert, key=key)


def issue_leaf(ca: CertKey, key_type: str) -> CertKey:
    """A leaf for ``localhost``/127.0.0.1 (both EKUs, CA=false) signed by ``ca``."""
    key = generate_key(key_type)
    ca_ski = ca.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    builder = (
        _builder(_name(HOST), ca.cert.subject, key)
        .add_extension(
            _key_usage(
                digital_signature=True,
                key_encipherment=isinstance(key, rsa.RSAPrivateKey),
                key_agreement=False,
                cert_sign=False,
                crl_sign=False,
            ),
            critical=True,
        )
        .add_extension(_BOTH_EKUS, critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_ski(key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski),
            critical=False,
        )
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName(HOST), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
    )
    cert = builder.sign(ca.key, signature_hash(ca.key))
    return CertKey(cert=cert, key=key)


TLS_ROLES: tuple[str, ...] = ("client", "server")

_ROLE_USAGES = {
    "client": ExtendedKeyUsageOID.CLIENT_AUTH,
    "server": ExtendedKeyUsageOID.SERVER_AUTH,
}
_USAGE_NAMES = {
    ExtendedKeyUsageOID.SERVER_AUTH: "serverAuth",
    ExtendedKeyUsageOID.CLIENT_AUTH: "clientAuth",
    ExtendedKeyUsageOID.CODE_SIGNING: "codeSigning",
    ExtendedKeyUsageOID.EMAIL_PROTECTION: "emailProtection",
    ExtendedKeyUsageOID.TIME_STAMPING: "timeStamping",
    ExtendedKeyUsageOID.OCSP_SIGNING: "OCSPSigning",
    ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE: "anyExtendedKeyUsage",
}
INCOMPATIBLE_KEY_USAGE = "certificate specifies an incompatible key usage"
"""Go's crypto/x509 words for this refusal; soup's message starts with them too."""


def key_usage_problem(cert: x509.Certificate, role: str) -> str | None:
    """Why ``cert`` may not authenticate the TLS ``role`` ("client" or "server"), or None.

    Go's crypto/x509 rule on every backend: the extended key usage must list the role's
    purpose (clientAuth or serverAuth; a certificate may list both) or
    anyExtendedKeyUsage; a certificate without the extension may serve any purpose, as
    Go and OpenSSL accept it. grpcio's BoringSSL checks none of this.
    """
    wanted = _ROLE_USAGES[role]
    try:
        usages = list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
    except x509.ExtensionNotFound:
        return None
    if wanted in usages or ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE in usages:
        return None
    names = ", ".join(_USAGE_NAMES.get(u, u.dotted_string) for u in usages) or "nothing"
    return (
        f"{INCOMPATIBLE_KEY_USAGE}: a TLS {role} certificate must allow {_USAGE_NAMES[wanted]}, "
        f"this one (SHA-256 {fingerprint(cert)[:16]}...) allows only {names}"
    )


def validity_problem(cert: x509.Certificate, now: datetime.datetime | None = None) -> str | None:
    """Why ``cert`` is not valid at ``now`` (default: the current time), or None."""
    now = now or datetime.datetime.now(datetime.UTC)
    if now < cert.not_valid_before_utc:
        return f"certificate is not valid yet (valid from {cert.not_valid_before_utc:%Y-%m-%dT%H:%M:%SZ})"
    if now > cert.not_valid_after_utc:
        return (
            f"certificate has expired (valid until {cert.not_valid_after_utc:%Y-%m-%dT%H:%M:%SZ})"
        )
    return None


def pinned_peer_problem(
    cert: x509.Certificate, role: str, now: datetime.datetime | None = None
) -> str | None:
    """Why TLS must refuse a peer whose certificate is pinned in advance (AutoMTLS), or None.

    Both checks a handshake makes on the peer's own certificate: its key usage for
    ``role`` and its validity period.
    """
    return key_usage_problem(cert, role) or validity_problem(cert, now)


def require_key_usage(cert: x509.Certificate, role: str) -> x509.Certificate:
    """``cert`` if ``key_usage_problem`` finds nothing; else ``ValueError`` with the problem."""
    problem = key_usage_problem(cert, role)
    if problem is not None:
        raise ValueError(problem)
    return cert


def load_cert_pem(data: bytes) -> x509.Certificate:
    """The first certificate of a PEM document (``ValueError`` if there is none)."""
    return x509.load_pem_x509_certificate(data)


def load_cert_der(data: bytes) -> x509.Certificate:
    """A DER certificate (``ValueError`` if it is not one)."""
    return x509.load_der_x509_certificate(data)


def _load_key(data: bytes, source: str) -> PrivateKey:
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise ValueError(f"{source}: not an unencrypted PEM private key: {exc}") from None
    if isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey):
        return key
    raise ValueError(
        f"{source}: unsupported private key type {type(key).__name__} "
        "(expected RSA, ECDSA or Ed25519)"
    )


def _spki(key: CertificatePublicKeyTypes | PublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def load_pair(cert_file: Path, key_file: Path) -> CertKey:
    """Certificate and key from PEM files; ``ValueError`` if they do not belong together."""
    cert_data = Path(cert_file).read_bytes()
    try:
        cert = load_cert_pem(cert_data)
    except ValueError as exc:
        raise ValueError(f"{cert_file}: not a PEM certificate: {exc}") from None
    key = _load_key(Path(key_file).read_bytes(), str(key_file))
    if _spki(cert.public_key()) != _spki(key.public_key()):
        raise ValueError(f"{key_file}: the private key does not match the certificate {cert_file}")
    return CertKey(cert=cert, key=key)


def load_manual(
    cert_file: Path | None, key_file: Path | None, ca_file: Path | None
) -> tuple[CertKey, bytes]:
    """tls-mode manual: the own pair and the trusted CA's PEM.

    ``ValueError`` (with the message hosts and plugins report) if a file is not given
    or cannot be loaded.
    """
    if cert_file is None or key_file is None or ca_file is None:
        raise ValueError("tls-mode manual needs --cert-file, --key-file and --ca-file")
    try:
        return load_pair(cert_file, key_file), Path(ca_file).read_bytes()
    except (OSError, ValueError) as exc:
        raise ValueError(f"tls-mode manual: cannot load certificates: {exc}") from exc


def write_pair(pair: CertKey, cert_file: Path, key_file: Path) -> None:
    """Write certificate and key as PEM; the key file gets mode 0600."""
    Path(cert_file).write_bytes(pair.cert_pem)
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        os.fchmod(handle.fileno(), 0o600)  # the file may have existed with wider permissions
        handle.write(pair.key_pem)
