"""The command line contract: argument parsing, exit codes, `client test` output."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from plugin_commands import PLUGIN, PYTHON, plugin_cmd, python_cmd

from soup import __version__
from soup.lab.cli import build_parser, main
from soup.lab.result import version_string

REATTACH_JSON = json.dumps(
    {"Protocol": "grpc", "ProtocolVersion": 1, "Pid": 1,
     "Addr": {"Network": "unix", "String": "/nowhere"}}
)  # fmt: skip
STEPS = ["spawn", "handshake", "put", "get", "get_missing", "health", "shutdown"]
TOP_KEYS = {
    "ok",
    "error",
    "client",
    "server",
    "tls",
    "transport",
    "address",
    "app_protocol_version",
    "protocol_version",
    "steps",
    "plugin_stderr_tail",
    "mutual_tls",
}
TLS_KEYS = {
    "mode",
    "version",
    "version_source",
    "backend",
    "client_key",
    "server_key",
    "client_fingerprint",
    "server_fingerprint",
    "alpn",
}


def soup(*args: str, timeout: float = 90) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [PYTHON, "-m", "soup", *args], capture_output=True, timeout=timeout, check=False
    )


# -- parsing (in-process)


def test_help_has_examples(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "examples:" in out
    assert "rpc client test --server" in out


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["version"]) == 0
    out = capsys.readouterr().out.strip()
    assert out == version_string()
    assert out.startswith(f"soup {__version__} (python ")


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["rpc"],
        ["rpc", "client", "test"],  # --server missing
        ["rpc", "client", "test", "--server", "x", "--key-type", "dsa-1024"],
        ["rpc", "client", "test", "--server", "x", "--timeout", "0"],
        ["rpc", "server-start", "--transport", "udp"],
        ["rpc", "kv", "get", "--server", "x"],
    ],
)
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    assert "error" in capsys.readouterr().err


@pytest.mark.parametrize("missing", ["--cert-file", "--key-file", "--ca-file"])
def test_manual_mode_needs_all_files(missing: str, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["rpc", "client", "test", "--server", "x", "--tls-mode", "manual"]
    for flag in ("--cert-file", "--key-file", "--ca-file"):
        if flag != missing:
            argv += [flag, "f.pem"]
    assert main(argv) == 2
    assert f"--tls-mode manual requires {missing}" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "usage", "reason"),
    [
        (
            ["rpc", "client", "test", "--server", "x", "--tls-mode", "manual"],
            "usage: soup rpc client test ",
            "soup rpc client test: error: --tls-mode manual requires --cert-file",
        ),
        (
            ["rpc", "kv", "get", "k", "--server", "x", "--keep-running"],
            "usage: soup rpc kv get ",
            "soup rpc kv get: error: --keep-running needs --reattach",
        ),
        (
            [
                "rpc",
                "client",
                "callback-test",
                "--reattach",
                REATTACH_JSON,
                "--grpc-broker-multiplex",
            ],
            "usage: soup rpc client callback-test ",
            "soup rpc client callback-test: error: --grpc-broker-multiplex cannot be used with "
            "--reattach",
        ),
        (
            ["rpc", "client", "bench", "--server", "x", "--count", "0"],
            "usage: soup rpc client bench ",
            "soup rpc client bench: error: argument --count: must be >= 1, got 0",
        ),
    ],
)
def test_usage_errors_after_parsing_print_the_subcommands_usage(
    argv: list[str], usage: str, reason: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(usage)
    assert reason in err


def test_parser_defaults() -> None:
    args = build_parser().parse_args(["rpc", "server-start"])
    assert (args.tls_mode, args.key_type, args.transport, args.tls_backend) == (
        "auto",
        "ec-p256",
        "unix",
        "auto",
    )
    args = build_parser().parse_args(["rpc", "client", "test", "--server", "a 'b c'"])
    assert args.timeout == 30.0
    assert not args.json


# -- real processes


@pytest.mark.slow
@pytest.mark.parametrize("transport", ["unix", "tcp"])
def test_client_test_json_shape(transport: str) -> None:
    proc = soup("rpc", "client", "test", "--json", "--server", plugin_cmd("--transport", transport))
    assert proc.returncode == 0, proc.stderr.decode()
    result = json.loads(proc.stdout)  # exactly one JSON object, nothing else
    assert set(result) == TOP_KEYS
    assert result["ok"] is True
    assert result["mutual_tls"]["plugin_verified_client"] is True
    assert result["mutual_tls"]["host_verified_plugin"] is True
    assert result["error"] is None
    assert result["client"]["impl"] == "python"
    assert result["client"]["version"] == version_string()
    # the plugin's first log line says who serves
    assert result["server"] == {"impl": "python", "version": version_string()}
    assert set(result["tls"]) == TLS_KEYS
    tls = result["tls"]
    assert tls["mode"] == "auto"
    assert tls["version"] == "TLSv1.3"
    assert tls["version_source"] == "probe"
    assert tls["backend"] == "native"
    assert tls["client_key"] == tls["server_key"] == "ec-p256"
    assert len(tls["client_fingerprint"]) == len(tls["server_fingerprint"]) == 64
    assert tls["alpn"] == "h2"
    assert result["transport"] == transport
    assert result["app_protocol_version"] == result["protocol_version"] == 1
    assert [s["name"] for s in result["steps"]] == STEPS
    assert all(s["ok"] for s in result["steps"])
    assert all(isinstance(s["ms"], float) and isinstance(s["detail"], str) for s in result["steps"])
    assert isinstance(result["plugin_stderr_tail"], str)


@pytest.mark.slow
def test_client_test_json_p521_uses_openssl() -> None:
    server = plugin_cmd("--key-type", "ec-p521")
    proc = soup("rpc", "client", "test", "--json", "--key-type", "ed25519", "--server", server)
    assert proc.returncode == 0, proc.stderr.decode()
    tls = json.loads(proc.stdout)["tls"]
    assert (tls["backend"], tls["version_source"]) == ("openssl", "live")
    assert (tls["client_key"], tls["server_key"]) == ("ed25519", "ec-p521")


@pytest.mark.slow
def test_client_test_human_output() -> None:
    proc = soup("rpc", "client", "test", "--server", PLUGIN)
    assert proc.returncode == 0, proc.stderr.decode()
    lines = proc.stdout.decode().splitlines()
    assert lines[-1] == "RESULT: PASS"
    for name in STEPS:
        assert any(line.startswith(f"PASS {name} ") for line in lines), name
    assert any("TLSv1.3" in line for line in lines)


@pytest.mark.slow
def test_client_test_failure_json() -> None:
    server = python_cmd("import sys; sys.stderr.write('nope\\n'); sys.exit(3)")
    proc = soup("rpc", "client", "test", "--json", "--server", server)
    assert proc.returncode == 1
    result = json.loads(proc.stdout)
    assert result["ok"] is False
    assert [s["name"] for s in result["steps"]] == ["spawn", "handshake"]
    assert [s["ok"] for s in result["steps"]] == [True, False]
    assert result["error"].startswith("handshake: plugin exited before we could connect")
    assert "exit code 3" in result["error"]
    assert "nope" in result["plugin_stderr_tail"]


@pytest.mark.slow
def test_client_test_failure_human() -> None:
    proc = soup("rpc", "client", "test", "--timeout", "1", "--server", python_cmd("0"))
    assert proc.returncode == 1
    last = proc.stdout.decode().splitlines()[-1]
    assert last.startswith("RESULT: FAIL: handshake: plugin exited before we could connect")


@pytest.mark.slow
def test_kv_put_get(tmp_path: Path) -> None:
    server = plugin_cmd("--kv-dir", str(tmp_path / "kv"))
    put = soup("rpc", "kv", "put", "greeting", "hello there", "--server", server)
    assert (put.returncode, put.stdout) == (0, b""), put.stderr.decode()
    get = soup("rpc", "kv", "get", "greeting", "--server", server)
    assert (get.returncode, get.stdout) == (0, b"hello there"), get.stderr.decode()
    missing = soup("rpc", "kv", "get", "nope", "--server", server)
    assert missing.returncode == 1
    assert missing.stdout == b""
    assert missing.stderr.decode().splitlines()[-1] == "error: NOT_FOUND: key not found"
    empty = soup("rpc", "kv", "put", "", "x", "--server", server)
    assert empty.returncode == 1
    assert empty.stderr.decode().splitlines()[-1] == (
        "error: INVALID_ARGUMENT: key must not be empty"
    )


@pytest.mark.slow
def test_bench_json() -> None:
    proc = soup(
        "rpc", "client", "bench", "--json", "--count", "20", "--warmup", "2", "--server", PLUGIN
    )
    assert proc.returncode == 0, proc.stderr.decode()
    result = json.loads(proc.stdout)
    assert result["ok"] is True
    assert result["count"] == 20
    assert set(result["round_trip_us"]) == {"mean", "p50", "p90", "p99", "min", "max"}
    assert result["round_trip_us"]["min"] > 0


@pytest.mark.slow
def test_server_start_without_cookie_via_cli() -> None:
    proc = soup("rpc", "server-start")
    assert proc.returncode == 1
    assert proc.stderr.startswith(b"This binary is a plugin.")
