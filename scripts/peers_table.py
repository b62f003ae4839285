"""The side-by-side table: the four directions for soup, TofuSoup and go-plugin's examples.

Reads a peers report (build/reports/peers.json) and writes build/reports/peers-side-by-side.md
(also printed). Each entry is the first cell of that client->server pair in the run: its
outcome, TLS mode and, when it is not a pass, the reason.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

DIRECTIONS = ("Go->Go", "Python->Python", "Python->Go", "Go->Python")
# family -> direction -> (client impl, server impl)
FAMILIES: dict[str, dict[str, tuple[str, str]]] = {
    "soup": {
        "Go->Go": ("go", "go"),
        "Python->Python": ("python", "python"),
        "Python->Go": ("python", "go"),
        "Go->Python": ("go", "python"),
    },
    "TofuSoup (Python side)": {
        "Python->Python": ("tofusoup", "tofusoup"),
        "Python->Go": ("tofusoup", "go"),
        "Go->Python": ("go", "tofusoup"),
    },
    "go-plugin examples": {
        "Go->Go": ("goplugin-example", "goplugin-example"),
        "Python->Python": ("python", "goplugin-example-py"),
        "Python->Go": ("python", "goplugin-example"),
        "Go->Python": ("goplugin-example", "python"),
    },
}
SHOWN = {"pass": "PASS", "xfail": "known failure", "fail": "FAIL", "stale": "STALE"}


LENIENT_MARKS = {
    "appended by the plugin": "value comes back with text appended",
    "instead of NOT_FOUND": "missing key is not NOT_FOUND",
    "skipped:": "host makes no health call",
}


def lenient_note(reason: str) -> str:
    """A pass under the lenient KV profile says what differed, in short."""
    if not reason.startswith("lenient KV profile"):
        return ""
    found = [note for mark, note in LENIENT_MARKS.items() if mark in reason]
    return " with the lenient KV profile: " + ", ".join(found or ["no difference seen"])


def entry(cells: list[dict[str, Any]], pair: tuple[str, str] | None) -> str:
    if pair is None:
        return "not in this run"
    for v in cells:
        a = v["axes"]
        if (a["client"], a["server"]) == pair and not a.get("variant"):
            text = f"{SHOWN.get(v['outcome'], v['outcome'])} ({a['mode']}, {a['client']}->{a['server']})"
            if v["outcome"] != "pass":
                return f"{text}: {v['reason']}"
            return text + lenient_note(v.get("reason") or "")
    return "not in this run"


def table(cells: list[dict[str, Any]]) -> str:
    lines = ["| direction | " + " | ".join(FAMILIES) + " |", "|---" * (len(FAMILIES) + 1) + "|"]
    for d in DIRECTIONS:
        row = [entry(cells, FAMILIES[f].get(d)) for f in FAMILIES]
        lines.append(f"| {d} | " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", type=Path)
    args = parser.parse_args()
    md = table(json.loads(args.report.read_text())["cells"])
    (args.report.parent / "peers-side-by-side.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
