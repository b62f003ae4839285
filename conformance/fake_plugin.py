"""A broken or hostile go-plugin plugin, run as a real process by a host under test.

``python fake_plugin.py BEHAVIOUR DIR``. The test prepares DIR: ``line.txt`` (the
handshake line to print; ``{sock}`` stands for the socket path, ``{tcp}`` for the
127.0.0.1 address of ``refuse-tcp``) and, for behaviours that serve TLS,
``serve.pem``/``serve.key`` (the certificate to present, which need not be the one in
the line). The fake listens only on a unix socket in DIR (never any other address;
``refuse-tcp`` binds a 127.0.0.1 port without listening), writes the monotonic time it
started to ``DIR/started`` (so the suite times the host's reaction, not interpreter
start-up) and runs until its host kills it or ``LIFETIME_S`` passes. Only the standard library is imported, so that it starts
fast (the HTTP/2 it speaks is a few fixed frames).
"""

from __future__ import annotations

import os
import signal
import socket
import ssl
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

LIFETIME_S = 30
SOCKET_NAME = "fake.sock"


def _print_line(directory: Path, tcp: str = "") -> None:
    path = str(directory / SOCKET_NAME)
    line = (directory / "line.txt").read_text().replace("{sock}", path).replace("{tcp}", tcp)
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _listen_and_print(directory: Path) -> socket.socket:
    """Listen first, then print the line: the host may dial right away."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(directory / SOCKET_NAME))
    sock.listen(16)
    _print_line(directory)
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


def _accept_tls(directory: Path, handle: Callable[[ssl.SSLSocket], None]) -> None:
    """Accept TLS connections (host cert required) and hand each to ``handle`` in a thread."""
    context = _server_context(directory)
    sock = _listen_and_print(directory)
    while True:
        conn, _ = sock.accept()
        try:
            tconn = context.wrap_socket(conn, server_side=True)
        except (OSError, ssl.SSLError):
            conn.close()
            continue
        threading.Thread(target=handle, args=(tconn,), daemon=True).start()


def _hang_up(conn: ssl.SSLSocket) -> None:
    with conn:
        conn.recv(1)


def serve_tls(directory: Path) -> None:
    """Complete TLS handshakes with serve.pem, then hang up."""
    _accept_tls(directory, _hang_up)


def hold(directory: Path) -> None:
    """Accept connections and never answer, nor close them."""
    sock = _listen_and_print(directory)
    held = []
    while True:
        conn, _ = sock.accept()
        held.append(conn)


def refuse_tcp(directory: Path) -> None:
    """Advertise a 127.0.0.1 port that is bound but not listening: the kernel refuses
    every dial (RST), and no other process can take the port while the fake runs."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    host, port = sock.getsockname()
    _print_line(directory, f"{host}:{port}")
    time.sleep(LIFETIME_S)


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


# HTTP/2 frames (RFC 9113): an empty SETTINGS frame, and its acknowledgement.
H2_SETTINGS = b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
H2_SETTINGS_ACK = b"\x00\x00\x00\x04\x01\x00\x00\x00\x00"


def _answer_settings_then_hang(conn: ssl.SSLSocket) -> None:
    conn.sendall(H2_SETTINGS)
    conn.recv(65536)  # the host's preface and SETTINGS
    conn.sendall(H2_SETTINGS_ACK)
    while conn.recv(65536):  # every request stays unanswered
        pass


def http2_hang(directory: Path) -> None:
    """Correct AutoMTLS and an HTTP/2 connection, but no call is ever answered."""
    _accept_tls(directory, _answer_settings_then_hang)


def plaintext_http2(directory: Path) -> None:
    """Answer in plaintext HTTP/2, whatever the line says (it carries a certificate)."""
    sock = _listen_and_print(directory)
    while True:
        conn, _ = sock.accept()
        try:
            conn.sendall(H2_SETTINGS)
        except OSError:
            conn.close()


BEHAVIOURS: dict[str, Callable[[Path], None]] = {
    "serve-tls": serve_tls,
    "hold": hold,
    "print-and-sleep": print_and_sleep,
    "print-and-exit": print_and_exit,
    "sleep": sleep,
    "exit-before": exit_before,
    "plaintext-http2": plaintext_http2,
    "http2-hang": http2_hang,
    "refuse-tcp": refuse_tcp,
}


def main(argv: list[str]) -> int:
    behaviour, directory = argv[1], Path(argv[2])
    (directory / "started").write_text(repr(time.monotonic()))
    signal.alarm(LIFETIME_S)  # never outlive a host that forgot us by more than this
    BEHAVIOURS[behaviour](directory)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
