"""The bench's Python host under load: N threads calling one plugin at once.

``soup rpc client bench`` times one caller; this drives ``soup.Client``
from ``--concurrency`` threads over its one channel (grpcio multiplexes the calls
as HTTP/2 streams on one connection; the Go host's ``--concurrency`` opens one
connection per caller instead). Prints one JSON object shaped like soup-go's
``rpc client bench --json`` (ops/s, round trip stats, the plugin's RSS).
Every call must succeed; the first failure fails the run. Benchmark use only.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import secrets
import sys
import threading
import time
from pathlib import Path
from typing import Any

from soup.host import Client, ClientConfig
from soup.lab.kv import KVClient
from soup.settings import TLSSettings


def rss_kib(pid: int | None) -> int:
    """VmRSS of a process from /proc (0 where there is none)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def stats(samples: list[float]) -> dict[str, float]:
    """Nearest-rank percentiles in microseconds, like soup-go's bench."""
    ordered = sorted(samples)

    def pct(p: float) -> float:
        index = math.ceil(p / 100 * len(ordered)) - 1
        return ordered[max(0, min(index, len(ordered) - 1))]

    return {
        "mean": round(sum(ordered) / len(ordered), 1),
        "p50": round(pct(50), 1),
        "p90": round(pct(90), 1),
        "p99": round(pct(99), 1),
        "min": round(ordered[0], 1),
        "max": round(ordered[-1], 1),
    }


class _Load:
    def __init__(self, client: KVClient, count: int, warmup: int, workers: int) -> None:
        self.client, self.count, self.warmup = client, count, warmup
        self.ready = threading.Barrier(workers + 1)
        self.go = threading.Event()
        self.samples: list[list[float]] = [[] for _ in range(workers)]
        self.errors: list[str] = []

    def worker(self, index: int) -> None:
        value = secrets.token_bytes(64)
        samples = self.samples[index]
        try:
            for i in range(self.warmup + self.count):
                if i == self.warmup:
                    self.ready.wait()
                    self.go.wait()
                key = f"bench-{index}-{i % 16}"
                started = time.perf_counter()
                self.client.put(key, value)
                if self.client.get(key) != value:
                    raise RuntimeError(f"get {key}: other bytes returned")
                if i >= self.warmup:
                    samples.append((time.perf_counter() - started) * 1e6)
        except Exception as exc:  # every call must succeed: the first failure is the result
            self.errors.append(f"caller {index}: {exc}")
            self.ready.abort()


def run(args: argparse.Namespace) -> dict[str, Any]:
    result: dict[str, Any] = {"ok": False, "error": None, "count": args.count}
    result["concurrency"] = args.concurrency
    tls = TLSSettings(mode=args.tls_mode, backend=args.tls_backend, key_type=args.key_type)
    with Client(ClientConfig(cmd=args.server, tls=tls)) as client:
        load = _Load(KVClient(client.channel), args.count, args.warmup, args.concurrency)
        threads = [
            threading.Thread(target=load.worker, args=(i,), name=f"load-{i}")
            for i in range(args.concurrency)
        ]
        for thread in threads:
            thread.start()
        with contextlib.suppress(threading.BrokenBarrierError):  # a caller failed: reported below
            load.ready.wait(timeout=args.timeout)
        before = rss_kib(client.pid)
        started = time.perf_counter()
        load.go.set()
        for thread in threads:
            thread.join(args.timeout)
        wall = time.perf_counter() - started
        after = rss_kib(client.pid)
        result["tls"] = {"mode": args.tls_mode, "backend": client.tls.backend}
    samples = [s for per in load.samples for s in per]
    if load.errors or any(t.is_alive() for t in threads):
        result["error"] = (
            load.errors[0] if load.errors else f"callers still busy after {args.timeout:g} s"
        )
        return result
    result.update(
        ok=True,
        round_trip_us=stats(samples),
        ops_per_s=round(len(samples) / wall, 1),
        plugin_rss_kib={"before": before, "after": after},
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--server", required=True, help="plugin command line")
    parser.add_argument("--tls-mode", default="auto", choices=["auto", "disabled"])
    parser.add_argument("--tls-backend", default="auto", choices=["auto", "native", "openssl"])
    parser.add_argument("--key-type", default="ec-p256")
    parser.add_argument("--count", type=int, default=2000, help="timed Put+Get per caller")
    parser.add_argument("--warmup", type=int, default=20, help="untimed Put+Get per caller")
    parser.add_argument("--concurrency", type=int, default=1, help="callers at once")
    parser.add_argument("--timeout", type=float, default=300.0, help="bound on the run (s)")
    args = parser.parse_args()
    result = run(args)
    sys.stdout.write(json.dumps(result) + "\n")
    sys.exit(0 if result["ok"] else 1)


if __name__ == "__main__":
    main()
