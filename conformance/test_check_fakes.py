"""``soup check`` against fakes with one fault each (check_fakes.toml), and its bad input.

Every check of the catalogue must fail (or warn, if advisory) for at least one fault, and
each fault must make exactly its listed checks not pass: a check that cannot fail, or
that fails for the wrong plugin, breaks this suite.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

import broken_host
import broken_plugin
from soup.lab.check import catalogue

HERE = Path(__file__).resolve().parent
DATA = tomllib.loads((HERE / "check_fakes.toml").read_text(encoding="utf-8"))
SOUP = (sys.executable, "-m", "soup")
RUN_BOUND_S = 240
START_TIMEOUT = "5"  # the fakes print their line in well under a second


def _check(role: str, options: list[str], command: list[str]) -> subprocess.CompletedProcess[str]:
    argv = [*SOUP, "check", role, *options, "--", *command]
    return subprocess.run(argv, capture_output=True, text=True, timeout=RUN_BOUND_S, check=False)


def _report(role: str, options: list[str], command: list[str]) -> tuple[int, dict[str, Any]]:
    done = _check(role, ["--json", "--timeout", START_TIMEOUT, *options], command)
    assert done.stdout, f"no JSON on stdout (exit {done.returncode}); stderr: {done.stderr}"
    return done.returncode, json.loads(done.stdout)


def _not_passing(doc: dict[str, Any]) -> dict[str, str]:
    return {c["id"]: c["outcome"] for c in doc["checks"] if c["outcome"] != catalogue.PASS}


def _judge(entry: dict[str, Any], code: int, doc: dict[str, Any]) -> None:
    expected: dict[str, str] = entry["outcomes"]
    details = {c["id"]: c["detail"] for c in doc["checks"]}
    got = _not_passing(doc)
    assert got == expected, (
        f"fault {entry['fault']}: not passing {got}, expected {expected}; details: "
        + json.dumps({k: details[k] for k in {*got, *expected}}, indent=1)
    )
    if expected:
        own = entry["check"]
        assert own in expected, f"{own} is not among the outcomes"
        assert entry["evidence"] in details[own], f"{own}: {details[own]!r}"
    assert code == (1 if catalogue.FAIL in expected.values() else 0), doc["summary"]
    assert doc["summary"]["verdict"] == (catalogue.FAIL if code else catalogue.PASS)


def _ids(role: str) -> list[str]:
    return [entry["fault"] for entry in DATA[role]]


@pytest.mark.parametrize("role", ["plugin", "host"])
def test_every_check_can_fail_and_every_fault_is_data(role: str) -> None:
    fakes = {"plugin": broken_plugin.FAULTS, "host": broken_host.FAULTS}[role]
    assert _ids(role) == list(fakes), "check_fakes.toml and the fake's FAULTS differ"
    failing = {cid for e in DATA[role] for cid, o in e["outcomes"].items() if o != catalogue.SKIP}
    every = {check.id for check in catalogue.for_role(role)}
    assert every - failing == set(), "checks no fault makes fail"
    assert failing - every == set(), "unknown check ids in check_fakes.toml"


@pytest.mark.parametrize("entry", DATA["plugin"], ids=_ids("plugin"))
def test_plugin_fault(entry: dict[str, Any]) -> None:
    fake = [sys.executable, str(HERE / "broken_plugin.py"), entry["fault"]]
    code, doc = _report("plugin", ["--versions", "1,2"], fake)
    _judge(entry, code, doc)


@pytest.mark.parametrize("entry", DATA["host"], ids=_ids("host"))
def test_host_fault(entry: dict[str, Any]) -> None:
    fake = [sys.executable, str(HERE / "broken_host.py"), entry["fault"], "{plugin}"]
    code, doc = _report("host", [], fake)
    _judge(entry, code, doc)


# -- bad input: exit 2 and a message that names the cause


def _usage(role: str, options: list[str], command: list[str], says: str) -> None:
    done = _check(role, options, command)
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    assert says in done.stderr, done.stderr
    assert done.stdout == "", "nothing on stdout, not even a half report"


def test_command_that_does_not_exist(tmp_path: Path) -> None:
    missing = str(tmp_path / "no-such-plugin")
    _usage("plugin", [], [missing], f"cannot start {missing!r}: [Errno 2]")
    _usage("host", [], [missing, "{plugin}"], f"cannot start {missing!r}: [Errno 2]")


def test_command_that_exits_at_once() -> None:
    _usage(
        "plugin", [], [sys.executable, "-c", "import sys; sys.exit('gone')"],
        "exited with status 1 before printing a handshake line; stderr: gone",
    )  # fmt: skip


def test_command_that_prints_nothing_is_bounded_by_timeout() -> None:
    silent = [sys.executable, "-c", "import time; time.sleep(120)"]
    _usage("plugin", ["--timeout", "1"], silent, "no handshake line on stdout within 1 s")


def test_wrong_cookie_names_the_fix() -> None:
    fake = [sys.executable, str(HERE / "broken_plugin.py"), "none"]
    _usage("plugin", ["--cookie", "OTHER=x"], fake, "pass the right --cookie KEY=VALUE")


@pytest.mark.parametrize("role", ["plugin", "host"])
def test_unknown_check_id(role: str) -> None:
    command = ["true", "{plugin}"]
    _usage(role, ["--only", "tls.nope"], command, "unknown check id: tls.nope (known: ")


@pytest.mark.parametrize("role", ["plugin", "host"])
def test_missing_command(role: str) -> None:
    _usage(role, [], [], f"no command to check: soup check {role} [options] -- CMD")


def test_host_command_without_placeholder() -> None:
    _usage("host", [], ["true"], "the host command must contain {plugin}")


@pytest.mark.parametrize(
    ("options", "says"),
    [
        (["--timeout", "0"], "must be > 0 and <= 600 seconds"),
        (["--versions", "1,x"], "'x' is not a positive integer"),
        (["--cookie", "novalue"], "expected KEY=VALUE"),
    ],
)
def test_bad_option_values(options: list[str], says: str) -> None:
    _usage("plugin", options, ["true"], says)
