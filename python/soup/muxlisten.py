"""go-plugin's server muxer (PLUGIN_MULTIPLEX_GRPC=true), plugin side.

The host makes one connection to the plugin's main listener and runs a yamux session
over it; every gRPC connection, the main one and the brokered ones, is a stream of
that session. A stream goes to the main server unless a knock came first: the host's
broker asks (over the GRPCBroker stream) for a service id, the plugin's broker calls
:meth:`MuxListener.knocked`, and the next stream the host opens goes to that id's
server. The plugin's own brokered dials open streams the other way (:meth:`open`).

Only the first connection is the session. go-plugin accepts no other one (it waits in
the backlog); soup serves a later one as an ordinary connection to the main server,
through the same bridge and so under the same mutual TLS, so that a probe of the
plugin's certificate policy (the CLI's evidence, ``soup check``) gets its answer.
"""

from __future__ import annotations

import logging
import selectors
import socket
import threading
from collections.abc import Callable

from soup.muxsession import MuxError, MuxSession

__all__ = ["MuxListener", "Serve"]

Serve = Callable[[socket.socket, str], None]
"""Takes one accepted stream (the callee owns it) and a name for logs; must not block."""
_JOIN = 2.0  # bound (seconds) on joining the accept thread


class MuxListener:
    """Accepts the host's yamux session on ``listen_sock`` (owned) and routes its streams."""

    def __init__(
        self, listen_sock: socket.socket, main: Serve, logger: logging.Logger | None = None
    ) -> None:
        self.log = logger or logging.getLogger("soup.mux")
        self._listen = listen_sock
        self._main = main
        self._lock = threading.Lock()
        self._brokered: dict[int, Serve] = {}
        self._next: int | None = None  # a knock's id: where the next stream goes
        self._session: MuxSession | None = None
        self._has_session = threading.Event()
        self._closed = False
        self._wake_r, self._wake_w = socket.socketpair()
        self._thread = threading.Thread(target=self._accept, name="soup-mux-accept", daemon=True)
        self._streams = 0

    def start(self) -> None:
        self._listen.setblocking(False)
        self._thread.start()

    def expect(self, service_id: int, serve: Serve) -> None:
        """A brokered server for ``service_id``: streams knocked for it go to ``serve``."""
        with self._lock:
            self._brokered[service_id] = serve

    def forget(self, service_id: int) -> None:
        with self._lock:
            self._brokered.pop(service_id, None)

    def knocked(self, service_id: int) -> str:
        """The host knocked for ``service_id``: '' (its next stream goes there) or why not."""
        with self._lock:
            if service_id not in self._brokered:
                return f"no listener for service id {service_id}"
            self._next = service_id
            return ""

    def open(self, timeout: float) -> socket.socket:
        """A new stream to the host (a brokered dial, after its knock was acknowledged)."""
        if not self._has_session.wait(timeout):
            raise MuxError(f"no yamux session from the host within {timeout:g} s")
        assert self._session is not None
        return self._session.open(timeout)

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
            self._streams += 1
            name = f"connection {self._streams}"
        if not first:
            self.log.debug("soup mux: %s is not the session: served as one connection", name)
            self._main(conn, name)
            return
        assert self._session is not None
        self._session.start()
        self._has_session.set()
        self.log.debug("soup mux: host yamux session accepted")

    def _route(self, stream: socket.socket) -> None:
        with self._lock:
            service_id, self._next = self._next, None
            serve = self._brokered.get(service_id) if service_id is not None else None
            self._streams += 1
            name = f"yamux stream ({self._streams})"
        if serve is None:
            self._main(stream, name)
            return
        self.log.debug("soup mux: %s to brokered service id %s", name, service_id)
        serve(stream, f"{name} (service id {service_id})")
