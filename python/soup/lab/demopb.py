"""The lab's demo stubs (KV and counter, ``soup._proto``), kept out of ``soup.pb``.

Their wire names match go-plugin's examples/grpc (``package proto``, ``package counter``)
so that its example host and plugins talk to ours; that is also why the SDK must not
load them: a user who compiles go-plugin's kv.proto registers the same symbols in
protobuf's default pool, and a second registration is refused. Only the lab (soup.lab.kv,
soup.lab.counter, the CLI's demo plugins, the bench, the conformance suite) imports this.
"""

from __future__ import annotations

from soup.pb import MISSING_STUBS

try:
    from soup._proto import counter_pb2, counter_pb2_grpc, kv_pb2, kv_pb2_grpc
except ModuleNotFoundError as exc:  # pragma: no cover - depends on the installation
    if not (exc.name or "").startswith("soup._proto"):
        raise
    raise ImportError(f"{MISSING_STUBS} ({exc})") from exc

__all__ = ["counter_pb2", "counter_pb2_grpc", "kv_pb2", "kv_pb2_grpc"]
