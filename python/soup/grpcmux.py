"""go-plugin's broker multiplexing (PLUGIN_MULTIPLEX_GRPC), both sides: its grpcmux.

The host makes one connection to the plugin's main listener and runs a yamux session
over it (``soup.muxsession``); every gRPC connection, the main one and the brokered
ones, is a stream of that session, each with its own TLS. Which server a stream is for
is said by a knock: the dialing side's broker asks over the GRPCBroker stream for a
service id, the listening side's broker calls :meth:`Muxer.knocked` and acknowledges,
and the next stream the dialing side opens goes to that id's server
(:meth:`Muxer.expect`). On the plugin (:class:`ServerMuxer`) a stream that came
without a knock is for the main server; the host (:class:`ClientMuxer`) serves none
but brokered ones.

Only the first connection to the plugin is the session. go-plugin accepts no other one
(it waits in the backlog); soup's plugin serves a later one as an ordinary connection to
the main server, through the same bridge and so under the same mutual TLS, so that a
probe of the plugin's certificate policy (the CLI's evidence, ``soup check``) gets its
answer.
"""

from __future__ import annotations

import logging
import selectors
import socket
import threading
from collections.abc import Callable

from soup.muxsession import MuxError, MuxSession

__all__ = ["ClientMuxer", "Muxer", "Serve", "ServerMuxer"]

Serve = Callable[[socket.socket, str], None]
"""Takes one accepted stream (the callee owns it) and a name for logs; must not block."""
_JOIN = 2.0  # bound (seconds) on joining the accept thread


class Muxer:
    """One side's session: routes the peer's streams to the server a knock named, else
    to ``main`` (None: closed); opens streams to the peer. What the broker uses."""

    def __init__(self, main: Serve | None, logger: logging.Logger | None) -> None:
        self.log = logger or logging.getLogger("soup.mux")
        self._main = main
        self._lock = threading.Lock()
        self._brokered: dict[int, Serve] = {}
        self._next: int | None = None  # a knock's id: where the next stream goes
        self._session: MuxSession | None = None
        self._has_session = threading.Event()
        self._count = 0

    def expect(self, service_id: int, serve: Serve) -> None:
        """A brokered server for ``service_id``: streams knocked for it go to ``serve``."""
        with self._lock:
            self._brokered[service_id] = serve

    def forget(self, service_id: int) -> None:
        with self._lock:
            self._brokered.pop(service_id, None)

    def knocked(self, service_id: int) -> str:
        """The peer knocked for ``service_id``: '' (its next stream goes there) or why not."""
        with self._lock:
            if service_id not in self._brokered:
                return f"no listener for service id {service_id}"
            self._next = service_id
            return ""

    def open(self, timeout: float) -> socket.socket:
        """A new stream to the peer (a brokered dial, after its knock was acknowledged)."""
        if not self._has_session.wait(timeout):
            raise MuxError(f"no yamux session from the host within {timeout:g} s")
        assert self._session is not None
        return self._session.open(timeout)

    def _name(self, what: str) -> str:
        with self._lock:
            self._count += 1
            return f"{what} ({self._count})"

    def _route(self, stream: socket.socket) -> None:
        with self._lock:
            service_id, self._next = self._next, None
            serve = self._brokered.get(service_id) if service_id is not None else None
        name = self._name("yamux stream")
        if serve is not None:
            self.log.debug("soup mux: %s to brokered service id %s", name, service_id)
            serve(stream, f"{name} (service id {service_id})")
        elif self._main is not None:
            self._main(stream, name)
        else:
            self.log.warning("soup mux: closing %s: no knock named a service for it", name)
            stream.close()


class ServerMuxer(Muxer):
    """Plugin side: accepts the host's session on ``listen_sock`` (owned)."""

    def __init__(
        self, listen_sock: socket.socket, main: Serve, logger: logging.Logger | None = None
    ) -> None:
        super().__init__(main, logger)
        self._listen = listen_sock
        self._closed = False
        self._wake_r, self._wake_w = socket.socketpair()
        self._thread = threading.Thread(target=self._accept, name="soup-mux-accept", daemon=True)

    def start(self) -> None:
        self._listen.setblocking(False)
        self._thread.start()

    def close(self) -> None:
        """Stop accepting, end the session (its streams), close the listening socket."""
        with self._lock:
            self._closed = True
            session = self._session
        self._wake_w.send(b"\0")
        if self._thread.is_alive():
            self._thread.join(_JOIN)
        if session is not None:
            session.close()
        for sock in (self._listen, self._wake_r, self._wake_w):
            sock.close()

    def _accept(self) -> None:
        with selectors.DefaultSelector() as selector:
            selector.register(self._listen, selectors.EVENT_READ)
            selector.register(self._wake_r, selectors.EVENT_READ)
            while True:
                for key, _ in selector.select():
                    if key.fileobj is self._wake_r:
                        return
                    self._accept_one()

    def _accept_one(self) -> None:
        try:
            conn, _ = self._listen.accept()
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:  # e.g. EMFILE: the session, if any, goes on
            self.log.warning("soup mux: accept failed: %s", exc)
            return
        conn.setblocking(True)
        with self._lock:
            if self._closed:
                conn.close()
                return
            first = self._session is None
            if first:
                self._session = MuxSession(
                    conn, client=False, on_stream=self._route, logger=self.log
                )
        if not first:
            name = self._name("connection")
            self.log.debug("soup mux: %s is not the session: served as one connection", name)
            assert self._main is not None
            self._main(conn, name)
            return
        assert self._session is not None
        self._session.start()
        self._has_session.set()
        self.log.debug("soup mux: host yamux session accepted")


class ClientMuxer(Muxer):
    """Host side: the session over ``conn``, a connection to the plugin's main listener."""

    def __init__(self, conn: socket.socket, logger: logging.Logger | None = None) -> None:
        super().__init__(None, logger)
        self._session = MuxSession(conn, client=True, on_stream=self._route, logger=self.log)
        self._session.start()
        self._has_session.set()

    @property
    def ended(self) -> str | None:
        """Why the session ended (None while it runs)."""
        assert self._session is not None
        return self._session.ended

    def close(self) -> None:
        assert self._session is not None
        self._session.close()
