"""go-plugin's broker multiplexing through the SDK: a Python host with
``grpc_broker_multiplex`` and a Python plugin (one connection, a yamux session)."""

from __future__ import annotations

from typing import Any

import pytest
from plugin_commands import plugin_cmd, python_cmd

import soup
from soup.host import MULTIPLEX_WITH_REATTACH, MULTIPLEX_WITHOUT_TLS
from soup.lab import demopb
from soup.lab.counter import AddHelperServicer
from soup.reattach import ReattachConfig


def test_multiplexing_refuses_reattach_and_plaintext_at_once() -> None:
    reattach = ReattachConfig(network="unix", address="/nowhere", pid=1)
    with pytest.raises(ValueError) as refused:
        soup.ClientConfig(
            reattach=reattach, grpc_broker_multiplex=True, tls=soup.TLSSettings(mode="disabled")
        )
    assert str(refused.value) == MULTIPLEX_WITH_REATTACH  # go-plugin's words
    with pytest.raises(ValueError) as err:
        soup.ClientConfig(
            cmd=plugin_cmd(), grpc_broker_multiplex=True, tls=soup.TLSSettings(mode="disabled")
        )
    assert str(err.value) == MULTIPLEX_WITHOUT_TLS


# A plugin as old go-plugin releases print it: a valid AutoMTLS line, no field 7.
_NO_FIELD_7 = python_cmd(
    "import sys, time\n"
    "from soup import certs, handshake as h\n"
    "own = certs.self_signed('ec-p256')\n"
    "sys.stdout.write(h.format_line(h.Handshake(1, 1, 'unix', '/nowhere', 'grpc', own.cert_der)).decode())\n"
    "sys.stdout.flush()\n"
    "time.sleep(30)\n"
)


def test_a_plugin_without_field_7_is_refused_with_go_plugins_words(make_client: Any) -> None:
    client = make_client(_NO_FIELD_7, grpc_broker_multiplex=True)
    with pytest.raises(soup.HostError) as err:
        client.start()
    assert (
        "client requested gRPC broker multiplexing but plugin does not support the feature"
        in str(err.value)
    )
    assert "update the github.com/hashicorp/go-plugin dependency" in str(err.value)


def test_everything_runs_over_one_yamux_session(make_client: Any) -> None:
    """Main channel, a brokered server of the host's that the plugin calls, and a stream
    the host opens: all on the one connection; the plugin logs the session it accepted."""
    client = make_client(plugin_cmd(), grpc_broker_multiplex=True, tls_backend="native")
    client.start()
    assert client.handshake_info.multiplex is True
    assert client.tls.backend == "openssl"  # the streams go through the OpenSSL bridge
    assert client.health_check() == "SERVING"
    helper = AddHelperServicer()
    served = client.broker.accept_and_serve(client.broker.next_id(), helper.register)
    stub = demopb.counter_pb2_grpc.CounterStub(client.channel)
    try:
        for value in (5, 7):
            put = demopb.counter_pb2.CounterPutRequest(
                add_server=served.endpoint.service_id, key="k", value=value
            )
            total = stub.Put(put, timeout=10).total
        assert total == 12
        assert helper.calls == [(0, 5), (5, 7)]  # the plugin knocked, then dialled the host
    finally:
        served.stop()
    # the other way: the plugin serves an AddHelper; the host knocks and dials it
    adder = stub.OpenAdder(demopb.counter_pb2.OpenAdderRequest(), timeout=10).add_server
    with client.broker.dial(adder) as channel:
        summed = demopb.counter_pb2_grpc.AddHelperStub(channel).Sum(
            demopb.counter_pb2.SumRequest(a=20, b=22), timeout=10
        )
    assert summed.r == 42
    stream = client.open_stream(5.0)
    assert stream is not None
    stream.close()
    assert client.kill() is True


def test_a_plugin_told_to_use_native_tls_does_not_multiplex(make_client: Any) -> None:
    """Only the OpenSSL bridge carries yamux streams: a plugin whose TLS backend is pinned
    to grpcio's leaves field 7 out and says why; the multiplexing host refuses it."""
    client = make_client(plugin_cmd("--tls-backend", "native"), grpc_broker_multiplex=True)
    with pytest.raises(soup.HostError) as err:
        client.start()
    assert "plugin does not support the feature" in str(err.value)
    assert "soup multiplexes only over TLS on the openssl backend" in client.stderr_tail()
