"""go-plugin's protocol stubs (``soup._proto.plugin``), imported in one place.

Only the protocol's own services (broker, controller, stdio; health comes from
grpcio-health-checking) load here, because every SDK import loads this module: the
lab's demo stubs (KV, counter) are in ``soup.lab.demopb`` and load only with the lab, so that
a user's own ``package proto`` stubs (go-plugin's examples/grpc) fit in protobuf's default
pool beside the SDK.

The package build generates them from proto/ (setup.py runs scripts/gen_protos.py), typed
with ``.pyi`` files, so they are not part of the source tree: a wheel carries them and an
editable install writes them to python/soup/_proto.
"""

from __future__ import annotations

MISSING_STUBS = (
    "soup's generated stubs (soup._proto) are missing: they are made by the package build; "
    "install soup with `pip install .` (or `pip install -e .` in a checkout)"
)

try:
    from google.protobuf import empty_pb2

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
    raise ImportError(f"{MISSING_STUBS} ({exc})") from exc

__all__ = [
    "MISSING_STUBS",
    "empty_pb2",
    "grpc_broker_pb2",
    "grpc_broker_pb2_grpc",
    "grpc_controller_pb2",
    "grpc_controller_pb2_grpc",
    "grpc_stdio_pb2",
    "grpc_stdio_pb2_grpc",
]
