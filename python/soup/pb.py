"""The generated protobuf/gRPC stubs (package ``soup_proto``), imported in one place.

The stubs are generated (``nox -s protos`` or ``scripts/gen_protos.py``) with the
grpcio-tools matching the installed grpcio, so they are not part of the source
tree. Everything is re-exported as ``Any``: the generated ``*_pb2_grpc`` modules
are untyped, and the rest of the package only uses them through small, typed
wrappers (``soup.kv``, ``soup.plugin``, ``soup.host``).
"""

from __future__ import annotations

from typing import Any

_MISSING = "generated stubs missing: run `nox -s protos` (or scripts/gen_protos.py)"

try:
    from google.protobuf import empty_pb2 as _empty_pb2
    from soup_proto import counter_pb2 as _counter_pb2
    from soup_proto import counter_pb2_grpc as _counter_pb2_grpc
    from soup_proto import kv_pb2 as _kv_pb2
    from soup_proto import kv_pb2_grpc as _kv_pb2_grpc
    from soup_proto.plugin import grpc_broker_pb2 as _grpc_broker_pb2
    from soup_proto.plugin import grpc_broker_pb2_grpc as _grpc_broker_pb2_grpc
    from soup_proto.plugin import grpc_controller_pb2 as _grpc_controller_pb2
    from soup_proto.plugin import grpc_controller_pb2_grpc as _grpc_controller_pb2_grpc
    from soup_proto.plugin import grpc_stdio_pb2 as _grpc_stdio_pb2
    from soup_proto.plugin import grpc_stdio_pb2_grpc as _grpc_stdio_pb2_grpc
except ImportError as exc:  # pragma: no cover - depends on the environment
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

empty_pb2: Any = _empty_pb2
counter_pb2: Any = _counter_pb2
counter_pb2_grpc: Any = _counter_pb2_grpc
kv_pb2: Any = _kv_pb2
kv_pb2_grpc: Any = _kv_pb2_grpc
grpc_broker_pb2: Any = _grpc_broker_pb2
grpc_broker_pb2_grpc: Any = _grpc_broker_pb2_grpc
grpc_controller_pb2: Any = _grpc_controller_pb2
grpc_controller_pb2_grpc: Any = _grpc_controller_pb2_grpc
grpc_stdio_pb2: Any = _grpc_stdio_pb2
grpc_stdio_pb2_grpc: Any = _grpc_stdio_pb2_grpc
