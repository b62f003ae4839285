"""Merging shard reports (scripts/merge_reports.py): made-up shards, and two real ones.

The real-shard test runs two small matrix shards here (the default go-plugin release and the
oldest one) as CI does, merges their JSON reports and checks every count against them. It
needs both soup-go binaries: SOUP_GO (default build/bin/soup-go) and soup-go@v<oldest> next
to it (`nox -s build_releases`); the integration session runs it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import cells as matrix
import merge_reports

HERE = Path(__file__).resolve().parent
DATA = matrix.load()
OLDEST = str(matrix.releases(DATA)[-1]["go_plugin"])


def cell(name: str, outcome: str, go_plugin: str) -> dict[str, Any]:
    axes = {
        "client": "python", "server": "go", "mode": "auto", "client_key": "ec-p256",
        "server_key": "ec-p521", "transport": "unix", "variant": "", "go_plugin": go_plugin,
    }  # fmt: skip
    return {"cell": name, "outcome": outcome, "axes": axes, "reason": "why", "command": "cmd"}


def shard(path: Path, name: str, python: str, cells: list[dict[str, Any]]) -> Path:
    doc = {
        "name": name,
        "environment": {"python": f"{python} (CPython)", "grpcio": "1.85.3"},
        "wall_seconds": 10.0,
        "cells": cells,
    }
    out = path / f"{name}.json"
    out.write_text(json.dumps(doc))
    return out


def test_merge_counts_every_shard_and_axis(tmp_path: Path) -> None:
    a = shard(
        tmp_path, "a", "3.11.7", [cell("x", "pass", "1.8.0"), cell("y", "unsupported", "1.8.0")]
    )
    b = shard(tmp_path, "b", "3.12.1", [cell("x", "pass", "1.4.8"), cell("z", "xfail", "1.4.8")])
    md_path, code = merge_reports.merge([a, b], tmp_path / "out", expect_shards=2)
    assert code == 0
    md = md_path.read_text()
    assert "# soup conformance matrix: 2 shards merged" in md
    assert "2 PASS, 1 known failure, 1 unsupported" in md
    assert "| a | 3.11.7 | 1.85.3 | 1.8.0 | 1 | 0 | 0 | 0 | 0 | 1 | 10 |" in md
    assert "| **total (2 shards)** | | | | 2 | 0 | 0 | 0 | 1 | 1 | 20 |" in md
    assert "| go-plugin | 1.4.8 | 2 | 0 |" in md
    assert "| python | 3.11.7 | 1 | 0 |" in md
    # every cell that is not a plain pass is named with its shard
    assert "- `b: z`: **known failure**: why" in md
    merged = json.loads((tmp_path / "out" / "merged.json").read_text())
    assert merged["summary"]["pass"] == 2
    assert merged["problems"] == []


def test_a_failed_cell_or_a_missing_shard_fails_the_merge(tmp_path: Path) -> None:
    a = shard(tmp_path, "a", "3.11.7", [cell("x", "fail", "1.8.0")])
    md_path, code = merge_reports.merge([a], tmp_path / "out", expect_shards=3)
    assert code == 1
    md = md_path.read_text()
    assert "- expected 3 shard reports, got 1" in md
    assert "- 1 cells failed or went stale" in md


def test_the_same_shard_twice_or_a_foreign_file_is_refused(tmp_path: Path) -> None:
    a = shard(tmp_path, "a", "3.11.7", [])
    with pytest.raises(ValueError, match="the same shard twice: a"):
        merge_reports.load([a, a])
    other = tmp_path / "other.json"
    other.write_text('{"tool": "coverage"}')
    with pytest.raises(ValueError, match="is not a matrix report"):
        merge_reports.load([other])


def run_shard(reports: Path, name: str, go_plugin: str, keyword: str) -> dict[str, Any]:
    """One small shard, exactly as a matrix session runs one (suite full, one release)."""
    soup_go = os.environ.get("SOUP_GO", str(HERE.parent / "build" / "bin" / "soup-go"))
    argv = [
        sys.executable, "-m", "pytest", str(HERE / "test_matrix.py"), "--suite=full",
        f"--go-plugin={go_plugin}", f"--soup-go={soup_go}", f"--report-name={name}",
        f"--reports={reports}", "-k", keyword, "-p", "no:cacheprovider", "-q",
    ]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    doc: dict[str, Any] = json.loads((reports / f"{name}.json").read_text())
    return doc


@pytest.mark.slow
def test_merge_of_two_real_shards(tmp_path: Path) -> None:
    # the Go<->Python cells without TLS over unix, on the default and the oldest release
    cells = "disabled and python and unix"
    latest = run_shard(tmp_path, "shard-latest", matrix.default_release(DATA), cells)
    oldest = run_shard(tmp_path, "shard-oldest", OLDEST, cells)
    assert len(latest["cells"]) == 3  # go->python, python->go, python->python
    assert len(oldest["cells"]) == 2  # go@old->python, python->go@old
    assert {c["axes"]["go_plugin"] for c in oldest["cells"]} == {OLDEST}
    assert any(c["cell"].startswith(f"go@{OLDEST}->python/") for c in oldest["cells"])
    md_path, code = merge_reports.merge(
        [tmp_path / "shard-latest.json", tmp_path / "shard-oldest.json"],
        tmp_path / "merged",
        expect_shards=2,
    )
    assert code == 0, md_path.read_text()
    merged = json.loads((tmp_path / "merged" / "merged.json").read_text())
    total = len(latest["cells"]) + len(oldest["cells"])
    assert sum(merged["summary"].values()) == total
    assert merged["summary"]["pass"] == sum(
        c["outcome"] == "pass" for d in (latest, oldest) for c in d["cells"]
    )
    assert [s["go-plugin"] for s in merged["shards"]] == [matrix.default_release(DATA), OLDEST]
    assert f"| go-plugin | {OLDEST} | {len(oldest['cells'])} | 0 |" in md_path.read_text()
