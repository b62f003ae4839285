"""The checks as data (checks.toml) and the outcome of running one."""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Sequence
from importlib import resources
from typing import Any, NamedTuple

PASS, FAIL, WARN, SKIP = "pass", "fail", "warn", "skip"
OUTCOMES = (PASS, FAIL, WARN, SKIP)
REQUIRED, ADVISORY = "required", "advisory"


class Check(NamedTuple):
    """One rule of checks.toml."""

    id: str
    role: str
    rule: str
    ref: str
    level: str
    failure: str
    fix: str


class Verdict(NamedTuple):
    """What a check function found: passed or not, and the evidence."""

    passed: bool
    detail: str
    skipped: bool = False


class Outcome(NamedTuple):
    """One check's result as reported."""

    check: Check
    outcome: str
    detail: str
    ms: int

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.check.id,
            "rule": self.check.rule,
            "ref": self.check.ref,
            "level": self.check.level,
            "outcome": self.outcome,
            "detail": self.detail,
            "ms": self.ms,
        }


def passed(detail: str) -> Verdict:
    return Verdict(True, detail)


def failed(detail: str) -> Verdict:
    return Verdict(False, detail)


def skipped(detail: str) -> Verdict:
    """Not applicable here (the reason says why); never counted as a pass."""
    return Verdict(False, detail, skipped=True)


def outcome_of(check: Check, verdict: Verdict, ms: int) -> Outcome:
    """A failing advisory check is a warning; a skip stays a skip."""
    if verdict.skipped:
        name = SKIP
    elif verdict.passed:
        name = PASS
    else:
        name = WARN if check.level == ADVISORY else FAIL
    return Outcome(check, name, verdict.detail, ms)


def load() -> list[Check]:
    """Every check, in the order they run."""
    text = resources.files(__package__).joinpath("checks.toml").read_text(encoding="utf-8")
    return [Check(**entry) for entry in tomllib.loads(text)["check"]]


def for_role(role: str) -> list[Check]:
    return [check for check in load() if check.role == role]


class SelectionError(ValueError):
    """--only or --skip named a check that does not exist."""


def select(checks: Sequence[Check], only: Iterable[str], skip: Iterable[str]) -> list[Check]:
    """The checks --only/--skip leave, in catalogue order; unknown ids raise SelectionError."""
    only, skip = list(only), list(skip)
    known = {check.id for check in checks}
    unknown = sorted({*only, *skip} - known)
    if unknown:
        raise SelectionError(
            f"unknown check id{'s' if len(unknown) > 1 else ''}: {', '.join(unknown)} "
            f"(known: {', '.join(check.id for check in checks)})"
        )
    return [c for c in checks if (not only or c.id in only) and c.id not in skip]


def summary(outcomes: Sequence[Outcome]) -> dict[str, Any]:
    counts: dict[str, Any] = {name: sum(o.outcome == name for o in outcomes) for name in OUTCOMES}
    counts["verdict"] = FAIL if counts[FAIL] else PASS
    return counts
