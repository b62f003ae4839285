"""Tests of the report rendering: a failing cell must show its reason and reproduction."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import render_report

AXES = {"client": "python", "server": "go", "mode": "auto", "transport": "unix", "variant": ""}


def verdict(
    cell: str, outcome: str, client_key: str, server_key: str, **extra: Any
) -> dict[str, Any]:
    axes = AXES | {"client_key": client_key, "server_key": server_key}
    return {
        "cell": cell,
        "outcome": outcome,
        "axes": axes,
        "reason": None,
        "command": "cmd",
    } | extra


BROKEN = verdict(
    "python->go/auto/ec-p256->ec-p521/unix",
    "fail",
    "ec-p256",
    "ec-p521",
    reason="grpcio's native TLS cannot verify the plugin's ec-p521 signature",
    command="python -m soup rpc client test --json --tls-backend native --server 'soup-go rpc server-start'",
)
PASSED = verdict("python->go/auto/ec-p521->ec-p521/unix", "pass", "ec-p521", "ec-p521")
UNSUPPORTED = verdict(
    "python->go/auto/ec-p256->ec-p256/unix", "unsupported", "ec-p256", "ec-p256", reason="p521 only"
)


def test_a_broken_cell_shows_its_reason_and_reproduction(tmp_path: Path) -> None:
    cells = [PASSED, BROKEN, UNSUPPORTED]
    json_path, md_path, _ = render_report.write(
        cells, {"go": "go1"}, tmp_path, "m", proof=False, wall_seconds=12.3
    )
    md = md_path.read_text()
    assert "1 PASS, 1 FAIL, 1 unsupported" in md
    assert f"- `{BROKEN['cell']}`: **FAIL**: {BROKEN['reason']}" in md
    assert f"  - reproduce: `{BROKEN['command']}`" in md
    assert "- 1 cells unsupported: p521 only" in md
    assert "wall time of the run: 12 s for 3 cells" in md
    # The grid marks the failing cell where its row and column meet.
    assert "| client \\ server | go ec-p256 | go ec-p521 |" in md
    assert "| python ec-p256 | - | **FAIL** |" in md
    assert "| python ec-p521 |   | ok |" in md
    doc = json.loads(json_path.read_text())
    assert doc["summary"]["fail"] == 1
    assert doc["wall_seconds"] == 12.3


def test_terminal_table_counts_outcomes_per_direction() -> None:
    table = render_report.terminal([PASSED, BROKEN, UNSUPPORTED])
    row = next(line for line in table.splitlines() if line.startswith("Python->Go"))
    assert row.split()[2:] == ["1", "0", "1", "0", "0", "1"]


def test_all_passing_says_so(tmp_path: Path) -> None:
    _, md_path, _ = render_report.write([PASSED], {}, tmp_path, "m", proof=False)
    assert "None: every cell passed." in md_path.read_text()
