"""Host side: start a go-plugin plugin (Go or Python), connect over gRPC, call it.

:class:`PluginClient` follows go-plugin's ``Client``: it starts the command with
the handshake environment (magic cookie, versions, port range and, in AutoMTLS,
``PLUGIN_CLIENT_CERT``), reads the first stdout line within a bound, checks it,
connects with the TLS backend the plugin's key type allows, and on ``kill()``
calls ``GRPCController/Shutdown``, waits 2 s, then SIGKILLs the process group
(without a verified connection: SIGTERM, at most 0.5 s, SIGKILL).
The plugin's stderr is drained all the time (hclog JSON lines are re-logged at
their level; a tail is kept for error messages).
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import shlex
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import grpc
from cryptography.hazmat.primitives.serialization import Encoding
from grpc_health.v1 import health_pb2, health_pb2_grpc

from soup import bridge, certs, logs, pb, tls
from soup.broker import BrokerTLS, GRPCBroker
from soup.handshake import Handshake, HandshakeConfig, HandshakeError, host_env, parse_line

__all__ = [
    "DEFAULT_KEY_TYPE",
    "HostError",
    "PluginClient",
    "TLSDetails",
]

DEFAULT_KEY_TYPE = "ec-p256"
RPC_TIMEOUT = 5.0
SHUTDOWN_WAIT = 2.0
TERM_WAIT = 0.5  # SIGTERM to SIGKILL when no Shutdown could be sent
JOIN_WAIT = 1.0  # for the stdout/stderr/stdio threads after the kill
STDERR_TAIL_BYTES = 4096
ENV_UNIX_SOCKET_DIR = "PLUGIN_UNIX_SOCKET_DIR"
# Shorter than the bridge's own limit: the plugin nests its private directory inside.
_MAX_SOCKET_DIR = 70
MAX_LINE = 64 * 1024

# LogRecord attributes an ``extra`` dict must not overwrite.
_RESERVED = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class HostError(Exception):
    """Starting, connecting to or calling the plugin failed (message says why)."""


@dataclass
class TLSDetails:
    """TLS evidence of the connection (``None`` where unknown or not applicable)."""

    mode: str
    backend: str | None = None
    version: str | None = None
    version_source: str | None = None
    alpn: str | None = None
    client_key: str | None = None
    server_key: str | None = None
    client_fingerprint: str | None = None
    server_fingerprint: str | None = None


@dataclass
class _Exit:
    code: int | None = None
    graceful: bool = False
    signalled: bool = False


@dataclass
class _Tail:
    limit: int = STDERR_TAIL_BYTES
    data: bytearray = field(default_factory=bytearray)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, chunk: bytes) -> None:
        with self.lock:
            self.data += chunk
            if len(self.data) > self.limit:
                del self.data[: len(self.data) - self.limit]

    def text(self) -> str:
        with self.lock:
            return bytes(self.data).decode("utf-8", "replace")


def _split_command(command: str | Sequence[str]) -> list[str]:
    argv = shlex.split(command) if isinstance(command, str) else list(command)
    if not argv:
        raise HostError("empty plugin command")
    return argv


class PluginClient:
    """One plugin process and the gRPC connection to it (a context manager)."""

    def __init__(
        self,
        command: str | Sequence[str],
        *,
        tls_mode: str = "auto",
        key_type: str = DEFAULT_KEY_TYPE,
        cert_file: Path | None = None,
        key_file: Path | None = None,
        ca_file: Path | None = None,
        tls_backend: str = "auto",
        timeout: float = 30.0,
        rpc_timeout: float = RPC_TIMEOUT,
        config: HandshakeConfig | None = None,
        env: Mapping[str, str] | None = None,
        logger: logging.Logger | None = None,
    ) -> None:
        if tls_mode not in ("auto", "manual", "disabled"):
            raise ValueError(f"unknown tls mode {tls_mode!r} (expected auto, manual or disabled)")
        if tls_backend not in tls.BACKENDS:
            raise ValueError(f"unknown TLS backend {tls_backend!r}")
        self.argv = _split_command(command)
        self.tls_mode = tls_mode
        self.key_type = key_type
        self.cert_file, self.key_file, self.ca_file = cert_file, key_file, ca_file
        self.tls_backend = tls_backend
        self.timeout = timeout
        self.rpc_timeout = rpc_timeout
        self.config = config or HandshakeConfig()
        self.base_env = dict(os.environ if env is None else env)
        self.log = logger or logging.getLogger("soup.host")
        self.plugin_log = logging.getLogger("soup.host.plugin")

        self.tls = TLSDetails(mode=tls_mode)
        self.own: certs.CertKey | None = None
        self.trusted_pem: bytes | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self.handshake_info: Handshake | None = None
        self.channel: grpc.Channel | None = None
        self.dialer: bridge.TLSDialerBridge | None = None
        self.broker: GRPCBroker | None = None
        """go-plugin's GRPCBroker to this plugin (set once connected)."""
        self.exit = _Exit()
        self._tail = _Tail()
        self._lines: queue.Queue[bytes | BaseException] = queue.Queue()
        self._threads: list[threading.Thread] = []
        self._pipes: list[tuple[threading.Thread, IO[bytes]]] = []
        self._stdio_call: Any = None
        self._kv: Any = None
        self._health: Any = None
        self._killed = False
        self._spawned_at = 0.0
        self.socket_dir: Path | None = None
        self.stdio: deque[tuple[str, bytes]] = deque(maxlen=256)
        """Recent chunks the plugin wrote to stdout/stderr after the handshake (GRPCStdio)."""
        self.server_impl: str | None = None
        self.server_version: str | None = None
        """Who serves, as the plugin's own log said (hclog fields ``impl`` and ``version``
        of its first such line); None if it never said: identity is not on the wire."""
        self._verified = False  # a health RPC got through: Shutdown can arrive

    # -- context manager
    def __enter__(self) -> PluginClient:
        try:
            self.start()
        except BaseException:
            self.kill()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.kill()

    # -- public API
    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    def stderr_tail(self) -> str:
        """The last ~4 KiB the plugin wrote to stderr."""
        return self._tail.text()

    def start(self) -> None:
        """Spawn the plugin, read its handshake line and connect."""
        if self.proc is None:
            self.spawn()
        if self.channel is None:
            self.handshake()

    def spawn(self) -> int:
        """Prepare own TLS material, start the plugin process; returns its pid."""
        self._prepare_tls()
        env = dict(self.base_env)
        client_pem = self.own.cert_pem if self.tls_mode == "auto" and self.own else None
        socket_dir = None
        if not env.get(ENV_UNIX_SOCKET_DIR):
            # A directory of our own for the plugin's socket (and its private files):
            # removed in kill(), so nothing is left behind even after SIGKILL.
            self.socket_dir = bridge.private_socket_dir("soup-plugin-", _MAX_SOCKET_DIR)
            socket_dir = str(self.socket_dir)
        env.update(host_env(self.config, client_cert_pem=client_pem, unix_socket_dir=socket_dir))
        if client_pem is None:
            env.pop("PLUGIN_CLIENT_CERT", None)  # never inherit one from our own env
        try:
            self.proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=env,
                start_new_session=True,
            )
        except OSError as exc:
            self._remove_socket_dir()
            raise HostError(f"cannot start plugin {shlex.join(self.argv)!r}: {exc}") from exc
        self._spawned_at = time.monotonic()
        assert self.proc.stdout is not None
        assert self.proc.stderr is not None
        self._thread(self._read_stdout, self.proc.stdout, "stdout")
        self._thread(self._read_stderr, self.proc.stderr, "stderr")
        self.log.debug("plugin started", extra={"pid": self.proc.pid, "cmd": shlex.join(self.argv)})
        return self.proc.pid

    def handshake(self) -> Handshake:
        """Read and check the handshake line, then connect (TLS verified before returning)."""
        info = self._read_handshake()
        self.handshake_info = info
        self._check_cert_field(info)
        self._connect(info)
        self._open_broker(info)  # broker hook
        self.start_stdio()
        return info

    def _open_broker(self, info: Handshake) -> None:
        """Like go-plugin's host: open the broker stream right after connecting."""
        material = None
        if self.own is not None and self.trusted_pem is not None and self.tls.backend is not None:
            material = BrokerTLS(self.own, self.trusted_pem, self.tls.backend)
        self.broker = GRPCBroker(tls=material, network=info.network, socket_parent=self.socket_dir)
        self.broker.open_stream(self._require_channel())

    def put(self, key: str, value: bytes) -> None:
        self._call(self._kv_stub().Put, pb.kv_pb2.PutRequest(key=key, value=value))

    def get(self, key: str) -> bytes:
        response = self._call(self._kv_stub().Get, pb.kv_pb2.GetRequest(key=key))
        return bytes(response.value)

    def health_check(self, service: str = "plugin") -> str:
        """``grpc.health.v1.Health/Check``; returns the status name, e.g. ``SERVING``."""
        if self._health is None:
            self._health = health_pb2_grpc.HealthStub(self._require_channel())
        request = health_pb2.HealthCheckRequest(service=service)
        response = self._call(self._health.Check, request)
        name: str = health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)
        return name

    def kill(self) -> bool:
        """Shutdown RPC, close, wait ``SHUTDOWN_WAIT`` s, then SIGKILL the process group.

        Without a verified connection (failed start, no handshake line, TLS or connection
        check failed) a Shutdown could not arrive: no RPC and no 2 s wait; the group gets
        SIGTERM (both soup plugins stop cleanly on it), at most ``TERM_WAIT`` s, then SIGKILL.

        Returns True if the plugin exited by itself (after Shutdown, or before we
        signalled it). Idempotent.
        """
        if self._killed:
            return self.exit.graceful
        self._killed = True
        if self.broker is not None:  # broker hook: go-plugin closes it before Shutdown
            self.broker.close()
        if self.channel is not None and self._verified:
            try:
                stub = pb.grpc_controller_pb2_grpc.GRPCControllerStub(self.channel)
                stub.Shutdown(pb.grpc_controller_pb2.Empty(), timeout=SHUTDOWN_WAIT)
            except grpc.RpcError as exc:
                self.log.debug("Shutdown RPC failed (ignored)", extra={"error": _rpc_detail(exc)})
        if self.channel is not None:
            with contextlib.suppress(Exception):
                self.channel.close()
        if self.proc is not None:
            if self._verified:
                self.exit.graceful = self._wait_exit(SHUTDOWN_WAIT)
                if not self.exit.graceful:
                    self.log.warning(
                        "plugin did not exit within %g s; killing its process group", SHUTDOWN_WAIT
                    )
            else:
                self.exit.graceful = self._peek_exit() is not None
                if not self.exit.graceful:
                    self._signal_group(signal.SIGTERM)
                    if not self._wait_exit(TERM_WAIT):
                        self.log.debug(
                            "plugin did not exit within %g s of SIGTERM; killing its process group",
                            TERM_WAIT,
                        )
            self._signal_group(signal.SIGKILL)
            try:
                code = self.proc.wait(5.0)
            except subprocess.TimeoutExpired:
                code = None
            self.exit.code = code
            if code is not None and code < 0:
                self.exit.signalled = True
        if self.dialer is not None:
            self.dialer.close()
        self._remove_socket_dir()
        # The group is gone, so the pipes are at EOF unless something outside the group
        # holds them: one short bound for all reader threads (daemons), not 2 s each.
        deadline = time.monotonic() + JOIN_WAIT
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        for thread, pipe in self._pipes:
            if not thread.is_alive():  # closing a pipe a thread still reads would block
                with contextlib.suppress(OSError):
                    pipe.close()
        return self.exit.graceful

    def _remove_socket_dir(self) -> None:
        if self.socket_dir is not None:
            shutil.rmtree(self.socket_dir, ignore_errors=True)
            self.socket_dir = None

    # -- TLS material
    def _prepare_tls(self) -> None:
        if self.tls_mode == "auto":
            try:
                self.own = certs.self_signed(self.key_type)
            except ValueError as exc:
                raise HostError(str(exc)) from exc
        elif self.tls_mode == "manual":
            try:
                self.own, self.trusted_pem = certs.load_manual(
                    self.cert_file, self.key_file, self.ca_file
                )
            except ValueError as exc:
                raise HostError(str(exc)) from exc
        if self.own is not None:
            self.tls.client_key = self.own.key_type
            self.tls.client_fingerprint = self.own.fingerprint

    # -- reader threads
    def _thread(self, target: Any, pipe: IO[bytes], name: str) -> None:
        thread = threading.Thread(
            target=target, args=(pipe,), name=f"soup-host-{name}", daemon=True
        )
        thread.start()
        self._threads.append(thread)
        self._pipes.append((thread, pipe))

    def _read_stdout(self, pipe: IO[bytes]) -> None:
        try:
            first = pipe.readline(MAX_LINE)
            self._lines.put(first)
            # go-plugin discards the plugin's later stdout: drain so the pipe never fills.
            while pipe.read(MAX_LINE):
                pass
        except (OSError, ValueError) as exc:
            self._lines.put(exc)

    def _read_stderr(self, pipe: IO[bytes]) -> None:
        try:
            for raw in iter(lambda: pipe.readline(MAX_LINE), b""):
                self._tail.add(raw)
                self._relog(raw.decode("utf-8", "replace").rstrip("\r\n"))
        except (OSError, ValueError):
            return

    def _relog(self, line: str) -> None:
        if not line:
            return
        record = logs.parse_line(line)
        if record is None:
            self.plugin_log.debug("%s", line, extra={"plugin_pid": self.pid})
            return
        impl = record.get("impl")
        if self.server_impl is None and isinstance(impl, str) and impl:
            version = record.get("version")
            self.server_impl = impl
            self.server_version = version if isinstance(version, str) and version else None
        try:
            level = logs.python_level(str(record.get("@level", "debug")))
        except ValueError:
            level = logging.DEBUG
        extra: dict[str, object] = {
            (k if k not in _RESERVED else f"plugin_{k}"): v
            for k, v in record.items()
            if not k.startswith("@")
        }
        module = record.get("@module")
        if module is not None:
            extra["plugin_module"] = module
        self.plugin_log.log(level, "%s", record.get("@message", ""), extra=extra)

    # -- handshake
    def _failure(self, what: str, *, tail: bool = True) -> HostError:
        """``what`` plus the plugin's exit status and (if ``tail``) its last stderr lines."""
        parts = [what]
        if self.proc is not None:
            code = self._peek_exit()
            if code is None:
                if tail:
                    parts.append(f"plugin still running (pid {self.proc.pid})")
            elif code < 0:
                parts.append(f"plugin killed by signal {-code}")
            else:
                parts.append(f"plugin exit code {code}")
        if tail:
            parts.append("plugin stderr: " + (self._tail_summary() or "(empty)"))
        return HostError("; ".join(parts))

    def _tail_summary(self, lines: int = 6, limit: int = 1200) -> str:
        """The last stderr lines on one line; hclog JSON shown as ``[level] message``."""
        out: list[str] = []
        for line in self.stderr_tail().splitlines()[-lines:]:
            record = logs.parse_line(line)
            if record is not None:
                text = f"[{record.get('@level')}] {record.get('@message')}"
                error = record.get("error")
                if error is not None:
                    text += f": {error}"
                out.append(text)
            elif line.strip():
                out.append(line.strip())
        summary = " | ".join(out)
        return summary if len(summary) <= limit else "..." + summary[-limit:]

    def _settle_exit(self) -> None:
        """After stdout EOF: give the plugin a moment to exit and its stderr to drain."""
        if self.proc is None:
            return
        deadline = time.monotonic() + 1.0
        while self._peek_exit() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        for thread in self._threads:
            if thread.name.endswith("stderr"):
                thread.join(0.5)

    def _read_handshake(self) -> Handshake:
        if self.proc is None:
            raise HostError("plugin not started")
        remaining = max(0.0, self.timeout - (time.monotonic() - self._spawned_at))
        try:
            item = self._lines.get(timeout=remaining)
        except queue.Empty:
            raise self._failure(
                f"timed out after {self.timeout:g} s waiting for the plugin's handshake line "
                "on stdout"
            ) from None
        if isinstance(item, BaseException):
            raise self._failure(f"cannot read the plugin's stdout: {item}")
        if not item:
            self._settle_exit()
            raise self._failure(
                "plugin exited before we could connect (no handshake line on stdout)"
            )
        try:
            return parse_line(item, app_versions=self.config.app_versions)
        except HandshakeError as exc:
            deadline = time.monotonic() + 0.2
            while self._peek_exit() is None and time.monotonic() < deadline:
                time.sleep(0.02)
            raise self._failure(f"bad handshake line from plugin: {exc}") from exc

    def _check_cert_field(self, info: Handshake) -> None:
        der = info.server_cert_der
        if self.tls_mode == "auto":
            if not der:
                raise self._failure(
                    "plugin did not return a certificate; refusing plaintext", tail=False
                )
            try:
                cert = certs.load_cert_der(der)
            except Exception as exc:
                raise self._failure(
                    f"plugin certificate in the handshake is invalid: {exc}", tail=False
                ) from exc
            self.trusted_pem = cert.public_bytes(Encoding.PEM)
            self.tls.server_key = certs.key_type_of(cert)
            self.tls.server_fingerprint = certs.fingerprint(cert)
        elif self.tls_mode == "disabled" and der:
            raise self._failure(
                "tls-mode disabled but the plugin returned a certificate (it serves TLS)",
                tail=False,
            )

    # -- connect
    def _target(self, info: Handshake) -> str:
        return "unix:" + info.address if info.network == "unix" else info.address

    def _options(self) -> list[tuple[str, Any]]:
        return [
            ("grpc.enable_http_proxy", 0),
            ("grpc.enable_retries", 0),
            ("grpc.default_authority", tls.SERVER_NAME),
        ]

    def _connect(self, info: Handshake) -> None:
        if self.tls_mode == "disabled":
            self.channel = grpc.insecure_channel(self._target(info), options=self._options())
            self._verify_connection(native=False)
            return
        assert self.own is not None
        assert self.trusted_pem is not None
        backend = tls.choose_backend(self.tls_backend, self.tls.server_key)
        self.tls.backend = backend
        if backend == "native":
            creds = grpc.ssl_channel_credentials(
                root_certificates=self.trusted_pem,
                private_key=self.own.key_pem,
                certificate_chain=self.own.cert_pem,
            )
            options = [*self._options(), ("grpc.ssl_target_name_override", tls.SERVER_NAME)]
            self.channel = grpc.secure_channel(self._target(info), creds, options=options)
            self._verify_connection(native=True)
            self._probe_tls(info)
        else:
            context = tls.client_ssl_context(self.own, self.trusted_pem)
            try:
                self.dialer = bridge.TLSDialerBridge(
                    info.network,
                    info.address,
                    context,
                    server_hostname=tls.SERVER_NAME,
                    logger=logging.getLogger("soup.bridge"),
                )
                target = self.dialer.start()
                tls_info = self.dialer.first_handshake(min(self.timeout, 10.0))
            except bridge.BridgeError as exc:
                raise self._failure(str(exc), tail=False) from exc
            self._record_tls(tls_info.version, "live", tls_info.alpn, tls_info.peer_cert_der)
            self.channel = grpc.insecure_channel(target, options=self._options())
            self._verify_connection(native=False)

    def _record_tls(
        self, version: str | None, source: str, alpn: str | None, peer_der: bytes | None
    ) -> None:
        self.tls.version = version or None
        self.tls.version_source = source if version else None
        self.tls.alpn = alpn
        if peer_der:
            with contextlib.suppress(Exception):
                peer = certs.load_cert_der(peer_der)
                self.tls.server_key = certs.key_type_of(peer)
                self.tls.server_fingerprint = certs.fingerprint(peer)

    def _verify_connection(self, *, native: bool) -> None:
        """One health RPC (5 s deadline, no wait_for_ready): TLS failures surface now."""
        try:
            self.health_check("plugin")
            self._verified = True
        except HostError as exc:
            cause = exc.__cause__
            if isinstance(cause, grpc.RpcError) and cause.code() in (
                grpc.StatusCode.UNIMPLEMENTED,
                grpc.StatusCode.NOT_FOUND,
            ):
                self._verified = True
                return  # connected; the plugin just has no health service
            if native and self.tls.server_key is not None:
                raise self._failure(
                    tls.explain_native_failure(self.tls.server_key, str(exc)), tail=False
                ) from exc
            dialer_error = self.dialer.last_error if self.dialer is not None else None
            message = f"cannot connect to the plugin: {exc}"
            if dialer_error:
                message += f" ({dialer_error})"
            raise self._failure(message, tail=False) from exc

    def _probe_tls(self, info: Handshake) -> None:
        """grpcio hides the TLS version: one extra handshake with Python ssl ("probe")."""
        assert self.own is not None
        assert self.trusted_pem is not None
        try:
            context = tls.client_ssl_context(self.own, self.trusted_pem)
            if info.network == "unix":
                raw = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                raw.settimeout(5.0)
                raw.connect(info.address)
            else:
                host, _, port = info.address.rpartition(":")
                raw = socket.create_connection((host.strip("[]"), int(port)), timeout=5.0)
            with context.wrap_socket(raw, server_hostname=tls.SERVER_NAME) as conn:
                self._record_tls(
                    conn.version(),
                    "probe",
                    conn.selected_alpn_protocol(),
                    conn.getpeercert(binary_form=True),
                )
        except (OSError, ssl.SSLError, ValueError) as exc:
            self.log.debug("TLS probe failed", extra={"error": str(exc)})

    # -- RPC helpers
    def _require_channel(self) -> grpc.Channel:
        if self.channel is None:
            raise HostError("not connected to the plugin")
        return self.channel

    def _kv_stub(self) -> Any:
        if self._kv is None:
            self._kv = pb.kv_pb2_grpc.KVStub(self._require_channel())
        return self._kv

    def start_stdio(self) -> None:
        """Stream the plugin's stdout/stderr (GRPCStdio) into the log, best effort."""
        if self.channel is None or self._stdio_call is not None:
            return
        stub = pb.grpc_stdio_pb2_grpc.GRPCStdioStub(self.channel)
        try:
            self._stdio_call = stub.StreamStdio(pb.empty_pb2.Empty())
        except grpc.RpcError as exc:
            self.log.debug("stdio stream unavailable", extra={"error": _rpc_detail(exc)})
            return
        call = self._stdio_call

        def pump() -> None:
            try:
                for data in call:
                    channel = "stdout" if data.channel == 1 else "stderr"
                    self.stdio.append((channel, bytes(data.data)))
                    text = bytes(data.data).decode("utf-8", "replace").rstrip("\n")
                    self.plugin_log.debug("%s", text, extra={"plugin_stdio": channel})
            except grpc.RpcError as exc:
                self.log.debug("stdio stream ended", extra={"error": _rpc_detail(exc)})

        thread = threading.Thread(target=pump, name="soup-host-stdio", daemon=True)
        thread.start()
        self._threads.append(thread)

    def _call(self, method: Any, request: Any) -> Any:
        try:
            return method(request, timeout=self.rpc_timeout)
        except grpc.RpcError as exc:
            raise HostError(_rpc_detail(exc)) from exc

    def _peek_exit(self) -> int | None:
        """The plugin's exit status if it has exited (negative: signal), without reaping it."""
        assert self.proc is not None
        if self.proc.returncode is not None:
            return self.proc.returncode
        try:
            info = os.waitid(os.P_PID, self.proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return self.proc.poll()
        if info is None:
            return None
        if info.si_code == os.CLD_EXITED:
            return info.si_status
        return -info.si_status

    def _wait_exit(self, timeout: float) -> bool:
        """Wait for the plugin to exit without reaping it (the group stays killable)."""
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.returncode is not None:
                return True
            try:
                result = os.waitid(os.P_PID, self.proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            except ChildProcessError:
                return True
            if result is not None:
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)

    def _signal_group(self, signum: signal.Signals) -> None:
        """Signal whatever is left in the plugin's process group (the plugin is unreaped)."""
        assert self.proc is not None
        if self.proc.returncode is not None:
            return  # already reaped: its pid (and group id) may belong to someone else now
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signum)


def _rpc_detail(exc: grpc.RpcError) -> str:
    code = exc.code() if isinstance(exc, grpc.Call) else None
    details = exc.details() if isinstance(exc, grpc.Call) else None
    name = code.name if code is not None else "UNKNOWN"
    return f"{name}: {details or exc}"


def rpc_code(exc: BaseException) -> grpc.StatusCode | None:
    """The gRPC status code behind a :class:`HostError` (or RpcError), if any."""
    cause = exc if isinstance(exc, grpc.RpcError) else exc.__cause__
    if isinstance(cause, grpc.Call):
        code: grpc.StatusCode = cause.code()
        return code
    return None


def rpc_message(exc: BaseException) -> str:
    cause = exc if isinstance(exc, grpc.RpcError) else exc.__cause__
    if isinstance(cause, grpc.Call):
        return str(cause.details() or "")
    return str(exc)
