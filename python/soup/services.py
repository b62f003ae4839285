"""Plugin side: the services every go-plugin plugin serves besides the user's own.

``grpc.health.v1.Health`` (service ``plugin`` SERVING), ``plugin.GRPCController``
(Shutdown), ``plugin.GRPCStdio`` (``soup.stdio``) and ``plugin.GRPCBroker``. They are
plain (thread) servicers; an asyncio server runs them on its migration thread pool.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from soup import pb
from soup.listen import ServerTLS
from soup.stdio import POLL, StdioHub

__all__ = ["Internal", "rpc_active"]


def rpc_active(context: Any) -> bool:
    """True while the RPC runs: grpc's ``is_active()``, or ``not done()`` under grpc.aio."""
    is_active = getattr(context, "is_active", None)
    if is_active is not None:
        return bool(is_active())
    return not context.done()


class _Controller(pb.grpc_controller_pb2_grpc.GRPCControllerServicer):
    def __init__(self, stop: Callable[[str], None], log: logging.Logger) -> None:
        self._stop = stop
        self._log = log

    # /plugin.GRPCController/Shutdown
    def Shutdown(self, request: Any, context: grpc.ServicerContext) -> Any:
        self._log.info("shutdown requested by the host (GRPCController.Shutdown)")
        self._stop("GRPCController.Shutdown")
        return pb.grpc_controller_pb2.Empty()


class _DrainingBroker:
    """Accepts the host's broker stream and drains it (no broker callbacks)."""

    def __init__(self, stopping: threading.Event, log: logging.Logger) -> None:
        self._stopping = stopping
        self._log = log

    # /plugin.GRPCBroker/StartStream
    def StartStream(
        self, request_iterator: Iterator[Any], context: grpc.ServicerContext
    ) -> Iterator[Any]:
        self._log.info(
            "host opened the GRPCBroker stream; soup does not support broker callbacks: "
            "ConnInfo messages are drained and ignored"
        )

        def drain() -> None:
            try:
                for info in request_iterator:
                    self._log.warning(
                        "ignoring GRPCBroker ConnInfo (no broker support)",
                        extra={"service_id": int(info.service_id)},
                    )
            except Exception as exc:  # the RPC ended (cancelled or server stopping)
                self._log.debug("GRPCBroker stream ended", extra={"reason": str(exc)})

        threading.Thread(target=drain, name="soup-broker-drain", daemon=True).start()
        while not self._stopping.is_set() and rpc_active(context):
            self._stopping.wait(POLL)
        yield from ()


def _broker(
    server_tls: ServerTLS | None,
    env: Mapping[str, str],
    stopping: threading.Event,
    log: logging.Logger,
) -> Any:
    """The GRPCBroker servicer; also what user code gets as ``ServeContext.broker``.

    The seam for ``soup.broker``: it has the plugin's TLS material and backend
    (``server_tls``, None for plaintext) and the host's environment (socket directory).
    """
    return _DrainingBroker(stopping, log)


class Internal:
    """Registers health, controller, stdio and broker on ``server``; stops their streams."""

    def __init__(
        self,
        server: Any,
        *,
        stop: Callable[[str], None],
        server_tls: ServerTLS | None,
        env: Mapping[str, str],
        log: logging.Logger,
    ) -> None:
        self.stopping = threading.Event()
        self.hub = StdioHub()
        self.health = health.HealthServicer()
        for name in ("plugin", ""):
            self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        pb.grpc_controller_pb2_grpc.add_GRPCControllerServicer_to_server(
            _Controller(stop, log), server
        )
        pb.grpc_stdio_pb2_grpc.add_GRPCStdioServicer_to_server(self.hub, server)
        self.broker = _broker(server_tls, env, self.stopping, log)
        pb.grpc_broker_pb2_grpc.add_GRPCBrokerServicer_to_server(self.broker, server)

    def begin_stop(self) -> None:
        """End the long-lived streams and report NOT_SERVING before the server stops."""
        self.stopping.set()
        self.hub.close()
        self.health.enter_graceful_shutdown()
