"""CLI paths the contract tests leave out: plaintext evidence, failure output, bench, kv errors."""

from __future__ import annotations

import json
import re
import subprocess

import pytest
from plugin_commands import PLUGIN, PYTHON, plugin_cmd, python_cmd

from soup.lab.cli import build_parser
from soup.lab.clihost import run_test

# A fake plugin that complains on stderr and exits before any handshake line.
CRASHING = python_cmd("import sys; sys.stderr.write('boom-1\\nboom-2\\n'); sys.exit(3)")


def soup(*args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, "-m", "soup", *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def test_run_test_reports_a_command_that_cannot_spawn() -> None:
    args = build_parser().parse_args(["rpc", "client", "test", "--server", "x"])
    args.server = "   "  # splits into no argv: the Client refuses it before any process
    result = run_test(args)
    assert result.ok is False
    assert result.error == "spawn: empty plugin command"
    assert [(s.name, s.ok, s.detail) for s in result.steps] == [
        ("spawn", False, "empty plugin command")
    ]
    assert json.loads(result.to_json())["error"] == "spawn: empty plugin command"


@pytest.mark.slow
def test_client_test_plaintext_human_output() -> None:
    server = plugin_cmd("--tls-mode", "disabled")
    proc = soup("rpc", "client", "test", "--tls-mode", "disabled", "--server", server)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert "  tls:        disabled (plaintext)" in lines
    assert not any(line.startswith("  client key:") for line in lines)
    handshake = next(line for line in lines if line.startswith("PASS handshake "))
    assert handshake.endswith("app v1 plaintext")
    assert lines[-1] == "RESULT: PASS"


@pytest.mark.slow
def test_client_test_plaintext_json_has_no_tls_evidence() -> None:
    server = plugin_cmd("--tls-mode", "disabled", "--transport", "tcp")
    proc = soup("rpc", "client", "test", "--json", "--tls-mode", "disabled", "--server", server)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["ok"] is True
    assert result["transport"] == "tcp"
    tls = result["tls"]
    assert tls["mode"] == "disabled"
    assert tls["backend"] is tls["version"] is tls["server_fingerprint"] is None


@pytest.mark.slow
def test_client_test_failure_prints_plugin_stderr_tail() -> None:
    proc = soup("rpc", "client", "test", "--server", CRASHING)
    assert proc.returncode == 1
    lines = proc.stdout.splitlines()
    tail_at = lines.index("plugin stderr (tail):")
    assert lines[tail_at + 1 : tail_at + 3] == ["  | boom-1", "  | boom-2"]
    assert any(line.startswith("FAIL handshake ") for line in lines)
    assert lines[-1].startswith("RESULT: FAIL: handshake: plugin exited before we could connect")


@pytest.mark.slow
def test_bench_human_output() -> None:
    proc = soup("rpc", "client", "bench", "--count", "5", "--warmup", "1", "--server", PLUGIN)
    assert proc.returncode == 0, proc.stderr
    number = r"[0-9]+\.[0-9]"
    pattern = (
        rf"bench: 5 Put\+Get round trips, tls auto native: mean {number} us, p50 {number}, "
        rf"p90 {number}, p99 {number}, min {number}, max {number}"
    )
    assert re.fullmatch(pattern, proc.stdout.strip()), proc.stdout


@pytest.mark.slow
def test_bench_failure_human_and_json() -> None:
    human = soup("rpc", "client", "bench", "--count", "3", "--server", CRASHING)
    assert human.returncode == 1
    assert human.stdout.startswith("bench: FAIL: plugin exited before we could connect")
    as_json = soup("rpc", "client", "bench", "--json", "--count", "3", "--server", CRASHING)
    assert as_json.returncode == 1
    result = json.loads(as_json.stdout)
    assert result["ok"] is False
    assert "exit code 3" in result["error"]
    assert result["round_trip_us"]["mean"] == 0  # no samples, no made-up numbers


@pytest.mark.slow
def test_kv_error_without_rpc_status_is_plain() -> None:
    proc = soup("rpc", "kv", "get", "greeting", "--server", CRASHING)
    assert proc.returncode == 1
    assert proc.stdout == ""
    last = proc.stderr.splitlines()[-1]
    assert last.startswith("error: plugin exited before we could connect")
    assert "exit code 3" in last
