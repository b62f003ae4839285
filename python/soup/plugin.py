"""Plugin side: ``serve(ServeConfig(...))`` runs a go-plugin plugin serving your services.

``serve`` checks the magic cookie, negotiates the app protocol version, sets up TLS
(``soup.policy``), listens (``soup.listen``), registers the internal services
(``soup.services``) and the negotiated version's services, prints the handshake line
on stdout, then serves until the host calls ``plugin.GRPCController/Shutdown``, sends
SIGTERM, or dies (SIGINT is ignored, like Go plugins). After the handshake line,
``sys.stdout``/``sys.stderr`` go to the host over GRPCStdio and every Python logger
writes hclog JSON to the real stderr.

Long because ``serve`` is one lifecycle (cookie, TLS, listen, handshake line, stdio,
stop, cleanup) for both the thread and the asyncio server; its parts are in policy,
listen and services.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import select
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, TextIO, cast

import grpc

from soup import bridge, handshake, logs, policy, version_string
from soup.bridgeproc import BridgeProcess
from soup.broker import GRPCBroker
from soup.errors import PluginError
from soup.grpchooks import GRPCHooks
from soup.listen import (
    Listening,
    ServerTLS,
    listen,
    private_dir,
    remove_orphaned_host_dir,
    remove_paths,
    socket_group,
)
from soup.services import Internal
from soup.settings import TLSSettings, Transport
from soup.stdio import hub_writer
from soup.workers import ElasticExecutor

if TYPE_CHECKING:
    from concurrent import futures

    from soup.reattach import ReattachConfig

__all__ = ["Register", "ServeConfig", "ServeContext", "serve"]

_PARENT_POLL = 0.25  # seconds between checks that the host is still our parent
_SERVER_OPTIONS = [("grpc.so_reuseport", 0)]  # never share a port with another process
# Worker threads for calls: few under load (each one more contends for the GIL), more
# only while calls are stuck behind long-lived streams (soup.workers).
_CORE_WORKERS = 4
_MAX_WORKERS = 64


@dataclass
class ServeContext:
    """What a service registration gets: the server to add servicers to, and friends."""

    server: Any
    """A ``grpc.Server`` (``grpc.aio.Server`` when ``ServeConfig.asyncio``)."""
    protocol_version: int
    """The app protocol version negotiated with the host."""
    broker: GRPCBroker
    """The plugin's GRPCBroker: serve (``accept_and_serve``) or dial (``dial``) more
    connections to the host, found by service id (go-plugin ``GRPCBroker``)."""
    logger: logging.Logger
    env: Mapping[str, str]
    cleanup: list[Path] = field(default_factory=list)

    def temp_dir(self, prefix: str = "soup-") -> Path:
        """A private 0700 directory, inside the host's socket directory when it gave one;
        removed when the plugin stops."""
        path = private_dir(self.env, prefix)
        self.cleanup.append(path)
        return path


Register = Callable[[ServeContext], object]
"""Adds servicers to ``ServeContext.server``, e.g. ``add_GreeterServicer_to_server``."""


@dataclass(frozen=True)
class ServeConfig:
    """How a plugin serves (go-plugin ``ServeConfig``); every behaviour is a field."""

    handshake: handshake.HandshakeConfig = field(default_factory=handshake.HandshakeConfig)
    plugins: Mapping[int, Sequence[Register]] = field(default_factory=dict)
    """Services per app protocol version (go-plugin ``VersionedPlugins``). The versions
    served are these keys plus ``handshake.app_versions``; only the negotiated
    version's registrations run."""
    tls: TLSSettings = field(default_factory=TLSSettings)
    require_tls: bool = False
    """Auto mode: refuse to serve plaintext when the host sent no ``PLUGIN_CLIENT_CERT``
    (by default, like go-plugin, such a plugin serves plaintext and logs a warning)."""
    transport: Transport = "unix"
    asyncio: bool = False
    """Serve with ``grpc.aio`` (servicers may be ``async``; plain ones run in threads)."""
    debug: bool = False
    """Started by hand: no magic cookie needed; prints the reattach config instead of a
    handshake line and serves until Shutdown or SIGTERM (tls mode manual or disabled)."""
    watch_parent: bool = True
    """Exit when the host dies (the parent process changes); off in debug mode."""
    log_level: str | None = None
    """Default: ``SOUP_LOG_LEVEL``, else info. A go-plugin host re-logs each line at its
    own level, but a line the plugin writes costs it (format, pipe, host parse) even when
    the host drops it: debug and trace lines are opt-in."""
    configure_logging: bool = True
    """Send every Python logger to stderr as hclog JSON (what a go-plugin host reads)."""
    grace: float = 1.0
    """Seconds in-flight RPCs get to finish on a graceful stop."""
    grpc_server_options: Sequence[tuple[str, Any]] = ()
    """gRPC arguments for the plugin's server, its brokered servers and the channels its
    broker dials (go-plugin's ``GRPCServer`` hook), e.g.
    ``[("grpc.max_receive_message_length", 64 << 20)]``: gRPC's default limit is 4 MiB."""
    grpc_server_interceptors: Sequence[Any] = ()
    """Server interceptors on the plugin's server (``grpc.ServerInterceptor``, or
    ``grpc.aio.ServerInterceptor`` with ``asyncio``) and, without ``asyncio``, on its
    brokered servers (those are always threaded ``grpc.server``s)."""

    def _grpc_hooks(self) -> GRPCHooks:
        return GRPCHooks(
            self.grpc_server_options, server_interceptors=self.grpc_server_interceptors
        )

    def _broker_hooks(self) -> GRPCHooks:
        interceptors = () if self.asyncio else self.grpc_server_interceptors
        return GRPCHooks(self.grpc_server_options, server_interceptors=interceptors)

    def _versions(self) -> tuple[int, ...]:
        return tuple(sorted(set(self.handshake.app_versions) | set(self.plugins)))


class _Run:
    """One serving plugin: set up on a server, announce, wait for the stop, clean up."""

    def __init__(self, config: ServeConfig, env: Mapping[str, str], log: logging.Logger) -> None:
        self.config = config
        self.env = env
        self.log = log
        self.stop_requested = threading.Event()
        self.stop_reason = ""
        self._signalled: str | None = None
        # wait() sleeps on this pipe: a signal handler may write to it, never take a lock
        self._wake_read, self._wake_write = os.pipe()
        os.set_blocking(self._wake_write, False)
        self.internal: Internal | None = None
        self.listening: Listening | None = None
        self.bridge_process = self._early_bridge_process()
        self.context: ServeContext | None = None
        self.backend = "none"
        self.host_gone = False
        self.failure: str | None = None  # why the plugin stopped, when it failed

    def _early_bridge_process(self) -> BridgeProcess | None:
        """The OpenSSL bridge's process, started now if it will likely serve: its
        interpreter starts while this one imports cryptography and makes the key."""
        if not policy.bridge_process_wanted(self.config, self.env):
            return None
        try:
            return BridgeProcess(logger=logging.getLogger("soup.bridge"))
        except bridge.BridgeError as exc:  # still served, by the bridge in this process
            self.log.warning(
                "the TLS bridge runs in the plugin's process", extra={"error": str(exc)}
            )
            return None

    def request_stop(self, reason: str) -> None:
        if not self.stop_requested.is_set():
            self.stop_reason = reason
            self.stop_requested.set()
        self._wake()

    def bridge_ended(self, reason: str) -> None:
        """The bridge process ended on its own: no connection is served any more."""
        self.failure = reason
        self.request_stop(reason)

    def signal_stop(self, reason: str) -> None:
        """request_stop for a signal handler. It runs in the main thread between two
        bytecodes, maybe while wait() there holds the Event's lock (not reentrant): setting
        the Event from it deadlocked the plugin for good. wait() picks the reason up."""
        self._signalled = reason
        self._wake()

    def _wake(self) -> None:
        if self._wake_write >= 0:  # finish() closed it: the server and handlers are gone
            with contextlib.suppress(BlockingIOError):  # full: a wake is pending anyway
                os.write(self._wake_write, b"\0")

    def setup(self, server: Any) -> bytes:
        """TLS, services, listener; returns the line to print on stdout."""
        config = self.config
        version = handshake.negotiate_version(
            self.env.get(handshake.ENV_PROTOCOL_VERSIONS), config._versions()
        )
        server_tls = policy.server_tls(config, self.env, self.log)
        multiplex = handshake.multiplex_requested(self.env) and self._can_multiplex(server_tls)
        self.backend = server_tls.backend if server_tls is not None else "none"
        socket_gid = socket_group(self.env)  # the main socket's and the broker's
        self.internal = Internal(
            server,
            stop=self.request_stop,
            server_tls=server_tls,
            env=self.env,
            network=config.transport,
            socket_gid=socket_gid,
            log=self.log,
            hooks=config._broker_hooks(),
        )
        self.context = ServeContext(server, version, self.internal.broker, self.log, self.env)
        for register in config.plugins.get(version, ()):
            register(self.context)
        self.listening = listen(
            server,
            config.transport,
            self.env,
            server_tls,
            socket_gid,
            multiplex=multiplex,
            bridge_process=self.bridge_process,
            on_bridge_exit=self.bridge_ended,
        )
        if self.listening.mux is not None:
            self.internal.broker.multiplex_over(self.listening.mux)
        self.log.debug(
            "plugin address",
            extra={"network": self.listening.network, "address": self.listening.address},
        )
        if config.debug:
            return (self._reattach(version).to_json() + "\n").encode()
        return handshake.format_line(
            handshake.Handshake(
                core_version=handshake.CORE_PROTOCOL_VERSION,
                app_version=version,
                network=self.listening.network,
                address=self.listening.address,
                protocol="grpc",
                server_cert_der=server_tls.cert_field() if server_tls is not None else None,
                multiplex=multiplex,
            )
        )

    def _can_multiplex(self, server_tls: ServerTLS | None) -> bool:
        """Whether to answer PLUGIN_MULTIPLEX_GRPC: only over the OpenSSL bridge (which
        carries the yamux streams; policy chose it unless ``native`` was asked for). Else
        field 7 stays out and a host that insists refuses with go-plugin's
        ErrGRPCBrokerMuxNotSupported."""
        if server_tls is not None and server_tls.backend == "openssl":
            return True
        self.log.warning(
            "host asked for gRPC broker multiplexing (PLUGIN_MULTIPLEX_GRPC); soup multiplexes "
            "only over TLS on the openssl backend and does not advertise it",
            extra={"tls": "disabled" if server_tls is None else "native backend"},
        )
        return False

    def _reattach(self, version: int) -> ReattachConfig:
        from soup.reattach import ReattachConfig  # noqa: PLC0415 - debug mode only

        assert self.listening is not None
        reattach = ReattachConfig(
            network=self.listening.network,
            address=self.listening.address,
            pid=os.getpid(),
            protocol_version=version,
        )
        sys.stderr.write(
            f"plugin running in debug mode; reattach with: --reattach '{reattach.to_json()}'\n"
        )
        sys.stderr.flush()
        return reattach

    def serving(self) -> None:
        assert self.listening is not None
        self.listening.start()
        self.log.info(
            "plugin serving",
            extra={
                "network": self.listening.network,
                "address": self.listening.address,
                "tls_mode": self.config.tls.mode,
                "backend": self.backend,
            },
        )

    def wait(self) -> None:
        """Until a stop is requested (or the host, our parent, is gone)."""
        parent = os.getppid()
        watch = self.config.watch_parent and not self.config.debug
        while not self.stop_requested.is_set():
            if select.select([self._wake_read], [], [], _PARENT_POLL)[0]:
                os.read(self._wake_read, 512)
            if self._signalled is not None:
                self.request_stop(self._signalled)
            elif watch and os.getppid() != parent:
                self.host_gone = True
                self.request_stop("host process exited (parent changed)")
        self.log.info("plugin stopping", extra={"reason": self.stop_reason})

    def begin_stop(self) -> None:
        if self.internal is not None:
            self.internal.begin_stop()

    def finish(self) -> None:
        """Close the broker and the listener; remove every file and directory of this run."""
        write, self._wake_write = self._wake_write, -1
        os.close(write)
        os.close(self._wake_read)
        if self.internal is not None:
            self.internal.broker.close()  # idempotent: begin_stop closed it unless setup failed
        if self.listening is not None:
            self.listening.close(self.log)
        if self.bridge_process is not None:  # idempotent: reaps one not used or not reached
            self.bridge_process.close()
        if self.context is not None:
            remove_paths(self.context.cleanup)
        if self.host_gone:
            remove_orphaned_host_dir(self.env)
        if self.internal is not None and self.internal.hub.dropped:
            self.log.warning(
                "stdio chunks dropped (no StreamStdio reader)",
                extra={"count": self.internal.hub.dropped},
            )


def _write_line(stream: TextIO, data: bytes) -> None:
    buffer = getattr(stream, "buffer", None)
    if buffer is not None:
        stream.flush()
        buffer.write(data)
        buffer.flush()
    else:
        stream.write(data.decode())
        stream.flush()


@contextlib.contextmanager
def _signals(run: _Run, log: logging.Logger) -> Iterator[None]:
    """SIGTERM stops gracefully; SIGINT is ignored (a terminal's Ctrl-C hits the host)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    interrupts = 0

    def on_sigint(signum: int, frame: FrameType | None) -> None:
        nonlocal interrupts
        interrupts += 1
        log.debug("plugin received interrupt signal, ignoring", extra={"count": interrupts})

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        run.signal_stop("SIGTERM")

    previous = {
        signal.SIGINT: signal.signal(signal.SIGINT, on_sigint),
        signal.SIGTERM: signal.signal(signal.SIGTERM, on_sigterm),
    }
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


@contextlib.contextmanager
def _stdio_to_host(run: _Run) -> Iterator[None]:
    """After the handshake line, ``print`` and ``sys.stderr`` reach the host (GRPCStdio)."""
    assert run.internal is not None
    real_stdout, real_stderr = sys.stdout, sys.stderr
    sys.stdout = hub_writer(run.internal.hub, 1)
    sys.stderr = hub_writer(run.internal.hub, 2)
    try:
        yield
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        sys.stdout, sys.stderr = real_stdout, real_stderr


def _executor() -> ElasticExecutor:
    return ElasticExecutor(_CORE_WORKERS, _MAX_WORKERS, thread_name_prefix="soup-grpc")


def _serve_threads(run: _Run) -> None:
    executor = _executor()
    hooks = run.config._grpc_hooks()
    server = grpc.server(
        # grpcio's stubs name ThreadPoolExecutor; the server only calls submit().
        cast("futures.ThreadPoolExecutor", executor),
        options=hooks.with_options(_SERVER_OPTIONS),
        interceptors=list(hooks.server_interceptors),
    )
    try:
        line = run.setup(server)
        server.start()
        run.serving()
        _write_line(sys.stdout, line)
        with _stdio_to_host(run):
            run.wait()
            run.begin_stop()
            if not server.stop(run.config.grace).wait(run.config.grace + 2.0):
                run.log.warning("grpc server did not stop in time")
    finally:
        server.stop(None)
        executor.shutdown(wait=False, cancel_futures=True)


async def _serve_asyncio(run: _Run) -> None:
    executor = _executor()
    hooks = run.config._grpc_hooks()
    server = grpc.aio.server(
        migration_thread_pool=executor,
        options=hooks.with_options(_SERVER_OPTIONS),
        interceptors=hooks.server_interceptors,
    )
    loop = asyncio.get_running_loop()
    try:
        line = run.setup(server)
        await server.start()
        run.serving()
        _write_line(sys.stdout, line)
        with _stdio_to_host(run):
            await loop.run_in_executor(None, run.wait)
            run.begin_stop()
            try:
                await asyncio.wait_for(server.stop(run.config.grace), run.config.grace + 2.0)
            except TimeoutError:
                run.log.warning("grpc server did not stop in time")
    finally:
        await server.stop(None)
        executor.shutdown(wait=False, cancel_futures=True)


def serve(config: ServeConfig | None = None, *, env: Mapping[str, str] | None = None) -> int:
    """Run as a go-plugin plugin until told to stop; returns the exit status (0 or 1).

    ``env`` is the environment the host gave (default ``os.environ``).
    """
    config = config or ServeConfig()
    env = os.environ if env is None else env
    if not config.debug:
        try:
            handshake.check_cookie(env, config.handshake)
        except handshake.CookieError:
            sys.stderr.write(handshake.NOT_A_PLUGIN_MESSAGE + "\n")
            sys.stderr.flush()
            return 1
    level = config.log_level or env.get(handshake.ENV_LOG_LEVEL) or "info"
    if config.configure_logging:
        log = logs.configure_all(sys.stderr, level=level, module="soup.plugin")
    else:
        log = logging.getLogger("soup.plugin")
    # The first line says who serves: a host reads impl and version from it (the
    # server's identity is not on the wire), as from soup-go's first line.
    log.info("soup plugin starting", extra={"impl": "python", "version": version_string()})
    # Everything alive now (modules, classes, the registrations) lives until exit: in the
    # permanent generation no collection scans it again, also not the one at exit, which
    # took some 80 ms of a library plugin's shutdown (soup.lab.cliplugin.end_startup does the
    # same for the CLI, before it turns collection back on).
    gc.freeze()
    run = _Run(config, env, log)
    started = time.monotonic()
    try:
        with _signals(run, log):
            if config.asyncio:
                asyncio.run(_serve_asyncio(run))
            else:
                _serve_threads(run)
    except (PluginError, bridge.BridgeError, OSError, ValueError) as exc:
        log.error(str(exc))
        return 1
    finally:
        run.finish()
        failure = run.failure
        del run
        if config.asyncio:
            # grpc.aio shuts grpc's core down when its last object is freed; the aio
            # server is left in reference cycles that would be freed only at interpreter
            # exit, where grpcio 1.75.1 then exits 2 s later (measured; cf.
            # grpc/grpc#40447), past a host's wait: free them now.
            gc.collect()
    log.debug("plugin stopped", extra={"seconds": round(time.monotonic() - started, 3)})
    return 0 if failure is None else 1
