"""Both-ways mutual-TLS evidence: a plugin that never asks for the host's certificate fails.

Real processes on loopback: each soup host (Python, Go) against a fake plugin that serves
TLS without requesting a client certificate (fakes/lax_plugin.py), and against a soup
plugin of the other language, which must refuse both probes with a TLS alert.
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


def client_test(host: list[str], server: list[str], key: str) -> dict[str, Any]:
    argv = [*host, "rpc", "client", "test", "--json", "--key-type", key]
    code, out, err = matrix.run_bounded([*argv, "--server", shlex.join(server)], 60)
    assert code is not None, f"client test did not finish: {err[-2000:]}"
    result: dict[str, Any] = json.loads(out)
    return result


@pytest.mark.parametrize("host", HOSTS)
def test_a_plugin_that_does_not_ask_for_the_host_certificate_fails_the_check(
    host: str, impls: dict[str, list[str]], tmp_path: Path
) -> None:
    result = client_test(impls[host], [sys.executable, str(LAX_PLUGIN), str(tmp_path)], "ec-p256")
    # Every RPC works: only the evidence tells one-way from mutual TLS.
    assert result["ok"] is True, result["error"]
    evidence = result["mutual_tls"]
    assert evidence["plugin_verified_client"] is False
    assert "no_client_cert: served: the plugin answered HTTP/2" in evidence["plugin_evidence"]
    assert "foreign_client_cert: served" in evidence["plugin_evidence"]
    assert evidence["host_verified_plugin"] is True
    found = mutual.problems("auto", result)
    assert len(found) == 1
    assert found[0].startswith(mutual.PLUGIN_DID_NOT_VERIFY + ": no_client_cert: served")


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
