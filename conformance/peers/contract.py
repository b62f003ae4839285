"""What every peer adapter shares: our CLI contract parsed, the plugin's identity line, the
result JSON of `rpc client test` (cells.py judges it), and bounded steps.

An adapter maps `rpc server-start ...` (plugin role) and `rpc client test --json ...` (host
role) onto a peer that has its own CLI or API, so the runner treats it like soup.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
PEERS_BUILD = ROOT / "build" / "peers"
sys.path[:0] = [str(ROOT / "python"), str(ROOT / "conformance")]  # soup.lab.verify, cells

STEPS = ("spawn", "handshake", "put", "get", "get_missing", "health", "shutdown")


def parse(argv: list[str]) -> argparse.Namespace:
    """`rpc server-start ...`, `rpc client test ...` or `version`, as soup spells them."""
    parser = argparse.ArgumentParser(prog="peer-adapter")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("version")
    rpc = sub.add_parser("rpc").add_subparsers(dest="role", required=True)
    server = rpc.add_parser("server-start")
    client = rpc.add_parser("client").add_subparsers(dest="action", required=True)
    test = client.add_parser("test")
    for p in (server, test):
        p.add_argument("--tls-mode", default="auto", choices=["auto", "manual", "disabled"])
        p.add_argument("--key-type", default="ec-p256")
        for name in ("--cert-file", "--key-file", "--ca-file"):
            p.add_argument(name)
    server.add_argument("--transport", default="unix", choices=["unix", "tcp"])
    server.add_argument("--kv-dir", required=True)
    test.add_argument("--json", action="store_true")
    test.add_argument("--kv-profile", default="strict", choices=["strict", "lenient"])
    test.add_argument("--timeout", type=float, default=30.0)
    test.add_argument("--server", required=True)
    return parser.parse_args(argv)


def announce(impl: str, version: str) -> None:
    """The plugin's first hclog line, naming who serves (a host reads impl and version)."""
    record = {"@level": "info", "@message": "peer adapter", "@module": "peer", "impl": impl,
              "version": version}  # fmt: skip
    sys.stderr.write(json.dumps(record) + "\n")
    sys.stderr.flush()


def exec_plugin(argv: list[str], env: dict[str, str], cwd: str | None = None) -> None:
    """Replace this process with the peer's plugin (same pid: the host's kill reaches it)."""
    if cwd is not None:
        os.chdir(cwd)
    os.execve(argv[0], argv, env)


def new_result(impl: str, version: str, mode: str) -> dict[str, Any]:
    return {
        "ok": False, "error": None,
        "client": {"impl": impl, "version": version},
        "server": {"impl": None, "version": None},
        "tls": {"mode": mode, "version": None, "version_source": None, "backend": None,
                "client_key": None, "server_key": None, "client_fingerprint": None,
                "server_fingerprint": None, "alpn": None},
        "transport": None, "address": None, "app_protocol_version": None,
        "steps": [], "plugin_stderr_tail": "", "mutual_tls": None,
    }  # fmt: skip


class StepFailed(Exception):
    pass


def step(result: dict[str, Any], name: str, action: Callable[[], str]) -> None:
    """Run one step, record it; the first failure ends the test (StepFailed)."""
    started = time.perf_counter()
    try:
        detail, ok = action(), True
    except Exception as exc:
        detail, ok = f"{type(exc).__name__}: {exc}", False
    ms = round((time.perf_counter() - started) * 1000, 3)
    result["steps"].append({"name": name, "ok": ok, "ms": ms, "detail": detail})
    if not ok:
        result["error"] = f"{name}: {detail}"
        raise StepFailed(detail)


def failing(message: str) -> Callable[[], str]:
    """A step action that fails with message (a failure seen before the step ran)."""

    def action() -> str:
        raise StepFailed(message)

    return action


def identity(stderr_text: str) -> dict[str, str | None]:
    """impl and version from the first hclog JSON line of the plugin that has them."""
    for line in stderr_text.splitlines():
        start = line.find("{")
        try:
            record = json.loads(line[start:]) if start >= 0 else None
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and record.get("impl"):
            return {"impl": record["impl"], "version": record.get("version")}
    return {"impl": None, "version": None}


def not_measured(why: str) -> dict[str, Any]:
    """mutual_tls for a peer host whose verifier the adapter cannot observe."""
    return {"host_verified_plugin": None, "host_evidence": f"not measured: {why}"}
