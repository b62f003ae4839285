"""soup.certs: go-plugin style self-signed certs, a small PKI, key types, PEM files."""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import stat
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from soup import certs
from soup.certs import KEY_TYPES, CertKey

EXPECTED_HASH: dict[str, type[hashes.HashAlgorithm] | None] = {
    "rsa-2048": hashes.SHA256,
    "rsa-4096": hashes.SHA256,
    "ec-p256": hashes.SHA256,
    "ec-p384": hashes.SHA384,
    "ec-p521": hashes.SHA512,
    "ed25519": None,
}


@pytest.fixture(scope="module")
def self_signed_certs() -> dict[str, CertKey]:
    return {key_type: certs.self_signed(key_type) for key_type in KEY_TYPES}


@pytest.fixture(scope="module")
def ca() -> CertKey:
    return certs.issue_ca()


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def test_key_types_constant() -> None:
    assert KEY_TYPES == ("rsa-2048", "rsa-4096", "ec-p256", "ec-p384", "ec-p521", "ed25519")
    assert set(EXPECTED_HASH) == set(KEY_TYPES)


@pytest.mark.parametrize("key_type", KEY_TYPES)
def test_self_signed_attributes(key_type: str, self_signed_certs: dict[str, CertKey]) -> None:
    pair = self_signed_certs[key_type]
    cert = pair.cert

    # Subject/issuer, SAN
    assert cert.subject == cert.issuer
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "localhost"
    assert cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "soup"
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]

    # EKUs, key usage, CA
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(eku) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert ku.digital_signature
    assert ku.key_encipherment
    assert ku.key_agreement
    assert ku.key_cert_sign
    bc = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.value.ca is True
    assert bc.critical

    # Validity: back-dated about 30 s, about 30 years ahead
    now = _now()
    back = now - cert.not_valid_before_utc
    assert datetime.timedelta(seconds=25) <= back <= datetime.timedelta(seconds=120)
    ahead = cert.not_valid_after_utc - now
    assert datetime.timedelta(days=365 * 29) < ahead < datetime.timedelta(days=365 * 31)

    # Serial: random 128 bits
    assert cert.serial_number.bit_length() == 128

    # Key type, signature hash, fingerprint, self-signature
    assert certs.key_type_of(cert) == key_type
    assert pair.key_type == key_type
    expected_hash = EXPECTED_HASH[key_type]
    if expected_hash is None:
        assert cert.signature_hash_algorithm is None
    else:
        assert isinstance(cert.signature_hash_algorithm, expected_hash)
    der = cert.public_bytes(serialization.Encoding.DER)
    assert pair.cert_der == der
    assert pair.fingerprint == certs.fingerprint(cert) == hashlib.sha256(der).hexdigest()
    assert len(pair.fingerprint) == 64
    assert pair.fingerprint == pair.fingerprint.lower()
    cert.verify_directly_issued_by(cert)


@pytest.mark.parametrize("key_type", KEY_TYPES)
def test_pem_forms(key_type: str, self_signed_certs: dict[str, CertKey]) -> None:
    pair = self_signed_certs[key_type]
    assert pair.cert_pem.startswith(b"-----BEGIN CERTIFICATE-----\n")
    assert pair.key_pem.startswith(b"-----BEGIN PRIVATE KEY-----\n")  # PKCS#8, unencrypted
    assert certs.load_cert_pem(pair.cert_pem) == pair.cert
    assert certs.load_cert_der(pair.cert_der) == pair.cert
    key = serialization.load_pem_private_key(pair.key_pem, password=None)
    assert key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ) == pair.cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def test_serials_differ() -> None:
    serials = {certs.self_signed("ec-p256").cert.serial_number for _ in range(8)}
    assert len(serials) == 8


@pytest.mark.parametrize(
    ("key_type", "cls"),
    [
        ("rsa-2048", rsa.RSAPrivateKey),
        ("ec-p256", ec.EllipticCurvePrivateKey),
        ("ec-p384", ec.EllipticCurvePrivateKey),
        ("ec-p521", ec.EllipticCurvePrivateKey),
        ("ed25519", ed25519.Ed25519PrivateKey),
    ],
)
def test_generate_key(key_type: str, cls: type) -> None:
    assert isinstance(certs.generate_key(key_type), cls)


@pytest.mark.parametrize("bad", ["rsa-1024", "ec-p224", "", "ED25519", "dsa"])
def test_generate_key_rejects_unknown(bad: str) -> None:
    with pytest.raises(ValueError, match="unknown key type") as info:
        certs.generate_key(bad)
    for key_type in KEY_TYPES:
        assert key_type in str(info.value)
    with pytest.raises(ValueError, match="unknown key type"):
        certs.self_signed(bad)


def _cert_for(key: certs.PrivateKey | ec.EllipticCurvePrivateKey) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "x")])
    now = _now()
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )


def test_key_type_of_other_keys() -> None:
    assert certs.key_type_of(_cert_for(rsa.generate_private_key(65537, 3072))) == "rsa-3072"
    assert certs.key_type_of(_cert_for(ec.generate_private_key(ec.SECP256K1()))) == "ec-secp256k1"


@pytest.mark.parametrize("leaf_type", KEY_TYPES)
def test_issue_leaf(ca: CertKey, leaf_type: str) -> None:
    leaf = certs.issue_leaf(ca, leaf_type)
    cert = leaf.cert
    cert.verify_directly_issued_by(ca.cert)
    assert cert.issuer == ca.cert.subject
    assert certs.key_type_of(cert) == leaf_type
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(eku) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert ku.digital_signature
    assert not ku.key_cert_sign
    assert cert.serial_number.bit_length() == 128
    # The CA (P-256) signs with SHA-256.
    assert isinstance(cert.signature_hash_algorithm, hashes.SHA256)
    back = _now() - cert.not_valid_before_utc
    assert datetime.timedelta(seconds=25) <= back <= datetime.timedelta(seconds=120)


@pytest.mark.parametrize("ca_type", ["rsa-2048", "ec-p384", "ec-p521", "ed25519"])
def test_ca_key_types(ca_type: str) -> None:
    other_ca = certs.issue_ca(ca_type)
    cert = other_ca.cert
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "soup test CA"
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    assert cert.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign
    leaf = certs.issue_leaf(other_ca, "ec-p256")
    leaf.cert.verify_directly_issued_by(other_ca.cert)
    expected = EXPECTED_HASH[ca_type]
    if expected is None:
        assert leaf.cert.signature_hash_algorithm is None
    else:
        assert isinstance(leaf.cert.signature_hash_algorithm, expected)


def test_leaf_not_issued_by_other_ca(ca: CertKey) -> None:
    leaf = certs.issue_leaf(ca, "ec-p256")
    with pytest.raises(InvalidSignature):
        leaf.cert.verify_directly_issued_by(certs.issue_ca().cert)


def test_write_and_load_pair(tmp_path: Path, ca: CertKey) -> None:
    leaf = certs.issue_leaf(ca, "ed25519")
    cert_file, key_file = tmp_path / "leaf.pem", tmp_path / "leaf.key"
    key_file.write_bytes(b"old")
    key_file.chmod(0o644)
    certs.write_pair(leaf, cert_file, key_file)
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    loaded = certs.load_pair(cert_file, key_file)
    assert loaded.cert == leaf.cert
    assert loaded.key_pem == leaf.key_pem
    assert loaded.fingerprint == leaf.fingerprint


def test_load_pair_mismatch(tmp_path: Path, ca: CertKey) -> None:
    a, b = certs.issue_leaf(ca, "ec-p256"), certs.issue_leaf(ca, "ec-p256")
    certs.write_pair(a, tmp_path / "a.pem", tmp_path / "a.key")
    certs.write_pair(b, tmp_path / "b.pem", tmp_path / "b.key")
    with pytest.raises(ValueError, match="does not match"):
        certs.load_pair(tmp_path / "a.pem", tmp_path / "b.key")


def test_load_pair_bad_files(tmp_path: Path, ca: CertKey) -> None:
    leaf = certs.issue_leaf(ca, "ec-p256")
    certs.write_pair(leaf, tmp_path / "c.pem", tmp_path / "c.key")
    (tmp_path / "junk").write_bytes(b"junk")
    with pytest.raises(ValueError, match="not a PEM certificate"):
        certs.load_pair(tmp_path / "junk", tmp_path / "c.key")
    with pytest.raises(ValueError, match="not an unencrypted PEM private key"):
        certs.load_pair(tmp_path / "c.pem", tmp_path / "junk")


def test_load_manual(tmp_path: Path, ca: CertKey) -> None:
    leaf = certs.issue_leaf(ca, "ec-p384")
    cert_file, key_file, ca_file = tmp_path / "l.pem", tmp_path / "l.key", tmp_path / "ca.pem"
    certs.write_pair(leaf, cert_file, key_file)
    ca_file.write_bytes(ca.cert_pem)
    own, trusted = certs.load_manual(cert_file, key_file, ca_file)
    assert own.cert == leaf.cert
    assert trusted == ca.cert_pem
    with pytest.raises(ValueError) as missing:
        certs.load_manual(cert_file, key_file, None)
    assert str(missing.value) == "tls-mode manual needs --cert-file, --key-file and --ca-file"
    with pytest.raises(ValueError) as unreadable:
        certs.load_manual(cert_file, key_file, tmp_path / "absent.pem")
    assert str(unreadable.value).startswith("tls-mode manual: cannot load certificates: ")
    assert "absent.pem" in str(unreadable.value)
    with pytest.raises(ValueError, match=r"^tls-mode manual: cannot load .*not a PEM certificate"):
        certs.load_manual(key_file, key_file, ca_file)  # a key is no certificate


def test_load_cert_der_rejects_garbage() -> None:
    with pytest.raises(ValueError):
        certs.load_cert_der(b"\x30\x03\x02\x01\x00")


_OID = ExtendedKeyUsageOID


@pytest.mark.parametrize(
    ("usages", "client", "server"),
    [
        ((_OID.SERVER_AUTH, _OID.CLIENT_AUTH), True, True),
        ((_OID.CLIENT_AUTH,), True, False),
        ((_OID.SERVER_AUTH,), False, True),
        ((_OID.CODE_SIGNING,), False, False),
        ((_OID.ANY_EXTENDED_KEY_USAGE,), True, True),
        (None, True, True),  # no extension: any purpose, as Go's crypto/x509 decides
    ],
    ids=["both", "client-only", "server-only", "code-signing", "any", "no-extension"],
)
def test_key_usage_policy(usages: tuple[Any, ...] | None, client: bool, server: bool) -> None:
    cert = certs.self_signed("ec-p256", usages=usages).cert
    for role, allowed in (("client", client), ("server", server)):
        problem = certs.key_usage_problem(cert, role)
        if allowed:
            assert problem is None
            assert certs.require_key_usage(cert, role) is cert
        else:
            assert problem is not None
            assert problem.startswith(f"{certs.INCOMPATIBLE_KEY_USAGE}: a TLS {role} certificate")
            with pytest.raises(ValueError, match=certs.INCOMPATIBLE_KEY_USAGE):
                certs.require_key_usage(cert, role)


def test_self_signed_validity_can_be_chosen() -> None:
    start = datetime.datetime(2001, 1, 1, tzinfo=datetime.UTC)
    end = datetime.datetime(2002, 1, 1, tzinfo=datetime.UTC)
    cert = certs.self_signed("ec-p256", validity=(start, end)).cert
    assert (cert.not_valid_before_utc, cert.not_valid_after_utc) == (start, end)


def test_pinned_peer_problem_checks_validity_and_key_usage() -> None:
    now = datetime.datetime.now(datetime.UTC)
    day = datetime.timedelta(days=1)
    expired = certs.self_signed("ec-p256", validity=(now - 2 * day, now - day)).cert
    future = certs.self_signed("ec-p256", validity=(now + day, now + 2 * day)).cert
    server_only = certs.self_signed("ec-p256", usages=(ExtendedKeyUsageOID.SERVER_AUTH,)).cert
    assert certs.pinned_peer_problem(certs.self_signed("ec-p256").cert, "client") is None
    assert "certificate has expired" in str(certs.pinned_peer_problem(expired, "client"))
    assert "certificate is not valid yet" in str(certs.pinned_peer_problem(future, "client"))
    assert certs.INCOMPATIBLE_KEY_USAGE in str(certs.pinned_peer_problem(server_only, "client"))
    assert certs.pinned_peer_problem(server_only, "server") is None
