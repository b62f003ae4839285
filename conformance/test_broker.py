"""The broker suite: one test per broker.toml cell, two real processes each."""

from __future__ import annotations

import shlex
import time
from typing import Any

import pytest

import broker_cells
import cells as matrix

CELLS = broker_cells.cells(broker_cells.load(), matrix.load())


@pytest.mark.parametrize("broker_cell", CELLS, ids=[c.id for c in CELLS])
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
        "transport": broker_cell.transport, "variant": "",
    }  # fmt: skip
    record(verdict, order=CELLS.index(broker_cell))
    if verdict.outcome != "pass":
        tail = str((verdict.result or {}).get("plugin_stderr_tail") or "")
        pytest.fail(
            f"cell {verdict.cell}: {verdict.reason}\nreproduce: {verdict.command}\n"
            f"--- client stderr (tail) ---\n{stderr[-4000:]}\n"
            f"--- plugin stderr (tail, as captured by the client) ---\n{tail[-4000:]}",
            pytrace=False,
        )
