"""OpenSSL TLS bridge: Python's ``ssl`` in front of (or behind) plaintext grpcio.

grpcio's BoringSSL refuses a peer whose certificate is P-521 or Ed25519 (see
docs/tls-interop.md), and go-plugin always uses P-521. OpenSSL accepts both, so
TLS is terminated (plugin side, :class:`TLSListenerBridge`) or originated (host side,
:class:`TLSDialerBridge`) here, and grpcio speaks plaintext HTTP/2 over a unix socket
inside a private 0700 directory.

The bytes are handled by :mod:`soup.tlspipe` (sans-IO); this module does the IO:

* One thread per bridge, the relay loop: one ``poll`` over the listening socket (it
  accepts), a wake-up socketpair and the two sockets (TLS, plaintext) of every relayed
  connection. Under many connections that is one thread's wake-ups and GIL hand-offs
  instead of one thread per connection contending with grpcio's threads (docs/bench.md).
  One loop per bridge rather than per process: a bridge's ``close()`` then stops only
  its own connections and thread, and a process's load goes through one bridge anyway
  (the plugin's main listener).
* A connection's TLS handshake is blocking and bounded (``handshake_timeout``), in a
  short-lived thread of its own; only then is the plaintext side connected, so an
  unauthenticated peer never reaches grpcio, and the connection handed to the loop.
  From then on only the loop's thread touches its ``SSLObject``.
* Per ready socket the loop reads one large chunk into a reusable buffer, pipes it and
  writes what each side takes. Backpressure: a side is only read while the pipe's
  backlog towards the other side is below ``BUFFER_LIMIT``.
* Any socket or TLS error ends that connection only (both of its sockets are closed,
  the reason logged); ``close()`` stops the loop (it closes every connection) and the
  handshakes, joins the threads (bounded) and removes private files.

Long because both directions (listener and dialer) share one connection relay and its
shutdown rules; the TLS state machine itself is ``soup.tlspipe``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import shutil
import socket
import ssl
import stat
import struct
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from soup.tlspipe import BUFFER_LIMIT, Flow, TLSInfo, TLSPipe, describe_ssl_error

__all__ = [
    "BUFFER_LIMIT",
    "CONFIRM_GRACE",
    "HANDSHAKE_TIMEOUT",
    "JOIN_TIMEOUT",
    "BridgeError",
    "TLSDialerBridge",
    "TLSInfo",
    "TLSListenerBridge",
    "private_socket_dir",
]

HANDSHAKE_TIMEOUT = 10.0
"""Bound (seconds) on connect + TLS handshake of one connection."""
JOIN_TIMEOUT = 5.0
"""Bound (seconds) on joining the bridge's threads in ``close()``."""
CONFIRM_GRACE = 1.0
"""TLS 1.3 only: how long ``first_handshake`` waits for the server's first record."""

_RECV_SIZE = 64 * 1024
# The relay loop uses select.poll itself: a selectors.select() costs several Python
# calls per wakeup, and the loop wakes about once per chunk.
_POLL_READ = select.POLLIN
_POLL_WRITE = select.POLLOUT
_THREAD_PREFIX = "soup-bridge"
_SOCKET_NAME = "grpc.sock"
# Longest unix socket directory we accept from tempfile before falling back to /tmp
# (sun_path is 108 bytes on Linux, 104 on macOS).
_MAX_SOCKET_DIR = 80

_LOG = logging.getLogger("soup.bridge")

_thread_counter = 0
_thread_counter_lock = threading.Lock()


def _thread_name(kind: str) -> str:
    global _thread_counter  # noqa: PLW0603 - a process-wide counter for unique names
    with _thread_counter_lock:
        _thread_counter += 1
        return f"{_THREAD_PREFIX}-{kind}-{_thread_counter}"


class BridgeError(Exception):
    """A bridge could not be set up or a TLS handshake failed (message says why)."""


class _Failed(Exception):
    """One connection failed; the message says why (no traceback needed)."""


def private_socket_dir(prefix: str = "soup-", max_len: int = _MAX_SOCKET_DIR) -> Path:
    """Create a fresh directory only the current user can enter (mode 0700).

    The caller removes it. The path is kept at most ``max_len`` long (falling back to
    /tmp) so that unix sockets, and directories nested inside it, still fit.
    """
    path = tempfile.mkdtemp(prefix=prefix)
    if len(path) > max_len:
        os.rmdir(path)
        path = tempfile.mkdtemp(prefix=prefix, dir="/tmp")
    os.chmod(path, 0o700)
    return Path(path)


def _close_quietly(sock: socket.socket | None) -> None:
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.close()


def _set_nodelay(sock: socket.socket) -> None:
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _check_private_dir(path: str) -> None:
    parent = os.path.dirname(os.path.abspath(path))
    try:
        st = os.stat(parent)
    except OSError as exc:
        raise BridgeError(f"backend socket directory {parent}: {exc.strerror}") from exc
    if not stat.S_ISDIR(st.st_mode) or st.st_mode & 0o077 or st.st_uid != os.geteuid():
        raise BridgeError(
            f"backend socket directory {parent} must be a directory owned by this user "
            f"with mode 0700 (it has {stat.filemode(st.st_mode)})"
        )


def _remaining(deadline: float, timeout: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise _Failed(f"timed out after {timeout:g} s")
    return left


def _connect_unix(path: str, timeout: float, log: logging.Logger) -> socket.socket:
    """Connect to a unix socket within ``timeout``, waiting while its backlog is full.

    A non-blocking unix connect fails with EAGAIN when the listener's accept queue is
    full (a busy grpcio server): that is not a refusal, so the connect is retried as a
    blocking one bounded by ``SO_SNDTIMEO``, which the kernel honours for exactly this wait.
    """
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        try:
            sock.connect(path)
        except BlockingIOError:
            log.debug("soup bridge: %s has a full backlog; waiting up to %g s", path, timeout)
            seconds = int(timeout)
            usec = int((timeout - seconds) * 1e6)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, struct.pack("ll", seconds, usec))
            sock.setblocking(True)
            try:
                sock.connect(path)
            except BlockingIOError as exc:
                raise _Failed(f"connect: backlog of {path} still full after {timeout:g} s") from exc
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, struct.pack("ll", 0, 0))
    except OSError as exc:
        sock.close()
        raise _Failed(f"connect: {exc}") from exc
    except BaseException:
        sock.close()
        raise
    return sock


class _Connection:
    """One TLS connection and, once relayed, its plaintext peer; stoppable from any thread."""

    def __init__(
        self,
        pipe: TLSPipe,
        peer: str,
        *,
        tls: socket.socket | None = None,
        plain: socket.socket | None = None,
    ) -> None:
        self.pipe = pipe
        self.peer = peer
        self.tls = tls
        self.plain = plain
        self._lock = threading.Lock()  # stop() vs close(): never shut down a reused fd
        self._stopped = False

    def attach(
        self, *, tls: socket.socket | None = None, plain: socket.socket | None = None
    ) -> None:
        """Add the socket(s) not known at construction; a stopped connection shuts them."""
        with self._lock:
            self.tls = tls or self.tls
            self.plain = plain or self.plain
            if self._stopped:
                for sock in (tls, plain):
                    if sock is not None:
                        with contextlib.suppress(OSError):
                            sock.shutdown(socket.SHUT_RDWR)

    def stop(self) -> None:
        """Shut the sockets down: a blocking handshake on them fails at once."""
        with self._lock:
            self._stopped = True
            for sock in (self.tls, self.plain):
                if sock is not None and sock.fileno() >= 0:
                    with contextlib.suppress(OSError):
                        sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        with self._lock:
            self._stopped = True
            _close_quietly(self.tls)
            _close_quietly(self.plain)
        self.pipe.close()

    # -- blocking handshake (before any plaintext side exists)
    def handshake(self, timeout: float, deadline: float | None = None) -> TLSInfo:
        """Complete the TLS handshake within ``timeout`` (or by ``deadline``).

        Raises ``_Failed`` with the reason (OpenSSL's, a timeout, or the bridge closing).
        """
        if deadline is None:
            deadline = time.monotonic() + timeout
        pipe, tls = self.pipe, self.tls
        assert tls is not None
        try:
            while not pipe.do_handshake():
                self._send_blocking(deadline, timeout)
                self.receive_blocking(deadline, timeout)
            self._send_blocking(deadline, timeout)
        except ssl.SSLError as exc:
            with contextlib.suppress(OSError, _Failed):  # best effort: the peer sees the alert
                tls.settimeout(0.1)
                self._send_blocking(time.monotonic() + 0.1, 0.1)
            raise self._failure(describe_ssl_error(exc)) from exc
        except TimeoutError as exc:
            raise self._failure(f"timed out after {timeout:g} s") from exc
        except OSError as exc:
            raise self._failure(str(exc)) from exc
        assert pipe.info is not None
        return pipe.info

    def _failure(self, reason: str) -> _Failed:
        return _Failed("the bridge was closed" if self._stopped else reason)

    def _send_blocking(self, deadline: float, timeout: float) -> None:
        assert self.tls is not None
        while out := self.pipe.tls_to_send():
            self.tls.settimeout(_remaining(deadline, timeout))
            self.pipe.tls_sent(self.tls.send(out))

    def receive_blocking(self, deadline: float, timeout: float) -> None:
        """Read once from the TLS socket into the pipe (raises TimeoutError at ``deadline``)."""
        assert self.tls is not None
        self.tls.settimeout(_remaining(deadline, timeout))
        data = self.tls.recv(_RECV_SIZE)
        if data:
            self.pipe.receive_tls(data)
        else:
            self.pipe.receive_tls_eof()


def _write_both(tls: socket.socket, plain: socket.socket, pipe: TLSPipe) -> tuple[bool, bool]:
    """Write what each side takes now, then any due half-close; says which side is blocked."""
    out = pipe.tls_to_send()
    tls_blocked = bool(out) and _send_some(tls, out, pipe.tls_sent)
    plain_blocked = False
    while not plain_blocked and (out := pipe.plain_to_send()):  # decrypts as it goes
        plain_blocked = _send_some(plain, out, pipe.plain_sent)
    if pipe.forward is not Flow.OPEN or pipe.backward is not Flow.OPEN:  # an end is due
        _shut_due(tls, plain, pipe)
    return tls_blocked, plain_blocked


def _shut_due(tls: socket.socket, plain: socket.socket, pipe: TLSPipe) -> None:
    if pipe.should_shut_tls:
        pipe.tls_shut()
        with contextlib.suppress(OSError):
            tls.shutdown(socket.SHUT_WR)
    if pipe.should_shut_plain:
        pipe.plain_shut()
        with contextlib.suppress(OSError):
            plain.shutdown(socket.SHUT_WR)


def _read_into_pipe(
    from_tls: bool, sock: socket.socket, pipe: TLSPipe, buffer: bytearray, view: memoryview
) -> None:
    """One read into the reusable buffer; the pipe copies (or encrypts) it at once."""
    try:
        count = sock.recv_into(buffer)
    except (BlockingIOError, InterruptedError):
        return
    if from_tls:
        if count:
            pipe.receive_tls(view[:count])
        else:
            pipe.receive_tls_eof()
    elif count:
        pipe.send(view[:count])
    else:
        pipe.send_eof()


def _send_some(sock: socket.socket, data: bytes | memoryview, sent: Callable[[int], None]) -> bool:
    """Write what the socket takes now; True when bytes are left (wait for writability)."""
    try:
        count = sock.send(data)
    except (BlockingIOError, InterruptedError):
        return True
    sent(count)
    return count < len(data)


class _Relay:
    """A connection in the relay loop: its sockets and what is registered for them."""

    __slots__ = ("connection", "interest", "pipe", "plain", "plain_fd", "tls", "tls_fd")

    def __init__(self, connection: _Connection) -> None:
        assert connection.tls is not None
        assert connection.plain is not None
        self.connection = connection
        self.pipe = connection.pipe
        self.tls, self.plain = connection.tls, connection.plain
        self.tls.setblocking(False)
        self.plain.setblocking(False)
        self.tls_fd, self.plain_fd = self.tls.fileno(), self.plain.fileno()
        self.interest = (0, 0)  # registered poll masks of (tls, plain)


class _RelayLoop:
    """One thread that relays every connection handed to it (and accepts, if it listens).

    One ``poll`` over all the relayed sockets, so that a busy bridge costs one thread's
    wake-ups and GIL hand-offs, not one per connection; a socketpair wakes it for a new
    connection (:meth:`add`, from any thread) and for :meth:`stop`. Only this thread
    touches a relayed connection's ``SSLObject``, and it closes every connection it ends.
    """

    def __init__(self, name: str, log: logging.Logger, direction: str) -> None:
        self.name = name
        self.log = log
        self._direction = direction  # "from" (a listener's peer) or "to" (a dialer's)
        self._lock = threading.Lock()
        self._closed = False
        self._pending: list[_Connection] = []
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._poller = select.poll()
        self._poller.register(self._wake_r, _POLL_READ)
        self._fds: dict[int, tuple[_Relay, bool]] = {}  # fd -> (relay, is its TLS side)
        self._relays: set[_Relay] = set()
        self._ended: list[_Relay] = []  # closed at the end of the round (no fd reuse in it)
        self._buffer = bytearray(_RECV_SIZE)
        self._view = memoryview(self._buffer)
        self._listen_fd = -1
        self._on_listen: Callable[[], None] | None = None
        self._thread: threading.Thread | None = None

    def start(self, listen: socket.socket | None, on_listen: Callable[[], None]) -> None:
        """Run the thread; ``on_listen`` accepts when ``listen`` is readable."""
        if listen is not None:
            self._listen_fd = listen.fileno()
            self._on_listen = on_listen
            self._poller.register(self._listen_fd, _POLL_READ)
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def add(self, connection: _Connection) -> None:
        """Relay ``connection`` (handshake done, both sockets attached), owned from now on."""
        with self._lock:
            closed = self._closed
            if not closed:
                self._pending.append(connection)
        if closed:
            connection.close()
        else:
            self._wake()

    def stop(self) -> None:
        """Ask the thread to close every connection and end (see :meth:`join`)."""
        with self._lock:
            self._closed = True
        self._wake()

    def join(self, deadline: float) -> None:
        """Wait for the thread until ``deadline`` (after :meth:`stop`), then free the wake-up."""
        thread = self._thread
        if thread is None:  # never started: nothing else owns the pending connections
            self._close_all()
        else:
            thread.join(max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                self.log.warning(
                    "soup bridge: %s did not stop within %g s", thread.name, JOIN_TIMEOUT
                )
        _close_quietly(self._wake_r)
        _close_quietly(self._wake_w)

    def _wake(self) -> None:
        # A full socketpair already holds a wake-up the thread has not read yet.
        with contextlib.suppress(BlockingIOError):
            self._wake_w.send(b"\0")

    def _run(self) -> None:
        try:
            self._serve()
        except Exception:
            self.log.exception("soup bridge: internal error in the relay loop")
        finally:
            self._close_all()

    def _close_all(self) -> None:
        with self._lock:
            self._closed = True  # from now on add() closes what it is handed
            pending, self._pending = self._pending, []
        for relay in list(self._relays):
            self._end(relay, "stopped by the bridge")
        self._close_ended()
        for connection in pending:
            connection.close()

    def _serve(self) -> None:
        poll, fds, wake_fd = self._poller.poll, self._fds, self._wake_r.fileno()
        buffer, view = self._buffer, self._view
        while True:
            due: dict[_Relay, None] = {}  # relays to write and re-register, in order
            for fd, events in poll():
                entry = fds.get(fd)
                if entry is not None:
                    relay, from_tls = entry
                    # Anything but writability (data, hang-up, error) is for recv to report.
                    if events & ~_POLL_WRITE:
                        self._read(relay, from_tls, buffer, view)
                    due[relay] = None
                elif fd == wake_fd:
                    if not self._take_pending(due):
                        return
                elif fd == self._listen_fd and self._on_listen is not None:
                    self._on_listen()
            for relay in due:
                if relay in self._relays:  # not ended by its read
                    self._pump(relay)
            self._close_ended()

    def _take_pending(self, due: dict[_Relay, None]) -> bool:
        """Register the connections handed over; False when the loop is to stop."""
        with contextlib.suppress(BlockingIOError):
            self._wake_r.recv(4096)
        with self._lock:
            if self._closed:
                return False
            pending, self._pending = self._pending, []
        for connection in pending:
            try:
                relay = _Relay(connection)
            except OSError as exc:  # a socket that failed on its way here ends only itself
                self._log_ended(connection, f"socket error: {exc}")
                connection.close()
                continue
            self._relays.add(relay)
            self._fds[relay.tls_fd] = (relay, True)
            self._fds[relay.plain_fd] = (relay, False)
            due[relay] = None  # write first: bytes parked before the relay started
        return True

    def _read(self, relay: _Relay, from_tls: bool, buffer: bytearray, view: memoryview) -> None:
        try:
            _read_into_pipe(
                from_tls, relay.tls if from_tls else relay.plain, relay.pipe, buffer, view
            )
        except Exception as exc:
            self._fail(relay, exc)

    def _pump(self, relay: _Relay) -> None:
        """Write what each side takes, end a finished connection, register what it waits for."""
        pipe = relay.pipe
        try:
            tls_blocked, plain_blocked = _write_both(relay.tls, relay.plain, pipe)
            if pipe.done:
                self._end(relay, "both directions ended")
                return
            read_tls, read_plain = pipe.wants_input()
        except Exception as exc:
            self._fail(relay, exc)
            return
        wanted = (
            (_POLL_WRITE if tls_blocked else 0) | (_POLL_READ if read_tls else 0),
            (_POLL_WRITE if plain_blocked else 0) | (_POLL_READ if read_plain else 0),
        )
        if wanted != relay.interest:
            self._register(relay, wanted)

    def _register(self, relay: _Relay, wanted: tuple[int, int]) -> None:
        """Register, modify or unregister each socket whose mask changed.

        A socket nothing is wanted from is unregistered: poll reports a hang-up or an error
        even for an empty mask, and the loop must not spin on it while the connection waits
        for its other side (backpressure).
        """
        for fd, was, mask in zip(
            (relay.tls_fd, relay.plain_fd), relay.interest, wanted, strict=True
        ):
            if mask == was:
                continue
            if mask:
                self._poller.register(fd, mask)  # registering again modifies
            else:
                self._poller.unregister(fd)
        relay.interest = wanted

    def _fail(self, relay: _Relay, exc: Exception) -> None:
        """Any error ends this connection only; the reason is logged."""
        if isinstance(exc, ssl.SSLError):
            why = f"TLS error: {describe_ssl_error(exc)}"
        elif isinstance(exc, OSError):
            why = f"socket error: {exc}"
        else:
            self.log.exception("soup bridge: internal error on a connection")
            why = f"internal error: {exc!r}"
        self._end(relay, why)

    def _end(self, relay: _Relay, why: str) -> None:
        self._register(relay, (0, 0))
        self._relays.discard(relay)
        del self._fds[relay.tls_fd], self._fds[relay.plain_fd]
        self._ended.append(relay)
        self._log_ended(relay.connection, why)

    def _log_ended(self, connection: _Connection, why: str) -> None:
        self.log.debug(
            "soup bridge: connection %s %s ended: %s", self._direction, connection.peer, why
        )

    def _close_ended(self) -> None:
        for relay in self._ended:
            relay.connection.close()
        self._ended.clear()


class _BridgeBase:
    """The relay loop (accepting on the listening socket), and the handshakes' threads."""

    def __init__(self, kind: str, logger: logging.Logger | None, handshake_timeout: float) -> None:
        self.log = logger if logger is not None else _LOG
        self._handshake_timeout = handshake_timeout
        self._kind = kind
        self._lock = threading.Lock()
        self._started = False
        self._closed = False
        self._last_error: str | None = None
        self._connections: dict[_Connection, threading.Thread | None] = {}
        # None: a connection handshaking in a thread joined elsewhere (or the caller's own)
        self._listen: socket.socket | None = None
        self._loop: _RelayLoop | None = None

    @property
    def last_error(self) -> str | None:
        """The most recent connection failure (handshake or connect), with its reason."""
        with self._lock:
            return self._last_error

    @last_error.setter
    def last_error(self, value: str | None) -> None:
        with self._lock:
            self._last_error = value

    def __enter__(self) -> _BridgeBase:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        raise NotImplementedError

    def _start(self, listen: socket.socket | None) -> None:
        """Start the relay loop, accepting on ``listen`` (None: connections come by hand)."""
        with self._lock:
            if self._closed:
                raise BridgeError("bridge is closed")
            if self._started:
                raise BridgeError("bridge already started")
            self._started = True
            self._loop = _RelayLoop(
                _thread_name(self._kind), self.log, "from" if self._kind == "listener" else "to"
            )
        if listen is not None:
            listen.setblocking(False)
            self._listen = listen
        self._loop.start(listen, lambda: self._accept_some(listen))

    def _accept_some(self, listen: socket.socket | None) -> None:
        assert listen is not None
        for _ in range(64):
            try:
                conn, addr = listen.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # e.g. EMFILE: keep serving the live connections
                self.log.warning("soup bridge: accept failed: %s", exc)
                return
            conn.setblocking(True)
            _set_nodelay(conn)
            peer = f"{addr[0]}:{addr[1]}" if isinstance(addr, tuple) else (addr or "unix peer")
            self._accepted(conn, peer)

    def _accepted(self, conn: socket.socket, peer: str) -> None:
        raise NotImplementedError

    def _hand_over(self, connection: _Connection) -> None:
        """Give a connection whose handshake is done to the relay loop (it owns it then)."""
        loop = self._loop
        if loop is None:
            self.log.warning(
                "soup bridge: closing %s: the bridge was never started", connection.peer
            )
            connection.close()
            return
        loop.add(connection)

    def _spawn(self, connection: _Connection, target: Callable[[], None]) -> None:
        """Run ``target`` (a handshake) in a thread of its own; ``close()`` stops
        ``connection`` and joins the thread."""

        def run() -> None:
            try:
                target()
            except Exception:
                self.log.exception("soup bridge: internal error on a connection")
                connection.close()
            finally:
                with self._lock:
                    self._connections.pop(connection, None)

        thread = threading.Thread(target=run, name=_thread_name("handshake"), daemon=True)
        # Started under the lock: close() copies ``_connections`` under it and joins
        # every thread there, and joining a thread not yet started raises.
        with self._lock:
            if self._closed:
                connection.close()
                return
            self._connections[connection] = thread
            thread.start()

    def _stop_all(self) -> bool:
        """Stop accepting, stop every connection, join the threads; False if already closed."""
        with self._lock:
            if self._closed:
                return False
            self._closed = True
            connections = dict(self._connections)
        deadline = time.monotonic() + JOIN_TIMEOUT
        if self._loop is not None:
            self._loop.stop()
        for connection in connections:
            connection.stop()
        for thread in connections.values():
            if thread is None:
                continue
            thread.join(max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                self.log.warning(
                    "soup bridge: %s did not stop within %g s", thread.name, JOIN_TIMEOUT
                )
        # After the handshakes' threads: what one handed over late is closed by the loop.
        if self._loop is not None:
            self._loop.join(deadline)
        _close_quietly(self._listen)
        return True


# --------------------------------------------------------------------------------------
# Plugin side


class TLSListenerBridge(_BridgeBase):
    """Accept TLS on ``listen_sock`` and relay each connection to ``backend_path``.

    Without ``listen_sock`` (None) it serves only what :meth:`adopt` hands it.

    The bridge owns ``listen_sock`` (TCP or unix, already listening) and closes it in
    ``close()``. ``backend_path`` is a unix socket of a plaintext grpcio server in a
    private (0700) directory owned by the caller; it is connected only after the TLS
    handshake (client certificate verified by ``ssl_context``) succeeded, so an
    unauthenticated peer never reaches grpcio.
    """

    def __init__(
        self,
        listen_sock: socket.socket | None,
        ssl_context: ssl.SSLContext,
        backend_path: str,
        *,
        logger: logging.Logger | None = None,
        handshake_timeout: float = HANDSHAKE_TIMEOUT,
    ) -> None:
        super().__init__("listener", logger, handshake_timeout)
        self._listen_sock = listen_sock
        self._context = ssl_context
        self._backend_path = backend_path
        self._versions: list[str] = []

    @property
    def tls_versions(self) -> list[str]:
        """TLS versions of the connections accepted so far (copy)."""
        with self._lock:
            return list(self._versions)

    def start(self) -> None:
        _check_private_dir(self._backend_path)
        self._start(self._listen_sock)

    def close(self) -> None:
        """Stop accepting, close every relay and the listening socket, join the threads."""
        if not self._stop_all():
            return
        _close_quietly(self._listen_sock)

    def adopt(self, conn: socket.socket, peer: str) -> None:
        """Serve ``conn`` (owned from now on), accepted elsewhere: a yamux stream."""
        self._accepted(conn, peer)

    def _accepted(self, conn: socket.socket, peer: str) -> None:
        connection = _Connection(TLSPipe(self._context, server_side=True), peer, tls=conn)
        self._spawn(connection, lambda: self._serve(connection))

    def _serve(self, connection: _Connection) -> None:
        try:
            info = connection.handshake(self._handshake_timeout)
        except _Failed as exc:
            self.last_error = f"TLS handshake failed: {exc}"
            self.log.warning("soup bridge: %s (peer %s)", self.last_error, connection.peer)
            connection.close()
            return
        with self._lock:
            self._versions.append(info.version)
        self.log.debug(
            "soup bridge: TLS from %s: %s %s alpn=%s",
            connection.peer,
            info.version,
            info.cipher,
            info.alpn,
        )
        try:
            backend = _connect_unix(self._backend_path, self._handshake_timeout, self.log)
        except _Failed as exc:
            self.last_error = f"cannot reach backend {self._backend_path}: {exc}"
            self.log.error("soup bridge: %s", self.last_error)
            connection.close()
            return
        connection.attach(plain=backend)
        self._hand_over(connection)


# --------------------------------------------------------------------------------------
# Host side


class TLSDialerBridge(_BridgeBase):
    """grpcio dials a private unix socket; each connection is relayed over TLS to the plugin.

    ``first_handshake()`` opens the first TLS connection right away and keeps it
    (parked, its early bytes buffered) for the first grpcio connection: the plugin
    then sees exactly one connection, and the handshake whose result was reported is
    the very connection grpcio uses. Later grpcio connections (reconnects) dial afresh.

    ``open_stream(timeout)``, when given, opens each connection instead of connecting to
    ``address`` (a yamux stream, for go-plugin's multiplexing); ``address`` then only names it.
    """

    def __init__(
        self,
        network: str,
        address: str,
        ssl_context: ssl.SSLContext,
        *,
        server_hostname: str = "localhost",
        logger: logging.Logger | None = None,
        handshake_timeout: float = HANDSHAKE_TIMEOUT,
        open_stream: Callable[[float], socket.socket] | None = None,
    ) -> None:
        super().__init__("dialer", logger, handshake_timeout)
        self._open_stream = open_stream
        self._network = network
        self._address = address
        self._context = ssl_context
        self._server_hostname = server_hostname
        self._family, self._sockaddr = self._resolve(network, address)
        self._dir: Path | None = None
        self._parked: _Connection | None = None
        self._last_info: TLSInfo | None = None

    @staticmethod
    def _resolve(network: str, address: str) -> tuple[int, str | tuple[str, int]]:
        if network == "unix":
            return socket.AF_UNIX, address
        if network != "tcp":
            raise BridgeError(f"unsupported network {network!r} (expected unix or tcp)")
        host, sep, port = address.rpartition(":")
        if not sep or not port.isdigit():
            raise BridgeError(f"bad tcp address {address!r} (expected HOST:PORT)")
        host = host.strip("[]")
        try:
            infos = socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM)
        except OSError as exc:
            raise BridgeError(f"cannot resolve {address!r}: {exc}") from exc
        family, _, _, _, sockaddr = infos[0]
        return family, (str(sockaddr[0]), int(sockaddr[1]))

    @property
    def socket_path(self) -> str | None:
        """Path of the private unix socket grpcio dials (None before ``start``)."""
        return None if self._dir is None else str(self._dir / _SOCKET_NAME)

    @property
    def last_tls_info(self) -> TLSInfo | None:
        """TLSInfo of the connection most recently established (or handed to grpcio)."""
        with self._lock:
            return self._last_info

    def start(self) -> str:
        """Listen on a private unix socket; returns the grpcio target ``"unix:" + path``."""
        directory = private_socket_dir()
        path = str(directory / _SOCKET_NAME)
        listen = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            listen.bind(path)
            os.chmod(path, 0o600)
            listen.listen(64)
            self._dir = directory
            self._start(listen)
        except BaseException:
            _close_quietly(listen)
            self._dir = None
            shutil.rmtree(directory, ignore_errors=True)
            raise
        return "unix:" + path

    def close(self) -> None:
        """Stop accepting, close every relay, join the threads, remove the private socket."""
        if not self._stop_all():
            return
        with self._lock:
            parked, self._parked = self._parked, None
        if parked is not None:
            parked.close()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)

    def first_handshake(self, timeout: float) -> TLSInfo:
        """Do one TLS handshake with the plugin now and return what it negotiated.

        Raises ``BridgeError("TLS handshake with plugin at ADDR failed: <reason>")``
        with OpenSSL's reason. With TLS 1.3 a client finishes its handshake before the
        server has checked the client certificate, so this also waits (at most
        ``CONFIRM_GRACE`` s, within ``timeout``) for the server's first record after the
        handshake (session ticket or HTTP/2 SETTINGS): a rejection arrives instead as
        an alert and is reported here. The connection is kept for the first grpcio
        connection. Everything happens in the calling thread, so the result reported is
        the connection's fate: no success can arrive after a timeout was decided.
        """
        with self._lock:
            if not self._started or self._closed:
                raise BridgeError("bridge is not running (call start() first)")
        deadline = time.monotonic() + timeout
        connection = self._new_connection()
        with self._lock:  # close() may now stop it; this thread sees the failure
            self._connections[connection] = None
        try:
            connection.attach(tls=self._dial(timeout))
            info = connection.handshake(timeout, deadline)
            self._confirm(connection, deadline, timeout)
        except _Failed as exc:
            connection.close()
            raise self._handshake_error(str(exc)) from None
        finally:
            with self._lock:
                self._connections.pop(connection, None)
        with self._lock:
            if self._closed:
                connection.close()
                raise self._handshake_error("the bridge was closed")
            stale, self._parked = self._parked, connection
            self._last_info = info
        if stale is not None:
            stale.close()
        self.log.debug(
            "soup bridge: TLS to %s: %s %s alpn=%s",
            self._where(),
            info.version,
            info.cipher,
            info.alpn,
        )
        return info

    def _where(self) -> str:
        return f"{self._network}:{self._address}"

    def _handshake_error(self, message: str) -> BridgeError:
        self.last_error = f"TLS handshake with plugin at {self._where()} failed: {message}"
        return BridgeError(self.last_error)

    def _confirm(self, connection: _Connection, deadline: float, timeout: float) -> None:
        """TLS 1.3: wait (bounded) for the server's first record; its alert is the verdict."""
        pipe = connection.pipe
        assert pipe.info is not None
        if pipe.info.version != "TLSv1.3":
            return
        grace_end = min(deadline, time.monotonic() + CONFIRM_GRACE)
        try:
            while not pipe.has_ticket() and not pipe.plain_to_send():
                if self._closed:
                    raise _Failed("the bridge was closed")
                if pipe.forward is not Flow.OPEN or pipe.backward is not Flow.OPEN:
                    raise _Failed("the plugin closed the connection right after the handshake")
                if time.monotonic() >= grace_end:
                    self.log.debug(
                        "soup bridge: the TLS 1.3 server sent nothing after the handshake"
                    )
                    return
                connection.receive_blocking(grace_end, timeout)
        except TimeoutError:
            self.log.debug("soup bridge: the TLS 1.3 server sent nothing after the handshake")
        except ssl.SSLError as exc:
            raise _Failed(describe_ssl_error(exc)) from exc
        except OSError as exc:
            raise _Failed(str(exc)) from exc

    def _new_connection(self, plain: socket.socket | None = None) -> _Connection:
        pipe = TLSPipe(self._context, server_side=False, server_hostname=self._server_hostname)
        return _Connection(pipe, self._where(), plain=plain)

    def _dial(self, timeout: float) -> socket.socket:
        if self._open_stream is not None:
            try:
                return self._open_stream(timeout)
            except Exception as exc:  # the opener's own error, named in the bridge's
                raise _Failed(f"open stream: {exc}") from exc
        if self._family == socket.AF_UNIX:
            assert isinstance(self._sockaddr, str)
            sock = _connect_unix(self._sockaddr, timeout, self.log)
        else:
            sock = socket.socket(self._family, socket.SOCK_STREAM)
            try:
                sock.settimeout(timeout)
                sock.connect(self._sockaddr)
            except TimeoutError as exc:
                sock.close()
                raise _Failed(f"connect: timed out after {timeout:g} s") from exc
            except OSError as exc:
                sock.close()
                raise _Failed(f"connect: {exc}") from exc
            _set_nodelay(sock)
        return sock

    def _accepted(self, conn: socket.socket, peer: str) -> None:
        with self._lock:
            parked, self._parked = self._parked, None
            if parked is not None:
                self._last_info = parked.pipe.info
        if parked is not None:
            parked.attach(plain=conn)
            self._hand_over(parked)  # handshake done: no thread of its own
        else:
            fresh = self._new_connection(plain=conn)
            self._spawn(fresh, lambda: self._dial_and_relay(fresh))

    def _dial_and_relay(self, connection: _Connection) -> None:
        """A later grpcio connection (a reconnect): a fresh TLS connection for it."""
        try:
            connection.attach(tls=self._dial(self._handshake_timeout))
            info = connection.handshake(self._handshake_timeout)
        except _Failed as exc:
            self.last_error = f"TLS handshake with plugin at {self._where()} failed: {exc}"
            self.log.warning("soup bridge: %s", self.last_error)
            connection.close()  # grpcio sees EOF and reports UNAVAILABLE
            return
        with self._lock:
            self._last_info = info
        self._hand_over(connection)
