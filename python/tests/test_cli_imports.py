"""What `soup --version` and `soup --help` import: none of grpc, protobuf, cryptography;
and what a plugin imports: cryptography only when it serves TLS, yamux only when the host
asks for multiplexing.

Those three are most of a start-up (some 300 ms against 20 ms for a bare interpreter);
a command that only prints text has no use for them, a plaintext plugin none for
cryptography (a third of its imports). Checked by the modules loaded, never by a timing.
"""

from __future__ import annotations

import json
import select
import signal
import subprocess
import sys
from pathlib import Path

import grpc
import pytest

from soup import certs, version_string

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


def _plugin_imports(tls: list[str], env: dict[str, str], tmp_path: Path) -> set[str]:
    """Every module `soup rpc server-start TLS...` imports in its whole life: started as a
    host starts it, to its handshake line, then stopped by SIGTERM (``-X importtime``
    writes each import to stderr, after the handshake line too)."""
    stderr_path = tmp_path / "stderr.txt"
    argv = [sys.executable, "-X", "importtime", "-m", "soup", "rpc", "server-start"]
    argv += ["--kv-dir", str(tmp_path), *tls]
    with stderr_path.open("wb") as stderr:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr, env=env
        )
        try:
            assert proc.stdout is not None
            assert select.select([proc.stdout], [], [], 30)[0], "no handshake line in 30 s"
            line = proc.stdout.readline()  # written whole, in one write
            assert line.count(b"|") >= 5, (line, stderr_path.read_text())
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.communicate(timeout=30)
    assert proc.returncode == 0, stderr_path.read_text()
    return {
        line.rsplit("|", 1)[1].strip()
        for line in stderr_path.read_text().splitlines()
        if line.startswith("import time:") and "[us]" not in line
    }


def _tops(modules: set[str]) -> set[str]:
    """Which of cryptography and soup's yamux modules are among ``modules``."""
    watched = ("cryptography", "soup.yamux", "soup.muxsession", "soup.grpcmux")
    return {w for w in watched for m in modules if m == w or m.startswith(w + ".")}


def test_a_plaintext_plugin_imports_no_cryptography_nor_yamux(
    plugin_env: dict[str, str], tmp_path: Path
) -> None:
    modules = _plugin_imports(["--tls-mode", "disabled"], plugin_env, tmp_path)
    assert "grpc" in modules  # the probe sees the plugin's imports
    assert _tops(modules) == set()


def test_an_auto_mtls_plugin_imports_cryptography_and_yamux_only_when_asked(
    plugin_env: dict[str, str], tmp_path: Path
) -> None:
    """The check can fail: TLS needs cryptography (its own certificate), and a host that
    asks for multiplexing (PLUGIN_MULTIPLEX_GRPC) gets yamux."""
    env = {**plugin_env, "PLUGIN_CLIENT_CERT": certs.self_signed("ec-p521").cert_pem.decode()}
    assert _tops(_plugin_imports([], env, tmp_path)) == {"cryptography"}
    env["PLUGIN_MULTIPLEX_GRPC"] = "true"
    assert _tops(_plugin_imports([], env, tmp_path)) == {
        "cryptography",
        "soup.yamux",
        "soup.muxsession",
        "soup.grpcmux",
    }
