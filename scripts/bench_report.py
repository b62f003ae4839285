"""Rendering of the bench's results: ratios, targets, checks, Markdown, JSON and a chart.

Pure functions of the results document that scripts/bench.py builds (no processes
here), so the rendering is tested on synthetic data (python/tests/test_bench_report.py).
matplotlib (the ``bench`` extra) is imported only to draw the chart.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

SECTIONS = (
    "round_trips",
    "lifecycle",
    "lifecycle_outside",
    "cold_start",
    "throughput",
    "load",
    "keygen",
)
GO_GO = "Go->Go"
FLOOR = "Go->floor (grpcio minimum), plaintext"
# The raised bar (issue 18: soup's rows beat the floor, whose grpcio runs 32 threads):
# the floor with soup's own pool size. The reference rows that bound soup's rows pay what
# those rows pay, so they take 4 threads too, and the relay runs as soup's plugin-side
# bridge does, in a process of its own.
FLOOR_SMALL = "Go->floor with 4 workers (the raised bar: soup's pool size)"
FLOOR_DURABLE = "Go->floor (4 workers) with soup's durable store (reference)"
FLOOR_RELAYED = (
    "Go->floor (4 workers) with soup's store, behind a minimal Python relay process (reference)"
)
FLOOR_HOST = "host floor (grpcio minimum)->Go, plaintext (reference)"
FLOOR_HOST_RELAYED = "host floor behind a minimal Python relay->Go, plaintext (reference)"
OUTSIDE_PLAIN = "Go->Python plaintext"
OUTSIDE_AUTO_MTLS = "Go->Python AutoMTLS (P-521 host: OpenSSL bridge)"
LOAD_PLAIN = "Go->Python plaintext"
LOAD_BRIDGE = "Go->Python openssl (P-521 host: OpenSSL bridge)"
BARE_PYTHON = "bare interpreter (python -c pass)"
# The CLI's own start may cost at most this many bare interpreter starts (issue 18).
CLI_START_FACTOR = 4.0
# What `soup-go rpc kv put` does, as soup-go's `rpc client test` times its steps: spawn
# (its own key and certificate, the plugin's start to its handshake line), handshake (the
# connection), put, shutdown (the plugin's exit). The Go->Go baseline from outside must be
# within BASELINE_FACTOR of their sum (either way), or its ratios are withheld.
BASELINE_STEPS = ("spawn", "handshake", "put", "shutdown")
BASELINE_FACTOR = 2.0
# soup-go's default AutoMTLS key (as every stock go-plugin host's), which grpcio cannot
# verify: soup's plugin must serve it through its OpenSSL bridge.
BRIDGE_EVIDENCE = {"client_key": "ec-p521", "plugin_backend": "openssl"}
# The README's bench section (lifecycle from outside, CLI start, load), which
# `bench.py --readme` rewrites.
README_MARKERS = (
    "<!-- bench-outside:start (nox -s bench writes this section) -->",
    "<!-- bench-outside:end -->",
)
MIB = 1024


def parse_importtime(stderr: str, top: int = 12) -> dict[str, Any]:
    """Total and heaviest imports from ``python -X importtime`` output (stderr).

    Lines look like ``import time:   123 |   4567 |   package.module``; nesting is the
    indentation of the name. The total is the sum over top-level imports; the list has
    the heaviest top-level and first-level imports by cumulative time.
    """
    entries: list[dict[str, Any]] = []
    for line in stderr.splitlines():
        if not line.startswith("import time:"):
            continue
        parts = line[len("import time:") :].split("|")
        if len(parts) != 3 or not parts[0].strip().isdigit():
            continue  # the header line
        name = parts[2].rstrip()
        depth = (len(name) - len(name.lstrip()) - 1) // 2  # " a": 0, "   a.b": 1
        entries.append(
            {
                "module": name.strip(),
                "depth": depth,
                "self_ms": round(int(parts[0]) / 1000, 1),
                "cumulative_ms": round(int(parts[1]) / 1000, 1),
            }
        )
    total = sum(e["cumulative_ms"] for e in entries if e["depth"] == 0)
    shallow = [e for e in entries if e["depth"] <= 1]
    shallow.sort(key=lambda e: -e["cumulative_ms"])
    return {"total_ms": round(total, 1), "top": shallow[:top]}


def _median(row: dict[str, Any], key: str) -> float:
    return float(row[key]["median"])


def _paired_ratio(
    row: dict[str, Any], key: str, ref: dict[str, Any] | None, ref_key: str | None = None
) -> float | None:
    """Median over the rounds of row[key] / ref[ref_key] within one round: both sides of
    each ratio saw the same machine speed. The rounds are the ``<key>_by_round`` lists;
    without them (or with other rounds) it falls back to a ratio of medians."""
    if ref is None:
        return None
    ref_key = ref_key or key
    mine, theirs = row.get(f"{key}_by_round"), ref.get(f"{ref_key}_by_round")
    if mine and theirs and len(mine) == len(theirs):
        return round(float(statistics.median(a / b for a, b in zip(mine, theirs, strict=True))), 2)
    return round(_median(row, key) / _median(ref, ref_key), 2)


def baseline_check(outside: dict[str, Any]) -> dict[str, Any]:
    """Is the Go->Go lifecycle from outside consistent with soup-go's own spawn-to-handshake
    and RPC steps against the same plugin in the same run? ``reason`` says why not."""
    rows = {r["case"]: r for r in outside.get("rows", [])}
    base = rows.get(GO_GO)
    if base is None:
        return {"ok": False, "reason": f"no {GO_GO} row: no baseline to take ratios to"}
    steps = base.get("steps_ms") or {}
    missing = [name for name in BASELINE_STEPS if name not in steps]
    if missing:
        return {
            "ok": False,
            "reason": f"{GO_GO}: soup-go's own steps lack {', '.join(missing)}: nothing to check "
            "the baseline against",
        }
    parts = round(sum(float(steps[name]) for name in BASELINE_STEPS), 1)
    wall = _median(base, "wall_ms")
    ratio = round(wall / parts, 2) if parts > 0 else float("inf")
    found = {"lifecycle_ms": wall, "parts_ms": parts, "ratio": ratio}
    if 1 / BASELINE_FACTOR <= ratio <= BASELINE_FACTOR:
        return {**found, "ok": True, "reason": None}
    split = " + ".join(f"{name} {steps[name]:g}" for name in BASELINE_STEPS)
    return {
        **found,
        "ok": False,
        "reason": f"{GO_GO} lifecycle from outside {wall:g} ms is x{ratio:g} of soup-go's own "
        f"spawn-to-handshake plus RPCs ({split} = {parts:g} ms), outside "
        f"x{1 / BASELINE_FACTOR:g}-x{BASELINE_FACTOR:g}: the baseline measures something else, "
        f"so no ratio to it is reported",
    }


def bridge_check(outside: dict[str, Any]) -> str | None:
    """Why the AutoMTLS row did not take the path stock hosts take (None: it did)."""
    row = next((r for r in outside.get("rows", []) if r["case"] == OUTSIDE_AUTO_MTLS), None)
    if row is None:
        return None
    tls = row.get("tls") or {}
    wrong = [
        f"{k} {tls.get(k)!r} (not {v!r})" for k, v in BRIDGE_EVIDENCE.items() if tls.get(k) != v
    ]
    return f"{OUTSIDE_AUTO_MTLS}: {', '.join(wrong)}" if wrong else None


def outside_problems(doc: dict[str, Any]) -> list[str]:
    """Reasons the lifecycle-from-outside section cannot be quoted (empty: it can)."""
    outside = doc.get("lifecycle_outside")
    if not outside:
        return []
    found = [baseline_check(outside)["reason"], bridge_check(outside)]
    return [reason for reason in found if reason]


def _outside_ratios(outside: dict[str, Any]) -> None:
    outside["baseline"] = baseline_check(outside)
    _cli_ratios(outside)
    rows = {r["case"]: r for r in outside["rows"]}
    go = rows.get(GO_GO) if outside["baseline"]["ok"] else None
    for row in rows.values():
        row["ratio_vs_go"] = _paired_ratio(row, "wall_ms", go)
        row["ratio_vs_floor"] = _paired_ratio(row, "wall_ms", rows.get(FLOOR))


def _cli_ratios(outside: dict[str, Any]) -> None:
    rows = {r["case"]: r for r in outside.get("cli_start", [])}
    for row in rows.values():
        row["ratio_vs_bare"] = _paired_ratio(row, "wall_ms", rows.get(BARE_PYTHON))


def _load_ratios(load: dict[str, Any]) -> None:
    rows = {r["case"]: r for r in load["rows"]}
    floor, go = rows.get(FLOOR), rows.get(GO_GO)
    for row in rows.values():
        row["ratio_vs_floor"] = _paired_ratio(row, "ops_per_s", floor)
        row["ratio_vs_floor_small"] = _paired_ratio(row, "ops_per_s", rows.get(FLOOR_SMALL))
        row["cpu_vs_floor"] = _paired_ratio(row, "cpu_us_per_op", floor)
        row["ratio_vs_go"] = _paired_ratio(row, "ops_per_s", go)


def ratios(doc: dict[str, Any]) -> None:
    """Add ratio_vs_go / ratio_vs_floor to the rows: per-round ratios of the same run."""
    trips = {r["case"]: r for r in doc.get("round_trips", [])}
    for row in trips.values():
        row["ratio_vs_go"] = _paired_ratio(row, "mean_us", trips.get(GO_GO))
        row["ratio_vs_floor"] = _paired_ratio(row, "mean_us", trips.get(FLOOR))
    cycles = {r["case"]: r for r in doc.get("lifecycle", [])}
    base = cycles.get(GO_GO)
    for row in cycles.values():
        row["ratio_vs_go"] = (
            round(_median(row, "wall_ms") / _median(base, "wall_ms"), 2) if base else None
        )
    if doc.get("lifecycle_outside"):
        _outside_ratios(doc["lifecycle_outside"])
    if doc.get("load"):
        _load_ratios(doc["load"])
    load = doc.get("throughput", [])
    for row in load:
        ref = next(
            (
                r
                for r in load
                if r["host"] == row["host"]
                and r["plugin"] == "soup-go"
                and r["concurrency"] == row["concurrency"]
            ),
            None,
        )
        row["vs_soup_go"] = round(row["ops_per_s"] / ref["ops_per_s"], 2) if ref else None
    start = doc.get("cold_start")
    if start:
        spawn = "spawn_to_handshake_ms"
        start["ratio_vs_floor"] = _paired_ratio(start, spawn, start, f"floor_{spawn}")
        start["ratio_vs_floor_auto_mtls"] = _paired_ratio(
            start, spawn, start, f"floor_auto_mtls_{spawn}"
        )
    keys = doc.get("keygen", [])
    p256 = next((k for k in keys if k["key_type"] == "ec-p256"), None)
    for row in keys:
        row["ratio_vs_ec_p256"] = (
            round(_median(row, "ms") / _median(p256, "ms"), 2) if p256 else None
        )


def _target(
    name: str,
    value: float | None,
    limit: float,
    *,
    at_most: bool = True,
    bound: tuple[float | None, str] | None = None,
    vs_bound: float | None = None,
) -> dict[str, Any]:
    """One target; ``bound`` is what a reference row (named) reached on the same scale,
    ``vs_bound`` the paired ratio to it where the run has one (else value / bound)."""
    met = None if value is None else (value <= limit if at_most else value >= limit)
    reached, row = bound if bound is not None else (None, None)
    return {
        "target": name,
        "value": value,
        "limit": ("<= " if at_most else ">= ") + f"{limit:g}",
        "met": met,
        "bound": reached,
        "bound_row": row,
        # How close soup got: 1.0 is the bound itself.
        "vs_bound": vs_bound
        if vs_bound is not None
        else (round(value / reached, 2) if value is not None and reached else None),
    }


def targets(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """Issue 10's and 18's targets, judged on this run's medians (None: not measured)."""
    trips = {r["case"]: r for r in doc.get("round_trips", [])}

    def trip(case: str, key: str) -> float | None:
        return trips[case].get(key) if case in trips else None

    def ratio(case: str, key: str, limit: float, bound_row: str | None = None) -> dict[str, Any]:
        bound = None if bound_row is None else (trip(bound_row, key), bound_row)
        versus = "floor" if key == "ratio_vs_floor" else "Go->Go"
        return _target(f"{case} vs {versus}", trip(case, key), limit, bound=bound)

    found = [
        ratio("Go->Python plaintext", "ratio_vs_floor", 1.15, FLOOR_DURABLE),
        ratio("Go->Python native", "ratio_vs_floor", 1.3, FLOOR_DURABLE),
        ratio("Go->Python openssl", "ratio_vs_floor", 1.3, FLOOR_RELAYED),
        ratio("Python->Go", "ratio_vs_go", 1.8, FLOOR_HOST_RELAYED),
        ratio("Go->Python native", "ratio_vs_go", 3.0, FLOOR_DURABLE),
        ratio("Go->Python openssl", "ratio_vs_go", 3.0, FLOOR_RELAYED),
        ratio("Python->Python native", "ratio_vs_go", 3.5),
        ratio("Python->Python openssl", "ratio_vs_go", 3.5),
    ]
    start = doc.get("cold_start")
    found.append(
        _target(
            "Python plugin spawn to handshake line (ms)",
            _median(start, "spawn_to_handshake_ms") if start else None,
            170,
            bound=(
                _median(start, "floor_auto_mtls_spawn_to_handshake_ms") if start else None,
                "floor plugin with AutoMTLS",
            ),
            vs_bound=start.get("ratio_vs_floor_auto_mtls") if start else None,
        )
    )
    cycles = {r["case"]: r for r in doc.get("lifecycle", [])}
    found.append(
        _target(
            "lifecycle Go->Python vs Go->Go",
            cycles["Go->Python"]["ratio_vs_go"] if "Go->Python" in cycles else None,
            6.0,
        )
    )
    found += _outside_targets(doc.get("lifecycle_outside"))
    found += _load_targets(doc.get("load"))
    return found


def _load_floor_targets(load: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Issue 18's targets at 32 connections against the floor and against the raised bar
    (the floor with soup's pool size), each bounded by the reference row that pays what
    that soup row must."""
    rows = {r["case"]: r for r in (load or {}).get("rows", [])}

    def vs(case: str, limit: float, bound_case: str, small: bool) -> dict[str, Any]:
        row, bound = rows.get(case), rows.get(bound_case)
        key, versus = (
            ("ratio_vs_floor_small", "floor with 4 workers")
            if small
            else (
                "ratio_vs_floor",
                "floor",
            )
        )
        return _target(
            f"c=32 {case} ops/s vs {versus}",
            row.get(key) if row else None,
            limit,
            at_most=False,
            bound=(bound.get(key) if bound else None, bound_case),
            vs_bound=_paired_ratio(row, "ops_per_s", bound) if row and bound else None,
        )

    return [
        vs(case, limit, bound, small)
        for small in (False, True)
        for case, limit, bound in (
            (LOAD_PLAIN, 0.9, FLOOR_DURABLE),
            (LOAD_BRIDGE, 0.8, FLOOR_RELAYED),
        )
    ]


def _load_targets(load: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The floor targets (above), issue 10's against soup-go, and RSS growth."""
    rows = {r["case"]: r for r in (load or {}).get("rows", [])}
    found = _load_floor_targets(load)
    for case in ("Go->Python native", LOAD_BRIDGE):
        row = rows.get(case)
        found.append(
            _target(
                f"c=32 {case} ops/s vs soup-go",
                row.get("ratio_vs_go") if row else None,
                0.45,
                at_most=False,
            )
        )
    for case, row in rows.items():
        if case.startswith("Go->Python"):
            growth = round(row["rss_growth_kib_max"] / MIB, 1)
            found.append(_target(f"c=32 {case} RSS growth (MiB)", growth, 10))
    return found


def _outside_targets(outside: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Issue 18's lifecycle targets: `kv put` with soup's plugin against the floor."""
    rows = {r["case"]: r for r in (outside or {}).get("rows", [])}
    plain, auto, floor = rows.get(OUTSIDE_PLAIN), rows.get(OUTSIDE_AUTO_MTLS), rows.get(FLOOR)
    first_key = (outside or {}).get("first_key_ms")
    extra = None
    if auto and floor:
        # Paired: the median over the rounds of AutoMTLS less the floor within a round.
        pairs = zip(auto["wall_ms_by_round"], floor["wall_ms_by_round"], strict=True)
        extra = round(float(statistics.median(a - b for a, b in pairs)), 1)
    cli = {r["case"]: r for r in (outside or {}).get("cli_start", [])}
    return [
        *(
            _target(f"{case} vs {BARE_PYTHON}", row.get("ratio_vs_bare"), CLI_START_FACTOR)
            for case, row in cli.items()
            if case != BARE_PYTHON
        ),
        _target(
            "kv put from outside: soup plaintext vs floor",
            plain.get("ratio_vs_floor") if plain else None,
            1.05,
        ),
        _target(
            "kv put from outside: soup AutoMTLS less the floor (ms), at most a first key",
            extra,
            first_key["median"] if first_key else 0.0,
        ),
    ]


def _spread(s: dict[str, Any], unit: str = "") -> str:
    return f"{s['median']:g}{unit} ({s['min']:g}-{s['max']:g}, n={s['runs']})"


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"x{value:.2f}"


def _table(title: str, intro: list[str], headers: list[str], rows: list[list[Any]]) -> list[str]:
    """A Markdown section: heading, intro lines, one table."""
    lines = [f"## {title}", "", *intro, *([""] if intro else [])]
    lines += ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return [*lines, ""]


def _round_trip_lines(doc: dict[str, Any]) -> list[str]:
    rows = [
        [
            f"{r['case']} (diagnostic)" if r.get("diagnostic") else r["case"],
            r.get("backend") or ("-" if r.get("tls") else "plaintext"),
            _spread(r["mean_us"]),
            f"{r['p50_us']['median']:g}",
            _ratio(r.get("ratio_vs_go")),
            _ratio(r.get("ratio_vs_floor")),
        ]
        for r in doc["round_trips"]
    ]
    headers = ["case", "TLS backend", "mean us: median (min-max, runs)", "p50 us"]
    intro = []
    store = doc.get("kv_store_us")
    if store:
        intro.append(
            "soup's plugin stores every Put durably (temp file, fsync, rename, fsync of the "
            "directory), the floor in a dict. That store alone, in one process on the same "
            f"filesystem: {_spread(store, ' us')} per Put+Get"
            f"{_floor_share(doc, store)}."
        )
    return _table(
        "Round trips (one Put + one Get)", intro, [*headers, "vs Go->Go", "vs floor"], rows
    )


def _floor_share(doc: dict[str, Any], store: dict[str, Any]) -> str:
    floor = next((r for r in doc["round_trips"] if r["case"] == FLOOR), None)
    if floor is None:
        return ""
    return f" (x{store['median'] / floor['mean_us']['median']:.2f} the floor row)"


def _lifecycle_lines(doc: dict[str, Any]) -> list[str]:
    rows = []
    for r in doc["lifecycle"]:
        steps = ", ".join(f"{k} {v:g}" for k, v in r["steps_ms"].items())
        outside = r["wall_ms"]["median"] - sum(r["steps_ms"].values())
        steps += f"; outside the steps (process start/exit) {outside:.0f}"
        rows.append([r["case"], _spread(r["wall_ms"]), _ratio(r.get("ratio_vs_go")), steps])
    headers = ["direction", "wall ms: median (min-max, runs)", "vs Go->Go", "steps (median ms)"]
    return _table("Lifecycle (`rpc client test`: host spawn to exit)", [], headers, rows)


def _targets_sentence(found: list[dict[str, Any]]) -> str:
    """Targets with their values and verdicts, as one line of a section's intro."""
    judged = (
        f"{t['target']}: {'-' if t['value'] is None else t['value']} "
        f"(limit {t['limit']}: {_VERDICTS[t['met']]})"
        for t in found
    )
    return "Targets (issue 18): " + "; ".join(judged) + "."


def outside_lines(doc: dict[str, Any]) -> list[str]:
    """The lifecycle-from-outside table (the README quotes it as it is)."""
    outside = doc["lifecycle_outside"]
    base = outside.get("baseline") or baseline_check(outside)
    if base["ok"]:
        check = (
            f"Go->Go baseline checked: x{base['ratio']:g} of soup-go's own spawn-to-handshake "
            f"plus RPCs ({' + '.join(BASELINE_STEPS)} = {base['parts_ms']:g} ms, allowed "
            f"x{1 / BASELINE_FACTOR:g}-x{BASELINE_FACTOR:g})."
        )
    else:
        check = f"**Go->Go baseline refused**: {base['reason']}."
    bridge = bridge_check(outside)
    key = outside["first_key_ms"]
    intro = [
        f"`soup-go rpc kv put` as a whole process (host start to exit, the plugin's start, "
        f"connection, one Put, shutdown), timed by {outside['hyperfine']} (`--shell=none`): "
        f"{outside['runs_per_round']} runs per case in each of {outside['rounds']} rounds, "
        "every case in each round, the order reversed every other round; ratios are medians "
        "of the ratios within a round. TLS: soup-go's own keys (host / plugin) and the "
        f"backend soup's plugin logged. {check}"
        + (f" **Not the bridge path**: {bridge}." if bridge else ""),
        f"A process's first key and certificate ({outside['first_key_type']}, soup.certs): "
        f"{_spread(key, ' ms')}.",
        _targets_sentence(_outside_targets(outside)),
    ]
    rows = []
    for r in outside["rows"]:
        tls = r.get("tls")
        keys = "plaintext" if tls is None else f"{tls['client_key']} / {tls['server_key']}"
        if tls and tls.get("plugin_backend"):
            keys += f", {tls['plugin_backend']}"
        rows.append(
            [
                r["case"],
                _spread(r["wall_ms"]),
                _ratio(r.get("ratio_vs_go")),
                _ratio(r.get("ratio_vs_floor")),
                keys,
            ]
        )
    headers = ["plugin of `soup-go rpc kv put`", "wall ms: median (min-max, runs)"]
    headers += ["vs Go->Go", "vs floor", "TLS keys (host / plugin), plugin backend"]
    return _table("Lifecycle from outside (hyperfine)", intro, headers, rows)


def _cold_start_lines(doc: dict[str, Any]) -> list[str]:
    s = doc["cold_start"]
    intro = [
        f"- soup plugin ({s['key_type']}): {_spread(s['spawn_to_handshake_ms'], ' ms')}; "
        f"floor plugin: {_spread(s['floor_spawn_to_handshake_ms'], ' ms')} "
        f"({_ratio(s.get('ratio_vs_floor'))} the floor)",
        "- floor plugin with AutoMTLS (cryptography's x509 for a new key and certificate, "
        "the host's as root, grpcio's TLS), what any AutoMTLS plugin on grpcio and "
        f"cryptography pays: {_spread(s['floor_auto_mtls_spawn_to_handshake_ms'], ' ms')} "
        f"(soup: {_ratio(s.get('ratio_vs_floor_auto_mtls'))} of it)",
        f"- breakdown (medians): bare interpreter start and exit "
        f"{s['interpreter_ms']['median']:g} ms, imports {s['imports_ms']:g} ms (the plugin's "
        "modules, timed in the process), key and certificate (a process's first) "
        f"{s['keygen_ms']['median']:g} ms, the rest (arguments, TLS set-up, listen, server "
        f"start, handshake line; the start less those parts within each round) "
        f"{s['rest_ms']:g} ms",
        "",
        f"Heaviest imports, from one `-X importtime` run of the plugin (tracing slows it: "
        f"{s['imports_traced_ms']:g} ms in all there):",
    ]
    rows = [
        [f"{e['module']} ({e['depth']})", f"{e['cumulative_ms']:g}", f"{e['self_ms']:g}"]
        for e in s["importtime_top"]
    ]
    headers = ["import (depth)", "cumulative ms", "self ms"]
    return _table("Python plugin cold start (spawn to handshake line)", intro, headers, rows)


def cli_start_lines(doc: dict[str, Any]) -> list[str]:
    """`soup --version` / `--help` against a bare interpreter (the README quotes it)."""
    outside = doc["lifecycle_outside"]
    rows = [
        [f"`{r['command']}`", _spread(r["wall_ms"]), _ratio(r.get("ratio_vs_bare"))]
        for r in outside.get("cli_start", [])
    ]
    intro = [
        f"Whole processes timed by {outside['hyperfine']} in the same rounds; the CLI may "
        f"take at most x{CLI_START_FACTOR:g} a bare interpreter's start (issue 18)."
    ]
    headers = ["command", "wall ms: median (min-max, runs)", "vs bare interpreter"]
    return _table("CLI start (hyperfine)", intro, headers, rows)


def load_lines(doc: dict[str, Any]) -> list[str]:
    """The Go host's 32 connections in rounds (the README quotes it as it is)."""
    load = doc["load"]
    intro = [
        f"soup-go `rpc client bench --concurrency {load['connections']}`: "
        f"{load['connections']} connections x {load['count_per_connection']} Put+Get each, "
        f"every case once in each of {load['rounds']} rounds (the order reversed every other "
        "round), every call succeeded (a failed call fails the bench). Ratios are medians of "
        "the ratios within a round; plugin CPU per op (user+sys from /proc, the plugin's child "
        "processes included) depends little on how busy the machine is. RSS growth: the "
        "largest over the rounds. The floor's grpcio runs 32 threads; soup's rows beat it, so "
        "the bar is raised to the floor with soup's pool size (4 threads), with the same "
        "limits.",
        _targets_sentence(_load_floor_targets(load)),
    ]
    rows = []
    for r in load["rows"]:
        tls = r.get("tls")
        keys = "plaintext" if tls is None else f"{tls['client_key']} / {tls['server_key']}"
        rows.append(
            [
                r["case"],
                keys + (f", {r['backend']}" if r.get("backend") else ""),
                _spread(r["ops_per_s"]),
                _ratio(r.get("ratio_vs_floor")),
                _ratio(r.get("ratio_vs_floor_small")),
                f"{r['cpu_us_per_op']['median']:g}",
                _ratio(r.get("cpu_vs_floor")),
                f"{r['rss_growth_kib_max'] / MIB:.1f}",
            ]
        )
    headers = ["plugin (Go host, 32 connections)", "TLS keys (host / plugin), backend"]
    headers += ["ops/s: median (min-max, rounds)", "ops/s vs floor", "vs floor, 4 workers"]
    headers += ["plugin CPU us/op (with its child processes)"]
    headers += ["CPU vs floor", "RSS growth MiB"]
    return _table("Under load (32 connections)", intro, headers, rows)


def readme_lines(doc: dict[str, Any]) -> list[str]:
    """What the README's bench section quotes: lifecycle from outside, CLI start, load."""
    lines = outside_lines(doc)
    if doc["lifecycle_outside"].get("cli_start"):
        lines += cli_start_lines(doc)
    if doc.get("load"):
        lines += load_lines(doc)
    return [f"#{line}" if line.startswith("## ") else line for line in lines]


def _throughput_lines(doc: dict[str, Any]) -> list[str]:
    intro = [
        "The Go host opens one connection per caller; the Python host runs its callers as "
        "threads over its one channel. Every call succeeded (a failed call fails the bench)."
    ]
    rows = [
        [
            r["host"],
            r["plugin"],
            r["concurrency"],
            r["calls"],
            f"{r['ops_per_s']:g}",
            _ratio(r.get("vs_soup_go")),
            f"{r['p50_us']:g}",
            f"{r['p99_us']:g}",
            f"{r['rss_before_kib']} -> {r['rss_after_kib']}",
        ]
        for r in doc["throughput"]
    ]
    headers = ["host", "plugin", "callers", "calls", "ops/s", "vs soup-go", "p50 us", "p99 us"]
    title = "Throughput (callers at once; ops = Put+Get round trips; one run each)"
    return _table(title, intro, [*headers, "plugin RSS KiB before -> after"], rows)


def _keygen_lines(doc: dict[str, Any]) -> list[str]:
    rows = [
        [r["key_type"], _spread(r["ms"]), _ratio(r.get("ratio_vs_ec_p256"))] for r in doc["keygen"]
    ]
    headers = ["key type", "ms: median (min-max, runs)", "vs ec-p256"]
    return _table("Key generation (soup.certs.self_signed, in process)", [], headers, rows)


_VERDICTS = {True: "yes", False: "**no**", None: "not measured"}


def _target_lines(found: list[dict[str, Any]]) -> list[str]:
    rows = [
        [
            t["target"],
            "-" if t["value"] is None else t["value"],
            t["limit"],
            _VERDICTS[t["met"]],
            "-" if t.get("bound") is None else f"{t['bound']:g}: {t['bound_row']}",
            _ratio(t.get("vs_bound")),
        ]
        for t in found
    ]
    intro = [
        "Bound: the same figure for a reference that pays only what soup's plugin or host "
        "must (grpcio, soup's durable store, a relay for P-521 peers, AutoMTLS), none of "
        "soup's own code on the call path. soup / bound says how close soup got (1.00: the "
        "bound itself); for the cold start it is the median of the ratios within each "
        "round, not value / bound."
    ]
    headers = ["target", "value", "limit", "met", "bound (reference)", "soup / bound"]
    return _table("Targets of issues 10 and 18 (this run)", intro, headers, rows)


def render_markdown(doc: dict[str, Any]) -> str:
    load = ", ".join(f"{x:.1f}" for x in doc.get("load_average", []))
    lines = [
        "# soup bench" + (" (--quick: a smoke run, not a measurement)" if doc.get("quick") else ""),
        "",
        f"{doc.get('cpus')} CPUs, load average {load or '-'} at the end; KV directories on "
        f"{doc.get('kv_dir_on')}; {doc.get('count')} timed round trips per round-trip run "
        f"(+{doc.get('warmup')} warm-up); bench wall time {doc.get('seconds', 0):.0f} s; "
        f"Python bytecode cache {doc.get('bytecode_cache', '-')}. "
        "Round-trip ratios are medians of the ratios within each round of this run; the "
        "others are ratios of medians.",
        "",
        *[f"**Refused:** {problem}." for problem in doc.get("problems", [])],
        *([""] if doc.get("problems") else []),
    ]
    renderers = {
        "round_trips": _round_trip_lines,
        "lifecycle": _lifecycle_lines,
        "lifecycle_outside": lambda d: (
            outside_lines(d)
            + (cli_start_lines(d) if d["lifecycle_outside"].get("cli_start") else [])
        ),
        "cold_start": _cold_start_lines,
        "throughput": _throughput_lines,
        "load": load_lines,
        "keygen": _keygen_lines,
    }
    for section in SECTIONS:
        if doc.get(section):
            lines += renderers[section](doc)
    if doc.get("walls"):
        lines += ["## Wall time of the last conformance runs", ""]
        lines += [f"- {w['report']}: {w['seconds']:g} s" for w in doc["walls"]]
        lines.append("")
    lines += _target_lines(doc.get("targets", []))
    return "\n".join(lines)


def render_chart(doc: dict[str, Any], path: Path) -> bool:
    """Round-trip ratios and throughput as one PNG; False when matplotlib is missing."""
    try:
        import matplotlib as mpl  # noqa: PLC0415 - optional (the bench extra)

        mpl.use("Agg")
        import matplotlib.pyplot as plt  # noqa: PLC0415
    except ImportError:
        return False
    trips = [r for r in doc.get("round_trips", []) if r.get("ratio_vs_go") is not None]
    load = (doc.get("load") or {}).get("rows", [])
    fig, (left, right) = plt.subplots(1, 2, figsize=(14, 6))
    left.barh([r["case"] for r in trips], [r["ratio_vs_go"] for r in trips], color="tab:blue")
    left.axvline(1.0, color="black", linewidth=0.8)
    left.set_xlabel("mean Put+Get time vs Go->Go (x)")
    left.invert_yaxis()
    right.barh(
        [r["case"] for r in load], [r["ops_per_s"]["median"] for r in load], color="tab:green"
    )
    right.set_xlabel("Put+Get round trips per second, Go host, 32 connections (median)")
    right.invert_yaxis()
    fig.suptitle("soup bench" + (" (quick smoke run)" if doc.get("quick") else ""))
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def write(doc: dict[str, Any], out: Path) -> str:
    """Add ratios and targets, write bench.json, bench.md and bench.png; returns the Markdown."""
    ratios(doc)
    doc["targets"] = targets(doc)
    doc["problems"] = outside_problems(doc)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench.json").write_text(json.dumps(doc, indent=1) + "\n")
    markdown = render_markdown(doc)
    if render_chart(doc, out / "bench.png"):
        markdown += "\n![bench chart](bench.png)\n"
    (out / "bench.md").write_text(markdown)
    return markdown
