"""A sans-IO TLS relay core: ciphertext on one side, plaintext on the other.

``ssl.SSLObject`` over two ``ssl.MemoryBIO``: the caller feeds bytes read from the
network (:meth:`TLSPipe.receive_tls`) or from the plaintext side (:meth:`TLSPipe.send`)
and takes the bytes to write (:meth:`TLSPipe.tls_to_send`, :meth:`TLSPipe.plain_to_send`),
reporting how much it wrote. No sockets, no threads, no clocks here: ``soup.bridge``
does the IO. One thread at a time may use a pipe (OpenSSL objects are not thread-safe).

Each direction has its own end-of-stream state (:class:`Flow`), with checked transitions:

* plain -> TLS (``forward``): the plaintext side's EOF becomes our ``close_notify``
  (TLS half-close), then the caller shuts the TLS socket's write side.
* TLS -> plain (``backward``): the peer's ``close_notify``, or a bare TCP FIN (treated
  like Python's ``suppress_ragged_eofs``), becomes a write shutdown of the plaintext
  side once every decrypted byte is delivered.

Hot path: plaintext is decrypted into one reusable buffer and handed out as a view, so
a relayed record costs no allocation on the way out; unsent remainders stay views.
``SSLObject.pending()`` releases the GIL (a hand-off to another thread whenever one is
waiting for it), so it is only asked when OpenSSL may hold decrypted bytes: an
``SSL_read`` that returns less than asked has handed out every processed record.
"""

from __future__ import annotations

import contextlib
import enum
import ssl
from typing import NamedTuple

__all__ = [
    "BUFFER_LIMIT",
    "Bytes",
    "Flow",
    "Phase",
    "PipeStateError",
    "TLSInfo",
    "TLSPipe",
    "describe_ssl_error",
    "queue_close_notify",
]

BUFFER_LIMIT = 256 * 1024
"""Pending bytes towards one side above which the other side should not be read."""

Bytes = bytes | bytearray | memoryview
"""What the pipe accepts as input (any contiguous bytes; views avoid a copy)."""

_PLAIN_CHUNK = 64 * 1024  # decrypted bytes handed out per plain_to_send() at most
_TLS_RECORD = 16 * 1024  # SSL_read returns at most one record's plaintext


class Phase(enum.Enum):
    """Where the connection is as a whole."""

    HANDSHAKE = "handshake"
    OPEN = "open"
    CLOSED = "closed"


class Flow(enum.Enum):
    """Where one direction's stream is."""

    OPEN = "open"  # bytes flow
    ENDING = "ending"  # the source ended; what it sent is still being delivered
    NOTIFIED = "notified"  # plain -> TLS only: close_notify queued, not yet all written
    ENDED = "ended"  # the end was delivered (write side shut)


_PHASES: dict[Phase, frozenset[Phase]] = {
    Phase.HANDSHAKE: frozenset({Phase.OPEN, Phase.CLOSED}),
    Phase.OPEN: frozenset({Phase.CLOSED}),
    Phase.CLOSED: frozenset(),
}
_FORWARD: dict[Flow, frozenset[Flow]] = {
    Flow.OPEN: frozenset({Flow.ENDING}),
    Flow.ENDING: frozenset({Flow.NOTIFIED}),
    Flow.NOTIFIED: frozenset({Flow.ENDED}),
    Flow.ENDED: frozenset(),
}
_BACKWARD: dict[Flow, frozenset[Flow]] = {
    Flow.OPEN: frozenset({Flow.ENDING}),
    Flow.ENDING: frozenset({Flow.ENDED}),
    Flow.NOTIFIED: frozenset(),
    Flow.ENDED: frozenset(),
}


class PipeStateError(RuntimeError):
    """A transition the state tables do not allow: a bug in the caller or here."""


class TLSInfo(NamedTuple):
    """What one established TLS connection negotiated."""

    version: str
    cipher: str
    alpn: str | None
    peer_cert_der: bytes | None


def describe_ssl_error(exc: BaseException) -> str:
    """The OpenSSL reason as Python reports it, e.g. ``[SSL: CERTIFICATE_VERIFY_FAILED] ...``."""
    text = str(exc)
    if isinstance(exc, ssl.SSLError) and exc.reason and exc.reason not in text:
        text = f"[{exc.library or 'SSL'}: {exc.reason}] {text}"
    return text or type(exc).__name__


def queue_close_notify(sslobj: ssl.SSLObject, incoming: ssl.MemoryBIO) -> None:
    """Queue our ``close_notify`` in the outgoing BIO; our read side stays usable.

    ``SSLObject.unwrap()`` calls ``SSL_shutdown`` a second time when the peer's
    ``close_notify`` has not arrived yet, and that call reads the peer's next records:
    application data found there is discarded and the connection fails
    (``APPLICATION_DATA_AFTER_CLOSE_NOTIFY``), i.e. data still queued in ``incoming``
    would be lost. So the queued ciphertext is held back during the call and put back,
    in order, afterwards. ``incoming`` must not be at EOF when it holds data.
    """
    held = incoming.read() if incoming.pending else b""
    try:
        sslobj.unwrap()
    except ssl.SSLWantReadError:  # expected: the peer's close_notify is not here yet
        pass
    finally:
        if held:
            incoming.write(held)


_EMPTY = memoryview(b"")


class TLSPipe:
    """One TLS connection's bytes: ciphertext <-> plaintext, both half-closes."""

    def __init__(
        self,
        context: ssl.SSLContext,
        *,
        server_side: bool,
        server_hostname: str | None = None,
    ) -> None:
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._ssl = context.wrap_bio(
            self._incoming, self._outgoing, server_side=server_side, server_hostname=server_hostname
        )
        self.phase = Phase.HANDSHAKE
        self.forward = Flow.OPEN  # plain -> TLS
        self.backward = Flow.OPEN  # TLS -> plain
        self.info: TLSInfo | None = None
        self.wire_eof = False  # the TLS side's transport ended (TCP FIN)
        self._tls_ready: bytes | memoryview = _EMPTY  # ciphertext not yet written
        self._unencrypted = bytearray()  # plaintext OpenSSL could not take yet (rare)
        self._plain_buffer = bytearray(_PLAIN_CHUNK)
        self._plain_view = memoryview(self._plain_buffer)
        self._plain_ready: memoryview = _EMPTY  # decrypted, not yet written
        self._maybe_buffered = True  # OpenSSL may hold decrypted bytes (until a short read)

    # -- transitions (checked)
    def _enter(self, phase: Phase) -> None:
        if phase not in _PHASES[self.phase]:
            raise PipeStateError(f"phase {self.phase.value} -> {phase.value}")
        self.phase = phase

    def _forward_to(self, flow: Flow) -> None:
        if flow not in _FORWARD[self.forward]:
            raise PipeStateError(f"plain->TLS {self.forward.value} -> {flow.value}")
        self.forward = flow

    def _backward_to(self, flow: Flow) -> None:
        if flow not in _BACKWARD[self.backward]:
            raise PipeStateError(f"TLS->plain {self.backward.value} -> {flow.value}")
        self.backward = flow

    # -- handshake
    def do_handshake(self) -> bool:
        """One handshake step: True once established (then :attr:`info` is set).

        Raises ``ssl.SSLError`` when OpenSSL rejects the peer; the alert for the peer is
        then in :meth:`tls_to_send`.
        """
        if self.phase is not Phase.HANDSHAKE:
            return self.phase is Phase.OPEN
        try:
            self._ssl.do_handshake()
        except ssl.SSLWantReadError:
            return False
        self._enter(Phase.OPEN)
        cipher = self._ssl.cipher()
        self.info = TLSInfo(
            version=self._ssl.version() or "",
            cipher=cipher[0] if cipher else "",
            alpn=self._ssl.selected_alpn_protocol(),
            peer_cert_der=self._ssl.getpeercert(binary_form=True),
        )
        return True

    def has_ticket(self) -> bool:
        """Whether the peer (a TLS 1.3 server) sent a session ticket so far."""
        session = self._ssl.session
        return session is not None and session.has_ticket

    def close(self) -> None:
        """Forget every pending byte; nothing more is accepted."""
        if self.phase is not Phase.CLOSED:
            self._enter(Phase.CLOSED)
        self._tls_ready = self._plain_ready = _EMPTY
        self._unencrypted.clear()

    # -- TLS side
    def receive_tls(self, data: Bytes) -> None:
        """Ciphertext read from the network."""
        self._incoming.write(data)

    def receive_tls_eof(self) -> None:
        """The network side's transport ended (a read returned nothing)."""
        if not self.wire_eof:
            self.wire_eof = True
            self._incoming.write_eof()

    def tls_to_send(self) -> bytes | memoryview:
        """Ciphertext to write now (the same bytes again until :meth:`tls_sent`)."""
        if self._outgoing.pending:
            new = self._outgoing.read()
            if self.forward is Flow.ENDED:
                return _EMPTY  # nothing may follow our close_notify and the write shutdown
            self._tls_ready = b"".join((self._tls_ready, new)) if self._tls_ready else new
        return self._tls_ready

    def tls_sent(self, count: int) -> None:
        """``count`` bytes of :meth:`tls_to_send` were written."""
        ready = self._tls_ready
        self._tls_ready = _EMPTY if count >= len(ready) else memoryview(ready)[count:]

    @property
    def tls_backlog(self) -> int:
        """Bytes towards the TLS side not written yet (plaintext or ciphertext)."""
        return len(self._tls_ready) + self._outgoing.pending + len(self._unencrypted)

    @property
    def should_shut_tls(self) -> bool:
        """Our close_notify is written: the caller shuts the TLS write side now."""
        return self.forward is Flow.NOTIFIED and not self._tls_ready and not self._outgoing.pending

    def tls_shut(self) -> None:
        """The caller shut the TLS socket's write side."""
        self._forward_to(Flow.ENDED)

    # -- plaintext side
    def send(self, data: Bytes) -> None:
        """Plaintext read from the plaintext side: encrypted now."""
        if self.forward is not Flow.OPEN:
            return  # after EOF nothing is read; a late chunk has nowhere to go
        if self._unencrypted:
            self._unencrypted += data
            self._encrypt_unencrypted()
            return
        try:
            self._ssl.write(data)
        except ssl.SSLWantReadError:  # TLS 1.2 renegotiation in progress: retry later
            self._unencrypted += data

    def send_eof(self) -> None:
        """The plaintext side ended: our close_notify follows the pending plaintext."""
        if self.forward is Flow.OPEN:
            self._forward_to(Flow.ENDING)
        self._try_close_notify()

    def plain_to_send(self) -> memoryview:
        """Decrypted plaintext to write now (the same bytes again until :meth:`plain_sent`).

        The view is only valid until the next call that decrypts. Raises ``ssl.SSLError``
        when the peer's records are bad (or end without close_notify before a FIN).
        """
        if (
            not self._plain_ready
            and self.backward is Flow.OPEN
            and self.phase is Phase.OPEN
            # Nothing arrived since the last decrypt: nothing it does could change now.
            and (self._incoming.pending or self._maybe_buffered or self.wire_eof)
        ):
            self._decrypt()
        return self._plain_ready

    def plain_sent(self, count: int) -> None:
        """``count`` bytes of :meth:`plain_to_send` were written."""
        ready = self._plain_ready
        self._plain_ready = _EMPTY if count >= len(ready) else ready[count:]

    @property
    def plain_backlog(self) -> int:
        """Bytes towards the plaintext side not written yet (ciphertext or plaintext)."""
        return len(self._plain_ready) + self._incoming.pending + self._ssl_pending()

    @property
    def should_shut_plain(self) -> bool:
        """The peer's stream ended and all of it is delivered: shut the plain write side."""
        return self.backward is Flow.ENDING and not self._plain_ready

    def plain_shut(self) -> None:
        """The caller shut the plaintext socket's write side."""
        self._backward_to(Flow.ENDED)

    def wants_input(self) -> tuple[bool, bool]:
        """Whether to read (the TLS side, the plaintext side) now.

        A side is read while its stream goes on and the backlog towards the other side
        is below ``BUFFER_LIMIT`` (backpressure).
        """
        return (
            not self.wire_eof and self.plain_backlog < BUFFER_LIMIT,
            self.forward is Flow.OPEN and self.tls_backlog < BUFFER_LIMIT,
        )

    @property
    def done(self) -> bool:
        """Both directions ended: the connection can be closed."""
        return self.forward is Flow.ENDED and self.backward is Flow.ENDED

    # -- internals
    def _ssl_pending(self) -> int:
        """Decrypted bytes OpenSSL holds, without asking it when it cannot hold any."""
        if not self._maybe_buffered:
            return 0
        count = self._ssl.pending()
        self._maybe_buffered = count > 0  # only a read can fill it again
        return count

    def _decrypt(self) -> None:
        incoming, sslobj, view = self._incoming, self._ssl, self._plain_view
        filled = 0
        while filled + _TLS_RECORD <= _PLAIN_CHUNK and (
            incoming.pending or (self._maybe_buffered and self._ssl_pending()) or self.wire_eof
        ):
            try:
                count: int = sslobj.read(_TLS_RECORD, view[filled:])  # type: ignore[assignment]
            except ssl.SSLWantReadError:
                self._maybe_buffered = False
                break
            except ssl.SSLZeroReturnError:  # the peer's close_notify
                count = 0
            except ssl.SSLEOFError:
                if not self.wire_eof:
                    raise
                count = 0  # TCP FIN without close_notify: an EOF, like suppress_ragged_eofs
            if not count:
                self._backward_to(Flow.ENDING)
                break
            self._maybe_buffered = count == _TLS_RECORD
            filled += count
        if filled:
            self._plain_ready = view[:filled]
        if self.forward is Flow.ENDING:
            self._try_close_notify()
        if self._unencrypted:
            self._encrypt_unencrypted()

    def _encrypt_unencrypted(self) -> None:
        try:
            written = self._ssl.write(self._unencrypted)
        except ssl.SSLWantReadError:
            return
        del self._unencrypted[:written]
        if self.forward is Flow.ENDING:
            self._try_close_notify()

    def _try_close_notify(self) -> None:
        if self.forward is not Flow.ENDING or self._unencrypted or self.phase is not Phase.OPEN:
            return
        if self.backward is Flow.OPEN and (
            self._ssl_pending() or (self.wire_eof and self._incoming.pending)
        ):
            # Not now: the peer's last records must be decrypted first (an incoming BIO
            # at EOF cannot be held back and refilled, see queue_close_notify).
            # _decrypt drains them as the plain side reads, then calls back here.
            return
        # An error here (e.g. the peer already failed) still lets the shutdown proceed.
        with contextlib.suppress(ssl.SSLError):
            queue_close_notify(self._ssl, self._incoming)
        self._forward_to(Flow.NOTIFIED)
