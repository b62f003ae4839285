"""Tests for soup.bridge: TLS (OpenSSL) in front of / behind plaintext sockets.

Everything runs on loopback or unix sockets. The certificates are made here, go-plugin
style, with `cryptography` (independent of soup.certs).
"""

from __future__ import annotations

import contextlib
import datetime
import gc
import hashlib
import logging
import os
import select
import shutil
import socket
import ssl
import stat
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from soup import bridge, tlspipe
from soup.bridge import BridgeError, TLSDialerBridge, TLSListenerBridge, private_socket_dir

try:
    import grpc
    from grpc_health.v1 import health, health_pb2, health_pb2_grpc
except ImportError:  # the grpcio test is skipped
    grpc = None

TIMEOUT = 10.0

# --------------------------------------------------------------------------------------
# certificates and contexts


@dataclass(frozen=True)
class Pair:
    key_type: str
    cert_pem: bytes
    key_pem: bytes
    cert_der: bytes


def make_pair(key_type: str) -> Pair:
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
    algorithm: hashes.HashAlgorithm | None = hashes.SHA256()
    if key_type.startswith("rsa-"):
        key = rsa.generate_private_key(65537, int(key_type[4:]))
    elif key_type == "ec-p256":
        key = ec.generate_private_key(ec.SECP256R1())
    elif key_type == "ec-p384":
        key = ec.generate_private_key(ec.SECP384R1())
        algorithm = hashes.SHA384()
    elif key_type == "ec-p521":
        key = ec.generate_private_key(ec.SECP521R1())
        algorithm = hashes.SHA512()
    elif key_type == "ed25519":
        key = ed25519.Ed25519PrivateKey.generate()
        algorithm = None
    else:
        raise ValueError(key_type)
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, "localhost"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "soup"),
        ]
    )
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(seconds=30))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=True,
                data_encipherment=False,
                key_agreement=True,
                key_cert_sign=True,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .sign(key, algorithm)
    )
    return Pair(
        key_type,
        cert.public_bytes(serialization.Encoding.PEM),
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
        cert.public_bytes(serialization.Encoding.DER),
    )


KEY_TYPES = ("rsa-2048", "ec-p256", "ec-p384", "ec-p521", "ed25519")
_PAIRS: dict[str, Pair] = {}


def pair(name: str) -> Pair:
    """A cached pair per name, e.g. "ec-p521" or "ec-p521/other" (a second one)."""
    if name not in _PAIRS:
        _PAIRS[name] = make_pair(name.split("/", maxsplit=1)[0])
    return _PAIRS[name]


def _context(
    purpose: int, own: Pair | None, trusted: Pair, tmp: Path, max_version: ssl.TLSVersion | None
) -> ssl.SSLContext:
    ctx = ssl.SSLContext(purpose)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if max_version is not None:
        ctx.maximum_version = max_version
    if own is not None:
        cert_file, key_file = tmp / f"{id(own)}-cert.pem", tmp / f"{id(own)}-key.pem"
        cert_file.write_bytes(own.cert_pem)
        key_file.write_bytes(own.key_pem)
        ctx.load_cert_chain(cert_file, key_file)
    ctx.load_verify_locations(cadata=trusted.cert_pem.decode())
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.set_alpn_protocols(["h2"])
    return ctx


def server_context(
    own: Pair, trusted: Pair, tmp: Path, max_version: ssl.TLSVersion | None = None
) -> ssl.SSLContext:
    return _context(ssl.PROTOCOL_TLS_SERVER, own, trusted, tmp, max_version)


def client_context(
    own: Pair | None, trusted: Pair, tmp: Path, max_version: ssl.TLSVersion | None = None
) -> ssl.SSLContext:
    ctx = _context(ssl.PROTOCOL_TLS_CLIENT, own, trusted, tmp, max_version)
    ctx.check_hostname = True
    return ctx


# --------------------------------------------------------------------------------------
# plain backends (stand-ins for grpcio)


Handler = Callable[[socket.socket], None]


def echo(conn: socket.socket) -> None:
    while data := conn.recv(65536):
        conn.sendall(data)
    conn.shutdown(socket.SHUT_WR)


def digest_after_eof(conn: socket.socket) -> None:
    """Read to EOF, then answer with the SHA-256 of everything read and close."""
    h = hashlib.sha256()
    while data := conn.recv(65536):
        h.update(data)
    conn.sendall(b"digest:" + h.hexdigest().encode())
    conn.shutdown(socket.SHUT_WR)


class Backend:
    """A threaded unix socket server in a private directory."""

    def __init__(self, handler: Handler) -> None:
        self.dir = private_socket_dir()
        self.path = str(self.dir / "backend.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(self.path)
        self.sock.listen(16)
        self.handler = handler
        self.accepted = 0
        self.errors: list[BaseException] = []
        self.threads: list[threading.Thread] = []
        self.conns: list[socket.socket] = []
        self.thread = threading.Thread(target=self._accept, name="test-backend", daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            self.conns.append(conn)
            t = threading.Thread(target=self._serve, args=(conn,), name="test-backend-conn")
            t.start()
            self.threads.append(t)

    def _serve(self, conn: socket.socket) -> None:
        try:
            with conn:
                self.handler(conn)
        except OSError as exc:
            self.errors.append(exc)

    def close(self) -> None:
        if self.sock.fileno() == -1:
            return
        self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self.thread.join(TIMEOUT)
        for conn in self.conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        for t in self.threads:
            t.join(TIMEOUT)
        shutil.rmtree(self.dir, ignore_errors=True)


def listen_socket(transport: str, tmp_dir: Path) -> tuple[socket.socket, str, str]:
    """(listening socket, network, address) for the plugin side."""
    if transport == "tcp":
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        return sock, "tcp", f"127.0.0.1:{sock.getsockname()[1]}"
    path = str(tmp_dir / "plugin.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(path)
    sock.listen(16)
    return sock, "unix", path


class WarningEvents(logging.Handler):
    """Event-based synchronisation on the bridge's warning logs."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []
        self.event = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())
        self.event.set()


@dataclass
class Chain:
    backend: Backend
    listener: TLSListenerBridge
    network: str
    address: str
    dialer: TLSDialerBridge | None
    target: str | None
    warnings: WarningEvents

    def connect(self) -> socket.socket:
        assert self.target is not None
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(TIMEOUT)
        sock.connect(self.target.removeprefix("unix:"))
        return sock

    def listener_error(self) -> str:
        """The listener's last error, once it has logged a warning."""
        assert self.warnings.event.wait(TIMEOUT)
        assert self.listener.last_error is not None
        return self.listener.last_error

    def connect_plugin(self) -> socket.socket:
        if self.network == "tcp":
            host, port = self.address.rsplit(":", 1)
            return socket.create_connection((host, int(port)), timeout=TIMEOUT)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(TIMEOUT)
        sock.connect(self.address)
        return sock


@pytest.fixture
def make_chain(tmp_path: Path) -> Iterator[Callable[..., Chain]]:
    made: list[Chain] = []

    def make(
        *,
        transport: str = "unix",
        server: str = "ec-p256",
        client: str = "ec-p256",
        handler: Handler = echo,
        dial: bool = True,
        dialer_trusts: str | None = None,
        listener_trusts: str | None = None,
        max_version: ssl.TLSVersion | None = None,
        handshake_timeout: float = bridge.HANDSHAKE_TIMEOUT,
    ) -> Chain:
        backend = Backend(handler)
        sock, network, address = listen_socket(transport, tmp_path)
        warnings = WarningEvents()
        logger = logging.getLogger(f"test.bridge.{len(made)}.{id(warnings)}")
        logger.addHandler(warnings)
        listener = TLSListenerBridge(
            sock,
            server_context(pair(server), pair(listener_trusts or client), tmp_path, max_version),
            backend.path,
            logger=logger,
            handshake_timeout=handshake_timeout,
        )
        listener.start()
        dialer = target = None
        if dial:
            dialer = TLSDialerBridge(
                network,
                address,
                client_context(pair(client), pair(dialer_trusts or server), tmp_path),
                logger=logger,
            )
            target = dialer.start()
        chain = Chain(backend, listener, network, address, dialer, target, warnings)
        made.append(chain)
        return chain

    yield make
    for chain in made:
        if chain.dialer is not None:
            chain.dialer.close()
        chain.listener.close()
        chain.backend.close()


def recv_all(sock: socket.socket) -> bytes:
    chunks = []
    while data := sock.recv(65536):
        chunks.append(data)
    return b"".join(chunks)


def exchange(tls: ssl.SSLSocket) -> bytes:
    tls.sendall(b"hello")
    return tls.recv(10)


def bridge_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("soup-bridge")]


def settled_bridge_threads() -> list[str]:
    """The bridge threads once no handshake thread is left (they end on their own)."""
    deadline = time.monotonic() + TIMEOUT
    while any("-handshake-" in name for name in bridge_threads()):
        assert time.monotonic() < deadline, bridge_threads()
        time.sleep(0.01)
    return bridge_threads()


def fd_count() -> int:
    gc.collect()  # sockets dropped by earlier tests must not blur the count
    return len(os.listdir("/proc/self/fd"))


# --------------------------------------------------------------------------------------
# tests


def test_private_socket_dir_is_0700() -> None:
    d = private_socket_dir()
    try:
        st = d.stat()
        assert stat.S_IMODE(st.st_mode) == 0o700
        assert st.st_uid == os.geteuid()
        assert len(str(d / "grpc.sock")) < 104
    finally:
        d.rmdir()


@pytest.mark.parametrize("transport", ["unix", "tcp"])
def test_full_duplex_8mib_each_way(make_chain: Callable[..., Chain], transport: str) -> None:
    chain = make_chain(transport=transport, server="ec-p521", client="ed25519")
    payload = os.urandom(8 * 1024 * 1024)
    received: list[bytes] = []
    with chain.connect() as sock:
        reader = threading.Thread(target=lambda: received.append(recv_all(sock)), name="t-read")
        reader.start()
        sock.sendall(payload)
        sock.shutdown(socket.SHUT_WR)
        reader.join(60)
        assert not reader.is_alive()
    assert len(received[0]) == len(payload)
    assert hashlib.sha256(received[0]).digest() == hashlib.sha256(payload).digest()
    assert chain.listener.tls_versions == ["TLSv1.3"]
    assert chain.dialer is not None
    info = chain.dialer.last_tls_info
    assert info is not None
    assert info.version == "TLSv1.3"
    assert info.alpn == "h2"
    assert info.peer_cert_der == pair("ec-p521").cert_der
    assert chain.listener.last_error is None


@pytest.mark.parametrize("server", KEY_TYPES)
@pytest.mark.parametrize("client", ["ec-p521", "ed25519", "rsa-2048"])
def test_key_types(make_chain: Callable[..., Chain], server: str, client: str) -> None:
    chain = make_chain(server=server, client=client)
    with chain.connect() as sock:
        sock.sendall(b"ping")
        sock.shutdown(socket.SHUT_WR)
        assert recv_all(sock) == b"ping"
    assert chain.listener.tls_versions == ["TLSv1.3"]


def test_tls12(make_chain: Callable[..., Chain]) -> None:
    chain = make_chain(server="ec-p521", client="ec-p521", max_version=ssl.TLSVersion.TLSv1_2)
    assert chain.dialer is not None
    info = chain.dialer.first_handshake(TIMEOUT)
    assert info.version == "TLSv1.2"
    assert info.alpn == "h2"
    with chain.connect() as sock:
        sock.sendall(b"x" * 100_000)
        sock.shutdown(socket.SHUT_WR)
        assert recv_all(sock) == b"x" * 100_000
    assert chain.listener.tls_versions == ["TLSv1.2"]


@pytest.mark.parametrize("transport", ["unix", "tcp"])
def test_half_close_both_directions(make_chain: Callable[..., Chain], transport: str) -> None:
    chain = make_chain(transport=transport, handler=digest_after_eof)
    payload = os.urandom(3 * 1024 * 1024 + 7)
    with chain.connect() as sock:
        sock.sendall(payload)
        sock.shutdown(socket.SHUT_WR)  # -> close_notify -> SHUT_WR towards the backend
        # The backend only answers after EOF; its answer comes back over the half-open
        # connection, then its EOF comes back as EOF here.
        assert recv_all(sock) == b"digest:" + hashlib.sha256(payload).hexdigest().encode()


def test_server_speaks_first_then_closes(make_chain: Callable[..., Chain]) -> None:
    heard: list[bytes] = []
    done = threading.Event()

    def greet(conn: socket.socket) -> None:
        conn.sendall(b"hello")
        conn.shutdown(socket.SHUT_WR)
        heard.append(recv_all(conn))
        done.set()

    chain = make_chain(handler=greet)
    with chain.connect() as sock:
        assert recv_all(sock) == b"hello"  # backend EOF arrives, our direction stays open
        sock.sendall(b"still here")
        sock.shutdown(socket.SHUT_WR)
        assert done.wait(TIMEOUT)
    assert heard == [b"still here"]
    assert chain.backend.errors == []


def push_until_stuck(sock: socket.socket, data: bytes) -> int:
    """Send ``data`` until nothing drains for a while (every buffer on the path is full).

    Returns how much was sent; the socket is left in blocking mode with ``TIMEOUT``.
    """
    sock.setblocking(False)
    sent = 0
    try:
        while sent < len(data):
            try:
                sent += sock.send(data[sent : sent + 65536])
            except BlockingIOError:
                _, writable, _ = select.select([], [sock], [], 0.5)
                if not writable:
                    break
    finally:
        sock.settimeout(TIMEOUT)
    assert sent < len(data), "the path never filled up"
    return sent


def test_half_close_with_return_path_full(make_chain: Callable[..., Chain]) -> None:
    """The client half-closes while the bridge still buffers undelivered backend data.

    Regression: the dialer's close_notify (``SSLObject.unwrap``) made OpenSSL read, and
    reject, the ciphertext still queued in the incoming BIO; the relay then failed and
    the client saw a clean EOF after part of the data.
    """
    payload = os.urandom(8 * 1024 * 1024)
    stuck = threading.Event()
    heard: list[bytes] = []

    def flood(conn: socket.socket) -> None:
        sent = push_until_stuck(conn, payload)
        stuck.set()
        conn.sendall(payload[sent:])
        heard.append(recv_all(conn))
        conn.shutdown(socket.SHUT_WR)

    chain = make_chain(handler=flood)
    with chain.connect() as sock:
        sock.sendall(b"request")
        assert stuck.wait(TIMEOUT)
        sock.shutdown(socket.SHUT_WR)  # close_notify while the dialer's buffers are full
        received = recv_all(sock)
    assert len(received) == len(payload)
    assert received == payload
    assert heard == [b"request"]
    assert chain.backend.errors == []


def test_backend_half_close_with_forward_path_full(make_chain: Callable[..., Chain]) -> None:
    """The backend half-closes while the listener still buffers undelivered client data."""
    payload = os.urandom(8 * 1024 * 1024)
    stuck = threading.Event()
    done = threading.Event()
    heard: list[bytes] = []

    def answer_first(conn: socket.socket) -> None:
        assert stuck.wait(TIMEOUT)
        conn.sendall(b"answer")
        conn.shutdown(socket.SHUT_WR)  # close_notify while the listener's buffers are full
        heard.append(recv_all(conn))
        done.set()

    chain = make_chain(handler=answer_first)
    with chain.connect() as sock:
        sent = push_until_stuck(sock, payload)
        stuck.set()
        sock.sendall(payload[sent:])
        sock.shutdown(socket.SHUT_WR)
        assert recv_all(sock) == b"answer"
        assert done.wait(TIMEOUT)
    assert chain.backend.errors == []
    assert len(heard) == 1
    assert len(heard[0]) == len(payload)
    assert heard[0] == payload


def test_close_notify_keeps_queued_records(tmp_path: Path) -> None:
    """Deterministic core of the full-duplex data loss: our close_notify is queued while
    the peer's records still wait in the incoming BIO (plain side slower than TLS side).

    A bare ``SSLObject.unwrap()`` reads them, fails with APPLICATION_DATA_AFTER_CLOSE_NOTIFY
    and the rest of the stream is lost; every byte must still be readable, in order.
    """
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    client = client_context(pair("ec-p256"), pair("ec-p256"), tmp_path).wrap_bio(
        c_in, c_out, server_hostname="localhost"
    )
    server = server_context(pair("ec-p256"), pair("ec-p256"), tmp_path).wrap_bio(
        s_in, s_out, server_side=True
    )

    def pump() -> None:
        s_in.write(c_out.read())
        c_in.write(s_out.read())

    for _ in range(4):
        for end in (client, server):
            with contextlib.suppress(ssl.SSLWantReadError):
                end.do_handshake()
        pump()
    payload = os.urandom(200_000)
    server.write(payload)
    pump()
    got = bytearray(client.read(16384))
    assert c_in.pending > 100_000  # many whole records still queued
    tlspipe.queue_close_notify(client, c_in)
    pump()
    assert server.read(1) == b""  # the close_notify arrived
    server.write(b"after our close_notify")
    server.unwrap()
    pump()
    with contextlib.suppress(ssl.SSLZeroReturnError):
        while chunk := client.read(16384):
            got += chunk
    assert bytes(got) == payload + b"after our close_notify"


def test_backend_reset_closes_client(make_chain: Callable[..., Chain]) -> None:
    def reset(conn: socket.socket) -> None:
        conn.recv(10)
        conn.close()  # full close while the client still sends: error -> both ends closed

    chain = make_chain(handler=reset)
    with chain.connect() as sock:
        sock.sendall(b"0123456789")
        with pytest.raises(OSError):  # noqa: PT012 - loop until the bridge gives up
            for _ in range(10_000):
                sock.sendall(b"x" * 65536)
                if not sock.recv(1, socket.MSG_DONTWAIT | socket.MSG_PEEK):
                    raise ConnectionResetError("EOF")


def test_backpressure_bounds_buffering(make_chain: Callable[..., Chain]) -> None:
    release = threading.Event()

    def stuck(conn: socket.socket) -> None:
        release.wait(TIMEOUT)
        recv_all(conn)

    chain = make_chain(handler=stuck)
    with chain.connect() as sock:
        sock.setblocking(False)
        pushed = 0
        chunk = b"y" * 65536
        while pushed < 256 * 1024 * 1024:
            try:
                pushed += sock.send(chunk)
            except BlockingIOError:
                _, writable, _ = select.select([], [sock], [], 1.0)
                if not writable:
                    break  # nothing drains: every buffer on the path is full
        release.set()
        # kernel socket buffers on 3 hops + bounded bridge buffers; far below 256 MiB
        assert pushed < 64 * 1024 * 1024


@pytest.mark.parametrize(
    ("own", "transport", "reason"),
    [
        (None, "unix", "PEER_DID_NOT_RETURN_A_CERTIFICATE"),
        (None, "tcp", "PEER_DID_NOT_RETURN_A_CERTIFICATE"),
        ("ec-p256/foreign", "unix", "CERTIFICATE_VERIFY_FAILED"),
    ],
    ids=["none/unix", "none/tcp", "foreign/unix"],
)
def test_client_certificate_is_refused(
    make_chain: Callable[..., Chain], tmp_path: Path, own: str | None, transport: str, reason: str
) -> None:
    chain = make_chain(transport=transport, dial=False)
    ctx = client_context(None if own is None else pair(own), pair("ec-p256"), tmp_path)
    with (
        chain.connect_plugin() as raw,
        ctx.wrap_socket(raw, server_hostname="localhost") as tls,
        # TLS 1.3: the client finishes first; the server's verdict follows as an alert.
        pytest.raises((ssl.SSLError, ConnectionError)),
    ):
        exchange(tls)
    error = chain.listener_error()
    assert reason in error
    assert error.startswith("TLS handshake failed: ")
    assert chain.backend.accepted == 0


@pytest.mark.parametrize(
    ("first_bytes", "reasons"),
    [
        (b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n", ("HTTP_REQUEST",)),
        (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", ("WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE")),
    ],
)
def test_plaintext_client_is_refused(
    make_chain: Callable[..., Chain], first_bytes: bytes, reasons: tuple[str, ...]
) -> None:
    chain = make_chain(dial=False)
    with chain.connect_plugin() as sock:
        sock.sendall(first_bytes)
        answer = recv_all(sock)  # an alert record at most, then EOF
        assert not answer.startswith(b"HTTP")
    error = chain.listener_error()
    assert any(r in error for r in reasons), error
    assert chain.backend.accepted == 0


def test_silent_client_is_dropped_after_handshake_timeout(
    make_chain: Callable[..., Chain],
) -> None:
    chain = make_chain(dial=False, handshake_timeout=0.3)
    with chain.connect_plugin() as sock:
        assert recv_all(sock) == b""  # closed by the bridge, not by us
    assert "timed out after 0.3 s" in chain.listener_error()


def test_first_handshake_reports_and_reuses_connection(make_chain: Callable[..., Chain]) -> None:
    chain = make_chain(server="ec-p521", client="ec-p521")
    assert chain.dialer is not None
    info = chain.dialer.first_handshake(TIMEOUT)
    assert info.version == "TLSv1.3"
    assert info.alpn == "h2"
    assert info.cipher
    assert info.peer_cert_der == pair("ec-p521").cert_der
    assert chain.dialer.last_tls_info == info
    with chain.connect() as sock:
        sock.sendall(b"abc")
        sock.shutdown(socket.SHUT_WR)
        assert recv_all(sock) == b"abc"
    # The probed connection was the one handed to the first client: one handshake only.
    assert chain.listener.tls_versions == ["TLSv1.3"]
    assert chain.backend.accepted == 1
    with chain.connect() as sock:  # a second client dials afresh
        sock.sendall(b"def")
        sock.shutdown(socket.SHUT_WR)
        assert recv_all(sock) == b"def"
    assert chain.listener.tls_versions == ["TLSv1.3", "TLSv1.3"]


def test_first_handshake_unexpected_server_cert(make_chain: Callable[..., Chain]) -> None:
    chain = make_chain(server="ec-p521", dialer_trusts="ec-p521/expected")
    assert chain.dialer is not None
    with pytest.raises(BridgeError) as err:
        chain.dialer.first_handshake(TIMEOUT)
    assert "CERTIFICATE_VERIFY_FAILED" in str(err.value)
    assert str(err.value).startswith(f"TLS handshake with plugin at {chain.network}:")
    assert chain.dialer.last_error is not None
    assert "CERTIFICATE_VERIFY_FAILED" in chain.dialer.last_error


def test_first_handshake_client_cert_rejected_tls13(make_chain: Callable[..., Chain]) -> None:
    # TLS 1.3: our handshake completes before the server checks our cert; the bridge
    # waits for the server's verdict and reports the alert.
    chain = make_chain(client="ed25519", listener_trusts="ed25519/other")
    assert chain.dialer is not None
    with pytest.raises(BridgeError) as err:
        chain.dialer.first_handshake(TIMEOUT)
    assert "ALERT" in str(err.value)
    assert "CERTIFICATE_VERIFY_FAILED" in chain.listener_error()


def test_first_handshake_nothing_listening(tmp_path: Path) -> None:
    dialer = TLSDialerBridge(
        "unix",
        str(tmp_path / "absent.sock"),
        client_context(pair("ec-p256"), pair("ec-p256"), tmp_path),
    )
    dialer.start()
    try:
        with pytest.raises(BridgeError, match=r"failed: connect: .*No such file"):
            dialer.first_handshake(TIMEOUT)
    finally:
        dialer.close()


def test_first_handshake_silent_server_times_out(tmp_path: Path) -> None:
    silent = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    silent.bind(("127.0.0.1", 0))
    silent.listen(1)
    with silent:
        dialer = TLSDialerBridge(
            "tcp",
            f"127.0.0.1:{silent.getsockname()[1]}",
            client_context(pair("ec-p256"), pair("ec-p256"), tmp_path),
        )
        dialer.start()
        try:
            with pytest.raises(BridgeError, match=r"timed out after 0\.3 s"):
                dialer.first_handshake(0.3)
        finally:
            dialer.close()


def test_bad_addresses() -> None:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    with pytest.raises(BridgeError, match="unsupported network"):
        TLSDialerBridge("udp", "x", ctx)
    with pytest.raises(BridgeError, match="HOST:PORT"):
        TLSDialerBridge("tcp", "127.0.0.1", ctx)


def test_backend_directory_must_be_private(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    shared.chmod(0o755)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener = TLSListenerBridge(
        sock, server_context(pair("ec-p256"), pair("ec-p256"), tmp_path), str(shared / "b.sock")
    )
    with pytest.raises(BridgeError, match="mode 0700"):
        listener.start()
    listener.close()
    assert sock.fileno() == -1


def test_close_is_idempotent_and_safe_before_start(tmp_path: Path) -> None:
    dialer = TLSDialerBridge("tcp", "127.0.0.1:1", ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT))
    dialer.close()
    dialer.close()
    with pytest.raises(BridgeError):
        dialer.first_handshake(1)


def test_no_threads_or_fds_left_after_close(tmp_path: Path) -> None:
    threads_before = bridge_threads()
    assert threads_before == []
    fds_before = fd_count()
    backend = Backend(echo)
    sock, network, address = listen_socket("tcp", tmp_path)
    listener = TLSListenerBridge(
        sock, server_context(pair("ec-p384"), pair("ec-p521"), tmp_path), backend.path
    )
    listener.start()
    dialer = TLSDialerBridge(
        network, address, client_context(pair("ec-p521"), pair("ec-p384"), tmp_path)
    )
    target = dialer.start()
    dialer.first_handshake(TIMEOUT)
    # One relay loop per bridge; the listener's handshake thread ends once it handed the
    # probed connection to its loop, and the dialer's parked one never had a thread.
    assert len(settled_bridge_threads()) == 2
    path = target.removeprefix("unix:")
    # live connections at close time, one finished connection
    live = []
    for i in range(3):
        c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        c.settimeout(TIMEOUT)
        c.connect(path)
        c.sendall(b"hi")
        assert c.recv(2) == b"hi"
        if i == 0:
            c.shutdown(socket.SHUT_WR)
            assert recv_all(c) == b""
            c.close()
        else:
            live.append(c)
    dialer.close()
    listener.close()
    for c in live:
        assert recv_all(c) == b""  # the bridge closed them
        c.close()
    backend.close()
    assert not os.path.exists(path)
    assert not os.path.exists(os.path.dirname(path))
    assert bridge_threads() == []
    assert fd_count() == fds_before


def open_relayed(chain: Chain, count: int) -> list[socket.socket]:
    """``count`` connections through both bridges, each shown relayed (an echo came back)."""
    socks = []
    for i in range(count):
        sock = chain.connect()
        socks.append(sock)
        sock.sendall(b"ping %d" % i)
    for i, sock in enumerate(socks):
        expected = b"ping %d" % i
        got = b""
        while len(got) < len(expected):
            got += sock.recv(len(expected) - len(got))
        assert got == expected
    return socks


def test_many_connections_share_one_relay_thread_per_bridge(
    make_chain: Callable[..., Chain],
) -> None:
    """20 connections at once: no thread per connection, and every byte of each arrives."""
    chain = make_chain(server="ec-p521", client="ec-p521")
    socks = open_relayed(chain, 20)
    try:
        # The listener's and the dialer's relay loops, whatever the number of connections.
        assert sorted(n.rsplit("-", 1)[0] for n in settled_bridge_threads()) == [
            "soup-bridge-dialer",
            "soup-bridge-listener",
        ]
        payloads = [os.urandom(300_000 + i) for i in range(len(socks))]

        def send(sock: socket.socket, payload: bytes) -> None:
            sock.sendall(payload)
            sock.shutdown(socket.SHUT_WR)

        with futures.ThreadPoolExecutor(2 * len(socks)) as pool:
            sent = [pool.submit(send, s, p) for s, p in zip(socks, payloads, strict=True)]
            received = [pool.submit(recv_all, s) for s in socks]
            for future in sent:
                future.result(TIMEOUT)
            echoed = [future.result(TIMEOUT) for future in received]
        for got, payload in zip(echoed, payloads, strict=True):
            assert len(got) == len(payload)
            assert hashlib.sha256(got).digest() == hashlib.sha256(payload).digest()
        assert len(bridge_threads()) == 2
        assert chain.listener.tls_versions == ["TLSv1.3"] * len(socks)
        assert chain.listener.last_error is None
    finally:
        for sock in socks:
            sock.close()


class Ended(logging.Handler):
    """The reasons the bridge logs for the connections it ended (debug)."""

    def __init__(self, logger: logging.Logger) -> None:
        super().__init__(logging.DEBUG)
        self.reasons: list[str] = []
        self.event = threading.Event()
        logger.setLevel(logging.DEBUG)
        logger.addHandler(self)

    def emit(self, record: logging.LogRecord) -> None:
        if "ended: " in (message := record.getMessage()):
            self.reasons.append(message.split("ended: ", 1)[1])
            self.event.set()


def test_a_failing_connection_ends_only_itself(
    make_chain: Callable[..., Chain], tmp_path: Path
) -> None:
    """Connections share the loop, not their fate: a TLS error ends its connection only."""
    chain = make_chain()
    ended = Ended(chain.listener.log)
    socks = open_relayed(chain, 5)
    ctx = client_context(pair("ec-p256"), pair("ec-p256"), tmp_path)
    try:
        with (
            chain.connect_plugin() as raw,
            ctx.wrap_socket(raw, server_hostname="localhost") as tls,
        ):
            assert exchange(tls) == b"hello"
            with socket.socket(fileno=os.dup(tls.fileno())) as under:  # past the TLS layer
                under.sendall(b"\x17\x03\x03\x00\x20" + b"x" * 32)  # a forged record
            assert ended.event.wait(TIMEOUT)
            with contextlib.suppress(ssl.SSLError, ConnectionError):  # its alert, or EOF
                assert tls.recv(10) == b""
        assert len(ended.reasons) == 1
        assert ended.reasons[0].startswith("TLS error: "), ended.reasons
        assert "BAD_RECORD_MAC" in ended.reasons[0] or "DECRYPT" in ended.reasons[0]
        for i, sock in enumerate(socks):  # the others are still relayed
            sock.sendall(b"again %d" % i)
            sock.shutdown(socket.SHUT_WR)
            assert recv_all(sock) == b"again %d" % i
        assert len(settled_bridge_threads()) == 2
    finally:
        for sock in socks:
            sock.close()


def test_close_with_many_connections_open_is_prompt(make_chain: Callable[..., Chain]) -> None:
    chain = make_chain()
    socks = open_relayed(chain, 20)
    assert chain.dialer is not None
    try:
        started = time.monotonic()
        chain.dialer.close()
        chain.listener.close()
        took = time.monotonic() - started
        assert bridge_threads() == []
        assert took < 1.0, f"close() took {took:.2f} s with 20 connections open"
        for sock in socks:
            assert recv_all(sock) == b""  # the bridge closed them
    finally:
        for sock in socks:
            sock.close()


@pytest.mark.skipif(grpc is None, reason="grpcio not installed")
def test_grpc_unary_through_both_bridges_p521(tmp_path: Path) -> None:
    backend_dir = private_socket_dir()
    backend_path = str(backend_dir / "grpc.sock")
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    servicer = health.HealthServicer()
    servicer.set("plugin", health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    server.add_insecure_port("unix:" + backend_path)
    server.start()
    sock, network, address = listen_socket("tcp", tmp_path)
    listener = TLSListenerBridge(
        sock, server_context(pair("ec-p521"), pair("ec-p521/host"), tmp_path), backend_path
    )
    dialer = TLSDialerBridge(
        network, address, client_context(pair("ec-p521/host"), pair("ec-p521"), tmp_path)
    )
    try:
        listener.start()
        target = dialer.start()
        info = dialer.first_handshake(TIMEOUT)
        assert info.version == "TLSv1.3"
        with grpc.insecure_channel(target) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            for _ in range(3):
                reply = stub.Check(health_pb2.HealthCheckRequest(service="plugin"), timeout=5)
                assert reply.status == health_pb2.HealthCheckResponse.SERVING
        assert listener.tls_versions == ["TLSv1.3"]
        live = dialer.last_tls_info
        assert live is not None
        assert live.alpn == "h2"
        assert live.peer_cert_der == pair("ec-p521").cert_der
    finally:
        dialer.close()
        listener.close()
        server.stop(None).wait(TIMEOUT)
        shutil.rmtree(backend_dir, ignore_errors=True)
    assert bridge_threads() == []


def test_backend_with_full_backlog_is_waited_for(tmp_path: Path) -> None:
    """A busy backend (accept queue full: connect says EAGAIN) delays, not drops, a client."""
    backend_dir = private_socket_dir()
    backend_path = str(backend_dir / "busy.sock")
    busy = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    busy.bind(backend_path)
    busy.listen(0)
    fillers: list[socket.socket] = []
    while True:  # fill the accept queue until the kernel says EAGAIN
        filler = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        filler.setblocking(False)
        fillers.append(filler)
        try:
            filler.connect(backend_path)
        except BlockingIOError:
            break
    fillers.pop().close()
    waiting = threading.Event()

    class Waiting(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "full backlog" in record.getMessage():
                waiting.set()

    logger = logging.getLogger(f"test.bridge.backlog.{id(waiting)}")
    logger.setLevel(logging.DEBUG)
    logger.addHandler(Waiting())
    sock, _, address = listen_socket("unix", tmp_path)
    listener = TLSListenerBridge(
        sock,
        server_context(pair("ec-p256"), pair("ec-p256"), tmp_path),
        backend_path,
        logger=logger,
    )
    listener.start()
    ctx = client_context(pair("ec-p256"), pair("ec-p256"), tmp_path)
    try:
        raw = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        raw.settimeout(TIMEOUT)
        raw.connect(address)
        with ctx.wrap_socket(raw, server_hostname="localhost") as tls:
            tls.sendall(b"ping")
            assert waiting.wait(TIMEOUT)  # the bridge is connecting, the queue is full
            for _ in fillers:  # make room: the waiting connect completes
                busy.accept()[0].close()
            conn, _ = busy.accept()
            with conn:
                assert conn.recv(4) == b"ping"
                conn.sendall(b"pong")
            assert tls.recv(4) == b"pong"
        assert listener.last_error is None
    finally:
        listener.close()
        for filler in fillers:
            filler.close()
        busy.close()
        shutil.rmtree(backend_dir, ignore_errors=True)


def test_close_while_a_connection_is_being_accepted(
    make_chain: Callable[..., Chain], monkeypatch: pytest.MonkeyPatch
) -> None:
    """close() racing the accept of a new connection (a host polling the address while
    the plugin stops) joins only started threads: it once raised "cannot join thread
    before it is started" and the plugin exited 1 with its files left behind."""
    chain = make_chain(dial=False)
    errors: list[BaseException] = []
    closers: list[threading.Thread] = []
    real_thread = threading.Thread

    def close_listener() -> None:
        try:
            chain.listener.close()
        except BaseException as exc:  # the test reports it
            errors.append(exc)

    class CloseBeforeStart(real_thread):
        def start(self) -> None:
            if "-handshake-" in self.name and not closers:
                closer = real_thread(target=close_listener)
                closer.start()
                closers.append(closer)  # started: the test's join below may see it now
                closer.join(0.3)  # with the lock held, close() waits for start()
            super().start()

    monkeypatch.setattr(bridge.threading, "Thread", CloseBeforeStart)
    with chain.connect_plugin():
        deadline = time.monotonic() + TIMEOUT
        while not closers and time.monotonic() < deadline:
            time.sleep(0.01)
        assert closers, "no handshake thread was started"
        closers[0].join(TIMEOUT)
    assert not closers[0].is_alive(), f"close() did not return within {TIMEOUT} s"
    assert errors == []
