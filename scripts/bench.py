"""Benchmark Put+Get round trips per direction, reported as ratios against Go->Go.

Each case is two real processes: `<client> rpc client bench --json --server '<plugin>'`,
which connects once and times --count Put+Get iterations after a warm-up. Every case runs
--repeat times; the median of the per-run means is reported. Writes build/reports/bench.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT_S = 300


@dataclass(frozen=True)
class Case:
    name: str
    client: str
    server: str
    client_args: tuple[str, ...] = ()
    server_args: tuple[str, ...] = ()


CASES = (
    Case("Go->Go (baseline)", "go", "go"),
    Case(
        "Python->Python native",
        "python",
        "python",
        ("--tls-backend", "native"),
        ("--tls-backend", "native"),
    ),
    Case(
        "Python->Python openssl",
        "python",
        "python",
        ("--tls-backend", "openssl"),
        ("--tls-backend", "openssl"),
    ),
    Case("Python->Go", "python", "go"),
    Case("Go->Python", "go", "python"),
)


def command(case: Case, soup_go: str, count: int) -> list[str]:
    impl = {"go": [soup_go], "python": [sys.executable, "-m", "soup"]}
    python_key = ("--key-type", "ec-p256")
    server = [*impl[case.server], "rpc", "server-start", *case.server_args]
    if case.server == "python":
        server += python_key
    client = [
        *impl[case.client],
        "rpc",
        "client",
        "bench",
        "--json",
        "--count",
        str(count),
        *case.client_args,
    ]
    if case.client == "python":
        client += python_key
    return [*client, "--server", shlex.join(server)]


def run_once(argv: list[str]) -> dict[str, Any]:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT_S, check=False)
    try:
        result = json.loads(proc.stdout)
    except json.JSONDecodeError:
        sys.exit(f"bench: no JSON from: {shlex.join(argv)}\n{proc.stderr[-2000:]}")
    if proc.returncode != 0 or not result.get("ok"):
        sys.exit(f"bench: failed: {shlex.join(argv)}\n{result.get('error')}\n{proc.stderr[-2000:]}")
    return dict(result)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--soup-go", default=str(ROOT / "build" / "bin" / "soup-go"))
    parser.add_argument("--count", type=int, default=2000, help="timed Put+Get iterations per run")
    parser.add_argument("--repeat", type=int, default=3, help="runs per case (median is reported)")
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "reports")
    args = parser.parse_args()

    rows: list[dict[str, Any]] = []
    for case in CASES:
        argv = command(case, args.soup_go, args.count)
        means, backend = [], None
        for i in range(args.repeat):
            print(f"bench: {case.name}: run {i + 1}/{args.repeat}", file=sys.stderr, flush=True)
            result = run_once(argv)
            stats = result["round_trip_us"]
            assert isinstance(stats, dict)
            means.append(float(stats["mean"]))
            tls = result.get("tls")
            backend = tls.get("backend") if isinstance(tls, dict) else None
        rows.append(
            {
                "case": case.name,
                "backend": backend,
                "mean_us": statistics.median(means),
                "runs_us": means,
                "command": shlex.join(argv),
            }
        )

    base = rows[0]["mean_us"]
    by_name = {r["case"]: r for r in rows}
    for row in rows:
        row["ratio_vs_go"] = round(float(row["mean_us"]) / float(base), 2)
    openssl_vs_native = float(by_name["Python->Python openssl"]["mean_us"]) / float(
        by_name["Python->Python native"]["mean_us"]
    )

    args.out.mkdir(parents=True, exist_ok=True)
    doc = {
        "count": args.count,
        "repeat": args.repeat,
        "rows": rows,
        "openssl_vs_native": round(openssl_vs_native, 3),
    }
    (args.out / "bench.json").write_text(json.dumps(doc, indent=1) + "\n")
    lines = [
        "# soup bench: one Put + one Get per iteration, ec-p256 on the Python side",
        "",
        "| case | TLS backend | mean round trip (us) | ratio vs Go->Go |",
        "|---|---|---|---|",
        *(
            f"| {r['case']} | {r['backend']} | {float(r['mean_us']):.0f} | {r['ratio_vs_go']} |"
            for r in rows
        ),
        "",
        f"OpenSSL backend vs native on the same Python->Python cell: x{openssl_vs_native:.2f} "
        f"({(openssl_vs_native - 1) * 100:+.0f}% time per Put+Get; target <= +20%).",
        "",
    ]
    (args.out / "bench.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
