"""A go-plugin plugin with one deliberate fault, to prove each ``soup check plugin`` check can fail.

``python broken_plugin.py FAULT`` (``none`` for no fault). Without a fault it is a correct
plugin of app versions 1 and 2: it checks go-plugin's example cookie, serves AutoMTLS
(soup's OpenSSL bridge in front of a plaintext grpcio server on a private socket), the
health, controller, stdio and broker services, honours PLUGIN_UNIX_SOCKET_GROUP, exits on
Shutdown or when its host dies, and removes what it made. Each fault in FAULTS breaks
exactly one of those rules; check_fakes.toml says which checks must then fail.
It listens only on unix sockets in a private directory of its TMPDIR.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import ssl
import sys
import tempfile
import threading
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from soup import bridge, certs, handshake, listen, pb, tls, tlspipe

FAULTS = {
    "none": "no fault: every check passes",
    "ignores-cookie": "starts and prints its line without the magic cookie",
    "netrpc": "advertises protocol netrpc in field 5",
    "lowest-version": "picks the lowest common app version instead of the highest",
    "no-alpn": "TLS without ALPN h2",
    "cert-mismatch": "serves a certificate other than the one in field 6",
    "client-cert-optional": "accepts TLS connections that present no client certificate",
    "no-client-auth": "never asks for a client certificate",
    "plaintext-too": "answers plaintext HTTP/2 on the TLS socket",
    "tls10": "accepts TLS 1.0 and 1.1",
    "not-serving": "health says NOT_SERVING for service plugin",
    "ignores-shutdown": "GRPCController.Shutdown returns but the plugin keeps running",
    "no-stdio": "does not serve GRPCStdio",
    "no-broker": "does not serve GRPCBroker",
    "multiplex-maybe": "field 7 'maybe' when PLUGIN_MULTIPLEX_GRPC=true",
    "multiplex-claimed": "field 7 'true' when PLUGIN_MULTIPLEX_GRPC=true, but no yamux",
    "ignores-socket-group": "leaves its socket in its own group and mode",
    "outlives-host": "keeps running when its host dies",
    "litters-tmpdir": "leaves a file in TMPDIR after Shutdown",
    "serial-handshakes": "does TLS handshakes one at a time in the accept loop",
}
COOKIE_KEY, COOKIE_VALUE = "BASIC_PLUGIN", "hello"
VERSIONS = (1, 2)
LIFETIME_S = 60


class _Controller(pb.grpc_controller_pb2_grpc.GRPCControllerServicer):
    def __init__(self, done: threading.Event, fault: str) -> None:
        self._done, self._fault = done, fault

    def Shutdown(self, request: Any, context: Any) -> Any:
        if self._fault != "ignores-shutdown":
            self._done.set()
        return pb.grpc_controller_pb2.Empty()


class _Stdio(pb.grpc_stdio_pb2_grpc.GRPCStdioServicer):
    def __init__(self, done: threading.Event) -> None:
        self._done = done

    def StreamStdio(self, request: Any, context: Any) -> Iterator[Any]:
        self._done.wait(LIFETIME_S)
        return iter(())


class _Broker(pb.grpc_broker_pb2_grpc.GRPCBrokerServicer):
    def StartStream(self, request_iterator: Iterator[Any], context: Any) -> Iterator[Any]:
        for _ in request_iterator:
            pass
        return iter(())


def _grpc_server(fault: str, done: threading.Event, path: str) -> grpc.Server:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    status = health.HealthServicer()
    serving = health_pb2.HealthCheckResponse.SERVING
    status.set(
        "plugin", health_pb2.HealthCheckResponse.NOT_SERVING if fault == "not-serving" else serving
    )
    health_pb2_grpc.add_HealthServicer_to_server(status, server)
    pb.grpc_controller_pb2_grpc.add_GRPCControllerServicer_to_server(
        _Controller(done, fault), server
    )
    if fault != "no-stdio":
        pb.grpc_stdio_pb2_grpc.add_GRPCStdioServicer_to_server(_Stdio(done), server)
    if fault != "no-broker":
        pb.grpc_broker_pb2_grpc.add_GRPCBrokerServicer_to_server(_Broker(), server)
    server.add_insecure_port(f"unix:{path}")
    server.start()
    return server


def _server_context(fault: str, own: certs.CertKey, client_pem: bytes) -> ssl.SSLContext:
    context = tls.server_ssl_context(own, client_pem)
    if fault == "no-alpn":
        context.set_alpn_protocols(["http/1.1"])  # no overlap with the host's h2: no ALPN
    elif fault == "client-cert-optional":
        context.verify_mode = ssl.CERT_OPTIONAL
    elif fault == "no-client-auth":
        context.verify_mode = ssl.CERT_NONE
    elif fault == "tls10":
        context.minimum_version = ssl.TLSVersion.TLSv1
        context.set_ciphers("DEFAULT:@SECLEVEL=0")
    return context


def _pump(source: socket.socket, sink: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := source.recv(65536):
            sink.sendall(data)
    with contextlib.suppress(OSError):
        sink.shutdown(socket.SHUT_WR)


class _FaultyListener(bridge.TLSListenerBridge):
    """soup's TLS listener with the accept-time faults: plaintext let through, or one TLS
    handshake at a time, so that one stalled peer holds up every other."""

    def __init__(self, fault: str, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._fault = fault
        self._one_handshake = threading.Lock()

    def _accepted(self, conn: socket.socket, peer: str) -> None:
        if self._fault == "plaintext-too" and self._plaintext(conn):
            return
        if self._fault != "serial-handshakes":
            super()._accepted(conn, peer)
            return
        connection = bridge._Connection(
            tlspipe.TLSPipe(self._context, server_side=True), peer, tls=conn
        )
        handshake_alone = connection.handshake

        def one_at_a_time(*args: Any, **kwargs: Any) -> Any:
            with self._one_handshake:
                return handshake_alone(*args, **kwargs)

        connection.handshake = one_at_a_time  # type: ignore[method-assign]
        self._spawn(connection, lambda: self._serve(connection))

    def _plaintext(self, conn: socket.socket) -> bool:
        conn.settimeout(2.0)
        try:
            first = conn.recv(1, socket.MSG_PEEK)
        except OSError:
            first = b""
        conn.settimeout(None)
        if not first or first[0] == 0x16:  # a TLS handshake record
            return False
        backend = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        backend.connect(self._backend_path)
        for source, sink in ((conn, backend), (backend, conn)):
            threading.Thread(target=_pump, args=(source, sink), daemon=True).start()
        return True


def _line(fault: str, address: str, cert_der: bytes) -> bytes:
    offered = os.environ.get(handshake.ENV_PROTOCOL_VERSIONS, "")
    app = handshake.negotiate_version(offered, VERSIONS)
    if fault == "lowest-version":
        common = sorted({int(v) for v in offered.split(",") if v.strip().isdigit()} & {*VERSIONS})
        app = common[0] if common else app
    shown = certs.self_signed("ec-p256").cert_der if fault == "cert-mismatch" else cert_der
    protocol = "netrpc" if fault == "netrpc" else "grpc"
    line = handshake.format_line(
        handshake.Handshake(1, app, "unix", address, protocol, server_cert_der=shown)
    )
    if os.environ.get(handshake.ENV_MULTIPLEX_GRPC) == "true" and fault.startswith("multiplex-"):
        line = line.rstrip(b"\n") + (b"|maybe\n" if fault == "multiplex-maybe" else b"|true\n")
    return line


def _listen(fault: str, directory: Path) -> socket.socket:
    path = str(directory / "plugin.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(path)
    sock.listen(128)
    gid = listen.socket_group(os.environ)
    if gid is not None and fault != "ignores-socket-group":
        listen.share_with_group(path, gid)
    return sock


def _watch_host(done: threading.Event, fault: str) -> None:
    parent = os.getppid()
    while not done.wait(0.05):
        if fault != "outlives-host" and os.getppid() != parent:
            done.set()


def serve(fault: str) -> int:
    client_pem = os.environ.get(handshake.ENV_CLIENT_CERT, "").encode()
    if not client_pem:
        sys.stderr.write("broken_plugin: serves AutoMTLS only; set PLUGIN_CLIENT_CERT\n")
        return 1
    directory = Path(tempfile.mkdtemp(prefix="broken-"))
    done = threading.Event()
    server = _grpc_server(fault, done, str(directory / "grpc.sock"))
    own = certs.self_signed("ec-p256")
    listener = _FaultyListener(
        fault, _listen(fault, directory), _server_context(fault, own, client_pem),
        str(directory / "grpc.sock"),
    )  # fmt: skip
    try:
        listener.start()
        threading.Thread(target=_watch_host, args=(done, fault), daemon=True).start()
        sys.stdout.buffer.write(_line(fault, str(directory / "plugin.sock"), own.cert_der))
        sys.stdout.flush()
        done.wait(LIFETIME_S)
    finally:
        listener.close()
        server.stop(0.5)
        shutil.rmtree(directory, ignore_errors=True)
        if fault == "litters-tmpdir":
            Path(tempfile.gettempdir(), "broken-plugin-was-here").write_text("left behind\n")
    return 0


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[1] not in FAULTS:
        sys.stderr.write(f"usage: broken_plugin.py FAULT, one of: {', '.join(FAULTS)}\n")
        return 2
    if argv[1] != "ignores-cookie" and os.environ.get(COOKIE_KEY) != COOKIE_VALUE:
        sys.stderr.write(handshake.NOT_A_PLUGIN_MESSAGE + "\n")
        return 1
    return serve(argv[1])


if __name__ == "__main__":
    sys.exit(main(sys.argv))
