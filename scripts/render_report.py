"""Render matrix/proof reports (Markdown, JSON, terminal table) from cell verdicts.

Used by the conformance runner at the end of a run; also a CLI to re-render a saved
JSON report: `python scripts/render_report.py build/reports/matrix.json`.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import render_html

SYMBOL = {
    "pass": "PASS",
    "negative-pass": "PASS (fails as required)",
    "fail": "FAIL",
    "stale": "STALE",
    "xfail": "known failure",
    "unsupported": "unsupported",
}
GRID_MARK = {
    "pass": "ok",
    "fail": "**FAIL**",
    "stale": "**STALE**",
    "xfail": "xfail",
    "unsupported": "-",
}
GOOD = {"pass", "negative-pass", "xfail", "unsupported"}
IMPL_NAME = {"go": "Go", "python": "Python"}


def direction(axes: dict[str, str]) -> str:
    return f"{IMPL_NAME.get(axes['client'], axes['client'])}->{IMPL_NAME.get(axes['server'], axes['server'])}"


def step_detail(result: dict[str, Any] | None, name: str) -> str:
    for step in (result or {}).get("steps", []):
        if step.get("name") == name:
            return f"{'ok' if step.get('ok') else 'FAILED'} {step.get('ms', 0):.1f} ms {step.get('detail') or ''}".strip()
    return "not reached"


KEY_ORDER = ("rsa-2048", "rsa-4096", "ec-p256", "ec-p384", "ec-p521", "ed25519", "none")


def axis_order(impl_key: tuple[str, str]) -> tuple[str, int]:
    impl, key = impl_key
    return impl, KEY_ORDER.index(key) if key in KEY_ORDER else len(KEY_ORDER)


def summary(verdicts: list[dict[str, Any]]) -> dict[str, int]:
    counts = Counter(v["outcome"] for v in verdicts)
    return {k: counts.get(k, 0) for k in SYMBOL}


def markdown_proof(verdicts: list[dict[str, Any]], env: dict[str, str]) -> str:
    lines = [
        "# soup proof: go-plugin RPC in every direction over mutual TLS",
        "",
        "| direction | result | TLS | backend (host / plugin) | client key -> server key | transport | put / get / get missing |",
        "|---|---|---|---|---|---|---|",
    ]
    for v in verdicts:
        if v["axes"].get("variant"):
            continue
        r = v.get("result") or {}
        tls = r.get("tls") or {}
        evidence = " / ".join(step_detail(r, s) for s in ("put", "get", "get_missing"))
        lines.append(
            f"| {direction(v['axes'])} | {SYMBOL[v['outcome']]} | {tls.get('version')} ({tls.get('version_source')}) "
            f"| {tls.get('backend')} / {tls.get('server_backend')} | {v['axes']['client_key']} -> {v['axes']['server_key']} "
            f"| {v['axes']['transport']} | {evidence} |"
        )
    lines += ["", *details(verdicts), *environment(env)]
    return "\n".join(lines) + "\n"


def grids(verdicts: list[dict[str, Any]]) -> list[str]:
    """One client x server grid per (tls mode, transport): rows client impl/key, columns server."""
    lines: list[str] = []
    plain = [v for v in verdicts if not v["axes"].get("variant")]
    for mode in dict.fromkeys(v["axes"]["mode"] for v in plain):
        for transport in dict.fromkeys(v["axes"]["transport"] for v in plain):
            cells = [
                v
                for v in plain
                if v["axes"]["mode"] == mode and v["axes"]["transport"] == transport
            ]
            if not cells:
                continue
            rows = sorted(
                {(v["axes"]["client"], v["axes"]["client_key"]) for v in cells}, key=axis_order
            )
            cols = sorted(
                {(v["axes"]["server"], v["axes"]["server_key"]) for v in cells}, key=axis_order
            )
            index = {
                (
                    v["axes"]["client"],
                    v["axes"]["client_key"],
                    v["axes"]["server"],
                    v["axes"]["server_key"],
                ): v
                for v in cells
            }
            lines += [
                f"### tls {mode}, {transport}",
                "",
                "| client \\ server | " + " | ".join(f"{s} {k}" for s, k in cols) + " |",
            ]
            lines.append("|---" * (len(cols) + 1) + "|")
            for c, ck in rows:
                marks = [
                    GRID_MARK.get(index[(c, ck, s, sk)]["outcome"], "?")
                    if (c, ck, s, sk) in index
                    else " "
                    for s, sk in cols
                ]
                lines.append(f"| {c} {ck} | " + " | ".join(marks) + " |")
            lines.append("")
    return lines


def details(verdicts: list[dict[str, Any]]) -> list[str]:
    """Reason and reproduction command for every cell that is not a plain pass."""
    lines = ["## Cells that are not a plain pass", ""]
    shown = [v for v in verdicts if v["outcome"] not in ("pass", "unsupported")]
    unsupported = Counter(v["reason"] for v in verdicts if v["outcome"] == "unsupported")
    for v in shown:
        lines += [
            f"- `{v['cell']}`: **{SYMBOL[v['outcome']]}**: {v.get('reason') or ''}",
            f"  - reproduce: `{v['command']}`",
        ]
    for reason, count in unsupported.items():
        lines.append(f"- {count} cells unsupported: {reason}")
    if len(lines) == 2:
        lines.append("None: every cell passed.")
    return [*lines, ""]


def environment(env: dict[str, str]) -> list[str]:
    return ["## Environment", "", *(f"- {k}: {v}" for k, v in env.items()), ""]


def markdown_matrix(verdicts: list[dict[str, Any]], env: dict[str, str], title: str) -> str:
    counts = summary(verdicts)
    lines = [
        f"# soup conformance matrix: {title}",
        "",
        ", ".join(f"{n} {SYMBOL[k]}" for k, n in counts.items() if n),
        "",
        *grids(verdicts),
        *details(verdicts),
        *environment(env),
    ]
    return "\n".join(lines) + "\n"


def terminal(verdicts: list[dict[str, Any]]) -> str:
    """Compact table: one row per direction and TLS mode, counts per outcome."""
    rows: dict[tuple[str, str], Counter[str]] = {}
    for v in verdicts:
        rows.setdefault((direction(v["axes"]), v["axes"]["mode"]), Counter())[v["outcome"]] += 1
    head = f"{'direction':<16} {'tls':<9}" + "".join(f"{k:>14}" for k in SYMBOL)
    out = [head, "-" * len(head)]
    for (d, mode), counts in rows.items():
        out.append(f"{d:<16} {mode:<9}" + "".join(f"{counts.get(k, 0):>14}" for k in SYMBOL))
    total = summary(verdicts)
    out.append(f"{'total':<26}" + "".join(f"{total[k]:>14}" for k in SYMBOL))
    return "\n".join(out)


def proof_terminal(verdicts: Iterable[dict[str, Any]]) -> str:
    out = []
    for v in verdicts:
        tls = (v.get("result") or {}).get("tls") or {}
        out.append(
            f"{v['cell']:<45} {SYMBOL[v['outcome']]:<5} {tls.get('version')}"
            f" host={tls.get('backend')} plugin={tls.get('server_backend')}"
            + (f"  {v.get('reason')}" if v["outcome"] not in ("pass", "negative-pass") else "")
        )
    return "\n".join(out)


def write(
    verdicts: list[dict[str, Any]],
    env: dict[str, str],
    out_dir: Path,
    name: str,
    *,
    proof: bool,
    wall_seconds: float | None = None,
) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    verdicts = sorted(verdicts, key=lambda v: v.get("order", 0))
    if wall_seconds is not None:
        env = env | {"wall time of the run": f"{wall_seconds:.0f} s for {len(verdicts)} cells"}
    doc = {
        "name": name,
        "environment": env,
        "wall_seconds": wall_seconds,
        "summary": summary(verdicts),
        "cells": verdicts,
    }
    json_path = out_dir / f"{name}.json"
    json_path.write_text(json.dumps(doc, indent=1) + "\n")
    md_path = out_dir / f"{name}.md"
    md = markdown_proof(verdicts, env) if proof else markdown_matrix(verdicts, env, name)
    md_path.write_text(md)
    html_path = out_dir / f"{name}.html"  # the same cells as a static page (render_html.py)
    html_path.write_text(render_html.render(verdicts, env, name, axis_order))
    return [json_path, md_path, html_path]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", type=Path, help="a JSON report written by the runner")
    parser.add_argument("--proof", action="store_true", help="render the proof layout")
    args = parser.parse_args()
    doc = json.loads(args.report.read_text())
    env = {k: v for k, v in doc["environment"].items() if k != "wall time of the run"}
    for path in write(
        doc["cells"],
        env,
        args.report.parent,
        doc["name"],
        proof=args.proof,
        wall_seconds=doc.get("wall_seconds"),
    ):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
