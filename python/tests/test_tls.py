"""soup.tls: backend choice, error text, and the Python ssl contexts (all key types)."""

from __future__ import annotations

import socket
import ssl
import threading

import pytest

from soup import certs, tls


@pytest.mark.parametrize(
    ("requested", "peer", "expected"),
    [
        ("auto", "ec-p256", "native"),
        ("auto", "ec-p384", "native"),
        ("auto", "rsa-2048", "native"),
        ("auto", "rsa-4096", "native"),
        ("auto", "rsa-3072", "native"),
        ("auto", "ec-p521", "openssl"),
        ("auto", "ed25519", "openssl"),
        ("auto", None, "openssl"),
        ("native", "ec-p521", "native"),
        ("openssl", "ec-p256", "openssl"),
    ],
)
def test_choose_backend(requested: str, peer: str | None, expected: str) -> None:
    assert tls.choose_backend(requested, peer) == expected


def test_choose_backend_serves_a_refused_peer_through_openssl() -> None:
    # OpenSSL refuses it during the handshake, as Go does; grpcio's TLS would accept it.
    assert tls.choose_backend("auto", "ec-p256", "bad key usage") == "openssl"
    assert tls.choose_backend("openssl", "ec-p256", "bad key usage") == "openssl"
    with pytest.raises(ValueError, match="bad key usage; --tls-backend native would accept it"):
        tls.choose_backend("native", "ec-p256", "bad key usage")


def test_forced_native_refuses_a_peer_it_cannot_check() -> None:
    with pytest.raises(ValueError, match="--tls-backend native cannot check the peer"):
        tls.choose_backend("native", None)


def test_choose_backend_rejects_unknown() -> None:
    with pytest.raises(ValueError, match="unknown TLS backend"):
        tls.choose_backend("boringssl", "ec-p256")


def test_grpcio_verifiable_matches_docs() -> None:
    assert frozenset({"rsa-2048", "rsa-4096", "ec-p256", "ec-p384"}) <= tls.GRPCIO_VERIFIABLE
    assert "ec-p521" not in tls.GRPCIO_VERIFIABLE
    assert "ed25519" not in tls.GRPCIO_VERIFIABLE


@pytest.mark.parametrize("key_type", ["ec-p521", "ed25519"])
def test_explain_native_failure_names_limitation(key_type: str) -> None:
    text = tls.explain_native_failure(key_type, "UNAVAILABLE: Ssl handshake failed")
    assert text.startswith(
        f"grpcio's native TLS cannot verify the plugin's {key_type} signature "
        "(grpcio accepts only RSA, P-256 and P-384 peer signatures); "
        "use --tls-backend auto or openssl"
    )
    assert text.endswith("UNAVAILABLE: Ssl handshake failed")


def test_explain_native_failure_other_key() -> None:
    text = tls.explain_native_failure("ec-p256", "boom")
    assert "cannot verify" not in text
    assert "boom" in text


def _handshake(
    server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext
) -> tuple[str | None, str | None, bytes | None, str | None]:
    left, right = socket.socketpair()
    left.settimeout(10)
    right.settimeout(10)
    errors: list[BaseException] = []
    peer: list[bytes | None] = []

    def server() -> None:
        try:
            with server_ctx.wrap_socket(left, server_side=True) as conn:
                peer.append(conn.getpeercert(binary_form=True))
                conn.sendall(b"ok")
        except (ssl.SSLError, OSError) as exc:
            errors.append(exc)

    thread = threading.Thread(target=server)
    thread.start()
    try:
        with client_ctx.wrap_socket(right, server_hostname="localhost") as conn:
            conn.recv(2)
            version, alpn = conn.version(), conn.selected_alpn_protocol()
    except (ssl.SSLError, OSError) as exc:
        thread.join(10)
        return None, None, None, f"client: {exc}; server: {errors}"
    thread.join(10)
    if errors:
        return None, None, None, f"server: {errors[0]}"
    return version, alpn, peer[0] if peer else None, None


@pytest.mark.parametrize("server_key", certs.KEY_TYPES)
@pytest.mark.parametrize("client_key", ["ec-p256", "ec-p521", "ed25519"])
def test_contexts_mutual_tls_all_key_types(server_key: str, client_key: str) -> None:
    server, client = certs.self_signed(server_key), certs.self_signed(client_key)
    version, alpn, peer, error = _handshake(
        tls.server_ssl_context(server, client.cert_pem),
        tls.client_ssl_context(client, server.cert_pem),
    )
    assert error is None
    assert version == "TLSv1.3"
    assert alpn == "h2"
    assert peer == client.cert_der


def test_server_context_rejects_foreign_client() -> None:
    server, client, other = (certs.self_signed("ec-p256") for _ in range(3))
    *_, error = _handshake(
        tls.server_ssl_context(server, other.cert_pem),
        tls.client_ssl_context(client, server.cert_pem),
    )
    assert error is not None
    assert "CERTIFICATE_VERIFY_FAILED" in error or "UNKNOWN_CA" in error


def test_client_context_rejects_foreign_server() -> None:
    server, client, other = (certs.self_signed("ec-p521") for _ in range(3))
    *_, error = _handshake(
        tls.server_ssl_context(server, client.cert_pem),
        tls.client_ssl_context(client, other.cert_pem),
    )
    assert error is not None
    assert "CERTIFICATE_VERIFY_FAILED" in error


def test_contexts_are_strict() -> None:
    own = certs.self_signed("ec-p256")
    for ctx in (
        tls.server_ssl_context(own, own.cert_pem),
        tls.client_ssl_context(own, own.cert_pem),
    ):
        assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2
        assert ctx.verify_mode == ssl.CERT_REQUIRED
    assert tls.client_ssl_context(own, own.cert_pem).check_hostname
