"""A go-plugin host played by the checker (and by the hostile suite's fake hosts).

It starts a plugin under test the way a go-plugin host does (the caller's environment,
its own session, a first stdout line read with a bound), then talks to it with Python
``ssl`` and grpcio the way a correct, a broken or a hostile host would. It only ever
dials the address the plugin printed, and only a unix socket or 127.0.0.1.
"""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from cryptography.hazmat.primitives.serialization import Encoding
from grpc_health.v1 import health_pb2, health_pb2_grpc

from soup import bridge, certs, handshake, muxsession, pb, tls
from soup.connect import dial
from soup.lab import verify

# Every variable a host may give a plugin: never inherited from the checker's environment.
GO_PLUGIN_VARS = (
    handshake.ENV_CLIENT_CERT,
    handshake.ENV_PROTOCOL_VERSIONS,
    handshake.ENV_UNIX_SOCKET_DIR,
    handshake.ENV_UNIX_SOCKET_GROUP,
    handshake.ENV_MULTIPLEX_GRPC,
    handshake.ENV_MIN_PORT,
    handshake.ENV_MAX_PORT,
)
LOOPBACK = "127.0.0.1"
# How long a TLS attempt waits for the server's verdict before it sends anything.
ALERT_WAIT_S = 0.5
# go-plugin's host reads at most this much of the first line.
MAX_LINE = 64 * 1024
KILL_WAIT_S = 10.0


class StartError(Exception):
    """The plugin did not get as far as its handshake line (nothing printed in time)."""


@dataclass
class Plugin:
    """A real plugin process started by the checker, and what its handshake line said."""

    proc: subprocess.Popen[bytes]
    private_dir: Path | None
    line: str = ""
    network: str = ""
    address: str = ""
    cert_der: bytes = b""
    stderr: bytearray = field(default_factory=bytearray)
    stdout_rest: bytearray = field(default_factory=bytearray)
    _readers: list[threading.Thread] = field(default_factory=list)

    @property
    def fields(self) -> list[str]:
        return self.line.split("|")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def wait_exit(self, timeout: float) -> int | None:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stderr_text(self) -> str:
        return self.stderr.decode("utf-8", "replace")

    def stderr_tail(self, limit: int = 400) -> str:
        text = self.stderr_text().strip()
        return text if len(text) <= limit else "..." + text[-limit:]

    def cert_pem(self) -> bytes:
        return certs.load_cert_der(self.cert_der).public_bytes(Encoding.PEM)

    def kill(self) -> None:
        """SIGKILL the plugin's process group, reap it, remove its private directory."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGCONT)
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(KILL_WAIT_S)
        for reader in self._readers:
            reader.join(2)
        # A reader still blocked in read1 holds the pipe's lock and close() would wait for it:
        # a process outside the group (a grandchild in a session of its own) keeps it open.
        if not any(reader.is_alive() for reader in self._readers):
            for pipe in (self.proc.stdout, self.proc.stderr):
                if pipe is not None:
                    pipe.close()
        if self.private_dir is not None:
            shutil.rmtree(self.private_dir, ignore_errors=True)


def without_go_plugin_vars(extra: Mapping[str, str | None], cookie_key: str = "") -> dict[str, str]:
    """This process's environment without go-plugin variables (nor the cookie), plus ``extra``
    (a None value unsets)."""
    dropped = {*GO_PLUGIN_VARS, cookie_key}
    env = {k: v for k, v in os.environ.items() if k not in dropped}
    for name, value in extra.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


def _drain(pipe: Any, sink: bytearray) -> None:
    for chunk in iter(lambda: pipe.read1(65536), b""):
        sink.extend(chunk)


def _first_line(pipe: Any, limit: int, timeout: float) -> bytes:
    """The first stdout line (or what came before EOF), read with a bound."""
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(pipe.readline(limit)), daemon=True)
    reader.start()
    reader.join(timeout)
    if reader.is_alive():
        raise StartError(f"no handshake line on stdout within {timeout:g} s")
    return got[0]


def start_plugin(
    argv: list[str], env: Mapping[str, str], timeout: float, private_dir: Path | None = None
) -> Plugin:
    """Start ``argv`` with exactly ``env`` in a session of its own and read its first line.

    ``private_dir`` is removed with the plugin. Raises StartError (after killing it) if
    the plugin prints no line within ``timeout`` (a hang guard); a plugin that exits
    early gives an empty line. OSError (no such command) propagates.
    """
    try:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=dict(env), start_new_session=True,
        )  # fmt: skip
    except OSError:
        if private_dir is not None:
            shutil.rmtree(private_dir, ignore_errors=True)
        raise
    plugin = Plugin(proc=proc, private_dir=private_dir)
    assert proc.stderr is not None
    assert proc.stdout is not None
    err_reader = threading.Thread(target=_drain, args=(proc.stderr, plugin.stderr), daemon=True)
    err_reader.start()
    plugin._readers.append(err_reader)
    try:
        raw = _first_line(proc.stdout, MAX_LINE, timeout)
    except StartError:
        plugin.kill()
        raise
    out_reader = threading.Thread(
        target=_drain, args=(proc.stdout, plugin.stdout_rest), daemon=True
    )
    out_reader.start()
    plugin._readers.append(out_reader)
    plugin.line = raw.decode("utf-8", "replace").strip()
    parts = plugin.fields
    if len(parts) >= 4:
        plugin.network, plugin.address = parts[2], parts[3]
    if len(parts) >= 6 and len(parts[5]) > 0:
        with contextlib.suppress(ValueError):
            plugin.cert_der = base64.b64decode(parts[5] + "=" * (-len(parts[5]) % 4))
    return plugin


def connect(network: str, address: str, timeout: float) -> socket.socket:
    """A connected stream socket to the plugin's address (unix or 127.0.0.1 only)."""
    host = address.rpartition(":")[0]
    if network != "unix" and host != LOOPBACK:
        raise ValueError(f"refusing to dial {address!r}: only {LOOPBACK} and unix sockets")
    return dial(network, address, timeout)


def reason(exc: BaseException) -> str:
    """An exception as evidence: OpenSSL's reason name first (``TLSV1_ALERT_UNKNOWN_CA: ...``)."""
    if isinstance(exc, ssl.SSLError):
        return f"{exc.reason or type(exc).__name__}: {exc}"
    if isinstance(exc, ConnectionResetError):
        return f"ECONNRESET: {exc}"
    if isinstance(exc, BrokenPipeError):
        return f"EPIPE: {exc}"
    return f"{type(exc).__name__}: {exc}"


ACCEPTED = "accepted"


def tls_attempt(plugin: Plugin, context: ssl.SSLContext, timeout: float = 3.0) -> str:
    """Handshake, then the first answer (verify.first_answer): ``"accepted"`` or the refusal."""
    raw = connect(plugin.network, plugin.address, timeout)
    try:
        with context.wrap_socket(raw, server_hostname=tls.SERVER_NAME) as conn:
            data = verify.first_answer(conn, ALERT_WAIT_S, timeout)
            return ACCEPTED if data else "EOF: closed without an alert"
    except (OSError, ssl.SSLError) as exc:
        return reason(exc)
    finally:
        raw.close()


def plaintext_attempt(plugin: Plugin, timeout: float = 3.0) -> str:
    """Speak plaintext HTTP/2 to a TLS plugin: ``"accepted"`` if it answers in HTTP/2."""
    with connect(plugin.network, plugin.address, timeout) as sock:
        try:
            sock.sendall(verify.H2_PREFACE)
            data = sock.recv(64)
        except OSError as exc:
            return reason(exc)
    if not data:
        return "EOF: closed"
    # An HTTP/2 SETTINGS frame has type 4 at offset 3; a TLS alert record starts with 0x15.
    if len(data) > 3 and data[3] == 4:
        return ACCEPTED
    return f"not HTTP/2: {data[:16].hex()}"


def target(plugin: Plugin) -> str:
    return f"unix:{plugin.address}" if plugin.network == "unix" else plugin.address


@contextlib.contextmanager
def channel(
    plugin: Plugin,
    own: certs.CertKey | None,
    trusted: bytes | None = None,
    dial: Callable[[float], socket.socket] | None = None,
) -> Iterator[grpc.Channel]:
    """A gRPC channel: plaintext, or TLS through soup's OpenSSL dialer (every key type).

    TLS trusts ``trusted`` (manual mode: the CA), else the certificate in field 6.
    ``dial`` opens the TLS connections instead of the plugin's address (yamux streams).
    """
    options = [("grpc.enable_http_proxy", 0), ("grpc.enable_retries", 0)]
    if own is None:
        with grpc.insecure_channel(target(plugin), options=options) as chan:
            yield chan
        return
    context = tls.client_ssl_context(own, trusted or plugin.cert_pem())
    dialer = bridge.TLSDialerBridge(
        plugin.network, plugin.address, context, server_hostname=tls.SERVER_NAME, open_stream=dial
    )
    try:
        local = dialer.start()
        with grpc.insecure_channel(local, options=options) as chan:
            yield chan
    finally:
        dialer.close()


def yamux_health(
    plugin: Plugin, own: certs.CertKey, streams: int = 2, timeout: float = 5.0
) -> tuple[list[str], str | None]:
    """go-plugin's host muxer: one connection, a yamux session, a health Check per stream.

    Each channel is a yamux stream with its own mutual TLS; a multiplexing plugin gives
    every stream that comes without a knock to its main gRPC server. Returns each Check's
    answer (as :func:`health`) and why the session ended (None if it did not).
    """
    try:
        raw = connect(plugin.network, plugin.address, timeout)
    except OSError as exc:
        return [f"connect to the main listener: {reason(exc)}"], None
    answers = []
    with muxsession.MuxSession(raw, client=True).start() as session:
        for _ in range(streams):
            try:
                with channel(plugin, own, dial=session.open) as chan:
                    answers.append(health(chan, timeout))
            except (OSError, bridge.BridgeError) as exc:
                answers.append(reason(exc))
        return answers, session.ended


def health(chan: grpc.Channel, timeout: float = 3.0) -> str:
    """grpc.health.v1 Check of service "plugin": the status name, or the gRPC code."""
    stub = health_pb2_grpc.HealthStub(chan)
    try:
        reply = stub.Check(health_pb2.HealthCheckRequest(service="plugin"), timeout=timeout)
    except grpc.RpcError as exc:
        return f"{exc.code().name}: {exc.details()}"
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))


def good_call(
    plugin: Plugin, own: certs.CertKey | None, trusted: bytes | None = None, timeout: float = 3.0
) -> str:
    """One health call the way a correct host makes it: ``SERVING`` when healthy."""
    try:
        with channel(plugin, own, trusted) as chan:
            return health(chan, timeout)
    except (OSError, bridge.BridgeError) as exc:
        return reason(exc)


def rpc(call: Callable[[], Any]) -> str:
    """``OK`` or ``CODE: details`` of one unary call."""
    try:
        call()
    except grpc.RpcError as exc:
        return f"{exc.code().name}: {exc.details()}"
    return "OK"


def shutdown(chan: grpc.Channel, timeout: float = 3.0) -> str:
    stub = pb.grpc_controller_pb2_grpc.GRPCControllerStub(chan)
    return rpc(lambda: stub.Shutdown(pb.grpc_controller_pb2.Empty(), timeout=timeout))


def wait_until(check: Callable[[], bool], timeout: float, step: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(step)
    return True
