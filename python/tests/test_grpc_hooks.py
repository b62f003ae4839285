"""ClientConfig.grpc_options / ServeConfig.grpc_server_options: messages over gRPC's 4 MiB
default both ways, on the main and a brokered connection, on both TLS backends; and
interceptors on both sides (go-plugin's GRPCDialOptions and GRPCServer hook)."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from plugin_commands import python_cmd

pytestmark = pytest.mark.slow

SCHEMA = 5_243_162  # the provider schema of the issue: over 4 MiB (4_194_304)
BIG = [("grpc.max_receive_message_length", 64 << 20)]

# argv: "big" or "small" (the server's receive limit), then the plugin's TLS backend.
_PLUGIN = python_cmd(
    """
import sys, grpc, soup

BIG = [("grpc.max_receive_message_length", 64 << 20)]
SEEN = []

def echo_handler():
    echo = grpc.unary_unary_rpc_method_handler(lambda req, ctx: req + b"!")
    return grpc.method_handlers_generic_handler("t.Big", {"Echo": echo})

class Count(grpc.ServerInterceptor):
    def intercept_service(self, continuation, details):
        SEEN.append(details.method)
        return continuation(details)

def register(p):
    def open_brokered(req, ctx):
        sid = p.broker.next_id()
        p.broker.accept_and_serve(sid, lambda s: s.add_generic_rpc_handlers((echo_handler(),)))
        return str(sid).encode()
    seen = lambda req, ctx: ",".join(m for m in SEEN if m.startswith("/t.")).encode()
    control = grpc.method_handlers_generic_handler("t.Control", {
        "Open": grpc.unary_unary_rpc_method_handler(open_brokered),
        "Seen": grpc.unary_unary_rpc_method_handler(seen),
    })
    p.server.add_generic_rpc_handlers((echo_handler(), control))

config = soup.ServeConfig(
    plugins={1: [register]},
    tls=soup.TLSSettings(backend=sys.argv[2]),
    grpc_server_options=BIG if sys.argv[1] == "big" else [],
    grpc_server_interceptors=[Count()],
)
sys.exit(soup.serve(config))
"""
)


def _client(make_client: Any, server_limit: str, backend: str, **kwargs: Any) -> Any:
    command = f"{_PLUGIN} {server_limit} {backend}"
    client = make_client(command, tls_backend=backend, **kwargs)
    client.start()
    assert client.tls.backend == backend
    return client


def _echo(channel: grpc.Channel) -> bytes:
    return bytes(channel.unary_unary("/t.Big/Echo")(b"s" * SCHEMA, timeout=30))


def _brokered(client: Any) -> grpc.Channel:
    service_id = int(client.channel.unary_unary("/t.Control/Open")(b"", timeout=10))
    return client.broker.dial(service_id)


@pytest.mark.parametrize("backend", ["native", "openssl"])
def test_messages_over_4_mib_both_ways_main_and_brokered(make_client: Any, backend: str) -> None:
    client = _client(make_client, "big", backend, grpc_options=BIG)
    assert len(_echo(client.channel)) == SCHEMA + 1  # host->plugin and plugin->host
    with _brokered(client) as channel:
        assert len(_echo(channel)) == SCHEMA + 1
    assert client.kill() is True


@pytest.mark.parametrize("backend", ["native", "openssl"])
def test_without_the_hosts_option_the_reply_is_refused(make_client: Any, backend: str) -> None:
    client = _client(make_client, "big", backend)
    for channel in (client.channel, _brokered(client)):
        with pytest.raises(grpc.RpcError) as err:
            _echo(channel)
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED  # type: ignore[attr-defined]
        assert f"Received message larger than max ({SCHEMA + 1} vs. 4194304)" in str(
            err.value.details()  # type: ignore[attr-defined]
        )
    assert client.kill() is True


@pytest.mark.parametrize("backend", ["native", "openssl"])
def test_without_the_plugins_option_the_request_is_refused(make_client: Any, backend: str) -> None:
    client = _client(make_client, "small", backend, grpc_options=BIG)
    for channel in (client.channel, _brokered(client)):
        with pytest.raises(grpc.RpcError) as err:
            _echo(channel)
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED  # type: ignore[attr-defined]
        assert f"({SCHEMA} vs. 4194304)" in str(err.value.details())  # type: ignore[attr-defined]
    assert client.kill() is True


class _Tag(grpc.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    def __init__(self) -> None:
        self.methods: list[str] = []

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        self.methods.append(details.method)
        return continuation(details, request)


def test_interceptors_on_both_sides_main_and_brokered(make_client: Any) -> None:
    tag = _Tag()
    client = _client(make_client, "small", "native", grpc_interceptors=[tag])
    assert client.channel.unary_unary("/t.Big/Echo")(b"a", timeout=10) == b"a!"
    with _brokered(client) as channel:
        assert channel.unary_unary("/t.Big/Echo")(b"b", timeout=10) == b"b!"
    seen = client.channel.unary_unary("/t.Control/Seen")(b"", timeout=10).decode()
    assert seen.split(",") == ["/t.Big/Echo", "/t.Control/Open", "/t.Big/Echo", "/t.Control/Seen"]
    assert tag.methods[-4:] == ["/t.Big/Echo", "/t.Control/Open", "/t.Big/Echo", "/t.Control/Seen"]
    assert client.kill() is True
