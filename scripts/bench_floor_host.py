"""The bench's host floor: the least a Python go-plugin host on grpcio can be.

Starts the plugin command (``--server``) with go-plugin's environment, reads its
handshake line, opens one plaintext grpcio channel to the address in it and times Put+Get
round trips with the generated stub: no TLS, no logging, no stdio or broker streams, no
health check. Whatever it measures against a Go host is the price of grpcio's client
itself; soup's Python host is compared with it. ``--relay`` puts the least a Python relay
can be (scripts/bench_minimal_relay.py) between the channel and the plugin, as a host of
a P-521 plugin needs one. It takes the arguments the bench gives
every host (``rpc client bench --json --count N --warmup W --tls-mode disabled --server
CMD``) and prints the same JSON fields the bench reads. Benchmark use only.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import secrets
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc

import bench_minimal_relay
import bench_process
from soup import pb
from soup.lab import demopb

HANDSHAKE_TIMEOUT = 30.0
RPC_TIMEOUT = 10.0


def _target(line: str, relay_dir: Path | None) -> str:
    """The grpcio target for the plugin's address: itself, or a relay in ``relay_dir``."""
    fields = line.split("|")
    if len(fields) < 5 or fields[4] != "grpc":
        raise ValueError(f"not a go-plugin gRPC handshake line: {line!r}")
    network, address = fields[2], fields[3]
    if relay_dir is None:
        return f"unix:{address}" if network == "unix" else address
    relay_path = str(relay_dir / "relay.sock")
    if network == "unix":
        bench_minimal_relay.start(relay_path, socket.AF_UNIX, address)
    else:
        host, _, port = address.rpartition(":")
        bench_minimal_relay.start(relay_path, socket.AF_INET, (host, int(port)))
    return f"unix:{relay_path}"


def _round_trips(channel: grpc.Channel, count: int, warmup: int) -> list[float]:
    kv = demopb.kv_pb2_grpc.KVStub(channel)
    payload = secrets.token_bytes(64)
    samples = []
    for i in range(warmup + count):
        key = f"bench-{i % 16}"
        started = time.perf_counter()
        kv.Put(demopb.kv_pb2.PutRequest(key=key, value=payload), timeout=RPC_TIMEOUT)
        if kv.Get(demopb.kv_pb2.GetRequest(key=key), timeout=RPC_TIMEOUT).value != payload:
            raise ValueError(f"get {key}: other bytes returned")
        if i >= warmup:
            samples.append((time.perf_counter() - started) * 1e6)
    return samples


def _end(plugin: subprocess.Popen[bytes], channel: grpc.Channel | None) -> None:
    """Shutdown over GRPCController, then the process group, each bounded."""
    if channel is not None:
        with contextlib.suppress(grpc.RpcError):  # it may close the connection as it stops
            controller = pb.grpc_controller_pb2_grpc.GRPCControllerStub(channel)
            controller.Shutdown(pb.grpc_controller_pb2.Empty(), timeout=RPC_TIMEOUT)
        channel.close()
    bench_process.end_group(plugin, wait=bench_process.EXIT_WAIT)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("words", nargs="*", help="rpc client bench (as for every bench host)")
    parser.add_argument("--json", action="store_true", help="one JSON object (always on)")
    parser.add_argument("--count", type=int, default=1000, help="timed round trips")
    parser.add_argument("--warmup", type=int, default=100, help="untimed round trips first")
    parser.add_argument(
        "--tls-mode", choices=["disabled"], required=True, help="the floor is plaintext only"
    )
    parser.add_argument("--server", required=True, help="the plugin command")
    parser.add_argument(
        "--relay", action="store_true", help="reach the plugin through a minimal Python relay"
    )
    args = parser.parse_args()
    plugin = subprocess.Popen(
        shlex.split(args.server),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=bench_process.plugin_env(None),
        start_new_session=True,
    )
    channel = None
    relay_dir = Path(tempfile.mkdtemp(prefix="soup-bench-relay-")) if args.relay else None
    try:
        line = bench_process.read_line_bounded(plugin, HANDSHAKE_TIMEOUT).decode().strip()
        channel = grpc.insecure_channel(_target(line, relay_dir))
        grpc.channel_ready_future(channel).result(timeout=RPC_TIMEOUT)
        samples = sorted(_round_trips(channel, args.count, args.warmup))
    except (OSError, ValueError, grpc.RpcError, grpc.FutureTimeoutError) as exc:
        print(json.dumps({"ok": False, "error": f"{type(exc).__name__}: {exc}"}))
        sys.exit(1)
    finally:
        _end(plugin, channel)
        if relay_dir is not None:
            shutil.rmtree(relay_dir, ignore_errors=True)
    result = {
        "ok": True,
        "error": None,
        "count": len(samples),
        "tls": None,
        "round_trip_us": {
            "mean": round(sum(samples) / len(samples), 3),
            "p50": round(samples[(len(samples) + 1) // 2 - 1], 3),
        },
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
