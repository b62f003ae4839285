"""Run `soup check` against every real target of conformance/check_targets.toml.

Each target's outcomes are compared with its `expect` (the checks known not to pass, with
the reason): an unexpected outcome or a stale expectation fails the run (exit 1). Writes
build/reports/check-targets.{json,md} (the md is the README's table, and `--readme`
rewrites that table between its markers) and each target's own report under
build/reports/check/<target>/.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

import ci_shards
import readme_section

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "build"
TARGETS = ROOT / "conformance" / "check_targets.toml"
README_START = "<!-- check-targets:start (scripts/check_targets.py writes this table) -->"
README_END = "<!-- check-targets:end -->"
RUN_BOUND_S = 600
SHOWN = {"pass": "pass", "fail": "FAIL", "warn": "warn", "skip": "skip"}


def expand(targets: list[dict[str, Any]], soup_go: Path) -> list[dict[str, Any]]:
    """One row per target; `releases = true` adds soup-go on every other go-plugin release,
    whose expectation is its `release_expect` entry if it has one."""
    _, matrix = ci_shards.read(ROOT)
    default, *others = ci_shards.go_plugin_releases(matrix)
    rows = []
    for target in targets:
        binaries = {"": (soup_go, "")}
        if target.get("releases"):
            binaries = {f" (go-plugin v{default})": (soup_go, default)} | {
                f" (go-plugin v{r})": (soup_go.with_name(f"{soup_go.name}@v{r}"), r) for r in others
            }
        for suffix, (binary, release) in binaries.items():
            expect = target.get("release_expect", {}).get(release, target.get("expect", {}))
            values = {"python": sys.executable, "soup_go": str(binary), "build": str(BUILD),
                      "peers": str(BUILD / "peers")}  # fmt: skip
            command = [fill(arg, values) for arg in target["command"]]
            row = {**target, "name": target["name"] + suffix, "command": command}
            rows.append(row | {"expect": expect})
    return rows


def fill(arg: str, values: dict[str, str]) -> str:
    """An argument with its {python}, {soup_go}, {build}, {peers} filled ({plugin} stays)."""
    return re.sub(r"\{(python|soup_go|build|peers)\}", lambda m: values[m[1]], arg)


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9.]+", "-", name.lower()).strip("-")


def run_target(target: dict[str, Any], reports: Path) -> dict[str, Any]:
    """Check one target; its outcomes judged against its `expect`."""
    argv = [sys.executable, "-m", "soup", "check", target["role"], "--json",
            "--report-dir", str(reports / "check" / slug(target["name"])),
            *target.get("options", []), "--", *target["command"]]  # fmt: skip
    started = time.monotonic()
    done = subprocess.run(argv, capture_output=True, text=True, timeout=RUN_BOUND_S, check=False)
    row: dict[str, Any] = {"name": target["name"], "role": target["role"], "expect": target["expect"],
                           "command": target["command"], "seconds": round(time.monotonic() - started, 1)}  # fmt: skip
    if done.returncode == 2 or not done.stdout:
        row["error"] = f"soup check exited {done.returncode}: {done.stderr.strip()[-600:]}"
        return row
    checks = json.loads(done.stdout)["checks"]
    expect: dict[str, str] = target["expect"]
    row["checks"] = {c["id"]: {"outcome": c["outcome"], "detail": c["detail"]} for c in checks}
    row["problems"] = judge(row["checks"], expect)
    return row


def judge(checks: dict[str, dict[str, str]], expect: dict[str, str]) -> list[str]:
    """What differs from the expectation: unexpected outcomes and stale known ones."""
    problems = []
    for cid, got in checks.items():
        wanted = expect.get(cid, "pass").split(":", 1)[0]
        if got["outcome"] != wanted:
            problems.append(f"{cid}: {got['outcome']}, expected {wanted} ({got['detail'][:200]})")
    problems += [f"{cid}: expected but not run" for cid in expect if cid not in checks]
    return problems


def table(rows: list[dict[str, Any]], role: str) -> str:
    """Check ids down, targets across; a known non-pass is marked with its reason's number."""
    mine = [r for r in rows if r["role"] == role]
    ids = list(dict.fromkeys(cid for r in mine for cid in r.get("checks", {})))
    lines = ["| check | " + " | ".join(r["name"] for r in mine) + " |",
             "|---" * (len(mine) + 1) + "|"]  # fmt: skip
    for cid in ids:
        cells = []
        for r in mine:
            got = r.get("checks", {}).get(cid)
            cells.append(SHOWN[got["outcome"]] if got else "error")
        lines.append(f"| `{cid}` | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def reasons(rows: list[dict[str, Any]]) -> str:
    lines = [f"- {t['name']}: `{cid}` {why.strip()}" for t in rows
             for cid, why in t.get("expect", {}).items()]  # fmt: skip
    return "Known, as data in `conformance/check_targets.toml`:\n\n" + "\n".join(lines) + "\n"


def markdown(rows: list[dict[str, Any]]) -> str:
    return (
        "Plugins (`soup check plugin`):\n\n" + table(rows, "plugin")
        + "\nHosts (`soup check host`):\n\n" + table(rows, "host") + "\n" + reasons(rows)
    )  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--soup-go", type=Path, default=BUILD / "bin" / "soup-go")
    parser.add_argument("--reports", type=Path, default=BUILD / "reports")
    parser.add_argument("--readme", type=Path, help="rewrite this README's check table")
    args = parser.parse_args()
    targets = tomllib.loads(TARGETS.read_text(encoding="utf-8"))["target"]
    rows = []
    for target in expand(targets, args.soup_go):
        print(f"soup check {target['role']}: {target['name']} ...", file=sys.stderr, flush=True)
        row = run_target(target, args.reports)
        rows.append(row)
        for problem in [row["error"]] if "error" in row else row["problems"]:
            print(f"  UNEXPECTED {problem}", file=sys.stderr)
        print(f"  done in {row['seconds']} s", file=sys.stderr, flush=True)
    md = markdown(rows)
    args.reports.mkdir(parents=True, exist_ok=True)
    (args.reports / "check-targets.json").write_text(json.dumps(rows, indent=1))
    (args.reports / "check-targets.md").write_text(md)
    if args.readme:
        readme_section.rewrite(args.readme, README_START, README_END, md)
    bad = [r["name"] for r in rows if r.get("error") or r.get("problems")]
    print(md)
    if bad:
        print(f"targets that differ from check_targets.toml: {', '.join(bad)}", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
