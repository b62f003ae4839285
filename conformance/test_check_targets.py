"""check_targets.toml is well-formed data and the README shows the table its run wrote."""

from __future__ import annotations

import tomllib
from pathlib import Path

import check_targets
from soup.lab.check import catalogue

ROOT = Path(__file__).resolve().parent.parent
TARGETS = tomllib.loads(check_targets.TARGETS.read_text(encoding="utf-8"))["target"]
README = (ROOT / "README.md").read_text(encoding="utf-8")
OUTCOMES = {catalogue.FAIL, catalogue.WARN, catalogue.SKIP}


def test_every_expectation_names_a_check_an_outcome_and_a_reason() -> None:
    for target in TARGETS:
        known = {check.id for check in catalogue.for_role(target["role"])}
        for cid, expectation in target.get("expect", {}).items():
            outcome, _, why = expectation.partition(":")
            assert cid in known, f"{target['name']}: unknown check {cid}"
            assert outcome in OUTCOMES, f"{target['name']} {cid}: {outcome!r}"
            assert why.strip(), f"{target['name']} {cid}: no reason"


def test_readme_table_has_a_column_for_every_target() -> None:
    start = README.index(check_targets.README_START)
    table = README[start : README.index(check_targets.README_END)]
    rows = check_targets.expand(TARGETS, ROOT / "build" / "bin" / "soup-go")
    for row in rows:
        assert f" {row['name']} |" in table, f"README lacks {row['name']}: run nox -s check"


def test_judge_reports_unexpected_and_stale() -> None:
    checks = {"a": {"outcome": "fail", "detail": "x"}, "b": {"outcome": "pass", "detail": "y"}}
    problems = check_targets.judge(checks, {"b": "warn: known", "c": "skip: gone"})
    assert problems == [
        "a: fail, expected pass (x)",
        "b: pass, expected warn (y)",
        "c: expected but not run",
    ]
