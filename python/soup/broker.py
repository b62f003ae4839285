"""GRPCBroker: more gRPC connections between a host and its plugin, found by service id.

go-plugin's broker, on both sides. The host opens ``/plugin.GRPCBroker/StartStream``
on the main connection; each side sends ``ConnInfo{service_id, network, address}``
on it. :meth:`GRPCBroker.accept_and_serve` listens on a new socket, serves gRPC on
it and sends its ConnInfo; :meth:`GRPCBroker.dial` waits (5 s, like go-plugin) for
the peer's ConnInfo with that id and connects. A ConnInfo nobody dials is dropped
after 5 s, as in go-plugin.

TLS is the main connection's: the same own certificate and the same pinned peer
certificate, mutual in both directions, so whichever side listens is the TLS
server. The backend follows :func:`soup.tls.choose_backend` (grpcio's TLS where it
can verify the peer's key, else the OpenSSL bridge). Plaintext only when the main
connection is plaintext.

Multiplexing (``PLUGIN_MULTIPLEX_GRPC``, :meth:`GRPCBroker.multiplex_over`): brokered
connections are streams of the host's yamux session (``soup.grpcmux``) and no ConnInfo
carries an address. The dialing side sends a knock for the id, waits (5 s) for
the listening side's acknowledgement, then opens a stream; the listening side gives the
next stream the host opens to that id's server. Knock and stream pairs are serialised
per side, as go-plugin does.

Pure parts: :func:`endpoint_of` (what a received ConnInfo means) and
:class:`PendingEndpoints` (ConnInfos waiting for a dial, by id). The rest is IO.

Long because one ``GRPCBroker`` serves both sides and both modes (a socket per
connection, or multiplexed streams), and its listening, dialling and knocking share one
stream's state; the pure parts come first.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import shutil
import socket
import ssl
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import grpc

from soup import bridge, pb, tls
from soup.grpchooks import GRPCHooks
from soup.handshake import ENV_UNIX_SOCKET_GROUP
from soup.listen import add_port, share_with_group
from soup.streaming import rpc_active

if TYPE_CHECKING:  # soup.certs loads cryptography, which plaintext goes without
    from soup.certs import CertKey
    from soup.grpcmux import Muxer

__all__ = [
    "DIAL_WAIT",
    "BrokerError",
    "BrokerServicer",
    "BrokerTLS",
    "BrokeredServer",
    "Endpoint",
    "GRPCBroker",
    "PendingEndpoints",
    "endpoint_of",
    "next_service_id",
]

DIAL_WAIT = 5.0
"""Seconds ``dial`` waits for the peer's ConnInfo, and an unclaimed ConnInfo is kept."""
STOP_GRACE = 0.5
"""Seconds in-flight RPCs of a brokered server get when it stops."""
_POLL = 0.2  # how often stream loops look at their stop flags
_JOIN = 0.5  # bound on joining the stream reader (a daemon: it ends with the RPC anyway)
_MAX_ID = 0xFFFFFFFF  # service ids are uint32 (go-plugin wraps around too)
_WORKERS = 4  # threads per brokered server
_LOG = logging.getLogger("soup.broker")
_WAKE = object()  # queued to make a stream loop look at its stop flags now


class BrokerError(Exception):
    """A broker operation failed (the message says why)."""


class BrokerTLS(NamedTuple):
    """The main connection's TLS material: brokered connections use exactly this."""

    own: CertKey
    trusted_pem: bytes
    """The pinned peer certificate (AutoMTLS) or CA (manual): the only trusted root."""
    backend: str
    """``"native"`` (grpcio) or ``"openssl"`` (bridge), as chosen for the main connection."""


class Endpoint(NamedTuple):
    """Where the peer serves one brokered service id."""

    service_id: int
    network: str
    address: str

    @property
    def grpc_target(self) -> str:
        return "unix:" + self.address if self.network == "unix" else self.address


# --------------------------------------------------------------------------------------
# Pure protocol logic


def endpoint_of(service_id: int, network: str, address: str, knock: bool) -> Endpoint:
    """The endpoint a received ConnInfo announces; BrokerError if it announces none.

    A knock belongs to go-plugin's multiplexed mode: on a broker not multiplexing (the
    handshake did not agree on it) a peer that knocks is not following the handshake.
    """
    if knock:
        raise BrokerError(
            f"ConnInfo for service id {service_id} is a multiplexing knock, but this "
            "connection does not multiplex (the handshake did not agree on it)"
        )
    if network not in ("unix", "tcp"):
        raise BrokerError(
            f"ConnInfo for service id {service_id} has unknown network {network!r} "
            "(expected unix or tcp)"
        )
    if not address:
        raise BrokerError(f"ConnInfo for service id {service_id} has an empty address")
    return Endpoint(service_id, network, address)


class PendingEndpoints:
    """Received endpoints waiting for a dial, by service id (no IO, no clock of its own).

    Like go-plugin: one endpoint per id at a time (a second one for an id still
    pending is dropped), and an endpoint not taken within ``ttl`` seconds is gone.
    """

    def __init__(self, ttl: float = DIAL_WAIT) -> None:
        self.ttl = ttl
        self._pending: dict[int, tuple[Endpoint, float]] = {}

    def offer(self, endpoint: Endpoint, now: float) -> bool:
        """Keep ``endpoint`` for a dial; False if one for its id is already waiting."""
        self.expire(now)
        if endpoint.service_id in self._pending:
            return False
        self._pending[endpoint.service_id] = (endpoint, now)
        return True

    def take(self, service_id: int, now: float) -> Endpoint | None:
        """The endpoint for ``service_id`` (removed), or None if none is waiting."""
        self.expire(now)
        entry = self._pending.pop(service_id, None)
        return None if entry is None else entry[0]

    def expire(self, now: float) -> list[Endpoint]:
        """Drop and return the endpoints older than ``ttl``."""
        old = [sid for sid, (_, at) in self._pending.items() if now - at >= self.ttl]
        return [self._pending.pop(sid)[0] for sid in old]

    def __len__(self) -> int:
        return len(self._pending)


def _knock_message(service_id: int, *, ack: bool, error: str) -> Any:
    """A multiplexing knock (ack=False) or its acknowledgement, as go-plugin sends them."""
    return pb.grpc_broker_pb2.ConnInfo(
        service_id=service_id,
        knock=pb.grpc_broker_pb2.ConnInfo.Knock(knock=True, ack=ack, error=error),
    )


def next_service_id(last: int) -> int:
    """The id after ``last``: uint32, wrapping to 1 (0 would mean "no id" in proto3)."""
    return last + 1 if last < _MAX_ID else 1


# --------------------------------------------------------------------------------------
# Channels and servers the broker hands out


class _BrokeredChannel(grpc.Channel):
    """A channel to a brokered service; closing it also ends its OpenSSL bridge."""

    def __init__(self, inner: grpc.Channel, on_close: Callable[[_BrokeredChannel], None]) -> None:
        self._inner = inner
        self._on_close = on_close
        self._closed = False

    def subscribe(self, callback: Any, try_to_connect: bool = False) -> None:
        self._inner.subscribe(callback, try_to_connect)

    def unsubscribe(self, callback: Any) -> None:
        self._inner.unsubscribe(callback)

    def unary_unary(self, *args: Any, **kwargs: Any) -> Any:
        return self._inner.unary_unary(*args, **kwargs)

    def unary_stream(self, *args: Any, **kwargs: Any) -> Any:
        return self._inner.unary_stream(*args, **kwargs)

    def stream_unary(self, *args: Any, **kwargs: Any) -> Any:
        return self._inner.stream_unary(*args, **kwargs)

    def stream_stream(self, *args: Any, **kwargs: Any) -> Any:
        return self._inner.stream_stream(*args, **kwargs)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._inner.close()
        self._on_close(self)

    def __enter__(self) -> _BrokeredChannel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Listening(NamedTuple):
    """Where one brokered server listens, and what to close and remove after it."""

    endpoint: Endpoint
    bridge: bridge.TLSListenerBridge | None
    paths: list[Path]
    forget: Callable[[], None] | None = None
    """Multiplexed: stop routing the id's streams here."""


class BrokeredServer:
    """One ``accept_and_serve``: a gRPC server on its own socket (stop it, or close the broker)."""

    def __init__(
        self,
        endpoint: Endpoint,
        server: grpc.Server,
        workers: futures.ThreadPoolExecutor,
        listening: _Listening,
        on_stop: Callable[[BrokeredServer], None],
    ) -> None:
        self.endpoint = endpoint
        self._server = server
        self._workers = workers
        self._listener = listening.bridge
        self._paths = listening.paths
        self._forget = listening.forget
        self._on_stop = on_stop
        self._stopped = threading.Event()
        self._lock = threading.Lock()

    def stop(self, grace: float = STOP_GRACE) -> None:
        """Stop serving (in-flight RPCs get ``grace`` s), close the socket. Idempotent."""
        with self._lock:
            if self._stopped.is_set():
                return
            self._stopped.set()
        if self._forget is not None:
            self._forget()
        done = self._server.stop(grace)
        if not done.wait(grace + 2.0):
            _LOG.warning("brokered server did not stop in time", extra=self._fields())
        if self._listener is not None:
            self._listener.close()
        self._workers.shutdown(wait=False, cancel_futures=True)  # grpcio never ends them
        for path in self._paths:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        self._on_stop(self)

    @property
    def stopped(self) -> bool:
        return self._stopped.is_set()

    def _fields(self) -> dict[str, object]:
        return {"service_id": self.endpoint.service_id, "address": self.endpoint.address}


# --------------------------------------------------------------------------------------
# The broker


class GRPCBroker:
    """go-plugin's GRPCBroker for either side (host or plugin).

    ``tls``: the main connection's TLS material (None: the main connection is
    plaintext). ``network``: where :meth:`accept_and_serve` listens (``unix``: a socket
    in a private directory inside ``socket_parent``; ``tcp``: 127.0.0.1, a free port).
    ``socket_group``: a gid that may connect to those unix sockets, as go-plugin's broker
    honours ``PLUGIN_UNIX_SOCKET_GROUP`` (sockets 0660, their directory 0710; None: 0700).
    The host side calls :meth:`_open_stream` on its main channel; the plugin side
    registers ``BrokerServicer(broker)`` on its main server.
    """

    def __init__(
        self,
        *,
        tls: BrokerTLS | None = None,
        network: str = "unix",
        socket_parent: Path | None = None,
        socket_group: int | None = None,
        logger: logging.Logger | None = None,
        wait: float = DIAL_WAIT,
        hooks: GRPCHooks | None = None,
    ) -> None:
        if network not in ("unix", "tcp"):
            raise ValueError(f"unknown network {network!r} (expected unix or tcp)")
        if tls is not None and tls.backend not in ("native", "openssl"):
            raise ValueError(f"unknown TLS backend {tls.backend!r} (expected native or openssl)")
        self._tls = tls
        self._network = network
        self._log = logger or _LOG
        self._hooks = hooks or GRPCHooks()
        self._socket_parent = socket_parent
        self._socket_group = socket_group
        self._cond = threading.Condition()
        self._pending = PendingEndpoints(wait)
        self._last_id = 0
        self._outgoing: queue.Queue[Any] = queue.Queue()
        self._closed = threading.Event()
        self._stream_open = False
        self._stream_ended: str | None = None
        self._call: Any = None
        self._reader: threading.Thread | None = None
        self._dir: Path | None = None
        self._backends: Path | None = None  # inside _dir, made on the first bridged listen
        self._sockets = 0
        self._servers: list[BrokeredServer] = []
        self._channels: dict[_BrokeredChannel, bridge.TLSDialerBridge | None] = {}
        self._contexts: dict[str, ssl.SSLContext] = {}
        self._mux: Muxer | None = None
        self._acks: dict[int, str] = {}  # knock acknowledgements: id -> error ('' = go ahead)
        self._knocking = threading.Lock()  # one knock-and-open at a time (go-plugin's dialMutex)

    def multiplex_over(self, mux: Muxer) -> None:
        """PLUGIN_MULTIPLEX_GRPC: brokered connections are ``mux``'s streams (either side;
        needs the OpenSSL backend, which the bridge's streams go through)."""
        if self._tls is None or self._tls.backend != "openssl":
            raise BrokerError("multiplexing needs TLS on the OpenSSL backend")
        self._mux = mux

    # -- public API
    def next_id(self) -> int:
        """A new service id (uint32, never 0) for :meth:`accept_and_serve`."""
        with self._cond:
            self._last_id = next_service_id(self._last_id)
            return self._last_id

    def accept_and_serve(
        self, service_id: int, register_services: Callable[[grpc.Server], None]
    ) -> BrokeredServer:
        """Serve the services ``register_services`` adds on a new socket under ``service_id``.

        Listens, starts the server, sends the ConnInfo to the peer and returns (Go's
        AcceptAndServe blocks instead; here the server runs until ``stop()`` or
        :meth:`close`).
        """
        self._check_usable()
        workers = futures.ThreadPoolExecutor(
            max_workers=_WORKERS, thread_name_prefix="soup-brokered"
        )
        server = grpc.server(
            workers,
            options=self._hooks.with_options([("grpc.so_reuseport", 0)]),
            interceptors=list(self._hooks.server_interceptors),
        )
        register_services(server)
        try:
            listening = self._listen(service_id, server)
        except BaseException:
            server.stop(0)
            workers.shutdown(wait=False)
            raise
        served = BrokeredServer(listening.endpoint, server, workers, listening, self._forget_server)
        with self._cond:
            if self._closed.is_set():
                closed = True
            else:
                closed = False
                self._servers.append(served)
        if closed:
            served.stop(0)
            raise BrokerError("the broker is closed")
        if self._mux is None:
            self._send(served.endpoint)
        self._log.debug(
            "brokered server listening",
            extra={"service_id": service_id, "network": served.endpoint.network},
        )
        return served

    def dial(self, service_id: int, timeout: float = DIAL_WAIT) -> grpc.Channel:
        """A channel to the peer's service ``service_id``, once its ConnInfo arrived.

        Waits at most ``timeout`` seconds; BrokerError names what it waited for.
        """
        dialer = None
        if self._mux is not None:
            self._check_usable()
            where = Endpoint(service_id, "unix", f"yamux stream for service id {service_id}")
            dialer, inner = self._bridged_channel(
                where, open_stream=lambda t: self._knock_and_open(service_id, t)
            )
        elif self._tls is None:
            endpoint = self._wait_endpoint(service_id, timeout)
            inner = grpc.insecure_channel(endpoint.grpc_target, options=self._channel_options())
        elif self._tls.backend == "native":
            inner = self._native_channel(self._wait_endpoint(service_id, timeout))
        else:
            dialer, inner = self._bridged_channel(self._wait_endpoint(service_id, timeout))
        channel = _BrokeredChannel(self._hooks.intercept(inner), self._forget_channel)
        with self._cond:
            self._channels[channel] = dialer
        if self._closed.is_set():
            channel.close()
            raise BrokerError("the broker is closed")
        return channel

    def close(self) -> None:
        """End the stream, every brokered server and channel, remove the sockets. Bounded."""
        with self._cond:
            if self._closed.is_set():
                return
            self._closed.set()
            self._cond.notify_all()
            self._outgoing.put(_WAKE)
            servers, self._servers = self._servers, []
            channels, self._channels = dict(self._channels), {}
        if self._call is not None:
            self._call.cancel()
        stops = [threading.Thread(target=s.stop, daemon=True) for s in servers]
        for thread in stops:
            thread.start()
        for channel, dialer in channels.items():
            with contextlib.suppress(Exception):
                channel.close()
            if dialer is not None:
                dialer.close()
        deadline = time.monotonic() + STOP_GRACE + 3.0
        for thread in stops:
            thread.join(max(0.0, deadline - time.monotonic()))
        if self._reader is not None:
            self._reader.join(_JOIN)
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = self._backends = None

    # -- the stream, host side
    def _open_stream(self, channel: grpc.Channel) -> None:
        """Host side: open ``StartStream`` on the main channel (go-plugin does it on connect)."""
        with self._cond:
            if self._stream_open:
                raise BrokerError("the GRPCBroker stream is already open")
            self._stream_open = True
        stub = pb.grpc_broker_pb2_grpc.GRPCBrokerStub(channel)
        self._call = stub.StartStream(self._outgoing_messages(lambda: True))
        self._start_reader(self._call, "plugin")

    # -- the stream, plugin side
    def _serve_stream(
        self, request_iterator: Iterator[Any], context: grpc.ServicerContext
    ) -> Iterator[Any]:
        with self._cond:
            if self._stream_open:
                context.abort(
                    grpc.StatusCode.FAILED_PRECONDITION, "a GRPCBroker stream is already open"
                )
            self._stream_open = True

        self._start_reader(request_iterator, "host")
        self._log.debug("host opened the GRPCBroker stream")
        yield from self._outgoing_messages(rpc_active(context))

    # -- internals
    def _start_reader(self, messages: Iterator[Any], peer: str) -> None:
        """A thread feeding the peer's ConnInfos to :meth:`_received` until the stream ends."""

        def read() -> None:
            reason = f"the {peer} ended the stream"
            try:
                for info in messages:
                    self._received(info)
            except Exception as exc:  # the RPC ended: cancelled, failed, server stopping
                if isinstance(exc, grpc.Call):  # client side: a status
                    reason = f"{exc.code().name}: {exc.details()}"
                else:  # server side: grpcio raises a bare RpcError
                    reason = f"stream ended: {exc!r}"
            self._end_stream(reason)

        self._reader = threading.Thread(target=read, name="soup-broker-stream", daemon=True)
        self._reader.start()

    def _outgoing_messages(self, active: Callable[[], bool]) -> Iterator[Any]:
        while not self._closed.is_set() and active():
            try:
                message = self._outgoing.get(timeout=_POLL)
            except queue.Empty:
                continue
            if message is not _WAKE:
                yield message

    def _send(self, endpoint: Endpoint) -> None:
        self._outgoing.put(
            pb.grpc_broker_pb2.ConnInfo(
                service_id=endpoint.service_id, network=endpoint.network, address=endpoint.address
            )
        )

    def _received(self, info: Any) -> None:
        if self._mux is not None and info.HasField("knock"):
            self._received_knock(int(info.service_id), info.knock)
            return
        try:
            endpoint = endpoint_of(
                int(info.service_id), str(info.network), str(info.address), info.HasField("knock")
            )
        except BrokerError as exc:
            self._log.warning("ignoring a GRPCBroker message: %s", exc)
            return
        with self._cond:
            kept = self._pending.offer(endpoint, time.monotonic())
            self._cond.notify_all()
        if not kept:
            self._log.warning(
                "dropping a second ConnInfo for a service id still waiting for a dial",
                extra={"service_id": endpoint.service_id},
            )

    # -- multiplexing: knocks
    def _received_knock(self, service_id: int, knock: Any) -> None:
        assert self._mux is not None
        if knock.knock and not knock.ack:  # the host will open a stream for service_id
            error = self._mux.knocked(service_id)
            self._outgoing.put(_knock_message(service_id, ack=True, error=error))
        elif knock.knock and knock.ack:  # the answer to our knock
            with self._cond:
                self._acks[service_id] = str(knock.error)
                self._cond.notify_all()
        else:
            self._log.warning("ignoring a knock with knock=false", extra={"service_id": service_id})

    def _knock_and_open(self, service_id: int, timeout: float) -> socket.socket:
        """A stream to the host's service ``service_id``: knock, its ack, then open."""
        assert self._mux is not None
        with self._knocking:
            with self._cond:
                self._acks.pop(service_id, None)
            self._outgoing.put(_knock_message(service_id, ack=False, error=""))
            deadline = time.monotonic() + min(timeout, DIAL_WAIT)
            with self._cond:
                while service_id not in self._acks:
                    remaining = deadline - time.monotonic()
                    if self._closed.is_set() or self._stream_ended is not None or remaining <= 0:
                        raise BrokerError(
                            f"no acknowledgement of the knock for service id {service_id} "
                            f"within {min(timeout, DIAL_WAIT):g} s on the GRPCBroker stream"
                        )
                    self._cond.wait(remaining)
                error = self._acks.pop(service_id)
            if error:
                raise BrokerError(f"failed to knock for service id {service_id}: {error}")
            return self._mux.open(timeout)

    def _end_stream(self, reason: str) -> None:
        with self._cond:
            self._stream_ended = reason
            self._cond.notify_all()
        if not self._closed.is_set():
            self._log.debug("GRPCBroker stream ended", extra={"reason": reason})

    def _check_usable(self) -> None:
        if self._closed.is_set():
            raise BrokerError("the broker is closed")
        if self._stream_ended is not None:
            raise BrokerError(f"the GRPCBroker stream ended ({self._stream_ended})")

    def _wait_endpoint(self, service_id: int, timeout: float) -> Endpoint:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                if self._closed.is_set():
                    raise BrokerError("the broker is closed")
                endpoint = self._pending.take(service_id, time.monotonic())
                if endpoint is not None:
                    return endpoint
                if self._stream_ended is not None:
                    raise BrokerError(
                        f"no ConnInfo for service id {service_id}: the GRPCBroker stream "
                        f"ended ({self._stream_ended})"
                    )
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise BrokerError(
                        f"timeout after {timeout:g} s waiting for the peer's ConnInfo for "
                        f"service id {service_id} on the GRPCBroker stream"
                    )
                self._cond.wait(remaining)

    def _forget_server(self, served: BrokeredServer) -> None:
        with self._cond, contextlib.suppress(ValueError):
            self._servers.remove(served)

    def _forget_channel(self, channel: _BrokeredChannel) -> None:
        with self._cond:
            dialer = self._channels.pop(channel, None)
        if dialer is not None:
            dialer.close()

    # -- listening
    def _private_dir(self) -> Path:
        with self._cond:
            if self._dir is None:
                if self._socket_parent is None:
                    path = bridge.private_socket_dir("soup-broker-")
                else:
                    path = Path(tempfile.mkdtemp(prefix="broker-", dir=self._socket_parent))
                    path.chmod(0o700)
                try:
                    self._share(path, 0o710)  # the group may reach the sockets, not list them
                except BrokerError:
                    shutil.rmtree(path, ignore_errors=True)  # the next call tries again
                    raise
                self._dir = path
            self._sockets += 1
            return self._dir / f"s{self._sockets}"

    def _backend_path(self) -> Path:
        """A bridge's plaintext backend socket: in a 0700 directory of its own (the bridge
        insists), as the sockets' directory may be the socket group's."""
        name = self._private_dir()
        with self._cond:
            if self._backends is None:
                private = name.parent / "backends"
                private.mkdir(mode=0o700, exist_ok=True)
                private.chmod(0o700)  # whatever the umask
                self._backends = private
            return self._backends / name.name

    def _share(self, path: Path, mode: int) -> None:
        if self._socket_group is None:
            return
        try:
            share_with_group(path, self._socket_group, mode)
        except OSError as exc:
            raise BrokerError(
                f"cannot give {path} to group {self._socket_group} ({ENV_UNIX_SOCKET_GROUP}): {exc}"
            ) from exc

    def _listen(self, service_id: int, server: grpc.Server) -> _Listening:
        if self._mux is not None:
            return self._listen_muxed(service_id, server)
        if self._tls is not None and self._tls.backend == "openssl":
            return self._listen_bridged(service_id, server)
        creds = None if self._tls is None else self._server_credentials(self._tls)
        if self._network == "unix":
            path = self._private_dir()
            if not add_port(server, "unix:" + str(path), creds):
                raise BrokerError(f"cannot listen on unix socket {path}")
            self._share(path, 0o660)
            listening = _Listening(Endpoint(service_id, "unix", str(path)), None, [path])
        else:
            port = add_port(server, "127.0.0.1:0", creds)
            if not port:
                raise BrokerError("cannot listen on 127.0.0.1")
            listening = _Listening(Endpoint(service_id, "tcp", f"127.0.0.1:{port}"), None, [])
        server.start()
        return listening

    def _listen_bridged(self, service_id: int, server: grpc.Server) -> _Listening:
        backend = self._backend_path()
        if not add_port(server, "unix:" + str(backend), None):
            raise BrokerError(f"cannot listen on the private unix socket {backend}")
        paths = [backend]
        if self._network == "unix":
            path = self._private_dir()
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.bind(str(path))
                sock.listen(64)
            except OSError as exc:
                sock.close()
                raise BrokerError(f"cannot listen on unix socket {path}: {exc}") from exc
            paths.append(path)
            self._share(path, 0o660)
            endpoint = Endpoint(service_id, "unix", str(path))
        else:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                sock.bind(("127.0.0.1", 0))
                sock.listen(64)
            except OSError as exc:
                sock.close()
                raise BrokerError(f"cannot listen on 127.0.0.1: {exc}") from exc
            endpoint = Endpoint(service_id, "tcp", f"127.0.0.1:{sock.getsockname()[1]}")
        return _Listening(endpoint, self._start_bridge(sock, server, backend), paths)

    def _listen_muxed(self, service_id: int, server: grpc.Server) -> _Listening:
        """A brokered server fed the yamux streams knocked for ``service_id``."""
        assert self._mux is not None
        backend = self._backend_path()
        if not add_port(server, "unix:" + str(backend), None):
            raise BrokerError(f"cannot listen on the private unix socket {backend}")
        listener = self._start_bridge(None, server, backend)
        mux = self._mux
        mux.expect(service_id, listener.adopt)
        endpoint = Endpoint(service_id, "yamux", f"yamux streams for service id {service_id}")
        return _Listening(endpoint, listener, [backend], lambda: mux.forget(service_id))

    def _start_bridge(
        self, sock: socket.socket | None, server: grpc.Server, backend: Path
    ) -> bridge.TLSListenerBridge:
        """Start ``server`` and the OpenSSL listener in front of it (on ``sock``, or fed
        streams through ``adopt`` when None)."""
        listener = bridge.TLSListenerBridge(
            sock, self._ssl_context("server"), str(backend), logger=logging.getLogger("soup.bridge")
        )
        server.start()
        try:
            listener.start()
        except bridge.BridgeError as exc:
            server.stop(0)
            listener.close()
            raise BrokerError(str(exc)) from exc
        return listener

    # -- TLS
    @staticmethod
    def _server_credentials(material: BrokerTLS) -> grpc.ServerCredentials:
        return grpc.ssl_server_credentials(
            [(material.own.key_pem, material.own.cert_pem)],
            root_certificates=material.trusted_pem,
            require_client_auth=True,
        )

    def _native_channel(self, endpoint: Endpoint) -> grpc.Channel:
        assert self._tls is not None
        creds = grpc.ssl_channel_credentials(
            root_certificates=self._tls.trusted_pem,
            private_key=self._tls.own.key_pem,
            certificate_chain=self._tls.own.cert_pem,
        )
        options = [*self._channel_options(), ("grpc.ssl_target_name_override", tls.SERVER_NAME)]
        return grpc.secure_channel(endpoint.grpc_target, creds, options=options)

    def _bridged_channel(
        self, endpoint: Endpoint, open_stream: Callable[[float], socket.socket] | None = None
    ) -> tuple[bridge.TLSDialerBridge, grpc.Channel]:
        """The OpenSSL dialer to ``endpoint`` (or to the streams ``open_stream`` opens)."""
        try:
            dialer = bridge.TLSDialerBridge(
                endpoint.network,
                endpoint.address,
                self._ssl_context("client"),
                server_hostname=tls.SERVER_NAME,
                logger=logging.getLogger("soup.bridge"),
                open_stream=open_stream,
            )
            target = dialer.start()
        except bridge.BridgeError as exc:
            raise BrokerError(f"cannot dial service id {endpoint.service_id}: {exc}") from exc
        return dialer, grpc.insecure_channel(target, options=self._channel_options())

    def _channel_options(self) -> list[tuple[str, Any]]:
        return self._hooks.with_options(_CHANNEL_OPTIONS)

    def _ssl_context(self, role: str) -> ssl.SSLContext:
        """One Python ssl context per role, built once (the OpenSSL backend)."""
        assert self._tls is not None
        with self._cond:
            context = self._contexts.get(role)
            if context is None:
                make = tls.server_ssl_context if role == "server" else tls.client_ssl_context
                context = make(self._tls.own, self._tls.trusted_pem)
                self._contexts[role] = context
            return context


class BrokerServicer(pb.grpc_broker_pb2_grpc.GRPCBrokerServicer):
    """``/plugin.GRPCBroker/StartStream`` for the plugin side (one stream at a time)."""

    def __init__(self, broker: GRPCBroker) -> None:
        self._broker = broker

    def StartStream(
        self, request_iterator: Iterator[Any], context: grpc.ServicerContext
    ) -> Iterator[Any]:
        yield from self._broker._serve_stream(request_iterator, context)


_CHANNEL_OPTIONS: list[tuple[str, Any]] = [
    ("grpc.enable_http_proxy", 0),
    ("grpc.enable_retries", 0),
    ("grpc.default_authority", tls.SERVER_NAME),
]
