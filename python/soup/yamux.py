"""yamux, sans-IO: the stream multiplexer go-plugin's broker multiplexing runs on.

With ``PLUGIN_MULTIPLEX_GRPC=true`` a go-plugin host opens one connection to the
plugin's main listener and runs a yamux session over it (hashicorp/yamux, ``spec.md``);
each gRPC connection is a yamux stream carrying its own TLS (go-plugin
``internal/grpcmux``). This module is the protocol alone, like h11: bytes in
(:meth:`Session.receive`), events out, bytes to write (:meth:`Session.data_to_send`).
No sockets, threads or clocks; :mod:`soup.muxsession` does the IO.

The wire facts, from yamux's spec:

* every frame starts with a 12-byte header, big-endian: version (0), type, flags,
  stream id, length; only a data frame has a body (``length`` bytes);
* the client (the host) opens odd stream ids, the server (the plugin) even ones; id 0 is
  the session itself (ping, go away);
* a stream is opened by a frame with SYN, accepted by one with ACK, half-closed by FIN,
  and reset by RST;
* each direction of a stream starts with a 256 KiB window; a sender may only have that
  many unacknowledged bytes in flight, and the receiver grows it with window updates
  (``length`` is the increment) once the application has consumed the data.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass, field
from typing import NamedTuple

__all__ = [
    "HEADER",
    "INITIAL_WINDOW",
    "DataReceived",
    "Event",
    "Flag",
    "FrameType",
    "GoAwayCode",
    "ProtocolError",
    "Session",
    "SessionEnded",
    "StreamAccepted",
    "StreamEnded",
    "StreamOpened",
    "StreamReset",
    "encode",
]

VERSION = 0
HEADER = struct.Struct(">BBHII")
INITIAL_WINDOW = 256 * 1024
_MAX_FRAME = 64 * 1024  # data bytes per frame we send: small frames keep streams fair
_MAX_U32 = 0xFFFFFFFF


class FrameType(enum.IntEnum):
    DATA = 0
    WINDOW_UPDATE = 1
    PING = 2
    GO_AWAY = 3


class Flag(enum.IntFlag):
    NONE = 0
    SYN = 1
    ACK = 2
    FIN = 4
    RST = 8


class GoAwayCode(enum.IntEnum):
    NORMAL = 0
    PROTOCOL_ERROR = 1
    INTERNAL_ERROR = 2


class ProtocolError(Exception):
    """The peer broke the yamux protocol; the session must end (go away, code 1)."""


class StreamOpened(NamedTuple):
    """The peer opened a stream (it is accepted at once: an ACK is queued)."""

    stream_id: int


class StreamAccepted(NamedTuple):
    """The peer acknowledged a stream we opened."""

    stream_id: int


class DataReceived(NamedTuple):
    """Bytes for the application; report them with :meth:`Session.consumed` once used."""

    stream_id: int
    data: bytes


class StreamEnded(NamedTuple):
    """The peer half-closed the stream (FIN): no more data will come."""

    stream_id: int


class StreamReset(NamedTuple):
    """The peer reset the stream (RST); it is gone."""

    stream_id: int


class SessionEnded(NamedTuple):
    """The peer sent go away: no new streams; ``code`` says why."""

    code: int


Event = StreamOpened | StreamAccepted | DataReceived | StreamEnded | StreamReset | SessionEnded


def encode(kind: FrameType, flags: Flag, stream_id: int, length: int, body: bytes = b"") -> bytes:
    """One frame: the header, then ``body`` (data frames only)."""
    return HEADER.pack(VERSION, kind, flags, stream_id, length) + body


class _Frame(NamedTuple):
    kind: int
    flags: Flag
    stream_id: int
    length: int  # a data frame's body size; else the frame's value (window delta, ping, code)
    payload: bytes


@dataclass
class _Stream:
    send_window: int = INITIAL_WINDOW  # what the peer lets us send
    recv_window: int = INITIAL_WINDOW  # what we let the peer send
    unacknowledged: int = 0  # consumed by the application, not yet granted back
    pending: bytearray = field(default_factory=bytearray)  # waiting for send window
    end_queued: bool = False  # FIN to send once ``pending`` is out
    sent_fin: bool = False
    got_fin: bool = False


class Session:
    """One side of a yamux session. ``client`` is the side that dialed (the host)."""

    def __init__(self, *, client: bool) -> None:
        self._next_id = 1 if client else 2
        self._streams: dict[int, _Stream] = {}
        self._out = bytearray()
        self._buffer = bytearray()
        self._going_away = False

    # -- what the application asks for

    def open_stream(self) -> int:
        """A new stream id; its SYN is queued. Data may follow before the peer's ACK."""
        if self._going_away:
            raise ProtocolError("session is going away: no new streams")
        stream_id = self._next_id
        if stream_id > _MAX_U32:
            raise ProtocolError("stream ids exhausted")
        self._next_id += 2
        self._streams[stream_id] = _Stream()
        self._queue(FrameType.WINDOW_UPDATE, Flag.SYN, stream_id, 0)
        return stream_id

    def send(self, stream_id: int, data: bytes) -> None:
        """Queue ``data`` on a stream; it leaves as the peer's window allows."""
        stream = self._open_for_sending(stream_id)
        stream.pending += data
        self._flush(stream_id, stream)

    def end_stream(self, stream_id: int) -> None:
        """Half-close our side (FIN), after the data already queued."""
        stream = self._open_for_sending(stream_id)
        stream.end_queued = True
        self._flush(stream_id, stream)

    def reset_stream(self, stream_id: int) -> None:
        """Abort a stream (RST) and forget it."""
        if self._streams.pop(stream_id, None) is not None:
            self._queue(FrameType.WINDOW_UPDATE, Flag.RST, stream_id, 0)

    def consumed(self, stream_id: int, count: int) -> None:
        """The application used ``count`` received bytes: grant the window back.

        Grants go out once half a window is owed, as yamux's own receiver does, so a
        bulk transfer costs one update per 128 KiB rather than one per frame.
        """
        stream = self._streams.get(stream_id)
        if stream is None or stream.got_fin:
            return
        stream.unacknowledged += count
        if stream.unacknowledged >= INITIAL_WINDOW // 2:
            stream.recv_window += stream.unacknowledged
            self._queue(FrameType.WINDOW_UPDATE, Flag.NONE, stream_id, stream.unacknowledged)
            stream.unacknowledged = 0

    def go_away(self, code: GoAwayCode = GoAwayCode.NORMAL) -> None:
        """Tell the peer no new streams will be accepted or opened."""
        if not self._going_away:
            self._going_away = True
            self._queue(FrameType.GO_AWAY, Flag.NONE, 0, code)

    def sendable(self, stream_id: int) -> int:
        """Bytes the application may still hand to :meth:`send` without piling up."""
        stream = self._streams.get(stream_id)
        if stream is None or stream.end_queued:
            return 0
        return max(0, stream.send_window - len(stream.pending))

    def is_open(self, stream_id: int) -> bool:
        """Whether yamux still knows the stream (not reset, not closed both ways)."""
        return stream_id in self._streams

    def peer_ended(self, stream_id: int) -> bool:
        """Whether the peer half-closed the stream (FIN)."""
        stream = self._streams.get(stream_id)
        return stream is not None and stream.got_fin

    def data_to_send(self) -> bytes:
        """Everything queued for the wire; the caller writes all of it."""
        out = bytes(self._out)
        self._out.clear()
        return out

    # -- what the peer sent

    def receive(self, data: bytes) -> list[Event]:
        """Feed bytes read from the connection; returns what they meant.

        Raises :class:`ProtocolError` (with a go away already queued) when the peer
        breaks the protocol: the caller writes what is queued and closes.
        """
        self._buffer += data
        events: list[Event] = []
        try:
            while len(self._buffer) >= HEADER.size:
                version, kind, flags, stream_id, length = HEADER.unpack_from(self._buffer)
                if version != VERSION:
                    raise ProtocolError(f"unsupported yamux version {version}")
                body = length if kind == FrameType.DATA else 0
                if len(self._buffer) < HEADER.size + body:
                    break
                payload = bytes(self._buffer[HEADER.size : HEADER.size + body])
                del self._buffer[: HEADER.size + body]
                frame = _Frame(kind, Flag(flags & 0xF), stream_id, length, payload)
                self._frame(frame, events)
        except ProtocolError:
            self.go_away(GoAwayCode.PROTOCOL_ERROR)
            raise
        return events

    def _frame(self, frame: _Frame, events: list[Event]) -> None:
        kind, flags, _, length, _ = frame
        if kind == FrameType.PING:
            if flags & Flag.SYN:
                self._queue(FrameType.PING, Flag.ACK, 0, length)
        elif kind == FrameType.GO_AWAY:
            self._going_away = True
            events.append(SessionEnded(length))
        elif kind in (FrameType.DATA, FrameType.WINDOW_UPDATE):
            self._stream_frame(frame, events)
        else:
            raise ProtocolError(f"unknown yamux frame type {kind}")

    def _stream_frame(self, frame: _Frame, events: list[Event]) -> None:
        kind, flags, stream_id, length, payload = frame
        if flags & Flag.SYN:
            self._incoming(stream_id, events)
        stream = self._streams.get(stream_id)
        if stream is None:
            return  # a frame for a stream already gone: dropped, as yamux does
        if flags & Flag.ACK:
            events.append(StreamAccepted(stream_id))
        if kind == FrameType.WINDOW_UPDATE:
            stream.send_window += length
            self._flush(stream_id, stream)
        elif payload:
            if len(payload) > stream.recv_window:
                raise ProtocolError(
                    f"stream {stream_id}: {len(payload)} bytes exceed the window of "
                    f"{stream.recv_window}"
                )
            stream.recv_window -= len(payload)
            events.append(DataReceived(stream_id, payload))
        if flags & Flag.RST:
            del self._streams[stream_id]
            events.append(StreamReset(stream_id))
        elif flags & Flag.FIN:
            stream.got_fin = True
            events.append(StreamEnded(stream_id))
            self._forget_if_done(stream_id, stream)

    def _incoming(self, stream_id: int, events: list[Event]) -> None:
        if stream_id == 0 or stream_id in self._streams:
            raise ProtocolError(f"SYN for stream {stream_id}, which is 0 or already open")
        if stream_id % 2 == self._next_id % 2:
            raise ProtocolError(f"SYN for stream {stream_id}: that id is ours to open")
        if self._going_away:
            self._queue(FrameType.WINDOW_UPDATE, Flag.RST, stream_id, 0)
            return
        self._streams[stream_id] = _Stream()
        self._queue(FrameType.WINDOW_UPDATE, Flag.ACK, stream_id, 0)
        events.append(StreamOpened(stream_id))

    # -- internals

    def _open_for_sending(self, stream_id: int) -> _Stream:
        stream = self._streams.get(stream_id)
        if stream is None:
            raise ProtocolError(f"stream {stream_id} is not open")
        if stream.end_queued:
            raise ProtocolError(f"stream {stream_id} was already ended on our side")
        return stream

    def _flush(self, stream_id: int, stream: _Stream) -> None:
        while stream.pending and stream.send_window > 0:
            size = min(len(stream.pending), stream.send_window, _MAX_FRAME)
            chunk = bytes(stream.pending[:size])
            del stream.pending[:size]
            stream.send_window -= size
            self._queue(FrameType.DATA, Flag.NONE, stream_id, size, chunk)
        if stream.end_queued and not stream.pending and not stream.sent_fin:
            stream.sent_fin = True
            self._queue(FrameType.WINDOW_UPDATE, Flag.FIN, stream_id, 0)
            self._forget_if_done(stream_id, stream)

    def _forget_if_done(self, stream_id: int, stream: _Stream) -> None:
        if stream.sent_fin and stream.got_fin:
            self._streams.pop(stream_id, None)

    def _queue(
        self, kind: FrameType, flags: Flag, stream_id: int, length: int, body: bytes = b""
    ) -> None:
        self._out += encode(kind, flags, stream_id, length, body)
