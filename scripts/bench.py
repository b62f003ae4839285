"""soup's benchmarks, every figure a ratio to a reference measured in the same run.

Sections (each run count and min/median/max is in the report):

* round trips: one Put+Get per iteration, per direction, TLS backend and plaintext,
  against Go->Go and against the **floor** (scripts/bench_floor.py: the least a grpcio
  plugin can be, from the soup-go host, plaintext). Reference rows bound what soup can
  reach: the floor with grpcio's own mutual TLS, with soup's durable store, and with that
  store behind the least a Python relay can be (every P-521 peer needs a relay); and the
  host floor (scripts/bench_floor_host.py: the least a grpcio host can be) against
  soup-go, straight and behind that relay. Cases run in rounds (every case once per round, the order reversed every
  other round) and each ratio is the median of the ratios within a round, so a change in
  machine speed hits both sides of a ratio alike.
* lifecycle: `rpc client test` per direction, spawn of the host to its exit, with the
  host's own per-step split.
* lifecycle from outside: `soup-go rpc kv put` as a whole process, timed by hyperfine
  (`--export-json`), and `soup --version` / `soup --help` against a bare interpreter, against soup-go's own plugin (the Go->Go baseline), the floor, and
  soup's plugin plaintext and with AutoMTLS (soup-go presents a P-521 certificate, as
  stock go-plugin hosts do, so soup's plugin serves through its OpenSSL bridge). Every
  case once per round in one hyperfine run, the order reversed every other round. The
  README quotes this section (--readme). soup-go's own `rpc client test` steps against the
  TLS cases check the baseline (bench_report.outside_problems) and the bridge path.
* cold start of the Python plugin: spawn to handshake line, broken down into the bare
  interpreter, imports (`-X importtime`, top items listed), key generation and the rest;
  against the floor plugin without TLS and with AutoMTLS (what cryptography adds).
* throughput: --concurrency callers at once (1, 16, 32) per host and plugin: ops/s
  (Put+Get round trips per second), p50/p99 and the plugin's RSS before and after, one
  run each: how each scales.
* load (issue 18): the Go host with 32 connections x --load-count Put+Get each, in
  --load-repeat rounds (the order reversed every other round), against soup-go, the
  floor, the floor with soup's pool size (the raised bar) and its reference rows
  (durable store; store behind the minimal relay, a process as soup's bridge) and soup's
  plugin plaintext, native and through its OpenSSL bridge (a P-521 host, as stock hosts
  are): ops/s and the plugin's CPU per op, paired per round with the floor, and the
  plugin's RSS growth. Every call must succeed. The README quotes it (--readme).
* key generation per key type (in this process, soup.certs), and the wall time of the
  last `nox -s proof` and matrix runs (from build/reports/*.json, when present).

Python processes run with a bytecode cache (build/pycache, as a pip-installed package
has its .pyc files), also where PYTHONDONTWRITEBYTECODE is set and the venv (uv installs
without compiling) has none: else every start would compile grpc and cryptography.

Writes build/reports/bench.{md,json,png}. Every process run is bounded and leaves
nothing behind (the conformance runner's bounded runner). --quick: a small smoke run.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "conformance"))
sys.path.insert(0, str(ROOT / "scripts"))
import bench_process  # noqa: E402 - a sibling script module
import bench_report  # noqa: E402 - a sibling script module
import readme_section  # noqa: E402 - a sibling script module
from cells import run_bounded  # noqa: E402 - the conformance runner's bounded process runner

PY = sys.executable
SOUP = [PY, "-m", "soup"]
# What `soup rpc server-start` imports (the cold start's import share), as it imports
# them: with cycle collection off (soup.__main__).
PLUGIN_IMPORTS = (
    "import gc; gc.disable(); "
    "import soup.lab.cliplugin, soup.lab.counter, soup.lab.kv, soup.plugin, grpc._server"
)
RELAY = [PY, str(ROOT / "scripts" / "bench_relay.py")]
FLOOR = [PY, str(ROOT / "scripts" / "bench_floor.py")]
FLOOR_HOST = [PY, str(ROOT / "scripts" / "bench_floor_host.py")]
LOAD_HOST = [PY, str(ROOT / "scripts" / "bench_load.py")]
PY_KEY = ("--key-type", "ec-p256")
NO_TLS = ("--tls-mode", "disabled")
KEY_TYPES = ("ec-p256", "ec-p384", "ec-p521", "ed25519", "rsa-2048")


@dataclass(frozen=True)
class Plugin:
    """A plugin under test: its command and the host flags it needs."""

    name: str
    kind: str  # go | python | floor | relay
    args: tuple[str, ...] = ()  # plugin flags
    host_args: tuple[str, ...] = ()  # host flags that go with it

    def argv(self, soup_go: str, kv_dir: Path) -> list[str]:
        if self.kind == "floor":
            return [*FLOOR, "--dir", str(kv_dir), *self.args]
        base = {"go": [soup_go], "relay": RELAY}.get(self.kind, SOUP)
        return [*base, "rpc", "server-start", "--kv-dir", str(kv_dir), *self.args]


GO_PLUGIN = Plugin("soup-go", "go")
GO_PLUGIN_PLAIN = Plugin("soup-go", "go", NO_TLS, NO_TLS)
PY_NATIVE = Plugin("soup native", "python", ("--tls-backend", "native", *PY_KEY))
PY_OPENSSL = Plugin("soup openssl", "python", ("--tls-backend", "openssl", *PY_KEY))
PY_PLAIN = Plugin("soup", "python", NO_TLS, NO_TLS)
FLOOR_PLUGIN = Plugin("floor", "floor", (), NO_TLS)
FLOOR_MTLS = Plugin("floor mTLS", "floor", ("--auto-mtls",))
SOUP_POOL = ("--workers", "4")  # soup.workers' core threads
FLOOR_SMALL = Plugin("floor 4 workers", "floor", SOUP_POOL, NO_TLS)
FLOOR_DURABLE = Plugin("floor durable", "floor", ("--durable", *SOUP_POOL), NO_TLS)
FLOOR_RELAYED = Plugin("floor relayed", "floor", ("--durable", "--relay", *SOUP_POOL), NO_TLS)


@dataclass(frozen=True)
class Case:
    """One round-trip (or lifecycle / load) measurement: a host against a plugin."""

    name: str
    host: str  # go | python | relay | floor
    plugin: Plugin
    host_args: tuple[str, ...] = ()
    diagnostic: bool = False

    @property
    def tls(self) -> bool:
        return "disabled" not in self.plugin.host_args

    def host_argv(self, soup_go: str) -> list[str]:
        return {"go": [soup_go], "relay": RELAY, "floor": FLOOR_HOST}.get(self.host, SOUP)


GO_GO = bench_report.GO_GO
ROUND_TRIPS = (
    Case(GO_GO, "go", GO_PLUGIN),
    Case(bench_report.FLOOR, "go", FLOOR_PLUGIN),
    Case("Go->floor, mutual TLS by grpcio (reference)", "go", FLOOR_MTLS, PY_KEY),
    Case(bench_report.FLOOR_DURABLE, "go", FLOOR_DURABLE),
    Case(bench_report.FLOOR_RELAYED, "go", FLOOR_RELAYED),
    Case(bench_report.FLOOR_HOST, "floor", GO_PLUGIN_PLAIN),
    Case(bench_report.FLOOR_HOST_RELAYED, "floor", GO_PLUGIN_PLAIN, ("--relay",)),
    Case("Go->Go plaintext", "go", GO_PLUGIN_PLAIN),
    Case("Go->Python plaintext", "go", PY_PLAIN),
    Case("Go->Python native", "go", PY_NATIVE, PY_KEY),
    Case("Go->Python openssl", "go", PY_OPENSSL),
    Case("Python->Go", "python", GO_PLUGIN, ("--tls-backend", "openssl", *PY_KEY)),
    Case("Python->Go plaintext", "python", GO_PLUGIN_PLAIN),
    Case("Python->Python plaintext", "python", PY_PLAIN),
    Case("Python->Python native", "python", PY_NATIVE, ("--tls-backend", "native", *PY_KEY)),
    Case("Python->Python openssl", "python", PY_OPENSSL, ("--tls-backend", "openssl", *PY_KEY)),
    Case(
        "Python->Python bridge relay without TLS",
        "relay",
        Plugin("soup relay", "relay", ("--tls-backend", "openssl", *PY_KEY)),
        ("--tls-backend", "openssl", *PY_KEY),
        diagnostic=True,
    ),
)
LIFECYCLE = (
    Case(GO_GO, "go", GO_PLUGIN),
    Case("Go->Python", "go", Plugin("soup", "python")),
    Case("Python->Go", "python", GO_PLUGIN),
    Case("Python->Python", "python", Plugin("soup", "python")),
)
LOAD_PLUGINS = (GO_PLUGIN, PY_NATIVE, PY_OPENSSL, FLOOR_PLUGIN)
LOAD = (
    Case(GO_GO, "go", GO_PLUGIN),
    Case(bench_report.FLOOR, "go", FLOOR_PLUGIN),
    Case(bench_report.FLOOR_SMALL, "go", FLOOR_SMALL),
    Case(bench_report.FLOOR_DURABLE, "go", FLOOR_DURABLE),
    Case(bench_report.FLOOR_RELAYED, "go", FLOOR_RELAYED),
    Case(bench_report.LOAD_PLAIN, "go", PY_PLAIN),
    Case("Go->Python native", "go", PY_NATIVE, PY_KEY),
    # soup-go's default key, ec-p521 (as stock hosts'), which only the bridge can verify.
    Case(bench_report.LOAD_BRIDGE, "go", PY_OPENSSL),
)
LOAD_CONNECTIONS = 32
OUTSIDE = (
    Case(GO_GO, "go", GO_PLUGIN),
    Case(bench_report.FLOOR, "go", FLOOR_PLUGIN),
    Case(bench_report.OUTSIDE_PLAIN, "go", PY_PLAIN),
    # soup's plugin as a stock host starts it: AutoMTLS, its backend chosen by the host's
    # key (soup-go's default, ec-p521, as go-plugin's own).
    Case(bench_report.OUTSIDE_AUTO_MTLS, "go", Plugin("soup", "python")),
)


class BenchError(Exception):
    """A run failed or said nothing useful; the message holds its command and stderr."""


def spread(values: list[float], digits: int = 1) -> dict[str, Any]:
    """min/median/max and the run count of a series."""
    return {
        "runs": len(values),
        "min": round(min(values), digits),
        "median": round(statistics.median(values), digits),
        "max": round(max(values), digits),
    }


def run_json(argv: list[str], timeout: float) -> dict[str, Any]:
    """One bounded run that prints one JSON object with ``"ok": true``."""
    returncode, stdout, stderr = run_bounded(argv, timeout)
    where = shlex.join(argv)
    if returncode is None:
        raise BenchError(f"timed out after {timeout:g} s: {where}")
    try:
        result = dict(json.loads(stdout.strip().splitlines()[-1]))
    except (json.JSONDecodeError, IndexError):
        raise BenchError(f"no JSON from: {where}\n{stderr[-2000:]}") from None
    if returncode != 0 or not result.get("ok"):
        raise BenchError(f"failed: {where}\n{result.get('error')}\n{stderr[-2000:]}")
    return result


class Bench:
    def __init__(self, args: argparse.Namespace, scratch: Path) -> None:
        self.args = args
        self.scratch = scratch
        self.soup_go = str(args.soup_go)
        self.started = time.monotonic()
        self._dirs = 0

    def kv_dir(self) -> Path:
        self._dirs += 1
        path = self.scratch / f"kv-{self._dirs}"
        path.mkdir()
        return path

    def say(self, text: str) -> None:
        print(
            f"bench ({time.monotonic() - self.started:.0f} s): {text}", file=sys.stderr, flush=True
        )

    def host_command(self, case: Case, *command: str) -> list[str]:
        """The host's ``rpc COMMAND`` (e.g. ``client test --json``) against the case's plugin."""
        plugin = shlex.join(case.plugin.argv(self.soup_go, self.kv_dir()))
        return [
            *case.host_argv(self.soup_go),
            "rpc",
            *command,
            *case.plugin.host_args,
            *case.host_args,
            "--server",
            plugin,
        ]

    # -- round trips
    def round_trips(self) -> list[dict[str, Any]]:
        a = self.args
        runs: dict[str, list[dict[str, Any]]] = {c.name: [] for c in ROUND_TRIPS}
        for round_no in range(1, a.repeat + 1):
            # Reversed every other round: a drift within a round favours no case.
            for case in ROUND_TRIPS if round_no % 2 else ROUND_TRIPS[::-1]:
                self.say(f"round trips {round_no}/{a.repeat}: {case.name}")
                argv = self.host_command(
                    case,
                    "client",
                    "bench",
                    "--json",
                    "--count",
                    str(a.count),
                    "--warmup",
                    str(a.warmup),
                )
                runs[case.name].append(run_json(argv, a.run_timeout))
        rows = []
        for case in ROUND_TRIPS:
            results = runs[case.name]
            tls = results[-1].get("tls") or {}
            rows.append(
                {
                    "case": case.name,
                    "diagnostic": case.diagnostic,
                    "tls": case.tls,
                    "backend": tls.get("backend"),
                    "tls_version": tls.get("version"),
                    "mean_us": spread([float(r["round_trip_us"]["mean"]) for r in results]),
                    "mean_us_by_round": [float(r["round_trip_us"]["mean"]) for r in results],
                    "p50_us": spread([float(r["round_trip_us"]["p50"]) for r in results]),
                    "command": shlex.join(
                        self.host_command(
                            case, "client", "bench", "--json", "--count", str(a.count)
                        )
                    ).replace(str(self.scratch), "SCRATCH"),
                }
            )
        return rows

    def kv_store(self) -> dict[str, Any]:
        """soup's KV store alone, in this process, on the plugins' filesystem: microseconds
        per Put+Get. The soup plugin stores every Put durably, the floor in a dict."""
        from soup.lab.kvstore import FileStore  # noqa: PLC0415 - only this section needs it

        store = FileStore(self.kv_dir())
        value = b"v" * 16
        per_call = []
        for _ in range(self.args.repeat):
            started = time.perf_counter()
            for _ in range(self.args.count):
                store.put("bench", value)
                store.get("bench")
            per_call.append((time.perf_counter() - started) * 1e6 / self.args.count)
        return spread(per_call)

    # -- lifecycle
    def lifecycle(self) -> list[dict[str, Any]]:
        walls: dict[str, list[float]] = {c.name: [] for c in LIFECYCLE}
        steps: dict[str, dict[str, list[float]]] = {c.name: {} for c in LIFECYCLE}
        for round_no in range(1, self.args.lifecycle_repeat + 1):
            for case in LIFECYCLE:
                self.say(f"lifecycle {round_no}/{self.args.lifecycle_repeat}: {case.name}")
                argv = self.host_command(case, "client", "test", "--json")
                started = time.perf_counter()
                result = run_json(argv, self.args.run_timeout)
                walls[case.name].append((time.perf_counter() - started) * 1000)
                _add_steps(steps[case.name], result)
        return [
            {"case": c.name, "wall_ms": spread(walls[c.name]), "steps_ms": _medians(steps[c.name])}
            for c in LIFECYCLE
        ]

    # -- lifecycle from outside
    def lifecycle_outside(self) -> dict[str, Any]:
        """`soup-go rpc kv put` per case as whole processes, timed by hyperfine in rounds;
        per round also soup-go's own steps against the TLS cases (the evidence the report
        checks) and a process's first key and certificate (what AutoMTLS may add)."""
        a = self.args
        hyperfine = shutil.which("hyperfine")
        if hyperfine is None:
            raise BenchError(
                "hyperfine is not on PATH: install Debian's hyperfine (nox -s bench does)"
            )
        names = [c.name for c in OUTSIDE]
        times: dict[str, list[float]] = {name: [] for name in names}
        by_round: dict[str, list[float]] = {name: [] for name in names}
        steps: dict[str, dict[str, list[float]]] = {name: {} for name in names}
        evidence: dict[str, dict[str, Any]] = {}
        first_key = []
        for round_no in range(1, a.lifecycle_repeat + 1):
            order = OUTSIDE if round_no % 2 else OUTSIDE[::-1]
            for case in (c for c in order if c.tls):
                self.say(
                    f"lifecycle from outside {round_no}/{a.lifecycle_repeat}: steps {case.name}"
                )
                result = run_json(
                    self.host_command(case, "client", "test", "--json"), a.run_timeout
                )
                _add_steps(steps[case.name], result)
                evidence[case.name] = _tls_evidence(result)
            first_key.append(_first_key_ms())
            self.say(f"lifecycle from outside {round_no}/{a.lifecycle_repeat}: hyperfine")
            commands = [(case.name, self.kv_put(case)) for case in order]
            for name, ms in self._hyperfine(hyperfine, commands, f"kv-{round_no}").items():
                times[name] += ms
                by_round[name].append(round(statistics.median(ms), 2))
        rows = [
            {
                "case": c.name,
                "wall_ms": spread(times[c.name]),
                "wall_ms_by_round": by_round[c.name],
                "steps_ms": _medians(steps[c.name]),
                "tls": evidence.get(c.name),
                "command": shlex.join(self.kv_put(c)).replace(str(self.scratch), "SCRATCH"),
            }
            for c in OUTSIDE
        ]
        version = subprocess.run(
            [hyperfine, "--version"], check=True, capture_output=True, text=True, timeout=30
        ).stdout.strip()
        return {
            "hyperfine": version,
            "rounds": a.lifecycle_repeat,
            "runs_per_round": a.outside_runs,
            "first_key_ms": spread(first_key),
            "first_key_type": PY_KEY[1],
            "rows": rows,
            "cli_start": self.cli_start(hyperfine),
        }

    def cli_start(self, hyperfine: str) -> list[dict[str, Any]]:
        """`soup --version` and `soup --help` (the installed command) against a bare
        interpreter's start, whole processes timed by hyperfine in rounds."""
        soup = shutil.which("soup", path=str(Path(PY).parent)) or shutil.which("soup")
        if soup is None:
            raise BenchError("no `soup` command next to the bench's Python nor on PATH")
        cases = [
            (bench_report.BARE_PYTHON, [PY, "-c", "pass"]),
            ("soup --version", [soup, "--version"]),
            ("soup --help", [soup, "--help"]),
        ]
        by_round: dict[str, list[float]] = {name: [] for name, _ in cases}
        times: dict[str, list[float]] = {name: [] for name, _ in cases}
        for round_no in range(1, self.args.lifecycle_repeat + 1):
            self.say(f"CLI start {round_no}/{self.args.lifecycle_repeat}: hyperfine")
            order = cases if round_no % 2 else cases[::-1]
            for name, ms in self._hyperfine(hyperfine, order, f"cli-{round_no}").items():
                times[name] += ms
                by_round[name].append(round(statistics.median(ms), 2))
        return [
            {
                "case": name,
                "wall_ms": spread(times[name]),
                "wall_ms_by_round": by_round[name],
                "command": shlex.join([Path(argv[0]).name, *argv[1:]]),
            }
            for name, argv in cases
        ]

    def kv_put(self, case: Case) -> list[str]:
        return self.host_command(case, "kv", "put", "bench-key", "bench-value")

    def _hyperfine(
        self, hyperfine: str, commands: list[tuple[str, list[str]]], tag: str
    ) -> dict[str, list[float]]:
        """One hyperfine run of the named commands, in order (--outside-runs each, one
        warm-up): wall times in ms per name. hyperfine fails (and so the bench) when a run
        exits non-zero."""
        export = self.scratch / f"hyperfine-{tag}.json"
        argv = [hyperfine, "--shell=none", "--style=none", f"--export-json={export}"]
        argv += [f"--runs={self.args.outside_runs}", "--warmup=1"]
        for name, command in commands:
            argv += ["--command-name", name, shlex.join(command)]
        returncode, _, stderr = run_bounded(argv, self.args.run_timeout)
        if returncode != 0:
            why = "timed out" if returncode is None else f"exit {returncode}"
            raise BenchError(f"hyperfine {why}: {shlex.join(argv)}\n{stderr[-2000:]}")
        results = json.loads(export.read_text())["results"]
        return {r["command"]: [t * 1000 for t in r["times"]] for r in results}

    # -- cold start
    def cold_start(self) -> dict[str, Any]:
        runs = self.args.startup_repeat
        self.say(f"cold start x{runs}")
        cert = _host_cert_pem()
        plugin = [*SOUP, "rpc", "server-start", "--kv-dir", str(self.kv_dir()), *PY_KEY]
        floor_argv = FLOOR_PLUGIN.argv(self.soup_go, self.kv_dir())
        floor_tls_argv = FLOOR_MTLS.argv(self.soup_go, self.kv_dir())
        measures: dict[str, Callable[[], float]] = {
            "spawn_to_handshake_ms": lambda: _time_to_handshake(plugin, cert, self.scratch),
            "floor_spawn_to_handshake_ms": lambda: _time_to_handshake(
                floor_argv, None, self.scratch
            ),
            "floor_auto_mtls_spawn_to_handshake_ms": lambda: _time_to_handshake(
                floor_tls_argv, cert, self.scratch
            ),
            "interpreter_ms": lambda: _time_to_exit([PY, "-c", "pass"]),
            # What `soup rpc server-start` imports, untraced (the traced run only ranks
            # them), timed inside the process: its exit (module teardown) is not a start.
            "imports_ms": lambda: _ms_in_process("", PLUGIN_IMPORTS),
            "keygen_ms": _first_key_ms,
        }
        # Every start and part once per round, the order reversed every other round (as
        # the round trips): a drift in machine speed hits them alike, and the rest of a
        # start is taken within each round.
        timed: dict[str, list[float]] = {name: [] for name in measures}
        names = list(measures)
        for round_no in range(runs):
            for name in names if round_no % 2 == 0 else names[::-1]:
                timed[name].append(measures[name]())
        rest = [
            start - interpreter - imported - keygen
            for start, interpreter, imported, keygen in zip(
                timed["spawn_to_handshake_ms"],
                timed["interpreter_ms"],
                timed["imports_ms"],
                timed["keygen_ms"],
                strict=True,
            )
        ]
        traced = [PY, "-X", "importtime", *plugin[1:]]
        stderr = self.scratch / "importtime.txt"
        _time_to_handshake(traced, cert, self.scratch, stderr_to=stderr)
        imports = bench_report.parse_importtime(stderr.read_text())
        starts = {name: timed[name] for name in names[:3]}
        return {
            **{name: spread(values) for name, values in starts.items()},
            **{f"{name}_by_round": values for name, values in starts.items()},
            "interpreter_ms": spread(timed["interpreter_ms"]),
            "imports_ms": round(statistics.median(timed["imports_ms"]), 1),
            "imports_traced_ms": imports["total_ms"],
            "keygen_ms": spread(timed["keygen_ms"]),
            "rest_ms": round(statistics.median(rest), 1),
            "importtime_top": imports["top"],
            "key_type": PY_KEY[1],
        }

    # -- throughput
    def throughput(self) -> list[dict[str, Any]]:
        rows = []
        for host in ("go", "python"):
            for plugin in LOAD_PLUGINS:
                if host == "python" and plugin.kind == "floor":
                    continue  # the floor is a Go-host reference
                for concurrency in self.args.concurrency:
                    rows.append(self._load_row(host, plugin, concurrency))
        return rows

    def _load_row(self, host: str, plugin: Plugin, concurrency: int) -> dict[str, Any]:
        count = self.args.throughput_count
        self.say(f"throughput: {host} host -> {plugin.name}, {concurrency} x {count}")
        flags = ["--count", str(count), "--warmup", "10", "--concurrency", str(concurrency)]
        if host == "go":
            go_args = PY_KEY if plugin is PY_NATIVE else ()
            result = self._go_load(Case(plugin.name, "go", plugin, go_args), flags)
        else:
            server = shlex.join(plugin.argv(self.soup_go, self.kv_dir()))
            backend = "native" if plugin is PY_NATIVE else "openssl"
            argv = [*LOAD_HOST, *flags, "--tls-backend", backend, "--server", server]
            result = run_json(argv, self.args.load_timeout)
        rss = result.get("plugin_rss_kib") or {}
        return {
            "host": host,
            "plugin": plugin.name,
            "concurrency": concurrency,
            "count_per_caller": count,
            "calls": 2 * count * concurrency,
            "ops_per_s": result["ops_per_s"],
            "p50_us": result["round_trip_us"]["p50"],
            "p99_us": result["round_trip_us"]["p99"],
            "rss_before_kib": rss.get("before"),
            "rss_after_kib": rss.get("after"),
        }

    def _go_load(self, case: Case, flags: list[str]) -> dict[str, Any]:
        """soup-go's `rpc client bench --json` with ``flags`` against the case's plugin."""
        argv = self.host_command(case, "client", "bench", "--json", *flags)
        return run_json(argv, self.args.load_timeout)

    # -- load
    def load(self) -> dict[str, Any]:
        """The Go host's 32 connections against every case, in rounds (see the module doc)."""
        a = self.args
        flags = ["--count", str(a.load_count), "--warmup", "20"]
        flags += ["--concurrency", str(LOAD_CONNECTIONS)]
        runs: dict[str, list[dict[str, Any]]] = {c.name: [] for c in LOAD}
        for round_no in range(1, a.load_repeat + 1):
            for case in LOAD if round_no % 2 else LOAD[::-1]:
                self.say(f"load {round_no}/{a.load_repeat}: {case.name}")
                runs[case.name].append(self._go_load(case, flags))
        return {
            "connections": LOAD_CONNECTIONS,
            "count_per_connection": a.load_count,
            "rounds": a.load_repeat,
            "rows": [_load_summary(c, runs[c.name]) for c in LOAD],
        }


def _flag_value(argv: tuple[str, ...], flag: str) -> str | None:
    """The value after ``flag`` in ``argv`` (None: not given)."""
    return argv[argv.index(flag) + 1] if flag in argv[:-1] else None


def _load_summary(case: Case, results: list[dict[str, Any]]) -> dict[str, Any]:
    """One load case over its rounds: ops/s and the plugin's CPU per op, per round too."""
    ops = [float(r["ops_per_s"]) for r in results]
    cpu = [float(r.get("plugin_cpu_us_per_op") or 0) for r in results]
    growth = [
        (r.get("plugin_rss_kib") or {}).get("after", 0)
        - (r.get("plugin_rss_kib") or {}).get("before", 0)
        for r in results
    ]
    tls = results[-1].get("tls") or {}
    return {
        "case": case.name,
        "tls": {"client_key": tls.get("client_key"), "server_key": tls.get("server_key")}
        if case.tls
        else None,
        "backend": _flag_value(case.plugin.args, "--tls-backend"),
        "ops_per_s": spread(ops),
        "ops_per_s_by_round": ops,
        "cpu_us_per_op": spread(cpu),
        "cpu_us_per_op_by_round": cpu,
        "p99_us": spread([float(r["round_trip_us"]["p99"]) for r in results]),
        "rss_growth_kib_max": max(growth),
    }


def _host_cert_pem() -> str:
    from soup import certs  # noqa: PLC0415 - only this section needs it

    return certs.self_signed("ec-p521").cert_pem.decode()


def _time_to_handshake(
    argv: list[str],
    cert_pem: str | None,
    scratch: Path,
    stderr_to: Path | None = None,
    timeout: float = 30.0,
) -> float:
    """Milliseconds from spawning a plugin to its handshake line on stdout; then ends it."""
    stderr_path = stderr_to or scratch / "stderr.txt"
    with stderr_path.open("wb") as stderr:
        started = time.perf_counter()
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=stderr,
            env=bench_process.plugin_env(cert_pem),
            start_new_session=True,
        )
        try:
            try:
                line = bench_process.read_line_bounded(proc, timeout)
            except TimeoutError as exc:
                raise BenchError(f"{exc}: {shlex.join(argv)}") from None
            elapsed = (time.perf_counter() - started) * 1000
            if line.count(b"|") < 4:
                raise BenchError(f"no handshake line from {shlex.join(argv)}: {line!r}")
            return elapsed
        finally:
            bench_process.end_group(proc)


def _first_key_ms() -> float:
    """The plugin's own certificate as a plugin makes it: a process's first, so with the
    OpenSSL set-up a first key and signature cost (later ones take under 1 ms)."""
    return _ms_in_process("from soup import certs", f"certs.self_signed({PY_KEY[1]!r})")


def _add_steps(steps: dict[str, list[float]], result: dict[str, Any]) -> None:
    """Append a host's `rpc client test` step times (ms) to ``steps``, by step name."""
    for step in result.get("steps", []):
        steps.setdefault(step["name"], []).append(float(step["ms"]))


def _medians(steps: dict[str, list[float]]) -> dict[str, float]:
    return {name: round(statistics.median(ms), 1) for name, ms in steps.items()}


def _tls_evidence(result: dict[str, Any]) -> dict[str, Any]:
    """Which keys the TLS of an `rpc client test` run took, and the backend soup's plugin
    logged it serves with (its "plugin serving" line; soup-go's plugin logs none)."""
    tls = result.get("tls") or {}
    backend = None
    for line in str(result.get("plugin_stderr_tail") or "").splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(entry, dict) and entry.get("@message") == "plugin serving":
            backend = entry.get("backend")
    return {
        "version": tls.get("version"),
        "client_key": tls.get("client_key"),
        "server_key": tls.get("server_key"),
        "plugin_backend": backend,
    }


def _time_to_exit(argv: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, check=True, timeout=30, stdout=subprocess.DEVNULL)
    return (time.perf_counter() - started) * 1000


def _ms_in_process(setup: str, timed: str) -> float:
    """Milliseconds the statements ``timed`` take in a new interpreter, after ``setup``."""
    code = (
        f"import time; {setup or 'pass'}; started = time.perf_counter(); {timed}; "
        "print((time.perf_counter() - started) * 1000)"
    )
    done = subprocess.run([PY, "-c", code], check=True, timeout=30, capture_output=True, text=True)
    return float(done.stdout)


def _keygen_ms(key_type: str) -> float:
    from soup import certs  # noqa: PLC0415 - only this section needs it

    started = time.perf_counter()
    certs.self_signed(key_type)
    return (time.perf_counter() - started) * 1000


def keygen(runs: int) -> list[dict[str, Any]]:
    return [
        {"key_type": k, "ms": spread([_keygen_ms(k) for _ in range(runs)], 2)} for k in KEY_TYPES
    ]


def walls(reports: Path) -> list[dict[str, Any]]:
    """Wall time of the last proof and matrix runs, as their own reports recorded it."""
    found = []
    for path in sorted(reports.glob("*.json")):
        if not path.name.startswith(("proof", "matrix")):
            continue
        try:
            seconds = json.loads(path.read_text()).get("wall_seconds")
        except (OSError, json.JSONDecodeError, AttributeError):
            continue
        if isinstance(seconds, (int, float)):
            found.append({"report": path.stem, "seconds": round(float(seconds), 1)})
    return found


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--soup-go", default=str(ROOT / "build" / "bin" / "soup-go"))
    parser.add_argument("--count", type=int, default=1000, help="timed Put+Get per run (1000)")
    parser.add_argument("--warmup", type=int, default=100, help="untimed Put+Get per run (100)")
    parser.add_argument("--repeat", type=int, default=5, help="round-trip rounds (5)")
    parser.add_argument("--lifecycle-repeat", type=int, default=5, help="lifecycle rounds (5)")
    parser.add_argument(
        "--outside-runs",
        type=int,
        default=10,
        help="kv put runs per case per round, from outside (10)",
    )
    parser.add_argument("--startup-repeat", type=int, default=7, help="cold starts (7)")
    parser.add_argument("--keygen-repeat", type=int, default=5, help="keys per type (5)")
    parser.add_argument(
        "--concurrency", type=int, nargs="+", default=[1, 16, 32], help="callers (1 16 32)"
    )
    parser.add_argument(
        "--load-count", type=int, default=500, help="Put+Get per connection, load (500)"
    )
    parser.add_argument("--load-repeat", type=int, default=3, help="load rounds (3)")
    parser.add_argument(
        "--throughput-count", type=int, default=200, help="Put+Get per caller, other rows (200)"
    )
    parser.add_argument("--run-timeout", type=float, default=120.0, help="bound per run (s)")
    parser.add_argument("--load-timeout", type=float, default=900.0, help="bound per load run")
    parser.add_argument(
        "--sections",
        nargs="+",
        default=list(bench_report.SECTIONS),
        choices=bench_report.SECTIONS,
        help="what to run (all)",
    )
    parser.add_argument("--quick", action="store_true", help="a small smoke run (for tests)")
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "reports")
    parser.add_argument(
        "--readme",
        type=Path,
        help="rewrite this README's bench section (only from a run with lifecycle_outside and "
        "load; not after --quick, nor "
        "when the section was refused)",
    )
    args = parser.parse_args()
    if args.quick:
        args.count, args.warmup, args.repeat = 20, 5, 1
        args.lifecycle_repeat = args.startup_repeat = args.keygen_repeat = args.load_repeat = 1
        args.load_count = args.throughput_count = 10
        args.outside_runs = 2
    return args


def use_bytecode_cache() -> str:
    """Let every Python process of the run read and write .pyc files in build/pycache."""
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    cache = os.environ.setdefault("PYTHONPYCACHEPREFIX", str(ROOT / "build" / "pycache"))
    for code in ("import soup.lab.cli", PLUGIN_IMPORTS):
        subprocess.run([PY, "-c", code], check=True, timeout=120)  # fill it before timing
    return cache


def main() -> None:
    args = parse_args()
    cache = use_bytecode_cache()
    scratch = Path(tempfile.mkdtemp(prefix="soup-bench-", dir=_scratch_root()))
    bench = Bench(args, scratch)
    doc: dict[str, Any] = {
        "quick": args.quick,
        "cpus": os.cpu_count(),
        "kv_dir_on": "tmpfs" if _scratch_root() else "disk",
        "count": args.count,
        "warmup": args.warmup,
        "bytecode_cache": cache,
    }
    try:
        sections = set(args.sections)
        if "round_trips" in sections:
            doc["round_trips"] = bench.round_trips()
            doc["kv_store_us"] = bench.kv_store()
        if "lifecycle" in sections:
            doc["lifecycle"] = bench.lifecycle()
        if "lifecycle_outside" in sections:
            doc["lifecycle_outside"] = bench.lifecycle_outside()
        if "cold_start" in sections:
            doc["cold_start"] = bench.cold_start()
        if "throughput" in sections:
            doc["throughput"] = bench.throughput()
        if "load" in sections:
            doc["load"] = bench.load()
        if "keygen" in sections:
            doc["keygen"] = keygen(args.keygen_repeat)
    except BenchError as exc:
        sys.exit(f"bench: {exc}")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    doc["walls"] = walls(args.out)
    doc["load_average"] = list(os.getloadavg())
    doc["seconds"] = round(time.monotonic() - bench.started, 1)
    print(bench_report.write(doc, args.out))
    if doc["problems"]:
        sys.exit("bench: refused: " + "; ".join(doc["problems"]))
    if args.readme and doc.get("lifecycle_outside") and doc.get("load") and not args.quick:
        lines = bench_report.readme_lines(doc)[2:]  # without its first heading
        readme_section.rewrite(args.readme, *bench_report.README_MARKERS, "\n".join(lines))


def _scratch_root() -> str | None:
    shm = Path("/dev/shm")  # noqa: S108 - only the parent of a private mkdtemp directory
    return str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else None


if __name__ == "__main__":
    main()
