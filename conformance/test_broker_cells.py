"""Unit tests of the broker suite's data and checks (no processes)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import broker_cells
import cells as matrix

DATA = broker_cells.load()
MATRIX = matrix.load()


def test_every_direction_key_and_transport_is_covered() -> None:
    chosen = [c for c in broker_cells.cells(DATA, MATRIX) if c.mode == "auto"]
    assert len(chosen) == 24
    for client, server in DATA["directions"]:
        mine = [c for c in chosen if (c.client, c.server) == (client, server)]
        assert {c.transport for c in mine} == {"unix", "tcp"}
        assert {c.client_key for c in mine} == set(broker_cells.auto_keys(client, "client", MATRIX))
        assert {c.server_key for c in mine} == set(broker_cells.auto_keys(server, "server", MATRIX))
        assert all(matrix.unsupported_reason(c, MATRIX) is None for c in mine)
    # The Go plugin's AutoMTLS is P-521 only; Python plugins meet other keys than their host's.
    assert {c.server_key for c in chosen if c.server == "go"} == {"ec-p521"}
    assert all(c.client_key != c.server_key for c in chosen if c.server == "python")


def test_every_transport_doubles_the_auto_cells() -> None:
    assert len(broker_cells.cells(DATA | {"every_transport": True}, MATRIX)) == 48 + 4


def test_manual_mode_once_per_direction_and_supported() -> None:
    manual = [c for c in broker_cells.cells(DATA, MATRIX) if c.mode == "manual"]
    assert {(c.client, c.server) for c in manual} == {tuple(d) for d in DATA["directions"]}
    assert all(matrix.unsupported_reason(c, MATRIX) is None for c in manual)


def _passing(cell: matrix.Cell) -> dict[str, Any]:
    a, b = 17, 25
    return {
        "ok": True, "error": None,
        "client": {"impl": cell.client}, "server": {"impl": cell.server},
        "tls_mode": "auto", "client_key": cell.client_key, "server_key": cell.server_key,
        "transport": cell.transport, "values": [a, b], "total": a + b,
        "host_helper_calls": [[0, a], [a, b]], "plugin_helper_sum": a + b,
        "steps": [{"name": n, "ok": True} for n in broker_cells.STEPS],
    }  # fmt: skip


CELL = matrix.parse_id("go->python/auto/ec-p521->rsa-4096/unix")


def test_a_real_round_trip_passes() -> None:
    verdict = broker_cells.judge(CELL, 0, json.dumps(_passing(CELL)), "")
    assert (verdict.outcome, verdict.reason) == ("pass", None)


def test_a_callback_that_never_reached_the_host_fails() -> None:
    result = _passing(CELL) | {"host_helper_calls": []}
    verdict = broker_cells.judge(CELL, 0, json.dumps(result), "")
    assert verdict.outcome == "fail"
    assert "the host's AddHelper must have served Sum(0, 17)" in str(verdict.reason)


def test_wrong_sums_keys_and_missing_steps_fail_with_reasons() -> None:
    result = _passing(CELL) | {"total": 41, "plugin_helper_sum": None, "server_key": "ec-p256"}
    result["steps"] = result["steps"][:-1]
    reason = str(broker_cells.judge(CELL, 1, json.dumps(result), "").reason)
    for text in (
        "total is 41, expected 42",
        "plugin_helper_sum is None",
        "server_key is 'ec-p256', expected 'rsa-4096'",
        "step shutdown missing",
    ):
        assert text in reason


def test_no_json_and_timeout_fail_with_reasons() -> None:
    assert "no result JSON (exit 2)" in str(broker_cells.judge(CELL, 2, "", "usage").reason)
    assert "did not finish within" in str(broker_cells.judge(CELL, None, "", "").reason)


def test_command_runs_callback_test_against_a_plain_server_start() -> None:
    paths = matrix.Paths("py", "soup-go", Path("/c"), Path("/kv"))
    argv = broker_cells.command(CELL, MATRIX, paths)
    assert argv[:6] == ["soup-go", "rpc", "client", "callback-test", "--json", "--timeout"]
    server = argv[argv.index("--server") + 1]
    assert server.startswith("py -m soup rpc server-start --tls-mode auto --key-type rsa-4096")
    assert server.endswith("--transport unix")


def test_multiplex_cells_run_per_release_with_that_releases_soup_go() -> None:
    every = [str(r["go_plugin"]) for r in matrix.releases(MATRIX)]
    chosen = broker_cells.multiplex_cells(DATA, MATRIX, every)
    listed = DATA["multiplex"]["releases"]
    assert "1.4.8" not in listed  # go-plugin has multiplexing from v1.6.0
    assert all(c.variant == "multiplex" for c in chosen)
    assert all(c.client_args == ("--grpc-broker-multiplex",) for c in chosen)
    parsed = [matrix.parse_id(i) for i in DATA["multiplex"]["cells"]]
    with_go = [c for c in parsed if matrix.GO in (c.client, c.server)]
    assert len(chosen) == len(with_go) * len(listed) + len(parsed) - len(with_go)
    old = [c for c in chosen if "go@1.6.3" in (c.client, c.server)]
    assert {matrix.base_impl(c.client) for c in old} | {matrix.base_impl(c.server) for c in old} == {
        "go", "python",
    }  # fmt: skip
    # the default run (the tree's release) takes the four directions and its own cells
    default = broker_cells.suite_cells(DATA, MATRIX, every[:1])
    assert len(default) == len(broker_cells.cells(DATA, MATRIX)) + len(
        broker_cells.multiplex_cells(DATA, MATRIX, every[:1])
    )
    # a releases run takes only those releases' multiplexing cells
    older = broker_cells.suite_cells(DATA, MATRIX, ["1.7.0"])
    assert older
    assert all("go@1.7.0" in (c.client, c.server) for c in older)


def test_a_multiplex_cell_runs_callback_test_with_the_flag() -> None:
    cell = broker_cells.multiplex_cells(DATA, MATRIX, ["1.8.0"])[0]
    paths = matrix.Paths("py", "/bin/soup-go", Path("/c"), Path("/kv"))
    argv = broker_cells.command(cell, MATRIX, paths)
    assert argv[argv.index("callback-test") + 2] == "--grpc-broker-multiplex"


def test_an_older_release_cell_must_have_run_that_build() -> None:
    cell = matrix.parse_id("go@1.6.3->python/auto/ec-p521->ec-p256/unix")
    result = _passing(cell)
    result["client"] = {"impl": "go", "version": "soup-go 0.1.0 (go1.26.8, go-plugin v1.8.0)"}
    verdict = broker_cells.judge(cell, 0, json.dumps(result), "")
    assert verdict.outcome == "fail"
    assert (
        "client.version is 'soup-go 0.1.0 (go1.26.8, go-plugin v1.8.0)', not go-plugin v1.6.3"
        in str(verdict.reason)
    )
    result["client"]["version"] = "soup-go 0.1.0 (go1.26.8, go-plugin v1.6.3)"
    assert broker_cells.judge(cell, 0, json.dumps(result), "").outcome == "pass"
