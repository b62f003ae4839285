"""soup.broker: the pure parts, and a Python<->Python broker pair over real sockets.

The pair: a "plugin" broker serving StartStream on a plaintext unix socket (the test's
stand-in for the main connection) and a "host" broker opening it. Brokered connections
use mutual TLS with each side's own certificate and the other's pinned, on both backends
and both networks, in both directions; nothing (threads, sockets, dirs) is left after.
"""

from __future__ import annotations

import os
import socket
import ssl
import stat
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest

from soup import certs, pb, tls
from soup.broker import (
    BrokerError,
    BrokerServicer,
    BrokerTLS,
    Endpoint,
    GRPCBroker,
    PendingEndpoints,
    endpoint_of,
    next_service_id,
)
from soup.lab import demopb
from soup.lab.counter import AddHelperServicer

# --------------------------------------------------------------------------------------
# Pure parts


def test_endpoint_of_accepts_unix_and_tcp() -> None:
    assert endpoint_of(3, "unix", "/tmp/x", False) == Endpoint(3, "unix", "/tmp/x")
    assert endpoint_of(4, "tcp", "127.0.0.1:5", False).grpc_target == "127.0.0.1:5"
    assert Endpoint(3, "unix", "/tmp/x").grpc_target == "unix:/tmp/x"


@pytest.mark.parametrize(
    ("network", "address", "knock", "reason"),
    [
        ("unix", "/tmp/x", True, "multiplexing knock, but this connection does not multiplex"),
        ("udp", "127.0.0.1:5", False, "unknown network 'udp'"),
        ("tcp", "", False, "empty address"),
    ],
)
def test_endpoint_of_refuses_what_is_no_endpoint(
    network: str, address: str, knock: bool, reason: str
) -> None:
    with pytest.raises(BrokerError, match=reason):
        endpoint_of(7, network, address, knock)


def test_pending_keeps_one_endpoint_per_id_until_taken() -> None:
    pending = PendingEndpoints(ttl=5.0)
    first, second = Endpoint(1, "unix", "/a"), Endpoint(1, "unix", "/b")
    assert pending.offer(first, now=0.0)
    assert not pending.offer(second, now=1.0)  # dropped, like go-plugin's 1-slot channel
    assert pending.take(2, now=1.0) is None
    assert pending.take(1, now=1.0) == first
    assert pending.take(1, now=1.0) is None
    assert pending.offer(second, now=2.0)


def test_pending_drops_what_nobody_dialed_within_the_ttl() -> None:
    pending = PendingEndpoints(ttl=5.0)
    pending.offer(Endpoint(1, "unix", "/a"), now=0.0)
    pending.offer(Endpoint(2, "unix", "/b"), now=3.0)
    assert pending.expire(now=4.9) == []
    assert pending.expire(now=5.0) == [Endpoint(1, "unix", "/a")]
    assert pending.take(2, now=8.1) is None
    assert len(pending) == 0


def test_service_ids_are_uint32_and_never_zero() -> None:
    assert next_service_id(0) == 1
    assert next_service_id(41) == 42
    assert next_service_id(0xFFFFFFFF) == 1


# --------------------------------------------------------------------------------------
# A broker pair over real sockets

_THREADS = ("soup-brokered", "soup-broker-stream", "soup-bridge")


@dataclass
class Pair:
    host: GRPCBroker
    plugin: GRPCBroker
    host_own: certs.CertKey
    plugin_own: certs.CertKey


def _threads_left() -> list[str]:
    deadline = time.monotonic() + 5.0
    while True:
        left = [t.name for t in threading.enumerate() if t.name.startswith(_THREADS)]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.05)


@pytest.fixture
def make_pair(tmp_path: Path) -> Iterator[Any]:
    made: list[tuple[Pair, grpc.Server, grpc.Channel]] = []

    def make(
        backend: str | None,
        network: str,
        host_key: str = "ec-p256",
        plugin_key: str = "ec-p256",
        socket_group: int | None = None,
    ) -> Pair:
        host_own, plugin_own = certs.self_signed(host_key), certs.self_signed(plugin_key)
        host_tls = plugin_tls = None
        if backend is not None:
            host_tls = BrokerTLS(host_own, plugin_own.cert_pem, backend)
            plugin_tls = BrokerTLS(plugin_own, host_own.cert_pem, backend)
        parent = tmp_path / f"p{len(made)}"
        parent.mkdir()
        plugin = GRPCBroker(
            tls=plugin_tls, network=network, socket_parent=parent, socket_group=socket_group
        )
        host = GRPCBroker(tls=host_tls, network=network)
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        pb.grpc_broker_pb2_grpc.add_GRPCBrokerServicer_to_server(BrokerServicer(plugin), server)
        main = tmp_path / f"main{len(made)}.sock"
        assert server.add_insecure_port(f"unix:{main}")
        server.start()
        channel = grpc.insecure_channel(f"unix:{main}")
        host._open_stream(channel)
        pair = Pair(host, plugin, host_own, plugin_own)
        made.append((pair, server, channel))
        return pair

    yield make
    for pair, server, channel in made:
        pair.host.close()
        pair.plugin.close()
        channel.close()
        server.stop(0).wait(5.0)
    assert _threads_left() == []
    # The plugin brokers' socket parents are empty again: their private dirs are gone.
    left = [p for d in tmp_path.iterdir() if d.is_dir() for p in d.iterdir()]
    assert left == [], f"left behind: {left}"


def _sum_via(listener: GRPCBroker, dialer: GRPCBroker, a: int, b: int) -> tuple[int, list[Any]]:
    helper = AddHelperServicer()
    service_id = listener.next_id()
    served = listener.accept_and_serve(service_id, helper.register)
    try:
        with dialer.dial(service_id) as channel:
            stub = demopb.counter_pb2_grpc.AddHelperStub(channel)
            r = int(stub.Sum(demopb.counter_pb2.SumRequest(a=a, b=b), timeout=10.0).r)
    finally:
        served.stop()
    assert served.stopped
    return r, helper.calls


BACKENDS = [
    pytest.param("native", "ec-p256", "ec-p384", id="native"),
    pytest.param("openssl", "ed25519", "ec-p521", id="openssl"),
    pytest.param(None, "ec-p256", "ec-p256", id="plaintext"),
]


@pytest.mark.parametrize("network", ["unix", "tcp"])
@pytest.mark.parametrize(("backend", "host_key", "plugin_key"), BACKENDS)
def test_callbacks_cross_the_broker_both_ways(
    make_pair: Any, backend: str | None, host_key: str, plugin_key: str, network: str
) -> None:
    pair = make_pair(backend, network, host_key, plugin_key)
    assert _sum_via(pair.host, pair.plugin, 2, 3) == (5, [(2, 3)])  # plugin calls host
    assert _sum_via(pair.plugin, pair.host, 40, 2) == (42, [(40, 2)])  # host calls plugin


def _answer_without_client_cert(served: Any, trusted_pem: bytes) -> bytes | str:
    """What a TLS client with no certificate gets: the bytes read, or the TLS error."""
    host, _, port = served.endpoint.address.rpartition(":")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # trusts the server, has no own cert
    context.load_verify_locations(cadata=trusted_pem.decode())
    context.set_alpn_protocols(["h2"])
    with (
        socket.create_connection((host, int(port)), timeout=5.0) as raw,
        context.wrap_socket(raw, server_hostname=tls.SERVER_NAME) as conn,
    ):
        try:
            conn.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
            return conn.recv(1)  # TLS 1.3: the server's verdict on our cert arrives here
        except ssl.SSLError as exc:
            return str(exc)


@pytest.mark.parametrize("backend", ["native", "openssl", None])
def test_unix_sockets_are_shared_with_the_socket_group(make_pair: Any, backend: str | None) -> None:
    # go-plugin's broker listens like its main listener: PLUGIN_UNIX_SOCKET_GROUP's gid
    # may connect. The directory lets the group in without listing it; the bridge's
    # plaintext backend sockets stay in a directory of ours alone.
    pair = make_pair(backend, "unix", socket_group=os.getgid())
    service_id = pair.plugin.next_id()
    served = pair.plugin.accept_and_serve(service_id, AddHelperServicer().register)
    try:
        path = Path(served.endpoint.address)
        assert (stat.S_IMODE(path.stat().st_mode), path.stat().st_gid) == (0o660, os.getgid())
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o710
        others = [(p.name, stat.S_IMODE(p.stat().st_mode)) for p in path.parent.iterdir()]
        assert sorted(others) == sorted(
            [(path.name, 0o660)] + ([("backends", 0o700)] if backend == "openssl" else [])
        )
        with pair.host.dial(service_id) as channel:
            stub = demopb.counter_pb2_grpc.AddHelperStub(channel)
            assert stub.Sum(demopb.counter_pb2.SumRequest(a=2, b=3), timeout=10.0).r == 5
    finally:
        served.stop()


@pytest.mark.parametrize(
    ("backend", "refusal"),
    [
        # BoringSSL (grpcio) drops the connection without an alert ...
        pytest.param("native", b"", id="native"),
        # ... OpenSSL sends TLS 1.3's certificate_required alert.
        pytest.param("openssl", "certificate required", id="openssl"),
    ],
)
def test_a_brokered_listener_requires_the_peers_certificate(
    make_pair: Any, backend: str, refusal: bytes | str
) -> None:
    pair = make_pair(backend, "tcp")
    served = pair.host.accept_and_serve(pair.host.next_id(), AddHelperServicer().register)
    answer = _answer_without_client_cert(served, pair.host_own.cert_pem)
    if isinstance(refusal, str):
        assert isinstance(answer, str)
        assert refusal in answer
    else:
        assert answer == refusal, "a client without a certificate got an answer"


def test_dial_waits_at_most_its_timeout_and_says_for_what(make_pair: Any) -> None:
    pair = make_pair("native", "unix")
    with pytest.raises(BrokerError, match=r"timeout after 0\.3 s waiting for the peer's ConnInfo"):
        pair.plugin.dial(99, timeout=0.3)


def test_a_closed_stream_fails_dial_at_once(make_pair: Any) -> None:
    pair = make_pair("native", "unix")
    assert _sum_via(pair.host, pair.plugin, 1, 1)[0] == 2  # the stream is up on both sides
    pair.host.close()
    _wait_for_end(pair.plugin)
    with pytest.raises(BrokerError, match="the GRPCBroker stream ended"):  # not a timeout
        pair.plugin.dial(5, timeout=4.0)
    with pytest.raises(BrokerError, match="the GRPCBroker stream ended"):
        pair.plugin.accept_and_serve(6, AddHelperServicer().register)
    with pytest.raises(BrokerError, match="broker is closed"):
        pair.host.dial(5)
    with pytest.raises(BrokerError, match="broker is closed"):
        pair.host.accept_and_serve(1, AddHelperServicer().register)


def _wait_for(condition: Any, what: str, within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, f"waited {within} s for {what}"
        time.sleep(0.02)


def _wait_for_end(broker: GRPCBroker) -> None:
    _wait_for(lambda: broker._stream_ended is not None, "the plugin side to see the stream end")


def test_only_one_stream_at_a_time(make_pair: Any, tmp_path: Path) -> None:
    pair = make_pair(None, "unix")
    # open_stream returns before the plugin side has the host's stream: a second stream
    # sent now could be the one accepted (and then stay open, unanswered)
    _wait_for(lambda: pair.plugin._stream_open, "the plugin side to accept the host's stream")
    channel = grpc.insecure_channel(f"unix:{tmp_path / 'main0.sock'}")
    try:
        call = pb.grpc_broker_pb2_grpc.GRPCBrokerStub(channel).StartStream(iter(()), timeout=10)
        with pytest.raises(grpc.RpcError) as caught:
            next(iter(call))
        assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "already open" in str(caught.value.details())
    finally:
        channel.close()


def test_a_knock_is_ignored_with_a_warning(
    make_pair: Any, caplog: pytest.LogCaptureFixture
) -> None:
    pair = make_pair(None, "unix")
    knock = pb.grpc_broker_pb2.ConnInfo(
        service_id=8, knock=pb.grpc_broker_pb2.ConnInfo.Knock(knock=True)
    )
    with caplog.at_level("WARNING", logger="soup.broker"):
        pair.plugin._received(knock)
    assert "connection does not multiplex" in caplog.text
    with pytest.raises(BrokerError, match="timeout"):
        pair.plugin.dial(8, timeout=0.2)


class FakeMux:
    """The part of soup.muxlisten.MuxListener the broker uses, recording what it asked."""

    def __init__(self, ack_error: str = "") -> None:
        self.ack_error = ack_error
        self.knocked_ids: list[int] = []
        self.opened: list[socket.socket] = []

    def knocked(self, service_id: int) -> str:
        self.knocked_ids.append(service_id)
        return self.ack_error

    def open(self, timeout: float) -> socket.socket:
        ours, theirs = socket.socketpair()
        theirs.close()
        self.opened.append(ours)
        return ours

    def expect(self, service_id: int, serve: Any) -> None: ...

    def forget(self, service_id: int) -> None: ...


def _muxed_broker(mux: FakeMux) -> GRPCBroker:
    own, peer = certs.self_signed("ec-p256"), certs.self_signed("ec-p256")
    broker = GRPCBroker(tls=BrokerTLS(own, peer.cert_pem, "openssl"))
    broker.multiplex_over(mux)  # type: ignore[arg-type]
    return broker


def _knock(service_id: int, *, ack: bool, error: str = "") -> Any:
    return pb.grpc_broker_pb2.ConnInfo(
        service_id=service_id,
        knock=pb.grpc_broker_pb2.ConnInfo.Knock(knock=True, ack=ack, error=error),
    )


def _sent(broker: GRPCBroker) -> Any:
    return broker._outgoing.get(timeout=5.0)


def test_multiplexing_needs_tls_on_the_openssl_backend() -> None:
    own = certs.self_signed("ec-p256")
    for tls_material in (None, BrokerTLS(own, own.cert_pem, "native")):
        with pytest.raises(BrokerError, match="needs TLS on the OpenSSL backend"):
            GRPCBroker(tls=tls_material).multiplex_over(FakeMux())  # type: ignore[arg-type]


@pytest.mark.parametrize("error", ["", "no listener for service id 4"])
def test_a_knock_is_acknowledged_with_the_listeners_answer(error: str) -> None:
    """go-plugin's listenForKnocks: the ack carries knock=true, ack=true and the error."""
    mux = FakeMux(ack_error=error)
    broker = _muxed_broker(mux)
    try:
        broker._received(_knock(4, ack=False))
        ack = _sent(broker)
        assert mux.knocked_ids == [4]
        assert (ack.service_id, ack.knock.knock, ack.knock.ack, ack.knock.error) == (
            4, True, True, error,
        )  # fmt: skip
        assert not ack.network
        assert not ack.address
    finally:
        broker.close()


def test_a_dial_knocks_waits_for_the_ack_then_opens_a_stream() -> None:
    mux = FakeMux()
    broker = _muxed_broker(mux)
    try:
        answer = threading.Timer(0.05, lambda: broker._received(_knock(9, ack=True)))
        answer.start()
        stream = broker._knock_and_open(9, 5.0)
        answer.join()
        sent = _sent(broker)
        assert (sent.service_id, sent.knock.knock, sent.knock.ack) == (9, True, False)
        assert mux.opened == [stream]
        stream.close()
    finally:
        broker.close()


def test_a_refused_knock_fails_the_dial_with_the_peers_reason() -> None:
    mux = FakeMux()
    broker = _muxed_broker(mux)
    try:
        threading.Timer(
            0.05, lambda: broker._received(_knock(3, ack=True, error="no listener for id 3"))
        ).start()
        with pytest.raises(
            BrokerError, match="failed to knock for service id 3: no listener for id 3"
        ):
            broker._knock_and_open(3, 5.0)
        assert mux.opened == []
    finally:
        broker.close()


def test_an_unanswered_knock_fails_the_dial_naming_the_wait() -> None:
    mux = FakeMux()
    broker = _muxed_broker(mux)
    try:
        with pytest.raises(
            BrokerError, match=r"no acknowledgement of the knock for service id 5 within 0\.1 s"
        ):
            broker._knock_and_open(5, 0.1)
        assert mux.opened == []
    finally:
        broker.close()
