"""A fake plugin that serves AutoMTLS-style TLS but never asks for the host's certificate.

Test code only (loopback): it shows that a host's result says "plugin did not verify the
host's certificate" although every RPC works, which is the one-way TLS a plain RPC test
cannot see. It ignores PLUGIN_CLIENT_CERT on purpose; otherwise it is a normal KV plugin
(grpcio's own TLS, an ec-p256 certificate in the handshake, health and Shutdown).

Usage: python lax_plugin.py KV_DIR
"""

from __future__ import annotations

import sys
import threading
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from soup import certs, pb
from soup.handshake import Handshake, format_line
from soup.lab import kv
from soup.lab.kvstore import FileStore


class _Controller(pb.grpc_controller_pb2_grpc.GRPCControllerServicer):
    def __init__(self, stop: threading.Event) -> None:
        self.stop = stop

    def Shutdown(self, request: Any, context: grpc.ServicerContext) -> Any:
        self.stop.set()
        return pb.grpc_controller_pb2.Empty()


def main() -> None:
    own = certs.self_signed("ec-p256")
    stop = threading.Event()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    kv.add_to_server(FileStore(Path(sys.argv[1])), server)
    checker = health.HealthServicer()
    checker.set("plugin", health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(checker, server)
    pb.grpc_controller_pb2_grpc.add_GRPCControllerServicer_to_server(_Controller(stop), server)
    creds = grpc.ssl_server_credentials([(own.key_pem, own.cert_pem)], require_client_auth=False)
    port = server.add_secure_port("127.0.0.1:0", creds)
    server.start()
    line = Handshake(1, 1, "tcp", f"127.0.0.1:{port}", "grpc", server_cert_der=own.cert_der)
    sys.stdout.buffer.write(format_line(line))
    sys.stdout.flush()
    stop.wait(60)
    server.stop(0.5).wait(2)


if __name__ == "__main__":
    main()
