"""The bench report's rendering on synthetic results (no processes, no timing)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
import bench_report
import readme_section


def spread(median: float) -> dict[str, Any]:
    return {"runs": 3, "min": median * 0.9, "median": median, "max": median * 1.2}


def trip(
    case: str, mean: float, backend: str | None = "go", by_round: list[float] | None = None
) -> dict[str, Any]:
    row = {
        "case": case,
        "tls": backend is not None,
        "backend": backend,
        "mean_us": spread(mean),
        "p50_us": spread(mean),
    }
    if by_round is not None:
        row["mean_us_by_round"] = by_round
    return row


def load(host: str, plugin: str, ops: float, rss: tuple[int, int]) -> dict[str, Any]:
    return {
        "host": host,
        "plugin": plugin,
        "concurrency": 32,
        "count_per_caller": 2000,
        "calls": 128000,
        "ops_per_s": ops,
        "p50_us": 100.0,
        "p99_us": 900.0,
        "rss_before_kib": rss[0],
        "rss_after_kib": rss[1],
    }


def load_case(
    case: str, ops: list[float], cpu: list[float], growth_kib: int = 512
) -> dict[str, Any]:
    return {
        "case": case,
        "tls": None,
        "backend": None,
        "ops_per_s": spread(sorted(ops)[1]),
        "ops_per_s_by_round": ops,
        "cpu_us_per_op": spread(sorted(cpu)[1]),
        "cpu_us_per_op_by_round": cpu,
        "p99_us": spread(900.0),
        "rss_growth_kib_max": growth_kib,
    }


def synthetic() -> dict[str, Any]:
    return {
        "cpus": 2,
        "count": 1000,
        "warmup": 100,
        "kv_dir_on": "tmpfs",
        "load_average": [1.0, 2.0, 3.0],
        "seconds": 60,
        "kv_store_us": spread(70),
        "round_trips": [
            trip("Go->Go", 300, by_round=[300, 600, 300]),
            trip(bench_report.FLOOR, 700, None),
            trip(bench_report.FLOOR_DURABLE, 735, None),  # x1.05 the floor
            trip(bench_report.FLOOR_HOST, 420, None),  # x1.40 Go->Go
            trip(bench_report.FLOOR_HOST_RELAYED, 450, None),  # x1.50 Go->Go
            trip("Go->Python plaintext", 770, None),  # x1.10 the floor: met
            trip("Go->Python native", 1050, "native"),  # x1.50 the floor: not met
            trip("Python->Go", 510, "openssl"),  # x1.70 Go->Go: met
            # Per round x3.0, x2.5, x2.0 Go->Go: the median ratio is x2.5, though the
            # medians (900 / 300) would give x3.0.
            trip("Python->Python native", 900, "native", by_round=[900, 1500, 600]),
        ],
        "lifecycle": [
            {"case": "Go->Go", "wall_ms": spread(30), "steps_ms": {"spawn": 10.0, "put": 1.0}},
            {"case": "Go->Python", "wall_ms": spread(210), "steps_ms": {"spawn": 150.0}},
        ],
        "cold_start": {
            "spawn_to_handshake_ms": spread(180),
            "floor_spawn_to_handshake_ms": spread(120),
            "floor_auto_mtls_spawn_to_handshake_ms": spread(150),
            "interpreter_ms": spread(10),
            "imports_ms": 140.0,
            "imports_traced_ms": 160.0,
            "keygen_ms": spread(1.5),
            "rest_ms": 28.5,
            "importtime_top": bench_report.parse_importtime(IMPORTTIME)["top"],
            "key_type": "ec-p256",
        },
        "throughput": [
            load("go", "soup-go", 2000, (16000, 17000)),
            load("go", "soup native", 1000, (50000, 70000)),
            load("go", "floor", 600, (40000, 41000)),
        ],
        "load": {
            "connections": 32,
            "count_per_connection": 500,
            "rounds": 3,
            "rows": [
                load_case(bench_report.GO_GO, [6000, 6000, 6000], [100, 100, 100]),
                load_case(bench_report.FLOOR, [1500, 1000, 2000], [600, 900, 450]),
                # the raised bar: soup plaintext x0.92, x0.95, x0.8 of it (median x0.92)
                load_case(bench_report.FLOOR_SMALL, [1300, 1000, 1750], [650, 950, 500]),
                load_case(bench_report.FLOOR_DURABLE, [1200, 900, 1400], [800, 1000, 640]),
                load_case(bench_report.FLOOR_RELAYED, [900, 700, 1000], [1100, 1300, 900]),
                # per round x0.8, x0.95, x0.7 the floor: median x0.8 (medians: 1400/1500)
                load_case(bench_report.LOAD_PLAIN, [1200, 950, 1400], [800, 950, 650]),
                # x0.6 soup-go in every round; +19.5 MiB in its worst round
                load_case("Go->Python native", [3600, 3600, 3600], [300, 300, 300], 19968),
                load_case(bench_report.LOAD_BRIDGE, [1275, 850, 1600], [700, 1000, 560]),
            ],
        },
        "keygen": [
            {"key_type": "ec-p256", "ms": spread(1.0)},
            {"key_type": "rsa-2048", "ms": spread(80.0)},
        ],
        "walls": [{"report": "proof", "seconds": 42.0}],
    }


IMPORTTIME = """\
import time: self [us] | cumulative | imported package
import time:       100 |        100 |   _io
import time:      2000 |      90000 | grpc
import time:      5000 |      60000 |   grpc._cython.cygrpc
import time:       300 |        300 |     grpc._cython
import time:      1000 |      30000 | cryptography.x509
unrelated line
"""


def test_parse_importtime_totals_and_ranks() -> None:
    parsed = bench_report.parse_importtime(IMPORTTIME)
    # The name column: one space at the top level, two more per nesting level.
    names = [e["module"] for e in parsed["top"]]
    assert names[:2] == ["grpc", "grpc._cython.cygrpc"]
    assert "grpc._cython" not in names  # depth 2: below the list's cut
    grpc = parsed["top"][0]
    assert grpc == {"module": "grpc", "depth": 0, "self_ms": 2.0, "cumulative_ms": 90.0}
    assert parsed["total_ms"] == 120.0  # grpc + cryptography.x509 (the top level)


def test_ratios_and_targets() -> None:
    doc = synthetic()
    bench_report.ratios(doc)
    trips = {r["case"]: r for r in doc["round_trips"]}
    assert trips["Go->Python plaintext"]["ratio_vs_floor"] == 1.1
    assert trips["Python->Go"]["ratio_vs_go"] == 1.7
    assert trips["Python->Python native"]["ratio_vs_go"] == 2.5  # paired by round
    assert doc["lifecycle"][1]["ratio_vs_go"] == 7.0
    assert doc["cold_start"]["ratio_vs_floor"] == 1.5
    assert doc["cold_start"]["ratio_vs_floor_auto_mtls"] == 1.2
    assert doc["throughput"][1]["vs_soup_go"] == 0.5
    assert doc["keygen"][1]["ratio_vs_ec_p256"] == 80.0
    found = {t["target"]: t for t in bench_report.targets(doc)}
    assert found["Go->Python plaintext vs floor"]["met"] is True
    assert found["Go->Python plaintext vs floor"]["bound"] == 1.05
    assert found["Go->Python plaintext vs floor"]["bound_row"] == bench_report.FLOOR_DURABLE
    assert found["Go->Python native vs floor"]["met"] is False
    assert found["Go->Python openssl vs floor"]["met"] is None  # not in this run
    assert found["Go->Python openssl vs floor"]["bound"] is None
    assert found["Python->Go vs Go->Go"]["met"] is True
    assert found["Python->Go vs Go->Go"]["bound"] == 1.5
    assert found["Python->Go vs Go->Go"]["vs_bound"] == 1.13  # 1.7 / 1.5
    assert found["Python->Python native vs Go->Go"]["met"] is True
    assert found["Python plugin spawn to handshake line (ms)"]["met"] is False
    assert found["lifecycle Go->Python vs Go->Go"]["met"] is False
    plain = found[f"c=32 {bench_report.LOAD_PLAIN} ops/s vs floor"]
    assert (plain["value"], plain["met"]) == (0.8, False)  # paired by round, limit >= 0.9
    # The bound: the floor with soup's store, x0.8, x0.9, x0.7 the floor: median x0.8;
    # soup plaintext is x1.0, x1.06, x1.0 of it.
    assert (plain["bound"], plain["bound_row"]) == (0.8, bench_report.FLOOR_DURABLE)
    assert plain["vs_bound"] == 1.0
    bridge = found[f"c=32 {bench_report.LOAD_BRIDGE} ops/s vs floor"]
    assert (bridge["value"], bridge["met"], bridge["bound_row"]) == (  # x0.85, x0.85, x0.8
        0.85,
        True,
        bench_report.FLOOR_RELAYED,
    )
    raised = found[f"c=32 {bench_report.LOAD_PLAIN} ops/s vs floor with 4 workers"]
    assert (raised["value"], raised["met"], raised["bound"]) == (0.92, True, 0.9)
    raised = found[f"c=32 {bench_report.LOAD_BRIDGE} ops/s vs floor with 4 workers"]
    assert (raised["value"], raised["met"]) == (0.91, True)  # x0.98, x0.85, x0.91
    assert found["c=32 Go->Python native ops/s vs soup-go"]["met"] is True  # x0.6 >= 0.45
    assert found[f"c=32 {bench_report.LOAD_BRIDGE} ops/s vs soup-go"]["met"] is False
    assert found[f"c=32 {bench_report.LOAD_PLAIN} RSS growth (MiB)"]["met"] is True
    assert found["c=32 Go->Python native RSS growth (MiB)"] == {
        "target": "c=32 Go->Python native RSS growth (MiB)",
        "value": 19.5,
        "limit": "<= 10",
        "met": False,
        "bound": None,
        "bound_row": None,
        "vs_bound": None,
    }


def test_cold_start_ratios_pair_the_rounds() -> None:
    doc = synthetic()
    start = doc["cold_start"]
    start["spawn_to_handshake_ms_by_round"] = [180.0, 300.0, 180.0]
    start["floor_auto_mtls_spawn_to_handshake_ms_by_round"] = [150.0, 200.0, 120.0]
    bench_report.ratios(doc)
    # Per round x1.2, x1.5, x1.5; the medians alone (180 / 150) would say x1.2.
    assert start["ratio_vs_floor_auto_mtls"] == 1.5
    assert start["ratio_vs_floor"] == 1.5  # no floor rounds: a ratio of medians, 180 / 120
    found = {t["target"]: t for t in bench_report.targets(doc)}
    assert found["Python plugin spawn to handshake line (ms)"]["vs_bound"] == 1.5


def test_markdown_and_json_written(tmp_path: Path) -> None:
    markdown = bench_report.write(synthetic(), tmp_path)
    assert (tmp_path / "bench.md").read_text() == markdown
    doc = json.loads((tmp_path / "bench.json").read_text())
    assert doc["targets"]
    assert (
        "| Go->Python plaintext | plaintext | 770 (693-924, n=3) | 770 | x2.57 | x1.10 |"
        in markdown
    )
    assert (
        "| go | soup native | 32 | 128000 | 1000 | x0.50 | 100 | 900 | 50000 -> 70000 |" in markdown
    )
    assert (
        f"| {bench_report.LOAD_PLAIN} | plaintext | 1200 (1080-1440, n=3) | x0.80 | x0.92 | 800 | x1.33 | 0.5 |"
        in markdown
    )
    assert (
        f"| Go->Python native vs floor | 1.5 | <= 1.3 | **no** | 1.05: {bench_report.FLOOR_DURABLE} | x1.43 |"
        in markdown
    )
    assert "| Go->Python openssl vs floor | - | <= 1.3 | not measured | - | - |" in markdown
    assert (
        "| Python plugin spawn to handshake line (ms) | 180.0 | <= 170 | **no** | 150: floor"
        in (markdown)
    )
    assert "| c=32 Go->Python native ops/s vs soup-go | 0.6 | >= 0.45 | yes | - | - |" in markdown
    assert "| grpc (0) | 90 | 2 |" in markdown
    assert "- proof: 42 s" in markdown
    assert "outside the steps (process start/exit) 19" in markdown  # 30 - (10 + 1)
    assert "per Put+Get (x0.10 the floor row)." in markdown  # 70 / 700
    assert "floor plugin with AutoMTLS" in markdown


def outside_row(
    case: str, by_round: list[float], steps: dict[str, float] | None = None
) -> dict[str, Any]:
    return {
        "case": case,
        "wall_ms": spread(sorted(by_round)[len(by_round) // 2]),
        "wall_ms_by_round": by_round,
        "steps_ms": steps or {},
        "tls": None,
    }


def outside(go_wall: float, go_steps: dict[str, float]) -> dict[str, Any]:
    """A lifecycle-from-outside section: the Go->Go row's wall (three rounds alike) and
    soup-go's own steps against it, the floor at 100 ms, soup at x1.1 / +40 ms of it."""
    auto = outside_row(bench_report.OUTSIDE_AUTO_MTLS, [140.0, 150.0, 130.0])
    auto["tls"] = {
        "version": "TLSv1.3",
        "client_key": "ec-p521",
        "server_key": "ec-p256",
        "plugin_backend": "openssl",
    }
    return {
        "hyperfine": "hyperfine 1.15.0",
        "rounds": 3,
        "runs_per_round": 10,
        "first_key_ms": spread(45.0),
        "first_key_type": "ec-p256",
        "rows": [
            outside_row(bench_report.GO_GO, [go_wall] * 3, go_steps),
            outside_row(bench_report.FLOOR, [100.0, 110.0, 90.0]),
            outside_row(bench_report.OUTSIDE_PLAIN, [110.0, 121.0, 99.0]),
            auto,
        ],
    }


# soup-go's own steps against its plugin: 20 + 10 + 2 + 3 = 35 ms.
GO_STEPS = {"spawn": 20.0, "handshake": 10.0, "put": 2.0, "get": 0.5, "shutdown": 3.0}


def test_outside_ratios_and_targets_with_a_consistent_baseline() -> None:
    doc = {"lifecycle_outside": outside(50.0, GO_STEPS)}  # x1.43 of 35 ms: consistent
    bench_report.ratios(doc)
    section = doc["lifecycle_outside"]
    assert section["baseline"] == {
        "ok": True,
        "reason": None,
        "lifecycle_ms": 50.0,
        "parts_ms": 35.0,
        "ratio": 1.43,
    }
    rows = {r["case"]: r for r in section["rows"]}
    assert rows[bench_report.OUTSIDE_PLAIN]["ratio_vs_floor"] == 1.1  # paired by round
    assert rows[bench_report.OUTSIDE_PLAIN]["ratio_vs_go"] == 2.2
    assert bench_report.outside_problems(doc) == []
    found = {t["target"]: t for t in bench_report.targets(doc)}
    plain = found["kv put from outside: soup plaintext vs floor"]
    assert (plain["value"], plain["met"]) == (1.1, False)
    auto = found["kv put from outside: soup AutoMTLS less the floor (ms), at most a first key"]
    assert (auto["value"], auto["limit"], auto["met"]) == (40.0, "<= 45", True)
    lines = "\n".join(bench_report.outside_lines(doc))
    assert "Go->Go baseline checked: x1.43" in lines
    assert f"| {bench_report.OUTSIDE_AUTO_MTLS} | 140 (126-168, n=3) | x2.80 | x1.40 | " in lines
    assert "ec-p521 / ec-p256, openssl |" in lines
    assert "soup plaintext vs floor: 1.1 (limit <= 1.05: **no**)" in lines


def test_an_inconsistent_baseline_is_refused_with_its_reason() -> None:
    # The issue-18 case: a Go->Go lifecycle inflated by the harness (132 ms) against the
    # 35 ms soup-go's own steps add up to: every ratio to it would look x3.8 better.
    doc = {"lifecycle_outside": outside(132.0, GO_STEPS)}
    bench_report.ratios(doc)
    section = doc["lifecycle_outside"]
    assert section["baseline"]["ok"] is False
    assert section["baseline"]["ratio"] == 3.77
    reason = (
        "Go->Go lifecycle from outside 132 ms is x3.77 of soup-go's own spawn-to-handshake "
        "plus RPCs (spawn 20 + handshake 10 + put 2 + shutdown 3 = 35 ms), outside x0.5-x2: "
        "the baseline measures something else, so no ratio to it is reported"
    )
    assert section["baseline"]["reason"] == reason
    assert bench_report.outside_problems(doc) == [reason]
    # No ratio to the refused baseline; the floor's ratios stand.
    assert all(r["ratio_vs_go"] is None for r in section["rows"])
    assert section["rows"][2]["ratio_vs_floor"] == 1.1
    assert f"**Go->Go baseline refused**: {reason}." in "\n".join(bench_report.outside_lines(doc))


def test_a_baseline_faster_than_its_parts_or_without_them_is_refused() -> None:
    fast = {"lifecycle_outside": outside(15.0, GO_STEPS)}  # x0.43: below x0.5
    assert "is x0.43 of soup-go's own" in bench_report.outside_problems(fast)[0]
    no_steps = {"lifecycle_outside": outside(50.0, {"spawn": 20.0})}
    assert bench_report.outside_problems(no_steps) == [
        "Go->Go: soup-go's own steps lack handshake, put, shutdown: nothing to check the "
        "baseline against"
    ]


def test_an_auto_mtls_row_off_the_bridge_is_refused(tmp_path: Path) -> None:
    doc = synthetic()
    doc["lifecycle_outside"] = outside(50.0, GO_STEPS)
    auto = doc["lifecycle_outside"]["rows"][3]
    auto["tls"].update(client_key="ec-p256", plugin_backend="native")
    markdown = bench_report.write(doc, tmp_path)
    reason = (
        f"{bench_report.OUTSIDE_AUTO_MTLS}: client_key 'ec-p256' (not 'ec-p521'), "
        "plugin_backend 'native' (not 'openssl')"
    )
    assert doc["problems"] == [reason]
    assert f"**Refused:** {reason}." in markdown
    assert json.loads((tmp_path / "bench.json").read_text())["problems"] == [reason]


def test_readme_section_rewritten_between_its_markers(tmp_path: Path) -> None:
    start, end = bench_report.README_MARKERS
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{start}\nold table\n{end}\nrest\n")
    readme_section.rewrite(readme, start, end, "new table\n")
    assert readme.read_text() == f"intro\n{start}\nnew table\n{end}\nrest\n"
    readme.write_text("no markers\n")
    with pytest.raises(ValueError, match="no '<!-- bench-outside:start"):
        readme_section.rewrite(readme, start, end, "new table\n")
    # The project's README carries the section `nox -s bench` rewrites.
    text = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert text.index(start) < text.index(end)


def test_cli_start_paired_with_a_bare_interpreter() -> None:
    doc = synthetic()
    doc["lifecycle_outside"] = outside(35.0, GO_STEPS)
    doc["lifecycle_outside"]["cli_start"] = [
        outside_row(bench_report.BARE_PYTHON, [20.0, 40.0, 20.0]),
        # x3.0, x2.0, x3.0 the bare start: x3.0 (met, <= 4)
        outside_row("soup --version", [60.0, 80.0, 60.0]),
        # x5.0, x2.5, x5.0: x5.0 (not met)
        outside_row("soup --help", [100.0, 100.0, 100.0]),
    ]
    for row in doc["lifecycle_outside"]["cli_start"]:
        row["command"] = row["case"]
    bench_report.ratios(doc)
    found = {t["target"]: t for t in bench_report.targets(doc)}
    version = found[f"soup --version vs {bench_report.BARE_PYTHON}"]
    assert (version["value"], version["limit"], version["met"]) == (3.0, "<= 4", True)
    assert found[f"soup --help vs {bench_report.BARE_PYTHON}"]["met"] is False


def test_readme_quotes_outside_cli_start_and_load_as_subsections() -> None:
    doc = synthetic()
    doc["lifecycle_outside"] = outside(35.0, GO_STEPS)
    doc["lifecycle_outside"]["cli_start"] = [
        {**outside_row(bench_report.BARE_PYTHON, [20.0]), "command": "python -c pass"},
        {**outside_row("soup --version", [60.0]), "command": "soup --version"},
    ]
    bench_report.ratios(doc)
    lines = bench_report.readme_lines(doc)
    headings = [line for line in lines if line.startswith("#")]
    assert headings == [
        "### Lifecycle from outside (hyperfine)",
        "### CLI start (hyperfine)",
        "### Under load (32 connections)",
    ]
    assert "| `soup --version` | 60 (54-72, n=3) | x3.00 |" in lines
    targets = next(line for line in lines if line.startswith("Targets (issue 18): c=32"))
    assert f"c=32 {bench_report.LOAD_PLAIN} ops/s vs floor: 0.8 (limit >= 0.9: **no**)" in targets
