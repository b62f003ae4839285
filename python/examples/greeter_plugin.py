"""A go-plugin plugin in Python: a Greeter service in app protocol versions 1 and 2.

The service uses grpc's generic handlers (raw bytes in and out), so this example needs
no generated code; with your own .proto you would call ``add_GreeterServicer_to_server``
from the code grpcio-tools generated for it instead.
"""

from __future__ import annotations

import logging
import sys

import grpc

import soup

HANDSHAKE = soup.HandshakeConfig(
    cookie_key="GREETER_PLUGIN", cookie_value="hi", app_versions=(1, 2)
)
log = logging.getLogger("greeter")  # reaches the host as hclog, like every logger


def greeter(greeting: str) -> grpc.GenericRpcHandler[bytes, bytes]:
    def greet(name: bytes, context: grpc.ServicerContext) -> bytes:
        log.info("greeting", extra={"who": name.decode()})
        return f"{greeting}, {name.decode()}!".encode()

    handler = grpc.unary_unary_rpc_method_handler(greet)
    return grpc.method_handlers_generic_handler("greeter.Greeter", {"Greet": handler})


def serve_v1(plugin: soup.ServeContext) -> None:
    plugin.server.add_generic_rpc_handlers((greeter("Hello"),))


def serve_v2(plugin: soup.ServeContext) -> None:
    plugin.server.add_generic_rpc_handlers((greeter("Hello again"),))


if __name__ == "__main__":
    config = soup.ServeConfig(handshake=HANDSHAKE, plugins={1: [serve_v1], 2: [serve_v2]})
    sys.exit(soup.serve(config))
