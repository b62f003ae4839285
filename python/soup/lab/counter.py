"""The broker callback demo (``counter.Counter`` / ``counter.AddHelper``), plugin side.

Modelled on go-plugin's examples/bidirectional. The plugin's ``Counter.Put`` dials the
host's AddHelper through the broker (id from the request) and stores
``Sum(total, value)``; ``Counter.OpenAdder`` serves an AddHelper of the plugin's own
through the broker so the host can call into the plugin. ``rpc client callback-test``
(``soup.lab.callbacktest``, the host side in its own module so that a plugin imports no
host code) drives it and proves both directions.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

import grpc

from soup.broker import BrokeredServer, BrokerError, GRPCBroker
from soup.lab import demopb

if TYPE_CHECKING:
    from soup.plugin import Register, ServeContext

__all__ = ["AddHelperServicer", "CounterServicer", "service"]


class AddHelperServicer(demopb.counter_pb2_grpc.AddHelperServicer):
    """``/counter.AddHelper/Sum``; counts its calls (the proof a callback arrived)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.calls: list[tuple[int, int]] = []

    def Sum(self, request: Any, context: grpc.ServicerContext) -> Any:
        with self._lock:
            self.calls.append((int(request.a), int(request.b)))
        return demopb.counter_pb2.SumResponse(r=int(request.a) + int(request.b))

    def register(self, server: grpc.Server) -> None:
        demopb.counter_pb2_grpc.add_AddHelperServicer_to_server(self, server)


class CounterServicer(demopb.counter_pb2_grpc.CounterServicer):
    """``/counter.Counter``: totals in memory, sums computed by the peer's AddHelper."""

    def __init__(self, broker: GRPCBroker) -> None:
        self._broker = broker
        self._lock = threading.Lock()
        self._totals: dict[str, int] = {}
        self._adders: list[BrokeredServer] = []

    def Put(self, request: Any, context: grpc.ServicerContext) -> Any:
        key = str(request.key)
        with self._lock:
            current = self._totals.get(key, 0)
        try:
            with self._broker.dial(int(request.add_server)) as channel:
                stub = demopb.counter_pb2_grpc.AddHelperStub(channel)
                summed = stub.Sum(
                    demopb.counter_pb2.SumRequest(a=current, b=int(request.value)), timeout=5.0
                )
        except BrokerError as exc:
            context.abort(grpc.StatusCode.UNAVAILABLE, f"broker: {exc}")
        except grpc.RpcError as exc:
            context.abort(
                grpc.StatusCode.UNAVAILABLE,
                f"AddHelper.Sum on the host failed: {exc.code().name}: {exc.details()}",
            )
        total = int(summed.r)
        with self._lock:
            self._totals[key] = total
        return demopb.counter_pb2.CounterPutResponse(total=total)

    def Get(self, request: Any, context: grpc.ServicerContext) -> Any:
        with self._lock:
            return demopb.counter_pb2.CounterGetResponse(
                value=self._totals.get(str(request.key), 0)
            )

    def OpenAdder(self, request: Any, context: grpc.ServicerContext) -> Any:
        service_id = self._broker.next_id()
        try:
            served = self._broker.accept_and_serve(service_id, AddHelperServicer().register)
        except BrokerError as exc:
            context.abort(grpc.StatusCode.UNAVAILABLE, f"broker: {exc}")
        with self._lock:
            self._adders.append(served)
        return demopb.counter_pb2.OpenAdderResponse(add_server=service_id)


def service() -> Register:
    """A registration serving ``counter.Counter``; it calls back through the plugin's
    broker (``ServeContext.broker``, go-plugin's ``GRPCServer(broker, server)``)."""

    def register(context: ServeContext) -> None:
        servicer = CounterServicer(context.broker)
        demopb.counter_pb2_grpc.add_CounterServicer_to_server(servicer, context.server)

    return register
