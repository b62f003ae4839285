"""Plugin side: serve gRPC services the way a go-plugin plugin does.

``serve()`` checks the magic cookie, negotiates the app protocol version, listens
(unix socket or tcp on 127.0.0.1), sets up TLS per ``tls_mode``, prints the
handshake line on stdout, then serves until the host calls
``plugin.GRPCController/Shutdown`` or sends SIGTERM (SIGINT is ignored, like Go
plugins). Besides the user's services (KV) it serves ``grpc.health.v1.Health``,
``plugin.GRPCController``, ``plugin.GRPCStdio`` (the plugin's later stdout/stderr)
and ``plugin.GRPCBroker`` (:mod:`soup.broker`: callbacks both ways).

TLS backends (``soup.tls.choose_backend``): *native* is grpcio's own TLS on the
advertised address; *openssl* is a :class:`soup.bridge.TLSListenerBridge` on the
advertised address in front of plaintext grpcio on a unix socket in a private
0700 directory.
"""

from __future__ import annotations

import contextlib
import grp
import io
import logging
import os
import queue
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from soup import bridge, certs, handshake, kv, logs, pb, tls
from soup.broker import BrokerTLS, GRPCBroker
from soup.broker import add_grpc_port as _grpc_add_port
from soup.kvstore import FileStore
from soup.result import version_string

__all__ = [
    "DEFAULT_KEY_TYPE",
    "ENV_CLIENT_CERT",
    "ENV_MAX_PORT",
    "ENV_MIN_PORT",
    "ENV_UNIX_SOCKET_DIR",
    "ENV_UNIX_SOCKET_GROUP",
    "PluginError",
    "ServeOptions",
    "serve",
]

DEFAULT_KEY_TYPE = "ec-p256"
ENV_CLIENT_CERT = "PLUGIN_CLIENT_CERT"
ENV_MIN_PORT = "PLUGIN_MIN_PORT"
ENV_MAX_PORT = "PLUGIN_MAX_PORT"
ENV_UNIX_SOCKET_DIR = "PLUGIN_UNIX_SOCKET_DIR"
ENV_UNIX_SOCKET_GROUP = "PLUGIN_UNIX_SOCKET_GROUP"
ENV_MULTIPLEX = "PLUGIN_MULTIPLEX_GRPC"
ENV_LOG_LEVEL = "SOUP_LOG_LEVEL"

AUTO_WITHOUT_CLIENT_CERT = (
    "tls-mode auto: the host sent no PLUGIN_CLIENT_CERT; refusing to serve plaintext "
    "(start the host with AutoMTLS, or pass --tls-mode disabled explicitly)"
)
DISABLED_WITH_CLIENT_CERT = "tls-mode disabled but the host asked for TLS (PLUGIN_CLIENT_CERT set)"

_POLL = 0.2  # seconds: how often long-lived streams look at their stop flags
_MAX_UNIX_PATH = 104  # sun_path is 108 bytes on Linux, 104 on macOS
_STDIO_QUEUE = 4096  # chunks buffered for GRPCStdio before dropping


class PluginError(Exception):
    """The plugin cannot start (the message says why); exit status 1."""


@dataclass
class ServeOptions:
    """What ``rpc server-start`` passes to :func:`serve`."""

    tls_mode: str = "auto"
    key_type: str = DEFAULT_KEY_TYPE
    cert_file: Path | None = None
    key_file: Path | None = None
    ca_file: Path | None = None
    transport: str = "unix"
    kv_dir: Path | None = None
    tls_backend: str = "auto"
    config: handshake.HandshakeConfig = field(default_factory=handshake.HandshakeConfig)
    grace: float = 1.0
    """Seconds in-flight RPCs get to finish on a graceful stop."""
    log_level: str | None = None


# --------------------------------------------------------------------------------------
# Internal go-plugin services


class _StdioHub:
    """Bytes written to the swapped sys.stdout/sys.stderr, waiting for StreamStdio."""

    def __init__(self) -> None:
        self._queue: queue.Queue[tuple[int, bytes] | None] = queue.Queue(maxsize=_STDIO_QUEUE)
        self.closed = threading.Event()
        self.dropped = 0

    def write(self, channel: int, data: bytes) -> None:
        if not data or self.closed.is_set():
            return
        try:
            self._queue.put_nowait((channel, data))
        except queue.Full:
            self.dropped += 1

    def close(self) -> None:
        self.closed.set()
        with contextlib.suppress(queue.Full):
            self._queue.put_nowait(None)  # wake a waiting stream now

    # /plugin.GRPCStdio/StreamStdio
    def StreamStdio(self, request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        while not self.closed.is_set() and context.is_active():
            try:
                item = self._queue.get(timeout=_POLL)
            except queue.Empty:
                continue
            if item is None:
                with contextlib.suppress(queue.Full):
                    self._queue.put_nowait(None)  # for any other stream
                return
            channel, data = item
            yield pb.grpc_stdio_pb2.StdioData(channel=channel, data=data)


class _HubRaw(io.RawIOBase):
    """A raw binary stream that forwards every write to a :class:`_StdioHub` channel."""

    def __init__(self, hub: _StdioHub, channel: int) -> None:
        super().__init__()
        self._hub = hub
        self._channel = channel

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        chunk = bytes(data)
        self._hub.write(self._channel, chunk)
        return len(chunk)


def _hub_writer(hub: _StdioHub, channel: int) -> TextIO:
    raw = _HubRaw(hub, channel)
    return io.TextIOWrapper(
        io.BufferedWriter(raw),
        encoding="utf-8",
        errors="backslashreplace",
        line_buffering=True,
        write_through=True,
    )


class _Controller:
    def __init__(self, stop: Callable[[str], None], log: logging.Logger) -> None:
        self._stop = stop
        self._log = log

    # /plugin.GRPCController/Shutdown
    def Shutdown(self, request: Any, context: grpc.ServicerContext) -> Any:
        self._log.info("shutdown requested by the host (GRPCController.Shutdown)")
        self._stop("GRPCController.Shutdown")
        return pb.grpc_controller_pb2.Empty()


# --------------------------------------------------------------------------------------
# Listening


def _port_range(env: Mapping[str, str]) -> tuple[int, int]:
    values = []
    for name in (ENV_MIN_PORT, ENV_MAX_PORT):
        text = env.get(name, "")
        if not text:
            values.append(0)
            continue
        try:
            values.append(int(text, 10))
        except ValueError:
            raise PluginError(
                f"couldn't get value from {name}: {text!r} is not an integer"
            ) from None
    low, high = values
    if low > high:
        raise PluginError(
            f"{ENV_MIN_PORT} value of {low} is greater than {ENV_MAX_PORT} value of {high}"
        )
    if low < 0 or high > 65535:
        raise PluginError(f"port range {low}..{high} is outside 0..65535")
    return low, high


def _unix_socket_path(env: Mapping[str, str]) -> str:
    directory = env.get(ENV_UNIX_SOCKET_DIR) or None
    try:
        fd, path = tempfile.mkstemp(prefix="plugin", dir=directory)
    except OSError as exc:
        raise PluginError(f"cannot create the plugin's unix socket path: {exc}") from exc
    os.close(fd)
    os.unlink(path)
    if len(path.encode()) >= _MAX_UNIX_PATH:
        raise PluginError(
            f"unix socket path {path!r} is too long ({len(path.encode())} bytes); "
            f"set {ENV_UNIX_SOCKET_DIR} to a shorter directory"
        )
    return path


def _set_group_writable(path: str, group: str) -> None:
    try:
        gid = int(group, 10)
    except ValueError:
        try:
            gid = grp.getgrnam(group).gr_gid
        except KeyError:
            raise PluginError(
                f"{ENV_UNIX_SOCKET_GROUP}: failed to find gid from {group!r}"
            ) from None
    try:
        os.chown(path, -1, gid)
        os.chmod(path, 0o660)
    except OSError as exc:
        raise PluginError(f"{ENV_UNIX_SOCKET_GROUP}={group!r}: {exc}") from exc


def _listen_tcp_socket(port: int, backlog: int = 64) -> socket.socket:
    """A socket listening on 127.0.0.1:port (0: any free port); OSError if it cannot.

    Bind and listen happen together: with SO_REUSEADDR, Linux lets two sockets bind the
    same port while neither listens, so a port is only ours once listen() succeeded
    (a parallel plugin that bound it too then fails its listen() and moves on).
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        # Like Go's net.Listen: reuse a port whose old connections are in TIME_WAIT.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        sock.listen(backlog)
    except OSError:
        sock.close()
        raise
    return sock


def _listen_tcp_range(env: Mapping[str, str]) -> socket.socket:
    """Like go-plugin's TCP listener: the first port of PLUGIN_MIN_PORT..PLUGIN_MAX_PORT
    that can be listened on (EADDRINUSE at bind or at listen: try the next one)."""
    low, high = _port_range(env)
    last = "no port tried"
    for port in range(low, high + 1):
        try:
            return _listen_tcp_socket(port)
        except OSError as exc:
            last = str(exc)
    raise PluginError(f"couldn't bind plugin TCP listener on 127.0.0.1:{low}..{high}: {last}")


# --------------------------------------------------------------------------------------
# The server


class _Plugin:
    def __init__(self, options: ServeOptions, env: Mapping[str, str], log: logging.Logger) -> None:
        self.options = options
        self.env = env
        self.log = log
        self.stop_requested = threading.Event()
        self.stop_reason = ""
        self.stopping = threading.Event()
        self.hub = _StdioHub()
        self.server: grpc.Server | None = None
        self.health: Any = None
        self.listener_bridge: bridge.TLSListenerBridge | None = None
        self.broker: GRPCBroker | None = None  # broker hook
        self.cleanup_paths: list[Path] = []  # files/dirs to remove at exit
        self.own: certs.CertKey | None = None
        self.trusted_pem: bytes | None = None
        self.peer_key_type: str | None = None
        self.backend: str | None = None
        self.network = options.transport
        self.address = ""
        self._bridge_socket: socket.socket | None = None
        self._shut_down = False

    # -- setup
    def configure_tls(self) -> None:
        opts = self.options
        client_cert = self.env.get(ENV_CLIENT_CERT, "")
        if opts.tls_mode == "disabled":
            if client_cert:
                raise PluginError(DISABLED_WITH_CLIENT_CERT)
            return
        if opts.tls_mode == "auto":
            if not client_cert:
                raise PluginError(AUTO_WITHOUT_CLIENT_CERT)
            try:
                host_cert = certs.load_cert_pem(client_cert.encode())
            except Exception as exc:
                raise PluginError(f"{ENV_CLIENT_CERT} is not a PEM certificate: {exc}") from exc
            self.peer_key_type = certs.key_type_of(host_cert)
            try:
                self.own = certs.self_signed(opts.key_type)
            except ValueError as exc:
                raise PluginError(str(exc)) from exc
            self.trusted_pem = client_cert.encode()
        elif opts.tls_mode == "manual":
            try:
                self.own, self.trusted_pem = certs.load_manual(
                    opts.cert_file, opts.key_file, opts.ca_file
                )
            except ValueError as exc:
                raise PluginError(str(exc)) from exc
        else:
            raise PluginError(f"unknown tls mode {opts.tls_mode!r}")
        try:
            self.backend = tls.choose_backend(opts.tls_backend, self.peer_key_type)
        except ValueError as exc:
            raise PluginError(str(exc)) from exc
        self.log.debug(
            "configured plugin TLS",
            extra={
                "tls_mode": opts.tls_mode,
                "backend": self.backend,
                "key_type": self.own.key_type,
                "peer_key_type": self.peer_key_type or "unknown",
            },
        )

    def _server_credentials(self) -> grpc.ServerCredentials:
        assert self.own is not None
        assert self.trusted_pem is not None
        return grpc.ssl_server_credentials(
            [(self.own.key_pem, self.own.cert_pem)],
            root_certificates=self.trusted_pem,
            require_client_auth=True,
        )

    def build_server(self) -> grpc.Server:
        server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=16, thread_name_prefix="soup-grpc"),
            # Never share a port with another process (grpcio sets SO_REUSEPORT by default).
            options=[("grpc.so_reuseport", 0)],
        )
        self.health = health.HealthServicer()
        for name in ("plugin", ""):
            self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        pb.grpc_controller_pb2_grpc.add_GRPCControllerServicer_to_server(
            _Controller(self.request_stop, self.log), server
        )
        pb.grpc_stdio_pb2_grpc.add_GRPCStdioServicer_to_server(self.hub, server)
        # broker hook: go-plugin's GRPCBroker over the main connection's TLS.
        material = None
        if self.own is not None and self.trusted_pem is not None and self.backend is not None:
            material = BrokerTLS(self.own, self.trusted_pem, self.backend)
        parent = self.env.get(ENV_UNIX_SOCKET_DIR) or None
        self.broker = GRPCBroker(
            tls=material, network=self.network, socket_parent=Path(parent) if parent else None
        )
        pb.grpc_broker_pb2_grpc.add_GRPCBrokerServicer_to_server(self.broker.servicer(), server)
        return server

    def listen(self, server: grpc.Server) -> None:
        """Bind the advertised address (and the private backend socket for openssl)."""
        if self.backend == "openssl":
            self._listen_bridged(server)
        else:
            creds = self._server_credentials() if self.backend == "native" else None
            self._listen_grpc(server, creds)

    def _listen_grpc(self, server: grpc.Server, creds: grpc.ServerCredentials | None) -> None:
        if self.network == "unix":
            path = _unix_socket_path(self.env)
            self.cleanup_paths.append(Path(path))
            if not _grpc_add_port(server, "unix:" + path, creds):
                raise PluginError(f"couldn't bind plugin unix listener at {path}")
            self._socket_permissions(path)
            self.address = path
            return
        low, high = _port_range(self.env)
        last = "no port tried"
        for port in range(low, high + 1):
            if port:
                # Cheap pre-check so a busy port costs no grpcio call. grpcio's add_*_port
                # binds and listens at once, so a port taken meanwhile fails there (0) and
                # the loop moves on.
                try:
                    _listen_tcp_socket(port, backlog=1).close()
                except OSError as exc:
                    last = str(exc)
                    continue
            bound = _grpc_add_port(server, f"127.0.0.1:{port}", creds)
            if bound:
                self.address = f"127.0.0.1:{bound}"
                return
            last = f"grpcio could not bind 127.0.0.1:{port}"
        raise PluginError(f"couldn't bind plugin TCP listener on 127.0.0.1:{low}..{high}: {last}")

    def _private_dir(self, prefix: str) -> Path:
        """A 0700 directory; inside the host's socket directory when it gave one
        (a host that removes that directory then removes ours too)."""
        parent = self.env.get(ENV_UNIX_SOCKET_DIR) or None
        if parent is None:
            return bridge.private_socket_dir(prefix)
        path = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
        path.chmod(0o700)
        return path

    def _listen_bridged(self, server: grpc.Server) -> None:
        private = self._private_dir("soup-")
        self.cleanup_paths.append(private)
        backend_path = str(private / "grpc.sock")
        if not _grpc_add_port(server, "unix:" + backend_path, None):
            raise PluginError(f"couldn't bind the private grpc socket {backend_path}")
        if self.network == "unix":
            path = _unix_socket_path(self.env)
            listen_sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                listen_sock.bind(path)
            except OSError as exc:
                listen_sock.close()
                raise PluginError(f"couldn't bind plugin unix listener at {path}: {exc}") from exc
            self.cleanup_paths.append(Path(path))
            self._socket_permissions(path)
            self.address = path
            listen_sock.listen(64)
        else:
            listen_sock = _listen_tcp_range(self.env)  # already listening
            host, port = listen_sock.getsockname()[:2]
            self.address = f"{host}:{port}"
        assert self.own is not None
        assert self.trusted_pem is not None
        context = tls.server_ssl_context(self.own, self.trusted_pem)
        self.listener_bridge = bridge.TLSListenerBridge(
            listen_sock, context, backend_path, logger=logging.getLogger("soup.bridge")
        )
        self._bridge_socket = listen_sock

    def _socket_permissions(self, path: str) -> None:
        group = self.env.get(ENV_UNIX_SOCKET_GROUP, "")
        if group:
            _set_group_writable(path, group)

    def start(
        self,
        register: Callable[[grpc.Server], None] | None = None,
        register_brokered: Callable[[grpc.Server, GRPCBroker], None] | None = None,
    ) -> handshake.Handshake:
        opts = self.options
        app_version = handshake.negotiate_version(
            self.env.get("PLUGIN_PROTOCOL_VERSIONS"), opts.config.app_versions
        )
        if opts.transport not in ("unix", "tcp"):
            raise PluginError(f"unknown transport {opts.transport!r} (expected unix or tcp)")
        self.configure_tls()
        if self.env.get(ENV_MULTIPLEX):
            self.log.warning(
                "host asked for gRPC broker multiplexing (PLUGIN_MULTIPLEX_GRPC); "
                "soup does not support it and does not advertise it"
            )
        if opts.kv_dir is None:
            kv_dir = self._private_dir("soup-kv-")
            self.cleanup_paths.append(kv_dir)
        else:
            kv_dir = opts.kv_dir
        server = self.build_server()
        self.server = server
        kv.add_to_server(FileStore(kv_dir), server)
        if register is not None:
            register(server)
        if register_brokered is not None and self.broker is not None:  # broker hook
            register_brokered(server, self.broker)
        self.listen(server)
        server.start()
        if self.listener_bridge is not None:
            self.listener_bridge.start()
        self.log.debug(
            "plugin address",
            extra={"network": self.network, "address": self.address, "kv_dir": str(kv_dir)},
        )
        return handshake.Handshake(
            core_version=handshake.CORE_PROTOCOL_VERSION,
            app_version=app_version,
            network=self.network,
            address=self.address,
            protocol="grpc",
            server_cert_der=self.own.cert_der if opts.tls_mode == "auto" and self.own else None,
        )

    # -- stop
    def request_stop(self, reason: str) -> None:
        if not self.stop_requested.is_set():
            self.stop_reason = reason
            self.stop_requested.set()

    def shutdown(self) -> None:
        """Graceful stop: end long-lived streams, let RPCs finish, close, remove files."""
        if self._shut_down:
            return
        self._shut_down = True
        self.stopping.set()
        self.hub.close()
        if self.broker is not None:  # broker hook: its servers and stream end first
            self.broker.close()
        if self.health is not None:
            with contextlib.suppress(Exception):
                self.health.enter_graceful_shutdown()
        if self.server is not None:
            done = self.server.stop(self.options.grace)
            if not done.wait(self.options.grace + 2.0):
                self.log.warning("grpc server did not stop in time")
        if self.listener_bridge is not None:
            if self.listener_bridge.last_error:
                self.log.debug(
                    "last TLS bridge error", extra={"error": self.listener_bridge.last_error}
                )
            self.listener_bridge.close()
        if self._bridge_socket is not None:
            self._bridge_socket.close()
        self.remove_files()

    def remove_files(self) -> None:
        for path in reversed(self.cleanup_paths):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
        self.cleanup_paths.clear()


def _write_line(stream: TextIO, data: bytes) -> None:
    buffer = getattr(stream, "buffer", None)
    if buffer is not None:
        stream.flush()
        buffer.write(data)
        buffer.flush()
    else:
        stream.write(data.decode())
        stream.flush()


def serve(
    options: ServeOptions | None = None,
    *,
    env: Mapping[str, str] | None = None,
    register: Callable[[grpc.Server], None] | None = None,
    register_brokered: Callable[[grpc.Server, GRPCBroker], None] | None = None,
) -> int:
    """Run as a go-plugin plugin until told to stop; returns the exit status (0 or 1).

    ``register`` may add more services to the grpc server before it starts;
    ``register_brokered`` too, and gets the plugin's broker (go-plugin's
    ``GRPCServer(broker, server)``).
    """
    opts = options or ServeOptions()
    env = os.environ if env is None else env
    real_stdout, real_stderr = sys.stdout, sys.stderr
    try:
        handshake.check_cookie(env, opts.config)
    except handshake.CookieError:
        real_stderr.write(handshake.NOT_A_PLUGIN_MESSAGE + "\n")
        real_stderr.flush()
        return 1

    level = opts.log_level or env.get(ENV_LOG_LEVEL) or "debug"
    log = logs.configure(real_stderr, level=level, module="soup.plugin")
    # The first line says who serves: a host reads impl and version from it (the
    # server's identity is not on the wire), as from soup-go's first line.
    log.info("soup plugin starting", extra={"impl": "python", "version": version_string()})
    plugin = _Plugin(opts, env, log)
    try:
        line_info = plugin.start(register, register_brokered)
    except (PluginError, bridge.BridgeError, OSError) as exc:
        log.error(str(exc))
        plugin.shutdown()
        return 1

    main_thread = threading.current_thread() is threading.main_thread()
    previous: dict[int, Any] = {}
    if main_thread:
        interrupts = 0

        def on_sigint(signum: int, frame: FrameType | None) -> None:
            nonlocal interrupts
            interrupts += 1
            log.debug("plugin received interrupt signal, ignoring", extra={"count": interrupts})

        def on_sigterm(signum: int, frame: FrameType | None) -> None:
            plugin.request_stop("SIGTERM")

        previous[signal.SIGINT] = signal.signal(signal.SIGINT, on_sigint)
        previous[signal.SIGTERM] = signal.signal(signal.SIGTERM, on_sigterm)

    try:
        _write_line(real_stdout, handshake.format_line(line_info))
        sys.stdout = _hub_writer(plugin.hub, 1)
        sys.stderr = _hub_writer(plugin.hub, 2)
        log.info(
            "plugin serving",
            extra={
                "network": plugin.network,
                "address": plugin.address,
                "tls_mode": opts.tls_mode,
                "backend": plugin.backend or "none",
            },
        )
        while not plugin.stop_requested.wait(0.5):
            pass
        log.info("plugin stopping", extra={"reason": plugin.stop_reason})
        started = time.monotonic()
        plugin.shutdown()
        log.debug("plugin stopped", extra={"seconds": round(time.monotonic() - started, 3)})
        if plugin.hub.dropped:
            log.warning(
                "stdio chunks dropped (no StreamStdio reader)", extra={"count": plugin.hub.dropped}
            )
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
        sys.stdout, sys.stderr = real_stdout, real_stderr
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        plugin.shutdown()
    return 0
