"""go-plugin's ReattachConfig as JSON (sans-IO): how a host finds a plugin it did not start.

A plugin in debug mode prints one line, the shape of Terraform's
``TF_REATTACH_PROVIDERS`` values::

    {"Protocol":"grpc","ProtocolVersion":1,"Pid":1234,"Test":true,"Addr":{"Network":"unix","String":"/tmp/plugin123"}}
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from soup.handshake import NETWORKS

__all__ = ["ReattachConfig", "ReattachError"]


class ReattachError(ValueError):
    """A reattach config that cannot be used (the message names the field)."""


@dataclass(frozen=True)
class ReattachConfig:
    """Where a running plugin listens (go-plugin ``ReattachConfig``)."""

    network: str
    address: str
    pid: int
    protocol_version: int = 1
    protocol: str = "grpc"
    test: bool = True

    def to_json(self) -> str:
        """Compact JSON with go-plugin's field names, in the order Terraform prints them."""
        return json.dumps(
            {
                "Protocol": self.protocol,
                "ProtocolVersion": self.protocol_version,
                "Pid": self.pid,
                "Test": self.test,
                "Addr": {"Network": self.network, "String": self.address},
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, text: str) -> ReattachConfig:
        """Parse and check a reattach config; ``ReattachError`` names what is wrong."""
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ReattachError(f"reattach config is not JSON: {exc}") from None
        if not isinstance(data, dict):
            raise ReattachError("reattach config must be a JSON object")
        addr = data.get("Addr")
        if not isinstance(addr, dict):
            raise ReattachError('reattach config needs "Addr": {"Network": ..., "String": ...}')
        network, address = addr.get("Network"), addr.get("String")
        if network not in NETWORKS:
            raise ReattachError(
                f"reattach Addr.Network {network!r} is not one of: {', '.join(NETWORKS)}"
            )
        if not isinstance(address, str) or not address:
            raise ReattachError("reattach Addr.String must be a non-empty address")
        protocol = data.get("Protocol", "grpc")
        if protocol != "grpc":
            raise ReattachError(f'reattach Protocol {protocol!r} is not supported (only "grpc")')
        return cls(
            network=network,
            address=address,
            pid=_int_field(data, "Pid", 0),
            protocol_version=_int_field(data, "ProtocolVersion", 1),
            protocol=protocol,
            test=bool(data.get("Test", False)),
        )


def _int_field(data: dict[str, object], name: str, default: int) -> int:
    value = data.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ReattachError(f"reattach {name} must be a non-negative integer, got {value!r}")
    return value
