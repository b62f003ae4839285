"""What soup's long-lived server streams (GRPCStdio, GRPCBroker) ask about their RPC.

They are plain servicers, run by ``grpc.server`` and, when ``ServeConfig.asyncio``, on
``grpc.aio``'s migration thread pool. The two hand a plain handler different contexts:
the aio one (``cygrpc._SyncServicerContext``) has no ``is_active()`` on any supported
grpcio line (1.60 to 1.85, checked), and its ``add_callback`` did not fire when the
client cancelled (measured), so nothing tells a generator there that its RPC ended.
aio runs such a generator to its end in a pool thread, feeding what it yields to the
RPC (after the RPC ended, to nobody); the generator's loop ends when its stop flag is
set. Under ``grpc.server`` the generator must return by itself once the RPC ends (or a
pool thread stays busy): ``is_active()`` says when.
"""

from __future__ import annotations

from collections.abc import Callable

import grpc

__all__ = ["rpc_active"]


def _always() -> bool:
    return True


def rpc_active(context: grpc.ServicerContext) -> Callable[[], bool]:
    """``context.is_active`` where the server provides it; under grpc.aio, always True."""
    is_active: Callable[[], bool] | None = getattr(context, "is_active", None)
    return is_active if is_active is not None else _always
