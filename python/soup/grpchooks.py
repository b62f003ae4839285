"""A user's gRPC settings for every channel and server one side makes (main and brokered).

go-plugin's ``ClientConfig.GRPCDialOptions`` and ``ServeConfig.GRPCServer`` hooks: e.g.
Terraform raises the 4 MiB message limit to 64 MiB. Here as gRPC channel arguments
(``("grpc.max_receive_message_length", n)``, valid for channels and servers) and
interceptors, added after soup's own arguments.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import grpc


@dataclass(frozen=True)
class GRPCHooks:
    """Channel arguments for channels and servers, interceptors for each kind."""

    options: Sequence[tuple[str, Any]] = ()
    channel_interceptors: Sequence[Any] = ()
    server_interceptors: Sequence[Any] = ()

    def with_options(self, base: Sequence[tuple[str, Any]]) -> list[tuple[str, Any]]:
        """soup's ``base`` arguments, then the user's."""
        return [*base, *self.options]

    def intercept(self, channel: grpc.Channel) -> grpc.Channel:
        """``channel`` behind the user's client interceptors (itself if there are none)."""
        if not self.channel_interceptors:
            return channel
        return grpc.intercept_channel(channel, *self.channel_interceptors)
