"""A plugin on soup's public API whose Put prints to stdout and stderr and logs at info and
warn, for the test that a real go-plugin host (soup-go) shows both (test_examples.py)."""

import logging
import sys

import grpc

import soup
from soup.lab.demopb import kv_pb2, kv_pb2_grpc

LOG = logging.getLogger("app.kv")


class ChattyKV(kv_pb2_grpc.KVServicer):
    def Put(self, request: kv_pb2.PutRequest, context: grpc.ServicerContext) -> kv_pb2.Empty:
        print(f"stdout line for {request.key}", flush=True)
        print(f"stderr line for {request.key}", file=sys.stderr, flush=True)
        LOG.info("info from the plugin", extra={"key": request.key})
        LOG.warning("warn from the plugin", extra={"key": request.key, "size": len(request.value)})
        return kv_pb2.Empty()

    def Get(self, request: kv_pb2.GetRequest, context: grpc.ServicerContext) -> kv_pb2.GetResponse:
        context.abort(grpc.StatusCode.NOT_FOUND, "key not found")  # it stores nothing


def register(plugin: soup.ServeContext) -> None:
    kv_pb2_grpc.add_KVServicer_to_server(ChattyKV(), plugin.server)


if __name__ == "__main__":
    sys.exit(soup.serve(soup.ServeConfig(plugins={1: [register]}, require_tls=True)))
