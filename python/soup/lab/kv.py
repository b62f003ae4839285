"""The KV example service (``proto.KV``) over :class:`soup.lab.kvstore.FileStore`: the servicer
the CLI's ``rpc server-start`` serves, and the client the CLI's host commands call."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc

from soup.errors import HostError
from soup.lab import demopb
from soup.lab.kvstore import NOT_FOUND_MESSAGE, FileStore, InvalidKeyError, KeyNotFoundError
from soup.logs import TRACE

if TYPE_CHECKING:
    from soup.plugin import Register, ServeContext

__all__ = ["KVClient", "KVServicer", "add_to_server", "service"]

_LOG = logging.getLogger("soup.lab.kv")


def _message(exc: BaseException, default: str) -> str:
    # KeyError's str() adds quotes: use the message argument itself.
    if exc.args and isinstance(exc.args[0], str):
        return exc.args[0]
    return str(exc) or default


class KVServicer(demopb.kv_pb2_grpc.KVServicer):
    """``/proto.KV/Get`` and ``/proto.KV/Put``; errors map to gRPC status codes."""

    def __init__(self, store: FileStore) -> None:
        self.store = store

    def Put(
        self, request: demopb.kv_pb2.PutRequest, context: grpc.ServicerContext
    ) -> demopb.kv_pb2.Empty:
        key: str = request.key
        try:
            self.store.put(key, bytes(request.value))
        except InvalidKeyError as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, _message(exc, "invalid key"))
        if _LOG.isEnabledFor(TRACE):  # per call: no record, no dict unless asked for
            _LOG.log(TRACE, "kv put", extra={"key": key, "bytes": len(request.value)})
        return demopb.kv_pb2.Empty()

    def Get(
        self, request: demopb.kv_pb2.GetRequest, context: grpc.ServicerContext
    ) -> demopb.kv_pb2.GetResponse:
        key: str = request.key
        try:
            value = self.store.get(key)
        except InvalidKeyError as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, _message(exc, "invalid key"))
        except KeyNotFoundError as exc:
            context.abort(grpc.StatusCode.NOT_FOUND, _message(exc, NOT_FOUND_MESSAGE))
        if _LOG.isEnabledFor(TRACE):
            _LOG.log(TRACE, "kv get", extra={"key": key, "bytes": len(value)})
        return demopb.kv_pb2.GetResponse(value=value)


def add_to_server(store: FileStore, server: grpc.Server) -> KVServicer:
    """Register the KV service for ``store`` on ``server``."""
    servicer = KVServicer(store)
    demopb.kv_pb2_grpc.add_KVServicer_to_server(servicer, server)
    return servicer


def service(kv_dir: Path | None) -> Register:
    """A registration serving KV from ``kv_dir`` (None: a private directory removed at exit)."""

    def register(context: ServeContext) -> None:
        directory = kv_dir if kv_dir is not None else context.temp_dir("soup-kv-")
        add_to_server(FileStore(directory), context.server)
        context.logger.debug("kv store", extra={"kv_dir": str(directory)})

    return register


class KVClient:
    """Put/Get on a plugin's channel; a failed call is a :class:`HostError` (its cause the
    ``grpc.RpcError``, see ``soup.host.rpc_code``)."""

    def __init__(self, channel: grpc.Channel, timeout: float = 5.0) -> None:
        self._stub = demopb.kv_pb2_grpc.KVStub(channel)
        self._timeout = timeout

    def put(self, key: str, value: bytes) -> None:
        self._call(self._stub.Put, demopb.kv_pb2.PutRequest(key=key, value=value))

    def get(self, key: str) -> bytes:
        return bytes(self._call(self._stub.Get, demopb.kv_pb2.GetRequest(key=key)).value)

    def _call(self, method: Any, request: Any) -> Any:
        try:
            return method(request, timeout=self._timeout)
        except grpc.RpcError as exc:
            # Host code: the plugin serving this module's servicer does not import it.
            from soup.connect import rpc_detail  # noqa: PLC0415

            raise HostError(rpc_detail(exc)) from exc
