"""Both-ways mutual-TLS evidence: a plugin that never asks for the host's certificate fails.

Real processes on loopback: each soup host (Python, Go) against a fake plugin that serves
TLS without requesting a client certificate (fakes/lax_plugin.py), and against a soup
plugin of the other language, which must refuse both probes with a TLS alert. The
verdict is the CLI's own (exit 1, the evidence printed), and the matrix runner's.
"""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path
from typing import Any

import pytest

import cells as matrix
import mutual

LAX_PLUGIN = Path(__file__).with_name("fakes") / "lax_plugin.py"
HOSTS = ("python", "go")


@pytest.fixture(scope="session")
def impls(request: pytest.FixtureRequest) -> dict[str, list[str]]:
    """Each soup implementation's command, as matrix.toml says (soup-go: --soup-go)."""
    soup_go = str(Path(str(request.config.getoption("--soup-go"))).resolve())
    paths = matrix.Paths(sys.executable, soup_go, Path(), Path())
    return {impl: matrix.impl_command(impl, matrix.load(), paths) for impl in HOSTS}


def run_client_test(
    host: list[str], server: list[str], key: str, *extra: str
) -> tuple[int | None, str]:
    argv = [*host, "rpc", "client", "test", "--key-type", key, *extra]
    code, out, err = matrix.run_bounded([*argv, "--server", shlex.join(server)], 60)
    assert code is not None, f"client test did not finish: {err[-2000:]}"
    return code, out


def client_test(host: list[str], server: list[str], key: str) -> dict[str, Any]:
    code, out = run_client_test(host, server, key, "--json")
    result: dict[str, Any] = json.loads(out)
    assert code == (0 if result["ok"] else 1), f"exit {code} for ok={result['ok']}"
    return result


@pytest.mark.parametrize("host", HOSTS)
def test_a_plugin_that_does_not_ask_for_the_host_certificate_fails_the_check(
    host: str, impls: dict[str, list[str]], tmp_path: Path
) -> None:
    lax = [sys.executable, str(LAX_PLUGIN), str(tmp_path)]
    result = client_test(impls[host], lax, "ec-p256")
    # Every step works: only the evidence tells one-way from mutual TLS, and the verdict
    # (ok, exit code) follows it. Before, both CLIs said PASS and exited 0.
    assert all(step["ok"] for step in result["steps"]), result["steps"]
    assert result["ok"] is False
    assert result["error"].startswith(
        "mutual_tls: " + mutual.PLUGIN_DID_NOT_VERIFY + ": no_client_cert: served"
    ), result["error"]
    assert mutual.HOST_DID_NOT_VERIFY not in result["error"]
    evidence = result["mutual_tls"]
    assert evidence["plugin_verified_client"] is False
    assert "no_client_cert: served: the plugin answered HTTP/2" in evidence["plugin_evidence"]
    assert "foreign_client_cert: served" in evidence["plugin_evidence"]
    assert evidence["host_verified_plugin"] is True
    found = mutual.problems("auto", result)
    assert len(found) == 1
    assert found[0].startswith(mutual.PLUGIN_DID_NOT_VERIFY + ": no_client_cert: served")
    # The human form prints the evidence and the reason.
    code, out = run_client_test(impls[host], lax, "ec-p256")
    assert code == 1, out
    lines = out.splitlines()
    assert any(
        line.startswith("mutual TLS: plugin verified the host: NO (no_client_cert: served")
        for line in lines
    ), out
    assert any(line.startswith("mutual TLS: host verified the plugin: yes (") for line in lines)
    assert lines[-1].startswith("RESULT: FAIL: mutual_tls: " + mutual.PLUGIN_DID_NOT_VERIFY), out


@pytest.mark.parametrize(("host", "plugin"), [("python", "go"), ("go", "python")])
def test_a_soup_plugin_refuses_both_probes_with_an_alert(
    host: str, plugin: str, impls: dict[str, list[str]], tmp_path: Path
) -> None:
    server = [*impls[plugin], "rpc", "server-start", "--kv-dir", str(tmp_path)]
    result = client_test(impls[host], server, "ec-p521")
    assert result["ok"] is True, result["error"]
    evidence = result["mutual_tls"]
    assert evidence["plugin_verified_client"] is True
    assert evidence["host_verified_plugin"] is True
    assert "no_client_cert: refused: alert certificate required" in evidence["plugin_evidence"]
    assert "foreign_client_cert: refused: alert unknown ca" in evidence["plugin_evidence"]
    assert "refused by the host's verifier" in evidence["host_evidence"]
    assert mutual.problems("auto", result) == []
    code, out = run_client_test(impls[host], server, "ec-p521")
    assert code == 0, out
    assert "mutual TLS: plugin verified the host: yes (no_client_cert: refused: alert" in out
    assert out.splitlines()[-1] == "RESULT: PASS", out
