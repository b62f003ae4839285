"""The KV example service (``proto.KV``) over :class:`soup.kvstore.FileStore`."""

from __future__ import annotations

import logging

import grpc

from soup import pb
from soup.kvstore import FileStore, InvalidKeyError, KeyNotFoundError

__all__ = ["NOT_FOUND_MESSAGE", "KVServicer", "add_to_server"]

NOT_FOUND_MESSAGE = "key not found"

_LOG = logging.getLogger("soup.kv")


def _message(exc: BaseException, default: str) -> str:
    # KeyError's str() adds quotes: use the message argument itself.
    if exc.args and isinstance(exc.args[0], str):
        return exc.args[0]
    return str(exc) or default


class KVServicer(pb.kv_pb2_grpc.KVServicer):
    """``/proto.KV/Get`` and ``/proto.KV/Put``; errors map to gRPC status codes."""

    def __init__(self, store: FileStore) -> None:
        self.store = store

    def Put(self, request: pb.kv_pb2.PutRequest, context: grpc.ServicerContext) -> pb.kv_pb2.Empty:
        key: str = request.key
        try:
            self.store.put(key, bytes(request.value))
        except InvalidKeyError as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, _message(exc, "invalid key"))
        _LOG.debug("kv put", extra={"key": key, "bytes": len(request.value)})
        return pb.kv_pb2.Empty()

    def Get(
        self, request: pb.kv_pb2.GetRequest, context: grpc.ServicerContext
    ) -> pb.kv_pb2.GetResponse:
        key: str = request.key
        try:
            value = self.store.get(key)
        except InvalidKeyError as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, _message(exc, "invalid key"))
        except KeyNotFoundError as exc:
            context.abort(grpc.StatusCode.NOT_FOUND, _message(exc, NOT_FOUND_MESSAGE))
        _LOG.debug("kv get", extra={"key": key, "bytes": len(value)})
        return pb.kv_pb2.GetResponse(value=value)


def add_to_server(store: FileStore, server: grpc.Server) -> KVServicer:
    """Register the KV service for ``store`` on ``server``."""
    servicer = KVServicer(store)
    pb.kv_pb2_grpc.add_KVServicer_to_server(servicer, server)
    return servicer
