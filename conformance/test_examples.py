"""The README's "Host a Go plugin from Python" example, run as written against soup-go."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_kv_host_example_calls_the_go_plugin(request: pytest.FixtureRequest) -> None:
    soup_go = Path(str(request.config.getoption("--soup-go"))).resolve()
    assert soup_go.is_file(), f"{soup_go} missing: nox -s build makes it"
    # The example runs `soup-go` from PATH, as the README says.
    env = {**os.environ, "PATH": f"{soup_go.parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    if soup_go.name != "soup-go":
        pytest.fail(f"the example calls `soup-go`; got a binary named {soup_go.name}")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "python" / "examples" / "kv_host.py")],
        capture_output=True, text=True, timeout=60, check=False, env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    # go-plugin's AutoMTLS certificate is P-521, which grpcio cannot verify: the OpenSSL
    # bridge carries the connection
    assert proc.stdout == "hello from Go\nopenssl ec-p521\n"


def test_go_host_calls_the_own_cookie_kv_plugin_example(request: pytest.FixtureRequest) -> None:
    """The README's plugin example, under its own cookie, to soup-go's go-plugin host (AutoMTLS)."""
    soup_go = Path(str(request.config.getoption("--soup-go"))).resolve()
    assert soup_go.is_file(), f"{soup_go} missing: nox -s build makes it"
    plugin = f"{sys.executable} {ROOT / 'python' / 'examples' / 'kv_plugin.py'}"
    proc = subprocess.run(
        [str(soup_go), "rpc", "client", "test", "--json",
         "--magic-cookie-key", "KV_PLUGIN", "--magic-cookie-value", "python", "--server", plugin],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads(proc.stdout)
    assert result["ok"] is True, result
    steps = {step["name"]: step["ok"] for step in result["steps"]}
    assert steps == dict.fromkeys(steps, True), steps
    assert {"put", "get", "get_missing", "shutdown"} <= set(steps)
    # AutoMTLS: the Go host's stock P-521 certificate, the Python plugin's own certificate
    assert result["tls"]["client_key"] == "ec-p521", result["tls"]
    assert result["tls"]["server_key"], result["tls"]


def _go_put(soup_go: Path, level: str) -> str:
    """soup-go's host stderr for one Put to the stdio/log plugin, at SOUP_LOG_LEVEL=level."""
    plugin = f"{sys.executable} {ROOT / 'conformance' / 'stdio_log_plugin.py'}"
    proc = subprocess.run(
        [str(soup_go), "rpc", "kv", "put", "k1", "v1", "--server", plugin],
        capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "SOUP_LOG_LEVEL": level},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return proc.stderr


def test_go_host_shows_python_plugin_stdio_and_log_levels(request: pytest.FixtureRequest) -> None:
    """A real go-plugin host: GRPCStdio output reaches SyncStdout/SyncStderr, and hclog
    lines keep their level and key/values; the host's own level filters them."""
    soup_go = Path(str(request.config.getoption("--soup-go"))).resolve()
    shown = _go_put(soup_go, "info")
    lines = shown.splitlines()
    # go-plugin re-logs the plugin's hclog JSON at its level, with its fields
    warn = [line for line in lines if "warn from the plugin" in line]
    assert warn, shown
    assert "[WARN]" in warn[0], shown
    assert "key=k1" in warn[0], shown
    assert "size=2" in warn[0], shown
    info = [line for line in lines if "info from the plugin" in line]
    assert info, shown
    assert "[INFO]" in info[0], shown
    # GRPCStdio: the plugin's stdout and stderr after the handshake, through go-plugin
    assert any("plugin.stdout" in line and "stdout line for k1" in line for line in lines), shown
    assert any("plugin.stderr" in line and "stderr line for k1" in line for line in lines), shown
    quiet = _go_put(soup_go, "warn")
    assert "warn from the plugin" in quiet, quiet
    assert "info from the plugin" not in quiet, quiet
