"""Merge matrix JSON reports (one per CI shard) into one Markdown report and summary table.

`nox -s report -- build/reports/*.json` (CI: the downloaded shard artifacts). Each shard is
one Python x grpcio line x go-plugin release; the merged report counts every axis, lists
every cell that is not a plain pass under its shard, and fails (exit 1) when a cell failed
or went stale, or when fewer shards arrived than `--expect-shards` says.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import render_report

BAD = ("fail", "stale")


def load(paths: list[Path]) -> list[dict[str, Any]]:
    """The reports, each with the shard name it came from; a non-report is an error."""
    docs = []
    for path in paths:
        doc = json.loads(path.read_text())
        if not isinstance(doc, dict) or not {"name", "environment", "cells"} <= doc.keys():
            raise ValueError(f"{path} is not a matrix report (needs name, environment, cells)")
        docs.append(doc)
    names = Counter(doc["name"] for doc in docs)
    twice = sorted(n for n, count in names.items() if count > 1)
    if twice:
        raise ValueError(f"the same shard twice: {', '.join(twice)}")
    return sorted(docs, key=lambda d: str(d["name"]))


def shard_axes(doc: dict[str, Any]) -> dict[str, str]:
    """Python, grpcio and go-plugin release(s) a shard ran on, read from its report."""
    env = doc["environment"]
    releases = sorted({c["axes"].get("go_plugin", "?") for c in doc["cells"]})
    return {
        "python": str(env.get("python", "?")).split()[0],
        "grpcio": str(env.get("grpcio", "?")),
        "go-plugin": ", ".join(releases),
    }


def summary_table(docs: list[dict[str, Any]]) -> list[str]:
    """One row per shard, then the total: counts per outcome and wall time."""
    outcomes = list(render_report.SYMBOL)
    lines = [
        "| shard | python | grpcio | go-plugin | "
        + " | ".join(render_report.SYMBOL[o] for o in outcomes)
        + " | wall s |",
        "|---" * (5 + len(outcomes)) + "|",
    ]
    total: Counter[str] = Counter()
    for doc in docs:
        counts = render_report.summary(doc["cells"])
        total.update(counts)
        axes = shard_axes(doc)
        wall = doc.get("wall_seconds")
        lines.append(
            f"| {doc['name']} | {axes['python']} | {axes['grpcio']} | {axes['go-plugin']} | "
            + " | ".join(str(counts[o]) for o in outcomes)
            + f" | {'' if wall is None else f'{wall:.0f}'} |"
        )
    wall_sum = sum(float(d.get("wall_seconds") or 0) for d in docs)
    lines.append(
        f"| **total ({len(docs)} shards)** | | | | "
        + " | ".join(str(total[o]) for o in outcomes)
        + f" | {wall_sum:.0f} |"
    )
    return [*lines, ""]


def axis_counts(docs: list[dict[str, Any]]) -> list[str]:
    """Cells run (not unsupported) and their failures per value of each axis."""
    lines = ["## Counts per axis", "", "| axis | value | cells run | failed |", "|---|---|---|---|"]
    tally: dict[tuple[str, str], Counter[str]] = {}
    for doc in docs:
        shard = shard_axes(doc)
        for cell in doc["cells"]:
            values = {
                "python": shard["python"],
                "grpcio": shard["grpcio"],
                "go-plugin": cell["axes"].get("go_plugin", "?"),
                "direction": render_report.direction(cell["axes"]),
                "tls mode": cell["axes"]["mode"],
                "transport": cell["axes"]["transport"],
            }
            for axis, value in values.items():
                counts = tally.setdefault((axis, value), Counter())
                counts["run"] += cell["outcome"] != "unsupported"
                counts["failed"] += cell["outcome"] in BAD
    axes = list(dict.fromkeys(axis for axis, _ in tally))
    for axis, value in sorted(tally, key=lambda key: (axes.index(key[0]), key[1])):
        counts = tally[(axis, value)]
        lines.append(f"| {axis} | {value} | {counts['run']} | {counts['failed']} |")
    return [*lines, ""]


def not_plain_passes(docs: list[dict[str, Any]]) -> list[str]:
    """render_report's details, every cell named with its shard."""
    cells = [
        cell | {"cell": f"{doc['name']}: {cell['cell']}"} for doc in docs for cell in doc["cells"]
    ]
    return render_report.details(cells)


def markdown(docs: list[dict[str, Any]]) -> str:
    cells = [cell for doc in docs for cell in doc["cells"]]
    counts = render_report.summary(cells)
    lines = [
        f"# soup conformance matrix: {len(docs)} shards merged",
        "",
        ", ".join(f"{n} {render_report.SYMBOL[k]}" for k, n in counts.items() if n),
        "",
        "## Shards",
        "",
        *summary_table(docs),
        *axis_counts(docs),
        *not_plain_passes(docs),
    ]
    return "\n".join(lines) + "\n"


def merge(paths: list[Path], out_dir: Path, expect_shards: int | None = None) -> tuple[Path, int]:
    """Write merged.md and merged.json; the exit code is 1 if anything is wrong or missing."""
    docs = load(paths)
    out_dir.mkdir(parents=True, exist_ok=True)
    md_path = out_dir / "merged.md"
    text = markdown(docs)
    problems = []
    if expect_shards is not None and len(docs) != expect_shards:
        problems.append(f"expected {expect_shards} shard reports, got {len(docs)}")
    bad = sum(c["outcome"] in BAD for d in docs for c in d["cells"])
    if bad:
        problems.append(f"{bad} cells failed or went stale")
    if problems:
        text += "\n## Problems\n\n" + "".join(f"- {p}\n" for p in problems)
    md_path.write_text(text)
    summary = {
        "shards": [
            {"name": d["name"], **shard_axes(d), "summary": render_report.summary(d["cells"])}
            for d in docs
        ],
        "summary": render_report.summary([c for d in docs for c in d["cells"]]),
        "problems": problems,
    }
    (out_dir / "merged.json").write_text(json.dumps(summary, indent=1) + "\n")
    for problem in problems:
        print(f"merge_reports: {problem}", file=sys.stderr)
    return md_path, 1 if problems else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reports", nargs="+", type=Path, help="JSON reports of the shards")
    parser.add_argument("--out", type=Path, default=Path("build/reports"), help="output dir")
    parser.add_argument("--expect-shards", type=int, default=None, help="fail unless N arrive")
    args = parser.parse_args()
    md_path, code = merge(args.reports, args.out, args.expect_shards)
    print("\n".join(summary_table(load(args.reports))))
    print(f"wrote {md_path} and {md_path.with_suffix('.json')}")
    sys.exit(code)


if __name__ == "__main__":
    main()
