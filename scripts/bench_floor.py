"""The bench's floor: the least a Python go-plugin plugin on grpcio can be.

The KV service of proto/kv.proto over an in-memory dict, plaintext HTTP/2 on a unix
socket (in ``--dir``, which the bench removes), no TLS, no logging, no health, stdio
or broker services, and the go-plugin handshake line written by hand. Whatever a host
measures against it is the price of grpcio itself; soup's own plugin is compared with
it. GRPCController.Shutdown is served only so that the host's Kill ends it at once
(it is not on the per-call path). Benchmark use only.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
from concurrent import futures
from typing import Any

import grpc

from soup import pb


class _Store(pb.kv_pb2_grpc.KVServicer):
    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}

    def Put(self, request: Any, context: Any) -> Any:
        self.data[request.key] = request.value
        return pb.kv_pb2.Empty()

    def Get(self, request: Any, context: Any) -> Any:
        return pb.kv_pb2.GetResponse(value=self.data.get(request.key, b""))


class _Controller(pb.grpc_controller_pb2_grpc.GRPCControllerServicer):
    def __init__(self, server: grpc.Server) -> None:
        self.server = server

    def Shutdown(self, request: Any, context: Any) -> Any:
        threading.Thread(target=self.server.stop, args=(0.5,)).start()
        return pb.empty_pb2.Empty()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--dir", required=True, help="existing private directory for the socket")
    args = parser.parse_args()
    if os.environ.get("BASIC_PLUGIN") != "hello":
        sys.exit("bench_floor: start me from a go-plugin host (magic cookie missing)")
    path = os.path.join(args.dir, f"floor-{os.getpid()}.sock")
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=32))
    pb.kv_pb2_grpc.add_KVServicer_to_server(_Store(), server)
    pb.grpc_controller_pb2_grpc.add_GRPCControllerServicer_to_server(_Controller(server), server)
    server.add_insecure_port("unix:" + path)
    server.start()
    sys.stdout.write(f"1|1|unix|{path}|grpc|\n")
    sys.stdout.flush()
    server.wait_for_termination()


if __name__ == "__main__":
    main()
