"""Debug mode and reattach: a plugin started by hand, hosts that connect, leave it running,
then stop it; and the CLI's KV value sources."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from plugin_commands import PYTHON, group_left_after, plugin_cmd

import soup
from soup.lab.cli import main
from soup.lab.kv import KVClient

pytestmark = pytest.mark.slow


def soup_cli(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [PYTHON, "-m", "soup", *args], input=stdin, capture_output=True, timeout=90, check=False
    )


class DebugPlugin:
    def __init__(self, *flags: str) -> None:
        self.proc = subprocess.Popen(
            [PYTHON, "-m", "soup", "rpc", "server-start", "--debug", *flags],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
        )  # fmt: skip
        assert self.proc.stdout is not None
        self.line = self.proc.stdout.readline().decode()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
        self.proc.wait(10)
        assert group_left_after(self.proc.pid) == []


@pytest.fixture
def debug_plugin() -> Iterator[Any]:
    started: list[DebugPlugin] = []

    def start(*flags: str) -> DebugPlugin:
        plugin = DebugPlugin(*flags)
        started.append(plugin)
        return plugin

    yield start
    for plugin in started:
        plugin.stop()


def test_debug_line_is_the_reattach_config(debug_plugin: Any) -> None:
    plugin = debug_plugin("--tls-mode", "disabled", "--protocol-versions", "3")
    data = json.loads(plugin.line)
    assert list(data) == ["Protocol", "ProtocolVersion", "Pid", "Test", "Addr"]
    assert data["Protocol"] == "grpc"
    assert data["ProtocolVersion"] == 3
    assert data["Pid"] == plugin.proc.pid
    assert data["Test"] is True
    assert data["Addr"]["Network"] == "unix"
    assert Path(data["Addr"]["String"]).exists()
    assert plugin.line == json.dumps(data, separators=(",", ":")) + "\n"  # compact
    assert soup.ReattachConfig.from_json(plugin.line).to_json() + "\n" == plugin.line
    plugin.proc.terminate()
    assert plugin.proc.wait(10) == 0
    assert plugin.proc.stderr is not None
    stderr = plugin.proc.stderr.read().decode()
    hint = f"plugin running in debug mode; reattach with: --reattach '{plugin.line.strip()}'"
    assert hint in stderr.splitlines()
    assert not Path(data["Addr"]["String"]).exists()


def test_debug_refuses_auto_tls() -> None:
    proc = soup_cli("rpc", "server-start", "--debug")
    assert proc.returncode == 1
    assert proc.stdout == b""
    assert (
        "--debug cannot use --tls-mode auto: no host sends PLUGIN_CLIENT_CERT to a plugin "
        "started by hand; use --tls-mode manual (TLS with your cert files) or "
        "--tls-mode disabled"
    ) in proc.stderr.decode()


@pytest.mark.parametrize("transport", ["unix", "tcp"])
def test_reattach_keep_running_then_stop(debug_plugin: Any, transport: str) -> None:
    plugin = debug_plugin("--tls-mode", "disabled", "--transport", transport)
    reattach = plugin.line.strip()
    # 1. CLI host: the whole test, leaving the plugin running
    proc = soup_cli(
        "rpc", "client", "test", "--json", "--tls-mode", "disabled", "--reattach", reattach,
        "--keep-running",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout.decode()
    result = json.loads(proc.stdout)
    assert result["ok"] is True
    assert result["transport"] == transport
    shutdown = result["steps"][-1]
    assert shutdown == {**shutdown, "name": "shutdown", "ok": True}
    assert shutdown["detail"] == "skipped: --keep-running, the plugin keeps running"
    assert plugin.proc.poll() is None
    # 2. API host: call it, leave it running
    config = soup.ReattachConfig.from_json(reattach)
    tls = soup.TLSSettings(mode="disabled")
    with soup.Client(soup.ClientConfig(reattach=config, tls=tls, keep_running=True)) as client:
        assert client.protocol_version == 1
        KVClient(client.channel).put("left", b"running")
    assert plugin.proc.poll() is None
    # 3. API host: read what 2 wrote, then stop it (Shutdown)
    with soup.Client(soup.ClientConfig(reattach=config, tls=tls)) as client:
        assert KVClient(client.channel).get("left") == b"running"
    assert client.exit.graceful is True
    assert plugin.proc.wait(10) == 0


def test_reattach_with_manual_tls(debug_plugin: Any, tmp_path: Path) -> None:
    from soup import certs  # noqa: PLC0415

    ca = certs.issue_ca("ec-p256")
    (tmp_path / "ca.pem").write_bytes(ca.cert_pem)
    for role in ("server", "client"):
        certs.write_pair(
            certs.issue_leaf(ca, "ec-p256"), tmp_path / f"{role}.pem", tmp_path / f"{role}-key.pem"
        )

    def files(role: str) -> list[str]:
        return ["--tls-mode", "manual", "--cert-file", str(tmp_path / f"{role}.pem"),
                "--key-file", str(tmp_path / f"{role}-key.pem"), "--ca-file", str(tmp_path / "ca.pem")]  # fmt: skip

    plugin = debug_plugin(*files("server"))
    proc = soup_cli("rpc", "kv", "put", "k", "v", "--reattach", plugin.line, *files("client"),
                    "--keep-running")  # fmt: skip
    assert proc.returncode == 0, proc.stderr.decode()
    proc = soup_cli("rpc", "client", "test", "--json", "--reattach", plugin.line, *files("client"))
    assert proc.returncode == 0, proc.stdout.decode()
    result = json.loads(proc.stdout)
    assert result["tls"]["mode"] == "manual"
    assert result["tls"]["version"] == "TLSv1.3"
    assert plugin.proc.wait(10) == 0  # the test's shutdown step stopped it


def test_reattach_with_auto_tls_is_refused(debug_plugin: Any) -> None:
    plugin = debug_plugin("--tls-mode", "disabled")
    proc = soup_cli("rpc", "client", "test", "--json", "--reattach", plugin.line)
    assert proc.returncode == 1
    assert "--reattach cannot use --tls-mode auto" in json.loads(proc.stdout)["error"]
    assert plugin.proc.poll() is None


VALID = soup.ReattachConfig(network="unix", address="/nonexistent/plugin", pid=1).to_json()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["rpc", "client", "test", "--keep-running", "--server", "x"],
            "--keep-running needs --reattach",
        ),
        (["rpc", "client", "test", "--reattach", VALID, "--server", "x"], "not allowed with"),
        (["rpc", "client", "test", "--reattach", "nope"], "reattach config is not JSON"),
        (["rpc", "kv", "put", "k", "v", "--value-file", "f", "--server", "x"], "exactly one of"),
        (["rpc", "kv", "put", "k", "--server", "x"], "exactly one of"),
        (["rpc", "server-start", "--protocol-versions", "1,x"], "'x' is not a positive integer"),
        (["rpc", "server-start", "--protocol-versions", "0"], "'0' is not a positive integer"),
    ],
)
def test_usage_errors(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_kv_put_from_stdin_and_file(tmp_path: Path) -> None:
    server = plugin_cmd("--kv-dir", str(tmp_path / "kv"))
    big = bytes(range(256)) * 1024  # 256 KiB, more than argv takes
    put = soup_cli("rpc", "kv", "put", "big", "-", "--server", server, stdin=big)
    assert (put.returncode, put.stdout) == (0, b""), put.stderr.decode()
    get = soup_cli("rpc", "kv", "get", "big", "--server", server)
    assert get.stdout == big
    (tmp_path / "value").write_bytes(b"\x00from a file\xff")
    put = soup_cli(
        "rpc", "kv", "put", "f", "--value-file", str(tmp_path / "value"), "--server", server
    )
    assert put.returncode == 0, put.stderr.decode()
    assert soup_cli("rpc", "kv", "get", "f", "--server", server).stdout == b"\x00from a file\xff"


def test_help_explains_the_new_flags(capsys: pytest.CaptureFixture[str]) -> None:
    for argv, flags in (
        (["rpc", "server-start"], ["--magic-cookie-key", "--magic-cookie-value", "--protocol-versions", "--debug"]),
        (["rpc", "client", "test"], ["--reattach", "--keep-running", "--protocol-versions", "--server"]),
        (["rpc", "kv", "put"], ["--value-file", "'-' reads it from stdin"]),
    ):  # fmt: skip
        assert main([*argv, "--help"]) == 0
        out = capsys.readouterr().out
        for flag in flags:
            assert flag in out, (argv, flag)
