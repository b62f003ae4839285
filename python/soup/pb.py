"""The generated protobuf/gRPC stubs (``soup._proto``), imported in one place.

The package build generates them from proto/ (setup.py runs scripts/gen_protos.py), typed
with ``.pyi`` files, so they are not part of the source tree: a wheel carries them and an
editable install writes them to python/soup/_proto.
"""

from __future__ import annotations

_MISSING = (
    "soup's generated stubs (soup._proto) are missing: they are made by the package build; "
    "install soup with `pip install .` (or `pip install -e .` in a checkout)"
)

try:
    from google.protobuf import empty_pb2

    from soup._proto import counter_pb2, counter_pb2_grpc, kv_pb2, kv_pb2_grpc
    from soup._proto.plugin import (
        grpc_broker_pb2,
        grpc_broker_pb2_grpc,
        grpc_controller_pb2,
        grpc_controller_pb2_grpc,
        grpc_stdio_pb2,
        grpc_stdio_pb2_grpc,
    )
except ModuleNotFoundError as exc:  # pragma: no cover - depends on the installation
    if not (exc.name or "").startswith("soup._proto"):
        raise
    raise ImportError(f"{_MISSING} ({exc})") from exc

__all__ = [
    "counter_pb2",
    "counter_pb2_grpc",
    "empty_pb2",
    "grpc_broker_pb2",
    "grpc_broker_pb2_grpc",
    "grpc_controller_pb2",
    "grpc_controller_pb2_grpc",
    "grpc_stdio_pb2",
    "grpc_stdio_pb2_grpc",
    "kv_pb2",
    "kv_pb2_grpc",
]
