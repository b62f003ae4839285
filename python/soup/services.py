"""Plugin side: the services every go-plugin plugin serves besides the user's own.

``grpc.health.v1.Health`` (service ``plugin`` SERVING), ``plugin.GRPCController``
(Shutdown), ``plugin.GRPCStdio`` (``soup.stdio``) and ``plugin.GRPCBroker``
(``soup.broker``). They are plain (thread) servicers; an asyncio server runs them on
its migration thread pool.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from soup import pb
from soup.broker import BrokerServicer, BrokerTLS, GRPCBroker
from soup.grpchooks import GRPCHooks
from soup.handshake import ENV_UNIX_SOCKET_DIR
from soup.listen import ServerTLS
from soup.stdio import StdioHub

__all__ = ["Internal"]


_STDIO_DRAIN = 1.0  # seconds Shutdown waits for GRPCStdio to send what was printed


class _Controller(pb.grpc_controller_pb2_grpc.GRPCControllerServicer):
    def __init__(self, stop: Callable[[str], None], hub: StdioHub, log: logging.Logger) -> None:
        self._stop = stop
        self._hub = hub
        self._log = log

    # /plugin.GRPCController/Shutdown
    def Shutdown(self, request: Any, context: grpc.ServicerContext) -> Any:
        self._log.info("shutdown requested by the host (GRPCController.Shutdown)")
        # go-plugin's host closes the connection as soon as Shutdown returns: output still
        # queued for GRPCStdio then would be lost, so it goes first.
        if not self._hub.drain(_STDIO_DRAIN):
            self._log.warning("stdio not sent before shutdown", extra={"wait_s": _STDIO_DRAIN})
        self._stop("GRPCController.Shutdown")
        return pb.grpc_controller_pb2.Empty()


def _broker(
    server_tls: ServerTLS | None,
    env: Mapping[str, str],
    network: str,
    socket_gid: int | None,
    hooks: GRPCHooks,
) -> GRPCBroker:
    """The plugin's GRPCBroker (also ``ServeContext.broker``): brokered connections use
    the main connection's TLS material and backend (none: plaintext like the main one)
    and listen on its network, in a private directory inside the host's socket directory,
    shared with ``PLUGIN_UNIX_SOCKET_GROUP`` (``socket_gid``) as the main socket is.
    """
    material = None
    if server_tls is not None:
        material = BrokerTLS(server_tls.own, server_tls.trusted_pem, server_tls.backend)
    parent = env.get(ENV_UNIX_SOCKET_DIR) or None
    return GRPCBroker(
        tls=material,
        network=network,
        socket_parent=Path(parent) if parent else None,
        socket_group=socket_gid,
        hooks=hooks,
    )


class Internal:
    """Registers health, controller, stdio and broker on ``server``; stops their streams."""

    def __init__(
        self,
        server: Any,
        *,
        stop: Callable[[str], None],
        server_tls: ServerTLS | None,
        env: Mapping[str, str],
        network: str,
        socket_gid: int | None,
        log: logging.Logger,
        hooks: GRPCHooks,
    ) -> None:
        self.hub = StdioHub()
        self.health = health.HealthServicer()
        for name in ("plugin", ""):
            self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        pb.grpc_controller_pb2_grpc.add_GRPCControllerServicer_to_server(
            _Controller(stop, self.hub, log), server
        )
        pb.grpc_stdio_pb2_grpc.add_GRPCStdioServicer_to_server(self.hub, server)
        self.broker = _broker(server_tls, env, network, socket_gid, hooks)
        pb.grpc_broker_pb2_grpc.add_GRPCBrokerServicer_to_server(
            BrokerServicer(self.broker), server
        )

    def begin_stop(self) -> None:
        """End the long-lived streams and report NOT_SERVING before the server stops;
        the broker's servers, channels and stream end first (go-plugin's order)."""
        self.hub.close()
        self.broker.close()
        self.health.enter_graceful_shutdown()
