"""A broken or hostile go-plugin plugin, run as a real process by a host under test.

``python fake_plugin.py MODE SOCKET_DIR``: MODE (see ``MODES``) says how it misbehaves;
it listens only on a unix socket in SOCKET_DIR (never any other address) and runs until
its host kills it, or ``LIFETIME_S``. Certificates are made go-plugin style with
``soup.certs``; the host's certificate comes from PLUGIN_CLIENT_CERT, as for a real
plugin.
"""

from __future__ import annotations

import base64
import datetime
import os
import socket
import ssl
import sys
import threading
import time
from collections.abc import Callable
from concurrent import futures
from pathlib import Path

import grpc
from cryptography.x509.oid import ExtendedKeyUsageOID
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from soup import certs, tls

LIFETIME_S = 30.0
DAY = datetime.timedelta(days=1)


def _emit(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _field6(der: bytes) -> str:
    return base64.b64encode(der).decode().rstrip("=")


def _line(path: str, cert_field: str = "") -> str:
    return f"1|1|unix|{path}|grpc|{cert_field}"


def _listen(directory: Path) -> tuple[socket.socket, str]:
    path = str(directory / "fake.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(path)
    sock.listen(16)
    return sock, path


def _host_pem() -> bytes:
    return os.environ.get("PLUGIN_CLIENT_CERT", "").encode()


def _serve_tls(sock: socket.socket, own: certs.CertKey) -> None:
    """Complete TLS handshakes (host cert required) with ``own``, then hang up."""
    context = tls.server_ssl_context(own, _host_pem())
    while True:
        conn, _ = sock.accept()
        try:
            with context.wrap_socket(conn, server_side=True) as tconn:
                tconn.recv(1)
        except (OSError, ssl.SSLError):
            conn.close()


def _hold(sock: socket.socket) -> None:
    """Accept connections and never answer (nor close them)."""
    held = []
    while True:
        conn, _ = sock.accept()
        held.append(conn)


def _sleep() -> None:
    time.sleep(LIFETIME_S)


def _tls_plugin(own: certs.CertKey, advertised: certs.CertKey | None = None) -> Callable[[Path], None]:
    """Serve ``own`` over TLS; print ``advertised`` (default: the same) in field 6."""

    def run(directory: Path) -> None:
        sock, path = _listen(directory)
        _emit(_line(path, _field6((advertised or own).cert_der)))
        threading.Thread(target=_serve_tls, args=(sock, own), daemon=True).start()
        _sleep()

    return run


def _field6_plugin(field: Callable[[bytes], str]) -> Callable[[Path], None]:
    """A real TLS plugin whose field 6 is broken by ``field(der)``."""

    def run(directory: Path) -> None:
        own = certs.self_signed("ec-p256")
        sock, path = _listen(directory)
        _emit(_line(path, field(own.cert_der)))
        threading.Thread(target=_serve_tls, args=(sock, own), daemon=True).start()
        _sleep()

    return run


def _plaintext_grpc(directory: Path) -> None:
    """Advertise a certificate but serve plaintext gRPC."""
    path = str(directory / "fake.sock")
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    health_pb2_grpc.add_HealthServicer_to_server(health.HealthServicer(), server)
    server.add_insecure_port(f"unix:{path}")
    server.start()
    _emit(_line(path, _field6(certs.self_signed("ec-p256").cert_der)))
    _sleep()


class _HangingHealth(health_pb2_grpc.HealthServicer):
    def Check(self, request: object, context: grpc.ServicerContext) -> health_pb2.HealthCheckResponse:
        time.sleep(LIFETIME_S)
        return health_pb2.HealthCheckResponse()


def _rpc_hang(directory: Path) -> None:
    """A correct AutoMTLS gRPC server whose every call hangs."""
    own = certs.self_signed("ec-p256")
    path = str(directory / "fake.sock")
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    health_pb2_grpc.add_HealthServicer_to_server(_HangingHealth(), server)
    creds = grpc.ssl_server_credentials(
        [(own.key_pem, own.cert_pem)], root_certificates=_host_pem(), require_client_auth=True
    )
    server.add_secure_port(f"unix:{path}", creds)
    server.start()
    _emit(_line(path, _field6(own.cert_der)))
    _sleep()


def _accept_never_answer(directory: Path) -> None:
    sock, path = _listen(directory)
    _emit(_line(path, _field6(certs.self_signed("ec-p256").cert_der)))
    _hold(sock)


def _print(template: str, *, exit_after: bool = False) -> Callable[[Path], None]:
    """Print ``template`` ({sock}: a path in the socket dir; {cert}: a valid field 6)."""

    def run(directory: Path) -> None:
        cert = _field6(certs.self_signed("ec-p256").cert_der)
        _emit(template.format(sock=directory / "fake.sock", cert=cert))
        if not exit_after:
            _sleep()

    return run


def _exit_before(directory: Path) -> None:
    sys.stderr.write("fake plugin: giving up before the handshake\n")
    sys.exit(3)


def _cert(usages: tuple[object, ...] | None = None, shift: datetime.timedelta | None = None) -> certs.CertKey:
    if shift is None:
        return certs.self_signed("ec-p256", usages=usages or (ExtendedKeyUsageOID.SERVER_AUTH,))
    now = datetime.datetime.now(datetime.UTC)
    start = now + shift if shift > datetime.timedelta(0) else now + shift - 10 * DAY
    return certs.self_signed("ec-p256", validity=(start, start + 9 * DAY))


def _modes() -> dict[str, Callable[[], Callable[[Path], None]]]:
    oid = ExtendedKeyUsageOID
    return {
        "cert-mismatch": lambda: _tls_plugin(certs.self_signed("ec-p256"), certs.self_signed("ec-p256")),
        "cert-expired": lambda: _tls_plugin(_cert(shift=-DAY)),
        "cert-not-yet-valid": lambda: _tls_plugin(_cert(shift=DAY)),
        "cert-client-auth-only": lambda: _tls_plugin(_cert((oid.CLIENT_AUTH,))),
        "cert-code-signing-only": lambda: _tls_plugin(_cert((oid.CODE_SIGNING,))),
        "cert-no-eku": lambda: _tls_plugin(certs.self_signed("ec-p256", usages=None)),
        "plaintext-grpc": lambda: _plaintext_grpc,
        "field6-missing": lambda: _field6_plugin(lambda der: ""),
        "field6-padded": lambda: _field6_plugin(lambda der: base64.b64encode(der + b"\0").decode()),
        "field6-bad-base64": lambda: _field6_plugin(lambda der: "!" * 80),
        "field6-not-der": lambda: _field6_plugin(lambda der: _field6(b"\x30\x82not a certificate" * 8)),
        "rpc-hang": lambda: _rpc_hang,
        "accept-never-answer": lambda: _accept_never_answer,
        "silent": lambda: lambda directory: _sleep(),
        "exit-before-line": lambda: _exit_before,
        "exit-after-line": lambda: _print("1|1|unix|{sock}|grpc|{cert}", exit_after=True),
        "missing-socket": lambda: _print("1|1|unix|{sock}|grpc|{cert}"),
        "garbage": lambda: _print("soup says hello"),
        "line-over-64k": lambda: _print("1|1|unix|{sock}|grpc|" + "A" * 70_000),
        "core-version-2": lambda: _print("2|1|unix|{sock}|grpc|{cert}"),
        "app-version-9": lambda: _print("1|9|unix|{sock}|grpc|{cert}"),
        "network-udp": lambda: _print("1|1|udp|{sock}|grpc|{cert}"),
        "protocol-netrpc": lambda: _print("1|1|unix|{sock}|netrpc|{cert}"),
        "three-fields": lambda: _print("1|1|unix"),
        "huge-core-version": lambda: _print("9" * 5000 + "|1|unix|{sock}|grpc|{cert}"),
        "huge-app-version": lambda: _print("1|" + "9" * 5000 + "|unix|{sock}|grpc|{cert}"),
    }


MODES = tuple(_modes())


def main(argv: list[str]) -> int:
    mode, directory = argv[1], Path(argv[2])
    _modes()[mode]()(directory)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
