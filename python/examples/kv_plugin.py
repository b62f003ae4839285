"""A plugin with its own implementation of soup's KV service (proto/kv.proto), in memory,
under its own magic cookie: any host that speaks proto.KV can use it, e.g.

    soup-go rpc client test --magic-cookie-key KV_PLUGIN --magic-cookie-value python \\
        --server 'python kv_plugin.py'
"""

import sys
import threading

import grpc

import soup
from soup.lab.demopb import kv_pb2, kv_pb2_grpc


class MemoryKV(kv_pb2_grpc.KVServicer):
    def __init__(self) -> None:
        self.values: dict[str, bytes] = {}
        self.lock = threading.Lock()

    def Put(self, request: kv_pb2.PutRequest, context: grpc.ServicerContext) -> kv_pb2.Empty:
        if not request.key:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "key must not be empty")
        with self.lock:
            self.values[request.key] = request.value
        return kv_pb2.Empty()

    def Get(self, request: kv_pb2.GetRequest, context: grpc.ServicerContext) -> kv_pb2.GetResponse:
        with self.lock:
            value = self.values.get(request.key)
        if value is None:
            context.abort(grpc.StatusCode.NOT_FOUND, "key not found")
        return kv_pb2.GetResponse(value=value)


def register(plugin: soup.ServeContext) -> None:
    kv_pb2_grpc.add_KVServicer_to_server(MemoryKV(), plugin.server)


if __name__ == "__main__":
    handshake = soup.HandshakeConfig(cookie_key="KV_PLUGIN", cookie_value="python")
    config = soup.ServeConfig(handshake=handshake, plugins={1: [register]}, require_tls=True)
    sys.exit(soup.serve(config))
