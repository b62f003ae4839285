"""What `soup --version` and `soup --help` import: none of grpc, protobuf, cryptography.

Those three are most of a start-up (some 300 ms against 20 ms for a bare interpreter);
a command that only prints text has no use for them. Checked by the modules loaded in a
fresh interpreter after the command ran, never by a timing.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import grpc
import pytest

from soup import version_string

HEAVY = ("grpc", "google.protobuf", "cryptography")

# Runs `python -m soup ARGV...` as soup.__main__ does, then writes which heavy modules
# the interpreter has loaded to the file named by the first argument.
_PROBE = f"""
import json, sys
out, argv = sys.argv[1], sys.argv[2:]
sys.argv = ["soup", *argv]
from soup.__main__ import main
try:
    code = main()
except SystemExit as exc:
    code = exc.code
heavy = {HEAVY!r}
loaded = sorted(m for m in sys.modules if any(m == h or m.startswith(h + ".") for h in heavy))
with open(out, "w") as f:
    json.dump({{"code": code, "loaded": loaded}}, f)
"""


def _run(argv: list[str], tmp_path: Path) -> tuple[dict[str, object], str]:
    out = tmp_path / "loaded.json"
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE, str(out), *argv],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.exists(), proc.stderr
    return json.loads(out.read_text()), proc.stdout


@pytest.mark.parametrize(
    "argv",
    [
        ["--version"],
        ["version"],
        ["--help"],
        ["rpc", "--help"],
        ["rpc", "client", "test", "--help"],
        ["rpc", "kv", "put", "--help"],
        ["rpc", "server-start", "--help"],
    ],
)
def test_text_only_commands_import_no_grpc_protobuf_or_cryptography(
    argv: list[str], tmp_path: Path
) -> None:
    result, stdout = _run(argv, tmp_path)
    assert result == {"code": 0, "loaded": []}
    assert stdout.strip()


def test_version_names_the_grpcio_that_is_installed(tmp_path: Path) -> None:
    """Without importing grpc, --version still says grpc's own __version__."""
    result, stdout = _run(["--version"], tmp_path)
    assert result["loaded"] == []
    assert stdout.strip() == version_string()
    assert stdout.strip().endswith(f", grpcio {grpc.__version__})")


def test_the_probe_sees_a_host_command_import_grpc(tmp_path: Path) -> None:
    """The check can fail: a host command does load grpc (and fails here: no plugin)."""
    result, _ = _run(["rpc", "kv", "get", "k", "--server", "/nonexistent/plugin"], tmp_path)
    assert result["code"] == 1
    loaded = result["loaded"]
    assert isinstance(loaded, list)
    assert "grpc" in loaded
    assert "cryptography" in loaded
