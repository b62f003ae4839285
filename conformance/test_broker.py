"""The broker suite: one test per broker.toml cell, two real processes each."""

from __future__ import annotations

import shlex
import time
from typing import Any

import pytest

import broker_cells
import cells as matrix

# Report order: the four directions, then the multiplexing cells of every release.
_ALL = broker_cells.suite_cells(
    broker_cells.load(),
    matrix.load(),
    [str(r["go_plugin"]) for r in matrix.releases(matrix.load())],
)
ORDER = {cell.id: i for i, cell in enumerate(_ALL)}


def test_broker_cell(
    broker_cell: matrix.Cell,
    data: dict[str, Any],
    paths: matrix.Paths,
    record: Any,
    request: pytest.FixtureRequest,
) -> None:
    argv = broker_cells.command(broker_cell, data, paths)
    started = time.monotonic()
    returncode, stdout, stderr = matrix.run_bounded(argv, matrix.CELL_TIMEOUT_S)
    verdict = broker_cells.judge(broker_cell, returncode, stdout, stderr)
    verdict.seconds = round(time.monotonic() - started, 3)
    verdict.command = shlex.join(argv)
    verdict.axes = {
        "client": broker_cell.client, "server": broker_cell.server, "mode": broker_cell.mode,
        "client_key": broker_cell.client_key, "server_key": broker_cell.server_key,
        "transport": broker_cell.transport, "variant": broker_cell.variant or "",
    }  # fmt: skip
    record(verdict, order=ORDER.get(broker_cell.id, len(ORDER)))
    if verdict.outcome != "pass":
        tail = str((verdict.result or {}).get("plugin_stderr_tail") or "")
        pytest.fail(
            f"cell {verdict.cell}: {verdict.reason}\nreproduce: {verdict.command}\n"
            f"--- client stderr (tail) ---\n{stderr[-4000:]}\n"
            f"--- plugin stderr (tail, as captured by the client) ---\n{tail[-4000:]}",
            pytrace=False,
        )
