"""Host side: from a checked handshake to a verified gRPC channel, with its TLS evidence.

The backend follows the plugin's key type (``soup.tls.choose_backend``): grpcio's own TLS
(then one extra handshake with Python ``ssl``, the "probe", reads the TLS version grpcio
hides) or the OpenSSL bridge, which dials the plugin and offers grpcio a private unix
socket. One health RPC proves the connection before anyone uses it.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc
from cryptography.hazmat.primitives.serialization import Encoding
from grpc_health.v1 import health_pb2, health_pb2_grpc

from soup import bridge, certs, tls
from soup.errors import HostError
from soup.grpchooks import GRPCHooks
from soup.settings import TLSSettings
from soup.tls import TLSEvidence

__all__ = [
    "Connection",
    "dial",
    "health_status",
    "open_connection",
    "pinned_server_pem",
    "rpc_code",
    "rpc_detail",
    "rpc_message",
]

_LOG = logging.getLogger("soup.host")


@dataclass
class Connection:
    """A verified channel to the plugin and what carries it."""

    channel: grpc.Channel
    dialer: bridge.TLSDialerBridge | None = None

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.channel.close()
        if self.dialer is not None:
            self.dialer.close()


def rpc_detail(exc: grpc.RpcError) -> str:
    code = exc.code() if isinstance(exc, grpc.Call) else None
    details = exc.details() if isinstance(exc, grpc.Call) else None
    name = code.name if code is not None else "UNKNOWN"
    return f"{name}: {details or exc}"


def health_status(channel: grpc.Channel, service: str, timeout: float) -> str:
    """``grpc.health.v1.Health/Check``: the status name, e.g. ``SERVING``; HostError if failed."""
    stub = health_pb2_grpc.HealthStub(channel)
    try:
        response = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout)
    except grpc.RpcError as exc:
        raise HostError(rpc_detail(exc)) from exc
    name: str = health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)
    return name


def _record_peer(evidence: TLSEvidence, peer_der: bytes | None) -> None:
    if peer_der:
        with contextlib.suppress(Exception):
            peer = certs.load_cert_der(peer_der)
            evidence.server_key = certs.key_type_of(peer)
            evidence.server_fingerprint = certs.fingerprint(peer)


def pinned_server_pem(
    settings: TLSSettings, cert_der: bytes | None, evidence: TLSEvidence
) -> bytes | None:
    """Auto mode: the plugin's certificate from field 6 as the only trusted root.

    Refuses what would be a silent downgrade: no certificate in auto mode, or one in
    disabled mode (the plugin serves TLS).
    """
    if settings.mode == "auto":
        if not cert_der:
            raise HostError("plugin did not return a certificate; refusing plaintext")
        try:
            cert = certs.require_key_usage(certs.load_cert_der(cert_der), "server")
        except Exception as exc:
            raise HostError(f"plugin certificate in the handshake is invalid: {exc}") from exc
        _record_peer(evidence, cert_der)
        return cert.public_bytes(Encoding.PEM)
    if settings.mode == "disabled" and cert_der:
        raise HostError("tls-mode disabled but the plugin returned a certificate (it serves TLS)")
    return None


def dial(network: str, address: str, timeout: float) -> socket.socket:
    """A plain connection to a plugin address (unix path or host:port), bounded."""
    if network == "unix":
        raw = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        raw.settimeout(timeout)
        raw.connect(address)
        return raw
    host, _, port = address.rpartition(":")
    return socket.create_connection((host.strip("[]"), int(port)), timeout=timeout)


def _target(network: str, address: str) -> str:
    return "unix:" + address if network == "unix" else address


def _options() -> list[tuple[str, Any]]:
    return [
        ("grpc.enable_http_proxy", 0),
        ("grpc.enable_retries", 0),
        ("grpc.default_authority", tls.SERVER_NAME),
    ]


def open_connection(
    network: str,
    address: str,
    settings: TLSSettings,
    *,
    own: certs.CertKey | None,
    trusted_pem: bytes | None,
    evidence: TLSEvidence,
    timeout: float,
    rpc_timeout: float,
    hooks: GRPCHooks,
    open_stream: Callable[[float], socket.socket] | None = None,
) -> Connection:
    """Connect and verify with one health RPC; ``evidence`` is filled in as it is learnt.

    ``hooks``: the user's channel arguments and interceptors (ClientConfig).
    ``open_stream`` (broker multiplexing): each TLS connection is a new yamux stream
    instead of a connection to ``address``; the OpenSSL bridge carries it.
    """
    options = hooks.with_options(_options())
    if settings.mode == "disabled":
        channel = grpc.insecure_channel(_target(network, address), options=options)
        conn = Connection(hooks.intercept(channel))
        _verify(conn, evidence, rpc_timeout)
        return conn
    assert own is not None
    assert trusted_pem is not None
    evidence.backend = (
        "openssl"
        if open_stream is not None
        else tls.choose_backend(settings.backend, evidence.server_key)
    )
    if evidence.backend == "native":
        creds = grpc.ssl_channel_credentials(
            root_certificates=trusted_pem,
            private_key=own.key_pem,
            certificate_chain=own.cert_pem,
        )
        options = [*options, ("grpc.ssl_target_name_override", tls.SERVER_NAME)]
        channel = grpc.secure_channel(_target(network, address), creds, options=options)
        conn = Connection(hooks.intercept(channel))
        context = tls.client_ssl_context(own, trusted_pem)
        _verify(
            conn,
            evidence,
            rpc_timeout,
            native_tls_to_blame=lambda detail: _native_tls_to_blame(
                network, address, context, evidence, detail
            ),
        )
        _probe(network, address, context, evidence)
        return conn
    dialer = bridge.TLSDialerBridge(
        network,
        address,
        tls.client_ssl_context(own, trusted_pem),
        server_hostname=tls.SERVER_NAME,
        logger=logging.getLogger("soup.bridge"),
        open_stream=open_stream,
    )
    # One bound for the bridge's TLS handshake and the health RPC, as grpcio's own TLS
    # has: the handshake happens inside that RPC's deadline there.
    bound = min(timeout, rpc_timeout)
    deadline = time.monotonic() + bound
    try:
        target = dialer.start()
        info = dialer.first_handshake(bound)
    except bridge.BridgeError as exc:
        dialer.close()
        message = str(exc)
        if time.monotonic() >= deadline:
            message += f" ({unanswered(bound)})"
        raise HostError(message) from exc
    _record_tls(evidence, info.version, "live", info.alpn, info.peer_cert_der)
    conn = Connection(hooks.intercept(grpc.insecure_channel(target, options=options)), dialer)
    _verify(conn, evidence, max(deadline - time.monotonic(), _LAST_RPC_MIN))
    return conn


# The health RPC after a bridge handshake that used up nearly all of the bound still gets
# this long, so that a plugin that answered the handshake is not refused for the RPC.
_LAST_RPC_MIN = 0.5


def unanswered(seconds: float) -> str:
    """Why a connection failed when the plugin accepted it and then said nothing."""
    return f"the plugin did not answer within {seconds:g} s"


def _record_tls(
    evidence: TLSEvidence, version: str | None, source: str, alpn: str | None, peer: bytes | None
) -> None:
    evidence.version = version or None
    evidence.version_source = source if version else None
    evidence.alpn = alpn
    _record_peer(evidence, peer)


# grpcio's words for a failed TLS handshake; a refused or missing socket has none of them.
_TLS_WORDS = ("ssl", "tls", "handshake", "certificate", "x509")


def _tls_failed(detail: str, address: str) -> bool:
    """Whether grpcio's error is about TLS (the address itself may contain any word)."""
    text = detail.replace(address, "").lower()
    return any(word in text for word in _TLS_WORDS)


def _native_tls_to_blame(
    network: str, address: str, context: ssl.SSLContext, evidence: TLSEvidence, detail: str
) -> bool:
    """Whether a failed native connection is grpcio's TLS failing, not the plugin.

    For a plugin key grpcio cannot verify (P-521, Ed25519; known before connecting)
    grpcio's words differ by line (1.85: a handshake failure; 1.60 to 1.75 only "Socket
    closed"), so the plugin is asked instead: a handshake with Python ssl (OpenSSL
    verifies every key type) on the same certificates that succeeds shows the plugin is
    there and its TLS sound, leaving grpcio's verification as the cause. For a key grpcio
    verifies, its words decide.
    """
    if evidence.server_key is None:
        return False
    if tls.is_grpcio_verifiable(evidence.server_key):
        return _tls_failed(detail, address)
    try:
        _ssl_handshake(network, address, context)
    except (OSError, ssl.SSLError, ValueError) as exc:
        _LOG.debug("OpenSSL handshake with the plugin failed too", extra={"error": str(exc)})
        return False
    return True


def _verify(
    conn: Connection,
    evidence: TLSEvidence,
    rpc_timeout: float,
    *,
    native_tls_to_blame: Callable[[str], bool] | None = None,
) -> None:
    """One health RPC (no wait_for_ready): TLS failures surface now, with their cause.

    ``native_tls_to_blame`` (grpcio's own TLS only) says whether a failure is grpcio's TLS.
    """
    try:
        health_status(conn.channel, "plugin", rpc_timeout)
    except HostError as exc:
        cause = exc.__cause__
        if isinstance(cause, grpc.RpcError) and cause.code() in (
            grpc.StatusCode.UNIMPLEMENTED,
            grpc.StatusCode.NOT_FOUND,
        ):
            return  # connected; the plugin just has no health service
        conn.close()
        if (
            native_tls_to_blame is not None
            and evidence.server_key is not None
            and native_tls_to_blame(str(exc))
        ):
            raise HostError(tls.explain_native_failure(evidence.server_key, str(exc))) from exc
        message = f"cannot connect to the plugin: {exc}"
        if isinstance(cause, grpc.RpcError) and cause.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
            message += f" ({unanswered(rpc_timeout)})"
        if conn.dialer is not None and conn.dialer.last_error:
            message += f" ({conn.dialer.last_error})"
        raise HostError(message) from exc


def _ssl_handshake(
    network: str, address: str, context: ssl.SSLContext
) -> tuple[str | None, str | None, bytes | None]:
    """One TLS handshake with the plugin by Python ssl: version, ALPN, peer certificate."""
    raw = dial(network, address, 5.0)
    with context.wrap_socket(raw, server_hostname=tls.SERVER_NAME) as conn:
        return conn.version(), conn.selected_alpn_protocol(), conn.getpeercert(binary_form=True)


def _probe(network: str, address: str, context: ssl.SSLContext, evidence: TLSEvidence) -> None:
    """grpcio hides the TLS version: one extra handshake with Python ssl ("probe")."""
    try:
        version, alpn, peer = _ssl_handshake(network, address, context)
    except (OSError, ssl.SSLError, ValueError) as exc:
        _LOG.debug("TLS probe failed", extra={"error": str(exc)})
        return
    _record_tls(evidence, version, "probe", alpn, peer)


def rpc_code(exc: BaseException) -> grpc.StatusCode | None:
    """The gRPC status code behind a :class:`HostError` (or RpcError), if any."""
    cause = exc if isinstance(exc, grpc.RpcError) else exc.__cause__
    if isinstance(cause, grpc.Call):
        code: grpc.StatusCode = cause.code()
        return code
    return None


def rpc_message(exc: BaseException) -> str:
    """The gRPC status message behind a :class:`HostError` (or RpcError)."""
    cause = exc if isinstance(exc, grpc.RpcError) else exc.__cause__
    if isinstance(cause, grpc.Call):
        return str(cause.details() or "")
    return str(exc)
