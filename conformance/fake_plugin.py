"""A broken or hostile go-plugin plugin, run as a real process by a host under test.

``python fake_plugin.py BEHAVIOUR DIR``. The test prepares DIR: ``line.txt`` (the
handshake line to print; ``{sock}`` stands for the socket path) and, for behaviours
that serve TLS, ``serve.pem``/``serve.key`` (the certificate to present, which need not
be the one in the line). The fake listens only on a unix socket in DIR (never any
other address), writes the monotonic time it started to ``DIR/started`` (so the suite
times the host's reaction, not interpreter start-up) and runs until its host kills it
or ``LIFETIME_S`` passes. Only the standard library is imported, except for the
gRPC behaviours, so that it starts fast.
"""

from __future__ import annotations

import os
import signal
import socket
import ssl
import sys
import time
from collections.abc import Callable
from pathlib import Path

LIFETIME_S = 30
SOCKET_NAME = "fake.sock"


def _print_line(directory: Path) -> str:
    path = str(directory / SOCKET_NAME)
    sys.stdout.write((directory / "line.txt").read_text().replace("{sock}", path) + "\n")
    sys.stdout.flush()
    return path


def _listen(path: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(path)
    sock.listen(16)
    return sock


def _server_context(directory: Path) -> ssl.SSLContext:
    """Present serve.pem, require the host's PLUGIN_CLIENT_CERT, TLS >= 1.2, ALPN h2."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(cadata=os.environ.get("PLUGIN_CLIENT_CERT", ""))
    context.set_alpn_protocols(["h2"])
    context.load_cert_chain(directory / "serve.pem", directory / "serve.key")
    return context


def serve_tls(directory: Path) -> None:
    """Complete TLS handshakes with serve.pem, then hang up."""
    context = _server_context(directory)
    sock = _listen(_print_line(directory))
    while True:
        conn, _ = sock.accept()
        try:
            with context.wrap_socket(conn, server_side=True) as tconn:
                tconn.recv(1)
        except (OSError, ssl.SSLError):
            conn.close()


def hold(directory: Path) -> None:
    """Accept connections and never answer, nor close them."""
    sock = _listen(_print_line(directory))
    held = []
    while True:
        conn, _ = sock.accept()
        held.append(conn)


def print_and_sleep(directory: Path) -> None:
    _print_line(directory)
    time.sleep(LIFETIME_S)


def print_and_exit(directory: Path) -> None:
    _print_line(directory)


def sleep(directory: Path) -> None:
    time.sleep(LIFETIME_S)


def exit_before(directory: Path) -> None:
    sys.stderr.write("fake plugin: giving up before the handshake\n")
    sys.exit(3)


def _grpc_server(hang: bool) -> object:
    import grpc  # noqa: PLC0415 - only the gRPC behaviours pay for the import
    from concurrent import futures  # noqa: PLC0415
    from grpc_health.v1 import health, health_pb2, health_pb2_grpc  # noqa: PLC0415

    class Hanging(health_pb2_grpc.HealthServicer):  # type: ignore[misc]
        def Check(self, request: object, context: object) -> object:
            time.sleep(LIFETIME_S)
            return health_pb2.HealthCheckResponse()

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    servicer = Hanging() if hang else health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    return server


def grpc_plaintext(directory: Path) -> None:
    """Plaintext gRPC, whatever the line says."""
    server: object = _grpc_server(hang=False)
    server.add_insecure_port(f"unix:{directory / SOCKET_NAME}")  # type: ignore[attr-defined]
    server.start()  # type: ignore[attr-defined]
    print_and_sleep(directory)


def grpc_hang(directory: Path) -> None:
    """Correct AutoMTLS gRPC (grpcio's TLS) whose every call hangs."""
    import grpc  # noqa: PLC0415

    server: object = _grpc_server(hang=True)
    creds = grpc.ssl_server_credentials(
        [((directory / "serve.key").read_bytes(), (directory / "serve.pem").read_bytes())],
        root_certificates=os.environ.get("PLUGIN_CLIENT_CERT", "").encode(),
        require_client_auth=True,
    )
    server.add_secure_port(f"unix:{directory / SOCKET_NAME}", creds)  # type: ignore[attr-defined]
    server.start()  # type: ignore[attr-defined]
    print_and_sleep(directory)


BEHAVIOURS: dict[str, Callable[[Path], None]] = {
    "serve-tls": serve_tls,
    "hold": hold,
    "print-and-sleep": print_and_sleep,
    "print-and-exit": print_and_exit,
    "sleep": sleep,
    "exit-before": exit_before,
    "grpc-plaintext": grpc_plaintext,
    "grpc-hang": grpc_hang,
}


def main(argv: list[str]) -> int:
    behaviour, directory = argv[1], Path(argv[2])
    (directory / "started").write_text(repr(time.monotonic()))
    signal.alarm(LIFETIME_S)  # never outlive a host that forgot us by more than this
    BEHAVIOURS[behaviour](directory)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
