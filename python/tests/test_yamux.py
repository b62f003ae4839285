"""yamux (sans-IO) and its IO session: frames, flow control, errors, and real sockets."""

from __future__ import annotations

import socket
import threading

import pytest

from soup import muxsession, yamux
from soup.yamux import Flag, FrameType


def frames(data: bytes) -> list[tuple[int, int, int, int, bytes]]:
    """Split wire bytes into (type, flags, stream id, length, body)."""
    out = []
    while data:
        _, kind, flags, stream_id, length = yamux.HEADER.unpack_from(data)
        body = length if kind == FrameType.DATA else 0
        out.append((kind, flags, stream_id, length, data[12 : 12 + body]))
        data = data[12 + body :]
    return out


def pair() -> tuple[yamux.Session, yamux.Session]:
    return yamux.Session(client=True), yamux.Session(client=False)


def relay(src: yamux.Session, dst: yamux.Session) -> list[yamux.Event]:
    return dst.receive(src.data_to_send())


def test_open_sends_syn_window_update_with_odd_id_for_the_client() -> None:
    host, plugin = pair()
    assert host.open_stream() == 1
    assert host.open_stream() == 3
    assert frames(host.data_to_send()) == [
        (FrameType.WINDOW_UPDATE, Flag.SYN, 1, 0, b""),
        (FrameType.WINDOW_UPDATE, Flag.SYN, 3, 0, b""),
    ]
    assert plugin.open_stream() == 2


def test_accept_answers_ack_and_data_flows_both_ways() -> None:
    host, plugin = pair()
    sid = host.open_stream()
    host.send(sid, b"hello")
    assert relay(host, plugin) == [yamux.StreamOpened(sid), yamux.DataReceived(sid, b"hello")]
    assert frames(plugin.data_to_send()) == [(FrameType.WINDOW_UPDATE, Flag.ACK, sid, 0, b"")]
    plugin.send(sid, b"world")
    assert relay(plugin, host) == [yamux.DataReceived(sid, b"world")]


def test_fin_both_ways_forgets_the_stream() -> None:
    host, plugin = pair()
    sid = host.open_stream()
    relay(host, plugin)
    relay(plugin, host)
    host.end_stream(sid)
    assert relay(host, plugin) == [yamux.StreamEnded(sid)]
    assert plugin.peer_ended(sid)
    plugin.end_stream(sid)
    assert relay(plugin, host) == [yamux.StreamEnded(sid)]
    assert not host.is_open(sid)
    assert not plugin.is_open(sid)


def test_reset_is_reported_and_forgotten() -> None:
    host, plugin = pair()
    sid = host.open_stream()
    relay(host, plugin)
    plugin.reset_stream(sid)
    assert relay(plugin, host) == [yamux.StreamAccepted(sid), yamux.StreamReset(sid)]
    assert not host.is_open(sid)


def test_sender_stops_at_the_window_and_resumes_on_update() -> None:
    host, plugin = pair()
    sid = host.open_stream()
    host.send(sid, b"x" * (yamux.INITIAL_WINDOW + 1000))
    received = relay(host, plugin)
    got = sum(len(e.data) for e in received if isinstance(e, yamux.DataReceived))
    assert got == yamux.INITIAL_WINDOW
    assert host.sendable(sid) == 0
    plugin.data_to_send()  # the ACK
    plugin.consumed(sid, yamux.INITIAL_WINDOW // 2 - 1)
    assert plugin.data_to_send() == b""  # under half a window: no update yet
    plugin.consumed(sid, 1)
    update = plugin.data_to_send()
    assert frames(update) == [(FrameType.WINDOW_UPDATE, 0, sid, yamux.INITIAL_WINDOW // 2, b"")]
    rest = host.receive(update) + relay(host, plugin)
    assert sum(len(e.data) for e in rest if isinstance(e, yamux.DataReceived)) == 1000


def test_data_beyond_the_window_is_a_protocol_error_with_go_away() -> None:
    plugin = yamux.Session(client=False)
    too_much = yamux.INITIAL_WINDOW + 1
    wire = yamux.encode(FrameType.DATA, Flag.SYN, 1, too_much, b"y" * too_much)
    with pytest.raises(yamux.ProtocolError, match="exceed the window"):
        plugin.receive(wire)
    assert frames(plugin.data_to_send())[-1] == (
        FrameType.GO_AWAY,
        0,
        0,
        yamux.GoAwayCode.PROTOCOL_ERROR,
        b"",
    )


@pytest.mark.parametrize(
    ("wire", "reason"),
    [
        (b"\x01" + b"\x00" * 11, "unsupported yamux version 1"),
        (yamux.HEADER.pack(0, 9, 0, 0, 0), "unknown yamux frame type 9"),
        (yamux.encode(FrameType.WINDOW_UPDATE, Flag.SYN, 2, 0), "that id is ours to open"),
        (yamux.encode(FrameType.WINDOW_UPDATE, Flag.SYN, 0, 0), "0 or already open"),
    ],
)
def test_protocol_errors_name_the_cause(wire: bytes, reason: str) -> None:
    with pytest.raises(yamux.ProtocolError, match=reason):
        yamux.Session(client=False).receive(wire)


def test_ping_is_answered_with_its_value_and_frames_may_arrive_in_pieces() -> None:
    plugin = yamux.Session(client=False)
    wire = yamux.encode(FrameType.PING, Flag.SYN, 0, 0xCAFE)
    assert plugin.receive(wire[:5]) == []
    assert plugin.receive(wire[5:]) == []
    assert frames(plugin.data_to_send()) == [(FrameType.PING, Flag.ACK, 0, 0xCAFE, b"")]


def test_go_away_refuses_new_streams_both_ways() -> None:
    host, plugin = pair()
    plugin.go_away()
    assert relay(plugin, host) == [yamux.SessionEnded(yamux.GoAwayCode.NORMAL)]
    with pytest.raises(yamux.ProtocolError, match="going away"):
        host.open_stream()
    assert plugin.receive(yamux.encode(FrameType.WINDOW_UPDATE, Flag.SYN, 1, 0)) == []
    assert frames(plugin.data_to_send()) == [(FrameType.WINDOW_UPDATE, Flag.RST, 1, 0, b"")]


# -- the IO session over a real socket pair


def echo_server(stream: socket.socket) -> None:
    def serve() -> None:
        with stream:
            while chunk := stream.recv(65536):
                stream.sendall(chunk)

    threading.Thread(target=serve, daemon=True).start()


def test_sessions_carry_concurrent_streams_larger_than_the_window() -> None:
    a, b = socket.socketpair()
    payload = bytes(range(256)) * 4096  # 1 MiB: four windows
    with (
        muxsession.MuxSession(a, client=True).start() as host,
        muxsession.MuxSession(b, client=False, on_stream=echo_server).start(),
    ):
        streams = [host.open(timeout=5) for _ in range(3)]
        results: list[bytes] = []

        def exchange(stream: socket.socket) -> None:
            stream.settimeout(10)
            sender = threading.Thread(target=stream.sendall, args=(payload,))
            sender.start()
            got = bytearray()
            while len(got) < len(payload):
                chunk = stream.recv(65536)
                if not chunk:
                    break
                got += chunk
            sender.join(10)
            stream.shutdown(socket.SHUT_WR)
            assert stream.recv(1) == b""  # the echo side's FIN arrives as EOF
            stream.close()
            results.append(bytes(got))

        workers = [threading.Thread(target=exchange, args=(s,)) for s in streams]
        for w in workers:
            w.start()
        for w in workers:
            w.join(30)
        assert results == [payload] * 3


def test_peer_closing_the_connection_ends_streams_and_open_says_why() -> None:
    a, b = socket.socketpair()
    with muxsession.MuxSession(a, client=True).start() as host:
        stream = host.open(timeout=5)
        b.close()
        stream.settimeout(5)
        assert stream.recv(1) == b""
        stream.close()
        with pytest.raises(muxsession.MuxError, match=r"the peer (closed|reset) the connection"):
            host.open(timeout=5)
    assert (host.ended or "").startswith(("the peer closed the connection", "the peer reset"))


def test_a_stream_the_host_never_accepts_is_reset() -> None:
    a, b = socket.socketpair()
    with (
        muxsession.MuxSession(a, client=True).start(),
        muxsession.MuxSession(b, client=False).start() as plugin,
    ):
        stream = plugin.open(timeout=5)
        stream.settimeout(5)
        assert stream.recv(1) == b""  # reset: the socket end is closed
        stream.close()
