"""OpenSSL TLS bridge: Python's ``ssl`` in front of (or behind) plaintext grpcio.

grpcio's BoringSSL refuses a peer whose certificate is P-521 or Ed25519 (see
docs/tls-interop.md), and go-plugin always uses P-521. OpenSSL accepts both, so
TLS is terminated (plugin side) or originated (host side) here, and grpcio
speaks plaintext HTTP/2 over a unix socket inside a private 0700 directory.

Design: a sans-IO TLS core (``ssl.SSLObject`` over two ``ssl.MemoryBIO``) driven
by one event loop thread (epoll, or poll elsewhere) per bridge.

* One thread owns every ``SSLObject``: OpenSSL objects must not be used from two
  threads at once, which a "one reader thread + one writer thread per socket"
  design with ``SSLSocket`` would do.
* Full control of the TLS stream: a plaintext EOF becomes a ``close_notify``
  (TLS half-close, supported by OpenSSL for 1.2 and 1.3) followed by
  ``shutdown(SHUT_WR)``; a ``close_notify`` (or a bare TCP FIN, treated like
  Python's ``suppress_ragged_eofs``) becomes ``shutdown(SHUT_WR)`` on the plain
  socket once the pending bytes are delivered.
* Backpressure: a side is only read while the buffer towards the other side is
  below ``BUFFER_LIMIT``; at most one ``recv`` (64 KiB) can go over it.
* Latency: writes are attempted immediately (no wait for writability), interest
  masks are only changed when they change, so a small message costs one
  ``epoll_wait`` + ``recv`` + ``send`` per hop.
* Any socket or TLS error on one side closes both sides; ``close()`` stops the
  loop, closes every socket, joins the thread (bounded) and removes private files.

Plugin side: :class:`TLSListenerBridge`. Host side: :class:`TLSDialerBridge`.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import select
import shutil
import socket
import ssl
import stat
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

__all__ = [
    "BUFFER_LIMIT",
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
"""Bound (seconds) on joining the loop thread in ``close()``."""
BUFFER_LIMIT = 256 * 1024
"""Pending bytes towards one side above which the other side is no longer read."""
CONFIRM_GRACE = 1.0
"""TLS 1.3 only: how long ``first_handshake`` waits for the server's first record."""

_RECV_SIZE = 64 * 1024
_TLS_RECORD = 16 * 1024  # SSL_read returns at most one record
_READ = select.POLLIN
_WRITE = select.POLLOUT
_ERRORS = select.POLLERR | select.POLLHUP | select.POLLNVAL
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


@dataclass(frozen=True)
class TLSInfo:
    """What one established TLS connection negotiated."""

    version: str
    cipher: str
    alpn: str | None
    peer_cert_der: bytes | None


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


def _describe_ssl_error(exc: BaseException) -> str:
    """The OpenSSL reason as Python reports it, e.g. ``[SSL: CERTIFICATE_VERIFY_FAILED] ...``."""
    text = str(exc)
    if isinstance(exc, ssl.SSLError) and exc.reason and exc.reason not in text:
        text = f"[{exc.library or 'SSL'}: {exc.reason}] {text}"
    return text or type(exc).__name__


def _tls_info(sslobj: ssl.SSLObject) -> TLSInfo:
    cipher = sslobj.cipher()
    return TLSInfo(
        version=sslobj.version() or "",
        cipher=cipher[0] if cipher else "",
        alpn=sslobj.selected_alpn_protocol(),
        peer_cert_der=sslobj.getpeercert(binary_form=True),
    )


def _queue_close_notify(sslobj: ssl.SSLObject, incoming: ssl.MemoryBIO) -> None:
    """Queue our ``close_notify`` in the outgoing BIO; our read side stays usable.

    ``SSLObject.unwrap()`` calls ``SSL_shutdown`` a second time when the peer's
    ``close_notify`` has not arrived yet, and that call reads the peer's next records:
    application data found there is discarded and the connection fails
    (``APPLICATION_DATA_AFTER_CLOSE_NOTIFY``), i.e. data still queued in ``incoming``
    (not decrypted yet because the plain side is slow) would be lost. So the queued
    ciphertext is held back during the call and put back, in order, afterwards.
    ``incoming`` must not be at EOF when it holds data (it could not be refilled).
    """
    held = incoming.read() if incoming.pending else b""
    try:
        sslobj.unwrap()
    except ssl.SSLWantReadError:  # expected: the peer's close_notify is not here yet
        pass
    finally:
        if held:
            incoming.write(held)


def _close_quietly(sock: socket.socket | None) -> None:
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.close()


# --------------------------------------------------------------------------------------
# Event loop


class _Poller:
    """epoll (Linux) or poll: fd -> (mask, handler); masks are _READ/_WRITE bits.

    Used instead of ``selectors`` to keep the per-event cost low (one dict lookup).
    """

    def __init__(self) -> None:
        self._epoll = select.epoll() if hasattr(select, "epoll") else None
        self._poll = select.poll() if self._epoll is None else None
        self.handlers: dict[int, tuple[int, Callable[[int], None]]] = {}

    def register(self, fd: int, mask: int, handler: Callable[[int], None]) -> None:
        if self._epoll is not None:
            self._epoll.register(fd, mask)
        else:
            assert self._poll is not None
            self._poll.register(fd, mask)
        self.handlers[fd] = (mask, handler)

    def modify(self, fd: int, mask: int, handler: Callable[[int], None]) -> None:
        if self._epoll is not None:
            self._epoll.modify(fd, mask)
        else:
            assert self._poll is not None
            self._poll.modify(fd, mask)
        self.handlers[fd] = (mask, handler)

    def unregister(self, fd: int) -> None:
        if self.handlers.pop(fd, None) is None:
            return
        with contextlib.suppress(OSError, KeyError, ValueError):
            if self._epoll is not None:
                self._epoll.unregister(fd)
            elif self._poll is not None:
                self._poll.unregister(fd)

    def poll(self, timeout: float | None) -> list[tuple[int, int]]:
        if self._epoll is not None:
            return self._epoll.poll(-1 if timeout is None else timeout)
        assert self._poll is not None
        return self._poll.poll(None if timeout is None else timeout * 1000.0)

    def close(self) -> None:
        self.handlers.clear()
        if self._epoll is not None:
            self._epoll.close()


class _Loop:
    """A poll loop in one thread; handlers are ``Callable[[mask], None]``."""

    def __init__(self, name: str, logger: logging.Logger) -> None:
        self._log = logger
        self._sel = _Poller()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._masks: dict[socket.socket, int] = {}
        self._calls: deque[Callable[[], None]] = deque()
        self._calls_lock = threading.Lock()
        self._timers: dict[object, tuple[float, Callable[[], None]]] = {}
        self._stopping = False
        self.on_stop: Callable[[], None] = lambda: None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._sel.register(self._wake_r.fileno(), _READ, self._on_wake)

    # -- thread-safe API
    def start(self) -> None:
        self._thread.start()

    def call_soon(self, fn: Callable[[], None]) -> None:
        with self._calls_lock:
            self._calls.append(fn)
        self._wake()

    def stop(self) -> None:
        def _stop() -> None:
            self._stopping = True

        self.call_soon(_stop)

    def join(self, timeout: float) -> bool:
        if self._thread.ident is None:  # never started: release resources here
            self._release()
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    # -- loop-thread API
    def set_interest(self, sock: socket.socket, mask: int, handler: Callable[[int], None]) -> None:
        old = self._masks.get(sock, 0)
        if mask == old:
            return
        if old == 0:
            self._sel.register(sock.fileno(), mask, handler)
        elif mask == 0:
            self._sel.unregister(sock.fileno())
        else:
            self._sel.modify(sock.fileno(), mask, handler)
        if mask:
            self._masks[sock] = mask
        else:
            del self._masks[sock]

    def forget(self, sock: socket.socket) -> None:
        if self._masks.pop(sock, 0) and sock.fileno() >= 0:
            self._sel.unregister(sock.fileno())

    def set_timer(self, key: object, delay: float, fn: Callable[[], None]) -> None:
        self._timers[key] = (time.monotonic() + delay, fn)

    def cancel_timer(self, key: object) -> None:
        self._timers.pop(key, None)

    # -- internals
    def _wake(self) -> None:
        # BlockingIOError: already awake (buffer full); OSError: shutting down.
        with contextlib.suppress(OSError):
            self._wake_w.send(b"\0")

    def _on_wake(self, mask: int) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except (BlockingIOError, InterruptedError):
            pass
        while True:
            with self._calls_lock:
                if not self._calls:
                    return
                fn = self._calls.popleft()
            self._guard(fn)

    def _guard(self, fn: Callable[[], None]) -> None:
        try:
            fn()
        except Exception:
            self._log.exception("soup bridge: internal error in event loop")

    def _next_timeout(self) -> float | None:
        if not self._timers:
            return None
        soonest = min(deadline for deadline, _ in self._timers.values())
        return max(0.0, soonest - time.monotonic())

    def _fire_timers(self) -> None:
        if not self._timers:
            return
        now = time.monotonic()
        due = [key for key, (deadline, _) in self._timers.items() if deadline <= now]
        for key in due:
            entry = self._timers.pop(key, None)
            if entry is not None:
                self._guard(entry[1])

    def _run(self) -> None:
        try:
            handlers = self._sel.handlers
            while not self._stopping:
                try:
                    events = self._sel.poll(self._next_timeout())
                except InterruptedError:
                    continue
                for fd, events_mask in events:
                    entry = handlers.get(fd)
                    if entry is None:
                        continue  # unregistered by an earlier handler of this round
                    mask = events_mask & (_READ | _WRITE)
                    if events_mask & _ERRORS:
                        mask |= entry[0]  # let the handler find the error by trying
                    try:
                        entry[1](mask)
                    except Exception:
                        self._log.exception("soup bridge: internal error in event loop")
                if self._timers:
                    self._fire_timers()
        finally:
            self._guard(self.on_stop)
            self._release()

    def _release(self) -> None:
        self._sel.close()
        self._masks.clear()
        self._timers.clear()
        _close_quietly(self._wake_r)
        _close_quietly(self._wake_w)


# --------------------------------------------------------------------------------------
# One relayed connection


class _Owner(Protocol):
    def relay_established(self, relay: _Relay) -> None: ...
    def relay_data(self, relay: _Relay) -> None: ...
    def relay_failed(self, relay: _Relay, message: str, *, handshake: bool) -> None: ...
    def relay_closed(self, relay: _Relay) -> None: ...


class _RelayError(Exception):
    pass


_CONNECTING = "connecting"
_HANDSHAKE = "handshake"
_OPEN = "open"
_CLOSED = "closed"


class _Relay:
    """TLS socket <-> plain socket, driven by the loop (sans-IO TLS core)."""

    def __init__(
        self,
        loop: _Loop,
        owner: _Owner,
        tls_sock: socket.socket,
        context: ssl.SSLContext,
        *,
        server_side: bool,
        server_hostname: str | None,
        peer: str,
        connecting: bool,
        handshake_timeout: float,
        log: logging.Logger,
    ) -> None:
        self.loop = loop
        self.log = log
        self.server_side = server_side
        self.watch_data = False  # tell the owner about the first bytes/ticket (probe)
        self.owner = owner
        self.peer = peer
        self.tls = tls_sock
        self.incoming = ssl.MemoryBIO()
        self.outgoing = ssl.MemoryBIO()
        self.ssl = context.wrap_bio(
            self.incoming,
            self.outgoing,
            server_side=server_side,
            server_hostname=server_hostname,
        )
        self.state = _CONNECTING if connecting else _HANDSHAKE
        self.plain: socket.socket | None = None
        self.plain_connecting = False
        self.info: TLSInfo | None = None
        self.got_app_data = False
        self.tls_out = bytearray()  # ciphertext waiting for the TLS socket
        self.to_tls = bytearray()  # plaintext waiting to be encrypted
        self.to_plain = bytearray()  # plaintext waiting for the plain socket
        self.tls_rx_eof = False  # TCP EOF seen on the TLS socket
        self.tls_eof = False  # TLS stream ended (close_notify or ragged EOF)
        self.plain_eof = False
        self.notify_sent = False
        self.tls_wr_shut = False
        self.plain_wr_shut = False
        # per-direction byte counters (debug log when the relay closes)
        self.plain_rx = 0  # plaintext read from the plain socket
        self.encrypted = 0  # of which handed to OpenSSL
        self.decrypted = 0  # plaintext OpenSSL gave us from the TLS stream
        self.plain_tx = 0  # of which written to the plain socket
        loop.set_timer(self, handshake_timeout, self._handshake_timeout)
        self._handshake_timeout_s = handshake_timeout
        self._tls_handler = self._on_tls
        self._plain_handler = self._on_plain
        self._tls_mask = 0
        self._plain_mask = 0

    def begin(self) -> None:
        """Start (after the owner registered the relay): the client speaks first."""
        self._guarded(self._advance if self.state == _HANDSHAKE and not self.server_side else None)

    # -- public (loop thread)
    @property
    def closed(self) -> bool:
        return self.state == _CLOSED

    def attach_plain(self, sock: socket.socket, *, connecting: bool) -> None:
        self.plain = sock
        self.plain_connecting = connecting
        self._guarded(self._advance)

    def has_ticket(self) -> bool:
        session = self.ssl.session
        return session is not None and session.has_ticket

    def fail(self, message: str) -> None:
        if self.closed:
            return
        handshake = self.state in (_CONNECTING, _HANDSHAKE)
        if handshake:
            with contextlib.suppress(OSError):  # best effort: the peer sees OpenSSL's alert
                self._send_tls()
        try:
            self.owner.relay_failed(self, message, handshake=handshake)
        finally:
            self.close(f"failed: {message}")

    def close(self, why: str = "closed by the bridge") -> None:
        if self.closed:
            return
        if self.log.isEnabledFor(logging.DEBUG):
            self.log.debug(
                "soup bridge: relay %s closed (%s): plain->tls %d read, %d encrypted, "
                "%d unsent; tls->plain %d decrypted, %d written, %d unsent; "
                "eof plain=%s tls=%s notify_sent=%s shut tls=%s plain=%s",
                self.peer,
                why,
                self.plain_rx,
                self.encrypted,
                len(self.to_tls) + len(self.tls_out) + self.outgoing.pending,
                self.decrypted,
                self.plain_tx,
                len(self.to_plain) + self.incoming.pending + self.ssl.pending(),
                self.plain_eof,
                self.tls_eof,
                self.notify_sent,
                self.tls_wr_shut,
                self.plain_wr_shut,
            )
        self.state = _CLOSED
        self.loop.cancel_timer(self)
        for sock in (self.tls, self.plain):
            if sock is not None:
                self.loop.forget(sock)
                _close_quietly(sock)
        self.tls_out.clear()
        self.to_tls.clear()
        self.to_plain.clear()
        self.owner.relay_closed(self)

    # -- event handlers (hot path: no closures, no exceptions for "no data yet")
    def _on_tls(self, mask: int) -> None:
        if self.state == _CLOSED:
            return
        try:
            if self.state == _CONNECTING:
                self._finish_connect()
            else:
                if mask & _WRITE:
                    self._send_tls()
                if mask & _READ:
                    self._recv_tls()
            self._advance()
            if self.state != _CLOSED:
                self._update()
        except Exception as exc:  # any failure ends this relay only
            self._fail_from(exc)

    def _on_plain(self, mask: int) -> None:
        if self.state == _CLOSED:
            return
        try:
            if self.plain_connecting:
                assert self.plain is not None
                err = self.plain.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    raise _RelayError(f"cannot connect to backend: {os.strerror(err)}")
                self.plain_connecting = False
            if mask & _WRITE:
                self._send_plain()
            if mask & _READ:
                self._recv_plain()
            self._advance()
            if self.state != _CLOSED:
                self._update()
        except Exception as exc:  # any failure ends this relay only
            self._fail_from(exc)

    def _handshake_timeout(self) -> None:
        if self.state in (_CONNECTING, _HANDSHAKE):
            self.fail(f"timed out after {self._handshake_timeout_s:g} s")

    def _guarded(self, step: Callable[[], None] | None = None) -> None:
        if self.state == _CLOSED:
            return
        try:
            if step is not None:
                step()
            if self.state != _CLOSED:
                self._update()
        except Exception as exc:  # any failure ends this relay only
            self._fail_from(exc)

    def _fail_from(self, exc: Exception) -> None:
        if isinstance(exc, ssl.SSLError):
            self.fail(_describe_ssl_error(exc))
        elif isinstance(exc, (_RelayError, OSError)):
            self.fail(str(exc))
        else:
            self.log.exception("soup bridge: internal error on connection %s", self.peer)
            self.fail(f"internal error: {exc!r}")

    # -- steps
    def _finish_connect(self) -> None:
        err = self.tls.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            raise _RelayError(f"connect: [Errno {err}] {os.strerror(err)}")
        self.state = _HANDSHAKE

    def _recv_tls(self) -> None:
        try:
            data = self.tls.recv(_RECV_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        if data:
            self.incoming.write(data)
        else:
            self.tls_rx_eof = True
            self.incoming.write_eof()

    def _recv_plain(self) -> None:
        assert self.plain is not None
        try:
            data = self.plain.recv(_RECV_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        if data:
            self.to_tls += data
            self.plain_rx += len(data)
        else:
            self.plain_eof = True

    def _send_tls(self) -> None:
        if self.tls_wr_shut:  # nothing may follow our close_notify
            if self.outgoing.pending:
                self.outgoing.read()
            return
        if self.outgoing.pending:
            out = self.outgoing.read()
            if self.tls_out:
                self.tls_out += out
            else:
                try:
                    sent = self.tls.send(out)
                except (BlockingIOError, InterruptedError):
                    sent = 0
                if sent < len(out):
                    self.tls_out += memoryview(out)[sent:]
                return
        while self.tls_out:
            try:
                sent = self.tls.send(self.tls_out)
            except (BlockingIOError, InterruptedError):
                return
            del self.tls_out[:sent]

    def _send_plain(self) -> None:
        plain = self.plain
        if plain is None or self.plain_connecting:
            return
        while self.to_plain:
            try:
                sent = plain.send(self.to_plain)
            except (BlockingIOError, InterruptedError):
                return
            del self.to_plain[:sent]
            self.plain_tx += sent

    def _decrypt(self) -> None:
        incoming, sslobj = self.incoming, self.ssl
        while (
            not self.tls_eof
            and len(self.to_plain) < BUFFER_LIMIT
            and (incoming.pending or sslobj.pending() or self.tls_rx_eof)
        ):
            try:
                chunk = sslobj.read(_TLS_RECORD)
            except ssl.SSLWantReadError:
                return
            except ssl.SSLZeroReturnError:
                chunk = b""
            except ssl.SSLEOFError:
                if not self.tls_rx_eof:
                    raise
                # TCP FIN without close_notify: treated as EOF (like suppress_ragged_eofs).
                self.log.debug("soup bridge: %s closed without close_notify", self.peer)
                chunk = b""
            if not chunk:
                self.tls_eof = True
                return
            self.to_plain += chunk
            self.decrypted += len(chunk)
            self.got_app_data = True

    def _encrypt(self) -> None:
        if self.notify_sent:
            self.to_tls.clear()
            return
        if self.to_tls:
            try:
                written = self.ssl.write(self.to_tls)
            except ssl.SSLWantReadError:  # TLS 1.2 renegotiation in progress: retry later
                written = 0
            del self.to_tls[:written]
            self.encrypted += written
        if self.plain_eof and not self.to_tls:
            if not self.tls_eof and (
                self.ssl.pending() or (self.tls_rx_eof and self.incoming.pending)
            ):
                # Not now: the peer's last records must be decrypted first (an incoming
                # BIO at EOF cannot be held back and refilled, see _queue_close_notify).
                # _decrypt drains them as the plain side reads; the peer sends no more.
                # (Once the peer's close_notify was read, SSL_shutdown reads nothing.)
                return
            try:
                _queue_close_notify(self.ssl, self.incoming)
            except ssl.SSLError as exc:
                self.log.debug("soup bridge: close_notify to %s: %s", self.peer, exc)
            self.notify_sent = True

    def _advance(self) -> None:
        if self.state == _HANDSHAKE:
            try:
                self.ssl.do_handshake()
            except ssl.SSLWantReadError:
                self._send_tls()
                return
            self.state = _OPEN
            self.loop.cancel_timer(self)
            self.info = _tls_info(self.ssl)
            self._send_tls()
            self.owner.relay_established(self)
            if self.closed:
                return
        if self.state != _OPEN:
            return
        self._decrypt()
        if self.watch_data:
            self.owner.relay_data(self)
            if self.closed:
                return
        if self.to_tls or (self.plain_eof and not self.notify_sent):
            self._encrypt()
        if self.outgoing.pending or self.tls_out:
            self._send_tls()
        if self.to_plain:
            self._send_plain()
        if self.notify_sent or self.tls_eof:
            self._shutdowns()

    def _shutdowns(self) -> None:
        if (
            self.notify_sent
            and not self.tls_wr_shut
            and not (self.tls_out or self.outgoing.pending)
        ):
            self.tls_wr_shut = True
            with contextlib.suppress(OSError):
                self.tls.shutdown(socket.SHUT_WR)
        if self.tls_eof and not self.plain_wr_shut and not self.to_plain:
            if self.plain is None:
                self.close("TLS EOF, no plain socket")  # e.g. a parked connection
                return
            if not self.plain_connecting:
                self.plain_wr_shut = True
                with contextlib.suppress(OSError):
                    self.plain.shutdown(socket.SHUT_WR)
        if self.tls_wr_shut and self.plain_wr_shut:
            self.close("both directions ended")

    def _update(self) -> None:
        tls_mask = 0
        if self.state == _CONNECTING:
            tls_mask = _WRITE
        else:
            if self.tls_out:
                tls_mask |= _WRITE
            if not self.tls_rx_eof and (
                self.state == _HANDSHAKE
                or len(self.to_plain) + self.incoming.pending < BUFFER_LIMIT
            ):
                tls_mask |= _READ
        if tls_mask != self._tls_mask:
            self._tls_mask = tls_mask
            self.loop.set_interest(self.tls, tls_mask, self._tls_handler)
        plain = self.plain
        if plain is not None:
            plain_mask = 0
            if self.plain_connecting:
                plain_mask = _WRITE
            else:
                if self.to_plain:
                    plain_mask |= _WRITE
                if (
                    self.state == _OPEN
                    and not self.plain_eof
                    and len(self.tls_out) + len(self.to_tls) < BUFFER_LIMIT
                ):
                    plain_mask |= _READ
            if plain_mask != self._plain_mask:
                self._plain_mask = plain_mask
                self.loop.set_interest(plain, plain_mask, self._plain_handler)


# --------------------------------------------------------------------------------------
# Helpers shared by both bridges


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


class _BridgeBase:
    def __init__(self, kind: str, logger: logging.Logger | None, handshake_timeout: float) -> None:
        self.log = logger if logger is not None else _LOG
        self._handshake_timeout = handshake_timeout
        self._kind = kind
        self._loop_obj: _Loop | None = None  # created by start(): no OS resources before
        self._relays: set[_Relay] = set()
        self._lock = threading.Lock()
        self._started = False
        self._closed = False
        self._last_error: str | None = None

    @property
    def last_error(self) -> str | None:
        """The most recent connection failure (handshake or connect), with its reason."""
        with self._lock:
            return self._last_error

    @last_error.setter
    def last_error(self, value: str | None) -> None:
        with self._lock:
            self._last_error = value

    def _start_loop(self) -> None:
        with self._lock:
            if self._closed:
                raise BridgeError("bridge is closed")
            if self._started:
                raise BridgeError("bridge already started")
            self._started = True
        loop = _Loop(_thread_name(self._kind), self.log)
        loop.on_stop = self._on_stop
        self._loop_obj = loop
        loop.start()

    @property
    def _loop(self) -> _Loop:
        assert self._loop_obj is not None, "bridge not started"
        return self._loop_obj

    def _stop_loop(self) -> bool:
        """Stop the loop and join it; returns False when this call did nothing."""
        with self._lock:
            if self._closed:
                return False
            self._closed = True
        if self._loop_obj is None:
            return True
        self._loop.stop()
        if not self._loop.join(JOIN_TIMEOUT):
            self.log.warning("soup bridge: loop thread did not stop within %g s", JOIN_TIMEOUT)
        return True

    def _on_stop(self) -> None:
        for relay in list(self._relays):
            relay.close()
        self._relays.clear()

    def __enter__(self) -> _BridgeBase:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        raise NotImplementedError

    # _Owner defaults
    def relay_data(self, relay: _Relay) -> None:
        pass

    def relay_closed(self, relay: _Relay) -> None:
        self._relays.discard(relay)


# --------------------------------------------------------------------------------------
# Plugin side


class TLSListenerBridge(_BridgeBase):
    """Accept TLS on ``listen_sock`` and relay each connection to ``backend_path``.

    The bridge owns ``listen_sock`` (TCP or unix, already listening) and closes it in
    ``close()``. ``backend_path`` is a unix socket of a plaintext grpcio server in a
    private (0700) directory owned by the caller; it is connected only after the TLS
    handshake (client certificate verified by ``ssl_context``) succeeded, so an
    unauthenticated peer never reaches grpcio.
    """

    def __init__(
        self,
        listen_sock: socket.socket,
        ssl_context: ssl.SSLContext,
        backend_path: str,
        *,
        logger: logging.Logger | None = None,
        handshake_timeout: float = HANDSHAKE_TIMEOUT,
    ) -> None:
        super().__init__("listener", logger, handshake_timeout)
        self._listen = listen_sock
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
        self._listen.setblocking(False)
        self._start_loop()
        self._loop.call_soon(lambda: self._loop.set_interest(self._listen, _READ, self._on_accept))

    def close(self) -> None:
        """Stop accepting, close every relay and the listening socket, join the thread."""
        if not self._stop_loop():
            return
        _close_quietly(self._listen)

    def _on_stop(self) -> None:
        self._loop.forget(self._listen)
        _close_quietly(self._listen)
        super()._on_stop()

    def _on_accept(self, mask: int) -> None:
        for _ in range(64):
            try:
                conn, addr = self._listen.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # e.g. EMFILE: keep serving the live connections
                self.log.warning("soup bridge: accept failed: %s", exc)
                return
            conn.setblocking(False)
            _set_nodelay(conn)
            peer = f"{addr[0]}:{addr[1]}" if isinstance(addr, tuple) else (addr or "unix peer")
            relay = _Relay(
                self._loop,
                self,
                conn,
                self._context,
                server_side=True,
                server_hostname=None,
                peer=peer,
                connecting=False,
                handshake_timeout=self._handshake_timeout,
                log=self.log,
            )
            self._relays.add(relay)
            relay.begin()

    # _Owner
    def relay_established(self, relay: _Relay) -> None:
        assert relay.info is not None
        with self._lock:
            self._versions.append(relay.info.version)
        self.log.debug(
            "soup bridge: TLS from %s: %s %s alpn=%s",
            relay.peer,
            relay.info.version,
            relay.info.cipher,
            relay.info.alpn,
        )
        backend = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        backend.setblocking(False)
        err = backend.connect_ex(self._backend_path)
        if err not in (0, errno.EINPROGRESS):
            _close_quietly(backend)
            message = f"cannot connect to backend {self._backend_path}: {os.strerror(err)}"
            self.last_error = message
            self.log.error("soup bridge: %s", message)
            relay.close()
            return
        relay.attach_plain(backend, connecting=err != 0)

    def relay_failed(self, relay: _Relay, message: str, *, handshake: bool) -> None:
        if handshake:
            text = f"TLS handshake failed: {message}"
            self.last_error = text
            self.log.warning("soup bridge: %s (peer %s)", text, relay.peer)
        elif relay.plain_connecting:
            self.last_error = f"backend {self._backend_path}: {message}"
            self.log.error("soup bridge: %s", self.last_error)
        else:
            self.log.debug("soup bridge: connection from %s ended: %s", relay.peer, message)


# --------------------------------------------------------------------------------------
# Host side


class _Probe:
    """One ``first_handshake`` call: resolved once, from the loop or on timeout."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.event = threading.Event()
        self.info: TLSInfo | None = None
        self.error: str | None = None
        self.relay: _Relay | None = None
        self._lock = threading.Lock()

    def resolve(self, info: TLSInfo | None, error: str | None) -> None:
        with self._lock:
            if self.event.is_set():
                return
            self.info, self.error = info, error
            self.event.set()


class _DialError(Exception):
    pass


class TLSDialerBridge(_BridgeBase):
    """grpcio dials a private unix socket; each connection is relayed over TLS to the plugin.

    ``first_handshake()`` opens the first TLS connection right away and keeps it
    (parked, its early bytes buffered) for the first grpcio connection: the plugin
    then sees exactly one connection, and the handshake whose result was reported is
    the very connection grpcio uses. Later grpcio connections (reconnects) dial afresh.
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
    ) -> None:
        super().__init__("dialer", logger, handshake_timeout)
        self._network = network
        self._address = address
        self._context = ssl_context
        self._server_hostname = server_hostname
        self._family, self._sockaddr = self._resolve(network, address)
        self._dir: Path | None = None
        self._listen: socket.socket | None = None
        self._parked: list[_Relay] = []
        self._probes: dict[_Relay, _Probe] = {}
        self._all_probes: set[_Probe] = set()
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
            listen.setblocking(False)
            self._dir, self._listen = directory, listen
            self._start_loop()
        except BaseException:
            _close_quietly(listen)
            self._dir = self._listen = None
            shutil.rmtree(directory, ignore_errors=True)
            raise
        self._loop.call_soon(lambda: self._loop.set_interest(listen, _READ, self._on_accept))
        return "unix:" + path

    def close(self) -> None:
        """Stop accepting, close every relay, join the thread, remove the private socket."""
        if not self._stop_loop():
            return
        _close_quietly(self._listen)
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
        with self._lock:
            probes = list(self._all_probes)
        for probe in probes:
            probe.resolve(None, "the bridge was closed")

    def first_handshake(self, timeout: float) -> TLSInfo:
        """Do one TLS handshake with the plugin now and return what it negotiated.

        Raises ``BridgeError("TLS handshake with plugin at ADDR failed: <reason>")``
        with OpenSSL's reason. With TLS 1.3 a client finishes its handshake before the
        server has checked the client certificate, so this also waits (at most
        ``CONFIRM_GRACE`` s, within ``timeout``) for the server's first record after the
        handshake (session ticket or HTTP/2 SETTINGS): a rejection arrives instead as
        an alert and is reported here. The connection is kept for the first grpcio
        connection.
        """
        if not self._started or self._closed:
            raise BridgeError("bridge is not running (call start() first)")
        probe = _Probe(timeout)
        with self._lock:
            self._all_probes.add(probe)
        try:
            self._loop.call_soon(lambda: self._start_probe(probe))
            if not probe.event.wait(timeout):
                probe.resolve(None, f"timed out after {timeout:g} s")
                self._loop.call_soon(lambda: self._drop_probe(probe))
        finally:
            with self._lock:
                self._all_probes.discard(probe)
        if probe.error is not None or probe.info is None:
            raise BridgeError(f"TLS handshake with plugin at {self._where()} failed: {probe.error}")
        return probe.info

    def _where(self) -> str:
        return f"{self._network}:{self._address}"

    # -- loop thread
    def _on_stop(self) -> None:
        if self._listen is not None:
            self._loop.forget(self._listen)
            _close_quietly(self._listen)
        super()._on_stop()

    def _dial(self, handshake_timeout: float) -> _Relay:
        sock = socket.socket(self._family, socket.SOCK_STREAM)
        sock.setblocking(False)
        _set_nodelay(sock)
        err = sock.connect_ex(self._sockaddr)
        if err not in (0, errno.EINPROGRESS):
            _close_quietly(sock)
            raise _DialError(f"connect: [Errno {err}] {os.strerror(err)}")
        relay = _Relay(
            self._loop,
            self,
            sock,
            self._context,
            server_side=False,
            server_hostname=self._server_hostname,
            peer=self._where(),
            connecting=err != 0,
            handshake_timeout=handshake_timeout,
            log=self.log,
        )
        self._relays.add(relay)
        return relay

    def _start_probe(self, probe: _Probe) -> None:
        if probe.event.is_set():
            return
        try:
            relay = self._dial(min(probe.timeout, self._handshake_timeout))
        except _DialError as exc:
            self.last_error = f"TLS handshake with plugin at {self._where()} failed: {exc}"
            probe.resolve(None, str(exc))
            return
        probe.relay = relay
        relay.watch_data = True
        self._probes[relay] = probe
        relay.begin()

    def _drop_probe(self, probe: _Probe) -> None:
        relay = probe.relay
        if relay is not None:
            self._probes.pop(relay, None)
            relay.close()

    def _confirm(self, relay: _Relay, *, grace_over: bool = False) -> None:
        probe = self._probes.get(relay)
        if probe is None or relay.info is None or relay.closed:
            return
        confirmed = relay.info.version != "TLSv1.3" or relay.got_app_data or relay.has_ticket()
        if not (confirmed or grace_over):
            return
        if not confirmed:
            self.log.debug("soup bridge: the TLS 1.3 server sent nothing after the handshake")
        del self._probes[relay]
        relay.watch_data = False
        self._loop.cancel_timer(probe)
        probe.resolve(relay.info, None)

    def _on_accept(self, mask: int) -> None:
        listen = self._listen
        assert listen is not None
        for _ in range(64):
            try:
                conn, _ = listen.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self.log.warning("soup bridge: accept failed: %s", exc)
                return
            conn.setblocking(False)
            relay = next((r for r in self._parked if not r.closed), None)
            self._parked.clear()
            if relay is None:
                try:
                    relay = self._dial(self._handshake_timeout)
                except _DialError as exc:
                    self._record_failure(str(exc))
                    _close_quietly(conn)  # grpcio sees EOF and reports UNAVAILABLE
                    continue
                relay.attach_plain(conn, connecting=False)
                relay.begin()
            else:
                assert relay.info is not None
                with self._lock:
                    self._last_info = relay.info
                relay.attach_plain(conn, connecting=False)

    def _record_failure(self, message: str) -> None:
        self.last_error = f"TLS handshake with plugin at {self._where()} failed: {message}"
        self.log.warning("soup bridge: %s", self.last_error)

    # _Owner
    def relay_established(self, relay: _Relay) -> None:
        assert relay.info is not None
        with self._lock:
            self._last_info = relay.info
        self.log.debug(
            "soup bridge: TLS to %s: %s %s alpn=%s",
            relay.peer,
            relay.info.version,
            relay.info.cipher,
            relay.info.alpn,
        )
        probe = self._probes.get(relay)
        if probe is not None:
            self._parked.append(relay)
            self._loop.set_timer(
                probe,
                min(CONFIRM_GRACE, probe.timeout),
                lambda: self._confirm(relay, grace_over=True),
            )
            self._confirm(relay)

    def relay_data(self, relay: _Relay) -> None:
        self._confirm(relay)

    def relay_failed(self, relay: _Relay, message: str, *, handshake: bool) -> None:
        probe = self._probes.pop(relay, None)
        if probe is not None:
            self._loop.cancel_timer(probe)
            self.last_error = f"TLS handshake with plugin at {self._where()} failed: {message}"
            probe.resolve(None, message)
        elif handshake:
            self._record_failure(message)
        else:
            self.log.debug("soup bridge: connection to %s ended: %s", relay.peer, message)

    def relay_closed(self, relay: _Relay) -> None:
        super().relay_closed(relay)
        if relay in self._parked:
            self._parked.remove(relay)
        probe = self._probes.pop(relay, None)
        if probe is not None:
            self._loop.cancel_timer(probe)
            probe.resolve(None, "the plugin closed the connection right after the handshake")
