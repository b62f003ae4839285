"""The README's "Host a Go plugin from Python" example, run as written against soup-go."""

from __future__ import annotations

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
