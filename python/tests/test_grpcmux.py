"""soup.grpcmux: the plugin's main listener under PLUGIN_MULTIPLEX_GRPC, driven by a
real yamux client session (soup.muxsession) as go-plugin's host muxer would."""

from __future__ import annotations

import queue
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from soup.grpcmux import ServerMuxer
from soup.muxsession import MuxError, MuxSession

WAIT = 5.0


class Served:
    """What a Serve callback got: (socket, name), in order."""

    def __init__(self) -> None:
        self.got: queue.Queue[tuple[socket.socket, str]] = queue.Queue()

    def __call__(self, sock: socket.socket, name: str) -> None:
        self.got.put((sock, name))

    def next(self) -> tuple[socket.socket, str]:
        return self.got.get(timeout=WAIT)


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[tuple[ServerMuxer, Served, str]]:
    path = str(tmp_path / "plugin.sock")
    listen = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listen.bind(path)
    listen.listen(8)
    main = Served()
    mux = ServerMuxer(listen, main)
    mux.start()
    try:
        yield mux, main, path
    finally:
        mux.close()


def _host_session(path: str) -> MuxSession:
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.connect(path)
    return MuxSession(conn, client=True).start()


def _echo_once(host_end: socket.socket, plugin_end: socket.socket, data: bytes) -> bytes:
    host_end.sendall(data)
    plugin_end.settimeout(WAIT)
    return plugin_end.recv(len(data))


def test_streams_without_a_knock_go_to_the_main_server(
    listener: tuple[ServerMuxer, Served, str],
) -> None:
    _, main, path = listener
    with _host_session(path) as session:
        first, second = session.open(WAIT), session.open(WAIT)
        (a, name_a), (b, name_b) = main.next(), main.next()
        assert "yamux stream" in name_a
        assert "yamux stream" in name_b
        assert _echo_once(first, a, b"first") == b"first"
        assert _echo_once(second, b, b"second") == b"second"
        for sock in (first, second, a, b):
            sock.close()


def test_a_knock_sends_the_next_stream_only_to_its_service(
    listener: tuple[ServerMuxer, Served, str],
) -> None:
    mux, main, path = listener
    brokered = Served()
    assert mux.knocked(7) == "no listener for service id 7"  # go-plugin's ack error
    mux.expect(7, brokered)
    assert mux.knocked(7) == ""
    with _host_session(path) as session:
        knocked, after = session.open(WAIT), session.open(WAIT)
        to_seven, name = brokered.next()
        assert "service id 7" in name
        assert _echo_once(knocked, to_seven, b"callback") == b"callback"
        to_main, _ = main.next()  # the knock was used up by one stream
        assert _echo_once(after, to_main, b"main") == b"main"
        mux.forget(7)
        assert mux.knocked(7) == "no listener for service id 7"
        for sock in (knocked, after, to_seven, to_main):
            sock.close()


def test_the_plugin_opens_streams_to_the_host(
    listener: tuple[ServerMuxer, Served, str],
) -> None:
    mux, _, path = listener
    accepted: queue.Queue[socket.socket] = queue.Queue()
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.connect(path)
    with MuxSession(conn, client=True, on_stream=accepted.put).start():
        plugin_end = mux.open(WAIT)
        host_end = accepted.get(timeout=WAIT)
        assert _echo_once(plugin_end, host_end, b"dial") == b"dial"
        plugin_end.close()
        host_end.close()


def test_open_before_the_host_connected_names_what_it_waited_for(
    listener: tuple[ServerMuxer, Served, str],
) -> None:
    mux, _, _ = listener
    with pytest.raises(MuxError, match=r"no yamux session from the host within 0\.1 s"):
        mux.open(0.1)


def test_a_second_connection_is_served_as_one_plain_connection(
    listener: tuple[ServerMuxer, Served, str],
) -> None:
    """go-plugin leaves it in the backlog; soup serves it (same bridge, same mutual TLS)
    so that a certificate-policy probe gets its answer."""
    _, main, path = listener
    with _host_session(path):
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        probe.connect(path)
        served, name = main.next()
        assert name.startswith("connection (")
        assert _echo_once(probe, served, b"probe") == b"probe"
        probe.close()
        served.close()
