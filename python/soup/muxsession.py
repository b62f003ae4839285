"""A yamux session over one socket, its streams as ordinary sockets (the IO of soup.yamux).

Each stream is one end of a ``socketpair``: whoever opens or accepts a stream gets a
real connected socket, so everything that already works on sockets (the OpenSSL bridge,
``ssl.wrap_socket``, a grpcio relay) works on a stream unchanged. One thread per session
moves bytes between the connection and the streams' other ends, with a selector; only
that thread touches the :class:`soup.yamux.Session`. Other threads ask it for things
(open a stream, close) through a queue and a wake-up socket.

Backpressure is yamux's own: a stream's local end is only read while the peer's window
has room, and received bytes are granted back only once written to the local end.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import selectors
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from soup import yamux

__all__ = ["JOIN_TIMEOUT", "MuxError", "MuxSession"]

JOIN_TIMEOUT = 5.0
"""Bound (seconds) on joining the session's thread in ``close()``."""
_READ = 64 * 1024
_CONNECTION = -1  # selector keys' data: the connection, the wake-up socket, else a stream id
_WAKE = -2


class MuxError(Exception):
    """The session cannot do what was asked (ended, or did not answer in time)."""


@dataclass
class _Local:
    sock: socket.socket  # our end of the stream's socketpair
    inbound: bytearray = field(default_factory=bytearray)  # from the peer, not yet written
    read_ended: bool = False  # the local side closed its writing half (we sent FIN)
    write_shut: bool = False  # the peer's FIN was passed on (SHUT_WR on our end)
    interest: int = 0


class MuxSession:
    """One side of a yamux session over the connected ``sock`` (which it then owns).

    ``on_stream`` receives each stream the peer opens, as a socket the callee owns;
    it runs on the session's thread and must not block. Without it, the peer's streams
    are reset.
    """

    def __init__(
        self,
        sock: socket.socket,
        *,
        client: bool,
        on_stream: Callable[[socket.socket], None] | None = None,
        logger: logging.Logger | None = None,
    ) -> None:
        self.log = logger or logging.getLogger("soup.mux")
        self._sock = sock
        self._session = yamux.Session(client=client)
        self._on_stream = on_stream
        self._locals: dict[int, _Local] = {}
        self._wire_out = bytearray()
        self._commands: collections.deque[Callable[[], None]] = collections.deque()
        self._wake_r, self._wake_w = socket.socketpair()
        self._selector = selectors.DefaultSelector()
        self._thread = threading.Thread(target=self._run, name="soup-mux", daemon=True)
        self._ended: str | None = None
        self._stopping = False
        self._lock = threading.Lock()

    @property
    def ended(self) -> str | None:
        """Why the session ended, or None while it runs."""
        with self._lock:
            return self._ended

    def start(self) -> MuxSession:
        self._sock.setblocking(False)
        self._wake_r.setblocking(False)
        self._selector.register(self._sock, selectors.EVENT_READ, _CONNECTION)
        self._selector.register(self._wake_r, selectors.EVENT_READ, _WAKE)
        self._thread.start()
        return self

    def __enter__(self) -> MuxSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def open(self, timeout: float = 5.0) -> socket.socket:
        """Open a stream: returns its socket at once (yamux lets data precede the ACK)."""
        opened: list[socket.socket | BaseException] = []
        done = threading.Event()

        def command() -> None:
            if self._ended is not None:
                opened.append(MuxError(f"yamux session ended: {self._ended}"))
                done.set()
                return
            try:
                opened.append(self._new_stream(self._session.open_stream()))
            except (yamux.ProtocolError, OSError) as exc:
                opened.append(exc)
            done.set()

        self._ask(command)
        if not done.wait(timeout):
            raise MuxError(f"yamux session did not open a stream within {timeout:g} s")
        result = opened[0]
        if isinstance(result, BaseException):
            raise MuxError(f"cannot open a yamux stream: {result}") from result
        return result

    def close(self) -> None:
        """Say go away, close the connection and every stream, join the thread (bounded)."""
        with self._lock:
            self._stopping = True
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(JOIN_TIMEOUT)
            if self._thread.is_alive():
                self.log.warning("soup mux: session thread still running after %s s", JOIN_TIMEOUT)
        if not self._thread.is_alive():
            self._wake_r.close()
            self._wake_w.close()

    # -- the session's thread

    def _ask(self, command: Callable[[], None]) -> None:
        with self._lock:
            if self._ended is not None:
                raise MuxError(f"yamux session ended: {self._ended}")
            self._commands.append(command)
        self._wake_w.send(b"x")

    def _run(self) -> None:
        try:
            why = self._loop()
        except (OSError, yamux.ProtocolError) as exc:
            why = f"{type(exc).__name__}: {exc}"
        self._finish(why)

    def _loop(self) -> str:
        while True:
            with self._lock:
                if self._stopping:
                    self._session.go_away()
                    self._wire_out += self._session.data_to_send()
                    with contextlib.suppress(OSError):
                        self._sock.send(self._wire_out)
                    return "closed by this side"
            self._update_interest()
            for key, events in self._selector.select():
                why = self._ready(key.data, events)
                if why:
                    return why

    def _ready(self, which: int, events: int) -> str | None:
        if which == _WAKE:
            self._run_commands()
            return None
        if which == _CONNECTION:
            return self._connection_ready(events)
        local = self._locals.get(which)
        if local is not None:
            self._local_ready(which, local, events)
        return None

    def _run_commands(self) -> None:
        with contextlib.suppress(BlockingIOError):
            self._wake_r.recv(4096)
        while True:
            with self._lock:
                if not self._commands:
                    return
                command = self._commands.popleft()
            command()

    def _connection_ready(self, events: int) -> str | None:
        if events & selectors.EVENT_WRITE:
            try:
                self._write_wire()
            except (BrokenPipeError, ConnectionResetError):
                return "the peer closed the connection (while this side was writing)"
        if not events & selectors.EVENT_READ:
            return None
        try:
            data = self._sock.recv(_READ)
        except BlockingIOError:
            return None
        except ConnectionResetError:
            return "the peer reset the connection"
        if not data:
            return "the peer closed the connection"
        try:
            for event in self._session.receive(data):
                self._handle(event)
        finally:
            self._wire_out += self._session.data_to_send()
        return None

    def _handle(self, event: yamux.Event) -> None:
        if isinstance(event, yamux.StreamOpened):
            self._accept(event.stream_id)
        elif isinstance(event, yamux.DataReceived):
            local = self._locals.get(event.stream_id)
            if local is not None:
                local.inbound += event.data
        elif isinstance(event, yamux.StreamEnded):
            self._settle(event.stream_id)
        elif isinstance(event, yamux.StreamReset):
            local = self._locals.get(event.stream_id)
            if local is not None:
                self._drop(event.stream_id, local)
        elif isinstance(event, yamux.SessionEnded):
            self.log.debug("soup mux: peer said go away (code %d)", event.code)

    def _accept(self, stream_id: int) -> None:
        if self._on_stream is None:
            self._session.reset_stream(stream_id)
            return
        self._on_stream(self._new_stream(stream_id))

    def _new_stream(self, stream_id: int) -> socket.socket:
        theirs, ours = socket.socketpair()
        ours.setblocking(False)
        self._locals[stream_id] = _Local(ours)
        self._wire_out += self._session.data_to_send()
        return theirs

    def _local_ready(self, stream_id: int, local: _Local, events: int) -> None:
        try:
            if events & selectors.EVENT_WRITE and local.inbound:
                sent = local.sock.send(local.inbound)
                del local.inbound[:sent]
                self._session.consumed(stream_id, sent)
            if events & selectors.EVENT_READ:
                room = self._session.sendable(stream_id)
                data = local.sock.recv(min(room, _READ)) if room else None
                if data == b"":
                    local.read_ended = True
                    self._session.end_stream(stream_id)
                elif data:
                    self._session.send(stream_id, data)
        except BlockingIOError:
            pass
        except OSError as exc:  # the local side went away: the peer must know
            self.log.debug("soup mux: stream %d: %s", stream_id, exc)
            self._session.reset_stream(stream_id)
            local.inbound.clear()
        self._wire_out += self._session.data_to_send()
        self._settle(stream_id)

    def _settle(self, stream_id: int) -> None:
        """Pass on the peer's FIN once delivered; drop a stream yamux has forgotten."""
        local = self._locals.get(stream_id)
        if local is None:
            return
        if local.inbound:
            return
        gone = not self._session.is_open(stream_id)
        if (gone or self._session.peer_ended(stream_id)) and not local.write_shut:
            local.write_shut = True
            with contextlib.suppress(OSError):
                local.sock.shutdown(socket.SHUT_WR)
        if gone:
            self._drop(stream_id, local)

    def _drop(self, stream_id: int, local: _Local) -> None:
        del self._locals[stream_id]
        if local.interest:
            self._selector.unregister(local.sock)
        local.sock.close()

    def _update_interest(self) -> None:
        for stream_id, local in self._locals.items():
            wanted = 0
            if local.inbound:
                wanted |= selectors.EVENT_WRITE
            if not local.read_ended and self._session.sendable(stream_id):
                wanted |= selectors.EVENT_READ
            if wanted == local.interest:
                continue
            if not local.interest:
                self._selector.register(local.sock, wanted, stream_id)
            elif wanted:
                self._selector.modify(local.sock, wanted, stream_id)
            else:
                self._selector.unregister(local.sock)
            local.interest = wanted
        connection = selectors.EVENT_READ | (selectors.EVENT_WRITE if self._wire_out else 0)
        self._selector.modify(self._sock, connection, _CONNECTION)

    def _write_wire(self) -> None:
        try:
            sent = self._sock.send(self._wire_out)
        except BlockingIOError:
            return
        del self._wire_out[:sent]

    def _finish(self, why: str) -> None:
        with self._lock:
            self._ended = why
            waiting = list(self._commands)
            self._commands.clear()
        for command in waiting:  # each reports the end to its caller
            command()
        for local in self._locals.values():
            local.sock.close()
        self._locals.clear()
        self._selector.close()
        self._sock.close()
        self.log.debug("soup mux: session ended: %s", why)
