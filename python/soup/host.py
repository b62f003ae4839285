"""Host side: start a go-plugin plugin (Go or Python) or reattach to one, and connect.

:class:`Client` follows go-plugin's ``Client``: it starts ``ClientConfig.cmd`` with the
handshake environment (magic cookie, versions, port range and, in AutoMTLS,
``PLUGIN_CLIENT_CERT``), reads the first stdout line within a bound, checks it,
connects with the TLS backend the plugin's key type allows (``soup.connect``) and
streams the plugin's later stdout/stderr (GRPCStdio). ``kill()`` calls
``GRPCController/Shutdown``, waits 2 s, then SIGKILLs the process group (without a
verified connection: SIGTERM, at most 0.5 s, SIGKILL). With ``ClientConfig.reattach``
no process is started; ``kill()`` sends Shutdown unless ``keep_running``.

Long because ``Client`` is one lifecycle (spawn, handshake, connect, broker, stop) whose
steps share its state; connecting, processes and checksums are in connect, process and
secure.
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
import signal
import socket
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import grpc

from soup import bridge, certs, managed, pb, stdio
from soup.broker import BrokerTLS, GRPCBroker
from soup.connect import (
    Connection,
    dial,
    health_status,
    open_connection,
    pinned_server_pem,
    rpc_detail,
)
from soup.errors import HostError, HostHandshakeError
from soup.grpchooks import GRPCHooks
from soup.grpcmux import ClientMuxer
from soup.handshake import (
    ENV_CLIENT_CERT,
    ENV_MULTIPLEX_GRPC,
    ENV_UNIX_SOCKET_DIR,
    HOST_SOCKET_DIR_PREFIX,
    Handshake,
    HandshakeConfig,
    HandshakeError,
    IncompatibleVersionError,
    host_env,
    parse_line,
)
from soup.listen import group_id, share_with_group
from soup.loglines import DEFAULT_BUFFER_SIZE
from soup.process import (
    PluginProcess,
    ProcessError,
    find_executable,
    split_command,
    wait_pid_gone,
)
from soup.reattach import ReattachConfig
from soup.secure import SecureConfig, check_executable
from soup.settings import TLSSettings, own_material
from soup.tls import TLSEvidence

__all__ = ["REATTACH_WITH_AUTO", "Client", "ClientConfig", "Exit"]

RPC_TIMEOUT = 5.0
SHUTDOWN_WAIT = 2.0
SHUTDOWN_ANSWER = 1.0  # a plugin that does not answer Shutdown within this is hung: killed
TERM_WAIT = 0.5  # SIGTERM to SIGKILL when no Shutdown could be sent
DEATH_WAIT = 0.2  # after a failed call: time for a dying plugin's exit status to arrive
REATTACH_WITH_AUTO = (
    "--reattach cannot use --tls-mode auto: a plugin in debug mode got no PLUGIN_CLIENT_CERT "
    "from a host; use --tls-mode manual (TLS with your cert files) or --tls-mode disabled, "
    "as the plugin was started"
)
MULTIPLEX_WITH_REATTACH = "gRPC broker multiplexing is not supported with Reattach config"
MULTIPLEX_WITHOUT_TLS = (
    "gRPC broker multiplexing needs TLS in soup (its yamux streams go through the OpenSSL "
    "bridge): use --tls-mode auto or manual, or leave multiplexing off"
)
MUX_NOT_SUPPORTED = (
    "client requested gRPC broker multiplexing but plugin does not support the feature"
)
MUX_NO_FIELD_7 = (
    "; for Go plugins, you will need to update the github.com/hashicorp/go-plugin "
    "dependency and recompile"
)
# Shorter than the bridge's own limit: the plugin nests its private directory inside.
_MAX_SOCKET_DIR = 70


@dataclass(frozen=True)
class ClientConfig:
    """What a host needs to run or find a plugin (go-plugin ``ClientConfig``).

    Exactly one of ``cmd`` (a command line, split with shell rules, or an argv) and
    ``reattach`` (a running plugin, e.g. one started with ``--debug``) is given.
    """

    cmd: str | Sequence[str] | None = None
    reattach: ReattachConfig | None = None
    handshake: HandshakeConfig = field(default_factory=HandshakeConfig)
    tls: TLSSettings = field(default_factory=TLSSettings)
    timeout: float = 30.0
    """Seconds for the plugin to start and print its handshake line."""
    rpc_timeout: float = RPC_TIMEOUT
    keep_running: bool = False
    """Reattach only: ``kill()`` closes the connection but sends no Shutdown."""
    env: Mapping[str, str] | None = None
    """The plugin's base environment (default: ours, unless ``skip_host_env``); the
    handshake variables are added and win over the same names in it."""
    stdout: IO[bytes] | None = None
    stderr: IO[bytes] | None = None
    """Where the plugin's stdout/stderr (GRPCStdio) go; default: logged at debug."""
    on_stdio: Callable[[str, bytes], None] | None = None
    """Called with ``("stdout" | "stderr", data)`` for every GRPCStdio chunk."""
    logger: logging.Logger | None = None
    """The host's own log (default ``soup.host``); plugin lines go to ``soup.host.plugin``."""
    managed: bool = False
    """go-plugin's ``Managed``: ``soup.cleanup_clients()`` kills this client (and so does
    the host's exit or SIGTERM after ``soup.cleanup_clients_on_exit()``)."""
    grpc_options: Sequence[tuple[str, Any]] = ()
    """gRPC channel arguments for every channel to the plugin (main and brokered) and the
    host's brokered servers (go-plugin ``GRPCDialOptions``), e.g.
    ``[("grpc.max_receive_message_length", 64 << 20)]``: gRPC's default limit is 4 MiB."""
    grpc_interceptors: Sequence[Any] = ()
    """Client interceptors (``grpc.UnaryUnaryClientInterceptor`` ...) on those channels."""
    grpc_broker_multiplex: bool = False
    """go-plugin's ``GRPCBrokerMultiplex`` (v1.6.0+): one connection to the plugin, a
    yamux session over it, every gRPC connection (main and brokered) a stream of it, each
    with its own mutual TLS. Sends ``PLUGIN_MULTIPLEX_GRPC=true``; a plugin that does not
    answer ``true`` in field 7 is refused with go-plugin's error. TLS only (soup
    multiplexes over the OpenSSL bridge); not with ``reattach``, as in go-plugin."""
    unix_socket_group: str | None = None
    """go-plugin's ``UnixSocketConfig.Group``: a group (name or gid) that may connect to
    the plugin's unix sockets and to the host's brokered ones (sockets 0660, the socket
    directory the host makes 0710: enough to connect, not to list or add). Sent to the
    plugin as ``PLUGIN_UNIX_SOCKET_GROUP``; the host must be allowed to give files to it."""
    # Added after the fields above, so that their positions stay.
    skip_host_env: bool = False
    """go-plugin's ``SkipHostEnv``: without ``env`` the plugin gets only the handshake
    variables, not the host's environment (``env`` replaces the host's either way)."""
    secure_config: SecureConfig | None = None
    """go-plugin's ``SecureConfig``: the digest the plugin executable (``cmd``'s first
    word, looked up on ``env``'s PATH, else the host's) must have; the start is refused
    otherwise.
    Not with ``reattach`` (go-plugin refuses the pair too: a running plugin's file
    cannot be checked)."""
    plugin_log_buffer_size: int = DEFAULT_BUFFER_SIZE
    """go-plugin's ``PluginLogBufferSize``: the longest stderr line (with its newline)
    re-logged as one line; longer ones are logged in pieces of this size, at debug."""

    def __post_init__(self) -> None:
        if (self.cmd is None) == (self.reattach is None):
            raise ValueError("ClientConfig needs exactly one of cmd and reattach")
        if self.reattach is not None and self.tls.mode == "auto":
            raise ValueError(REATTACH_WITH_AUTO)
        if self.keep_running and self.reattach is None:
            raise ValueError("keep_running applies to reattach only (a started plugin is ours)")
        if self.secure_config is not None and self.reattach is not None:
            raise ValueError(
                "only one of reattach and secure_config can be set (as in go-plugin): "
                "the executable of a plugin that already runs is not checked"
            )
        size = self.plugin_log_buffer_size
        if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
            raise ValueError(
                f"plugin_log_buffer_size must be a positive number of bytes, got {size!r} "
                f"(go-plugin's default is {DEFAULT_BUFFER_SIZE})"
            )
        if self.grpc_broker_multiplex and self.reattach is not None:
            raise ValueError(MULTIPLEX_WITH_REATTACH)
        if self.grpc_broker_multiplex and self.tls.mode == "disabled":
            raise ValueError(MULTIPLEX_WITHOUT_TLS)
        _ = self._socket_gid  # a group that does not exist fails here, not at spawn

    def _grpc_hooks(self) -> GRPCHooks:
        return GRPCHooks(self.grpc_options, channel_interceptors=self.grpc_interceptors)

    @functools.cached_property
    def _socket_gid(self) -> int | None:
        """The gid of ``unix_socket_group`` (None if unset), looked up once."""
        if not self.unix_socket_group:
            return None
        try:
            return group_id(self.unix_socket_group)
        except KeyError:
            raise ValueError(
                f"unix_socket_group {self.unix_socket_group!r}: no such group "
                "(give a group name or a numeric gid)"
            ) from None


@dataclass
class Exit:
    """How the plugin ended: its exit code, and whether it went by itself."""

    code: int | None = None
    graceful: bool = False
    signalled: bool = False


class Client:
    """One plugin and the gRPC connection to it (a context manager: start, then kill)."""

    def __init__(self, config: ClientConfig) -> None:
        self.config = config
        try:
            self._argv = split_command(config.cmd) if config.cmd is not None else []
        except ProcessError as exc:
            raise HostError(str(exc)) from None
        self._log = config.logger or logging.getLogger("soup.host")
        self._plugin_log = logging.getLogger("soup.host.plugin")
        self.tls = TLSEvidence(mode=config.tls.mode)
        self._process: PluginProcess | None = None
        self.handshake_info: Handshake | None = None
        self._connection: Connection | None = None
        self.broker: GRPCBroker | None = None
        """go-plugin's GRPCBroker to this plugin (set once connected)."""
        self.exit = Exit()
        self._socket_dir: Path | None = None
        self.stdio: deque[tuple[str, bytes]] = deque(maxlen=256)
        """Recent chunks the plugin wrote to stdout/stderr after the handshake (GRPCStdio)."""
        self.server_impl: str | None = None
        self.server_version: str | None = None
        """Who serves, as the plugin's own log said (hclog fields ``impl`` and ``version``
        of its first such line); None if it never said: identity is not on the wire."""
        self._own: certs.CertKey | None = None
        """Own certificate and key (None in plaintext)."""
        self._trusted_pem: bytes | None = None
        """The only root trusted for the plugin: its pinned certificate, or the manual CA."""
        self._stdio: stdio.StdioReader | None = None
        self._muxer: ClientMuxer | None = None  # grpc_broker_multiplex: the yamux session
        self._killed = False

    # -- context manager
    def __enter__(self) -> Client:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.kill()

    # -- what a user of the connection needs
    @property
    def channel(self) -> grpc.Channel:
        """The verified channel to the plugin's services."""
        if self._connection is None:
            raise HostError("not connected to the plugin")
        return self._connection.channel

    @property
    def protocol_version(self) -> int:
        """The negotiated app protocol version."""
        if self.handshake_info is None:
            raise HostError("not connected to the plugin")
        return self.handshake_info.app_version

    @property
    def pid(self) -> int | None:
        if self._process is not None:
            return self._process.pid
        return self.config.reattach.pid if self.config.reattach is not None else None

    def stderr_tail(self) -> str:
        """The last ~4 KiB the plugin wrote to its real stderr (empty on reattach)."""
        return self._process.stderr_tail() if self._process is not None else ""

    def _explain(self, exc: BaseException) -> str:
        """``exc``'s text, plus the plugin's exit status and last stderr line if it died.

        A call that fails because the plugin died says only what gRPC saw (e.g.
        "UNAVAILABLE: Stream removed"); this names the cause.
        """
        if self._process is None:
            return str(exc)
        self._process.settle(DEATH_WAIT)
        code = self._process.peek_exit()
        if code is None:
            return str(exc)
        status = f"signal {-code}" if code < 0 else f"exit code {code}"
        last = self._process.last_stderr_line()
        return f"{exc}; plugin exited ({status}); its last stderr line: {last}"

    def health_check(self, service: str = "plugin") -> str:
        """``grpc.health.v1.Health/Check``; returns the status name, e.g. ``SERVING``."""
        return health_status(self.channel, service, self.config.rpc_timeout)

    # -- starting
    def start(self) -> None:
        """Spawn (or find) the plugin, check its handshake and connect.

        On any failure the plugin is killed before the error propagates (go-plugin's
        Start does the same), so a failed start leaves no process behind.
        """
        if self.config.managed and not self._killed:
            managed.manage(self)
        try:
            if self._process is None and self.config.reattach is None:
                self._spawn()
            if self._connection is None:
                self._handshake()
        except BaseException:
            self.kill()
            raise

    def _spawn(self) -> int:
        """Check the executable, prepare own TLS material and start the plugin process;
        returns its pid."""
        env = self._base_env()
        # Looked up on the host's PATH without env, also with skip_host_env (go-plugin's
        # exec.Command looks it up so); then that file is checked and run.
        lookup = self.config.env if self.config.env is not None else os.environ
        executable = find_executable(self._argv[0], lookup)
        if self.config.secure_config is not None:  # before anything is made (go-plugin)
            check_executable(self.config.secure_config, self._argv[0], executable)
        self._prepare_tls()
        client_pem = self._own.cert_pem if self.config.tls.mode == "auto" and self._own else None
        socket_dir = None
        if not env.get(ENV_UNIX_SOCKET_DIR):
            socket_dir = str(self._make_socket_dir())
        env.update(
            host_env(
                self.config.handshake,
                client_cert_pem=client_pem,
                unix_socket_dir=socket_dir,
                unix_socket_group=self.config.unix_socket_group or None,
            )
        )
        if client_pem is None:
            env.pop(ENV_CLIENT_CERT, None)  # never inherit one from our own env
        env.pop(ENV_MULTIPLEX_GRPC, None)  # only this host says whether it multiplexes
        if self.config.grpc_broker_multiplex:
            env[ENV_MULTIPLEX_GRPC] = "true"
        try:
            self._process = PluginProcess(
                self._argv,
                env,
                plugin_log=self._plugin_log,
                on_record=self._identity,
                executable=executable,
                log_buffer_size=self.config.plugin_log_buffer_size,
            )
        except ProcessError as exc:
            self._remove_socket_dir()
            raise HostError(str(exc)) from exc
        self._log.debug("plugin started", extra={"pid": self._process.pid, "cmd": self._argv})
        return self._process.pid

    def _base_env(self) -> dict[str, str]:
        """The environment the handshake variables go into: ``env``, else ours (none
        with ``skip_host_env``). go-plugin appends the host's environment to
        ``Cmd.Env`` instead (its values win); ``env`` here replaces it, so a host that
        gives one decides every variable."""
        if self.config.env is not None:
            return dict(self.config.env)
        return {} if self.config.skip_host_env else dict(os.environ)

    def _handshake(self) -> Handshake:
        """Read and check the handshake line (or the reattach config), then connect."""
        if self.config.reattach is not None:
            info = self._reattach_handshake(self.config.reattach)
            self._prepare_tls()
        else:
            info = self._read_handshake()
        self.handshake_info = info
        try:
            pinned = pinned_server_pem(self.config.tls, info.server_cert_der, self.tls)
            self._trusted_pem = pinned or self._trusted_pem
            if self.config.grpc_broker_multiplex:
                self._muxer = self._multiplexed(info)
            self._connection = open_connection(
                info.network,
                info.address,
                self.config.tls,
                own=self._own,
                trusted_pem=self._trusted_pem,
                evidence=self.tls,
                timeout=self.config.timeout,
                # The first RPC is a host wait too: bounded by --timeout.
                rpc_timeout=min(self.config.timeout, self.config.rpc_timeout),
                hooks=self.config._grpc_hooks(),
                open_stream=self._muxer.open if self._muxer is not None else None,
            )
        except HostError as exc:
            raise self._failure(str(exc), tail=False) from exc
        self._stdio = stdio.StdioReader(
            self.channel, self._on_stdio, logging.getLogger("soup.host")
        )
        self.broker = self._open_broker()
        return info

    def _multiplexed(self, info: Handshake) -> ClientMuxer:
        """go-plugin's client muxer: field 7 must say ``true``; then the one connection."""
        if info.multiplex is not True:
            raise HostError(MUX_NOT_SUPPORTED + (MUX_NO_FIELD_7 if info.multiplex is None else ""))
        try:
            conn = dial(info.network, info.address, self.config.timeout)
        except OSError as exc:
            raise HostError(f"cannot connect to the plugin at {info.address}: {exc}") from exc
        conn.settimeout(None)
        return ClientMuxer(conn, logging.getLogger("soup.mux"))

    def open_stream(self, timeout: float) -> socket.socket | None:
        """With ``grpc_broker_multiplex``, a new yamux stream to the plugin (None without)."""
        return self._muxer.open(timeout) if self._muxer is not None else None

    def _open_broker(self) -> GRPCBroker:
        """Like go-plugin's host: the GRPCBroker stream opens right after connecting.

        Brokered connections use the main connection's TLS material and backend
        (plaintext only when it is plaintext) and listen on its network.
        """
        assert self._connection is not None
        assert self.handshake_info is not None
        material = None
        if self._own is not None and self._trusted_pem is not None and self.tls.backend is not None:
            material = BrokerTLS(self._own, self._trusted_pem, self.tls.backend)
        broker = GRPCBroker(
            tls=material,
            network=self.handshake_info.network,
            socket_parent=self._socket_dir,
            socket_group=self.config._socket_gid,
            hooks=self.config._grpc_hooks(),
        )
        if self._muxer is not None:
            broker.multiplex_over(self._muxer)
        broker._open_stream(self._connection.channel)
        return broker

    def _prepare_tls(self) -> None:
        if self._own is not None or self.config.tls.mode == "disabled":
            return
        try:
            own, self._trusted_pem = own_material(self.config.tls)
        except ValueError as exc:
            raise HostError(str(exc)) from exc
        if own is not None:
            self._own = own
            self.tls.client_key = own.key_type
            self.tls.client_fingerprint = own.fingerprint

    def _reattach_handshake(self, reattach: ReattachConfig) -> Handshake:
        versions = sorted(set(self.config.handshake.app_versions))
        if reattach.protocol_version not in versions:
            raise HostHandshakeError(
                f"incompatible API version with plugin. Plugin version: "
                f"{reattach.protocol_version}, Client versions: "
                f"[{' '.join(str(v) for v in versions)}]"
            )
        return Handshake(
            core_version=1,
            app_version=reattach.protocol_version,
            network=reattach.network,
            address=reattach.address,
            protocol=reattach.protocol,
        )

    def _read_handshake(self) -> Handshake:
        if self._process is None:
            raise HostError("plugin not started")
        try:
            line = self._process.first_line(self.config.timeout)
        except ProcessError as exc:
            raise HostError(str(exc)) from None
        if not line:
            raise self._failure(
                "plugin exited before we could connect (no handshake line on stdout)"
            )
        try:
            return parse_line(line, app_versions=self.config.handshake.app_versions)
        except HandshakeError as exc:
            self._process.settle(0.2)
            # start() kills the plugin next: a refused line is never left running.
            what = str(exc)
            if not isinstance(exc, IncompatibleVersionError):
                what = f"bad handshake line from plugin: {exc}"
            failure = self._process.failure(what, stopping=True)
            raise HostHandshakeError(str(failure)) from exc

    def _failure(self, what: str, *, tail: bool = True) -> HostError:
        if self._process is None:
            return HostError(what)
        return HostError(str(self._process.failure(what, tail=tail)))

    def _identity(self, record: dict[str, object]) -> None:
        impl = record.get("impl")
        if self.server_impl is None and isinstance(impl, str) and impl:
            version = record.get("version")
            self.server_impl = impl
            self.server_version = version if isinstance(version, str) and version else None

    def _on_stdio(self, channel: str, data: bytes) -> None:
        self.stdio.append((channel, data))
        stream = self.config.stdout if channel == "stdout" else self.config.stderr
        if stream is not None:
            stream.write(data)
            stream.flush()
        if self.config.on_stdio is not None:
            self.config.on_stdio(channel, data)
        if stream is None and self.config.on_stdio is None:
            text = data.decode("utf-8", "replace").rstrip("\n")
            self._plugin_log.debug("%s", text, extra={"plugin_stdio": channel})

    # -- stopping
    def kill(self) -> bool:
        """Shutdown RPC, close, wait ``SHUTDOWN_WAIT`` s, then SIGKILL the process group.

        Without a verified connection (failed start, no handshake line, TLS or connection
        check failed) a Shutdown could not arrive: no RPC and no 2 s wait; the group gets
        SIGTERM (both soup plugins stop cleanly on it), at most ``TERM_WAIT`` s, then SIGKILL.
        A plugin that does not answer Shutdown within ``SHUTDOWN_ANSWER`` s (stopped,
        hung) gets SIGKILL at once, as soup-go's host does. A reattached plugin gets
        Shutdown (unless ``keep_running``) and 2 s to exit.

        Returns True if the plugin exited by itself. Idempotent.
        """
        if self._killed:
            return self.exit.graceful
        self._killed = True
        managed.release(self)
        if self.broker is not None:  # go-plugin closes the broker before Shutdown
            self.broker.close()
        verified = self._connection is not None
        # Stopped or hung: no exit wait, SIGKILL at once (a stopped process ignores SIGTERM).
        hung = verified and not self.config.keep_running and not self._send_shutdown()
        if self._connection is not None:
            self._connection.close()
        if self._muxer is not None:
            self._muxer.close()
        if self._process is not None:
            self._end_process(verified, hung=hung)
        elif self.config.reattach is not None and verified and not self.config.keep_running:
            self.exit.graceful = wait_pid_gone(self.config.reattach.pid, SHUTDOWN_WAIT)
        self._remove_socket_dir()
        return self.exit.graceful

    def _send_shutdown(self) -> bool:
        """Shutdown RPC; False if the plugin did not answer within ``SHUTDOWN_ANSWER`` s."""
        stub = pb.grpc_controller_pb2_grpc.GRPCControllerStub(self.channel)
        try:
            stub.Shutdown(pb.grpc_controller_pb2.Empty(), timeout=SHUTDOWN_ANSWER)
        except grpc.RpcError as exc:
            if isinstance(exc, grpc.Call) and exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
                self._log.warning(
                    "plugin did not answer Shutdown within %g s (stopped or hung); killing it",
                    SHUTDOWN_ANSWER,
                )
                return False
            self._log.debug("Shutdown RPC failed (ignored)", extra={"error": rpc_detail(exc)})
        return True

    def _end_process(self, verified: bool, *, hung: bool) -> None:
        process = self._process
        assert process is not None
        if hung:
            self.exit.graceful = False
        elif verified:
            self.exit.graceful = process.wait_exit(SHUTDOWN_WAIT)
            if not self.exit.graceful:
                self._log.warning(
                    "plugin did not exit within %g s; killing its process group", SHUTDOWN_WAIT
                )
        else:
            self.exit.graceful = process.peek_exit() is not None
            if not self.exit.graceful:
                process.signal_group(signal.SIGTERM)
                if not process.wait_exit(TERM_WAIT):
                    self._log.debug(
                        "plugin did not exit within %g s of SIGTERM; killing its process group",
                        TERM_WAIT,
                    )
        self.exit.code = process.end_group()
        self.exit.signalled = self.exit.code is not None and self.exit.code < 0

    def _make_socket_dir(self) -> Path:
        """A directory of our own for the plugin's socket (and its private files), removed
        in kill(), so nothing is left behind even after SIGKILL; the group's, if one is set."""
        self._socket_dir = bridge.private_socket_dir(HOST_SOCKET_DIR_PREFIX, _MAX_SOCKET_DIR)
        if self.config._socket_gid is not None:
            try:
                share_with_group(self._socket_dir, self.config._socket_gid, 0o710)
            except OSError as exc:
                self._remove_socket_dir()
                raise HostError(
                    f"cannot give the plugin's socket directory to group "
                    f"{self.config.unix_socket_group!r} (unix_socket_group): {exc}"
                ) from exc
        return self._socket_dir

    def _remove_socket_dir(self) -> None:
        if self._socket_dir is not None:
            shutil.rmtree(self._socket_dir, ignore_errors=True)
            self._socket_dir = None
