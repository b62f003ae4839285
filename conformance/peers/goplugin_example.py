"""Adapter: go-plugin's own examples/grpc (module github.com/hashicorp/go-plugin, the version
pinned in pyproject [tool.soup] go-plugin), built into build/peers/goplugin by `nox -s peers`.

- host role (`goplugin-example`): the example CLI `kv put|get` with KV_PLUGIN (run by
  `sh -c`) and KV_PROTO=grpc; one plugin process per command, as the example works;
- plugin roles: `plugin-go-grpc` (`goplugin-example`) and `plugin-python`
  (`goplugin-example-py`, in its own venv with the requirements it pins). Both store
  values as files `kv_KEY` in their working directory: the adapter runs them in --kv-dir.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

import contract

BUILD = contract.PEERS_BUILD / "goplugin"
HOST = BUILD / "kv"
GO_PLUGIN = BUILD / "kv-go-grpc"
PY_VENV = contract.PEERS_BUILD / "goplugin-python"
PY_PLUGIN = BUILD / "plugin-python" / "plugin.py"
RUN_TIMEOUT = 30.0


def version() -> str:
    return (BUILD / "VERSION").read_text().strip()


def serve(args: Any, impl: str) -> None:
    contract.announce(impl, version())
    if impl == "goplugin-example":
        argv = [str(GO_PLUGIN)]
    else:
        argv = [str(PY_VENV / "bin" / "python"), str(PY_PLUGIN)]
    env = {**os.environ, "PYTHONPATH": str(PY_PLUGIN.parent)}
    os.makedirs(args.kv_dir, exist_ok=True)
    contract.exec_plugin(argv, env, cwd=args.kv_dir)


def _leftovers(marker: str) -> list[int]:
    """Processes still carrying this test's marker (the plugin the host should have ended)."""
    needle = f"SOUP_PEER_MARKER={marker}".encode()
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if needle in (proc / "environ").read_bytes().split(b"\0"):
                found.append(int(proc.name))
        except OSError:
            continue
    return [pid for pid in found if pid != os.getpid()]


def client_test(args: Any) -> int:
    from cells import run_bounded  # noqa: PLC0415 - the runner's bounded process runner
    from soup import verify  # noqa: PLC0415

    result = contract.new_result("goplugin-example", version(), args.tls_mode)
    marker = uuid.uuid4().hex
    value = "hello-from-soup-" + marker[:8]
    with tempfile.TemporaryDirectory(prefix="soup-peer-") as work:
        stderr_file = Path(work) / "plugin.stderr"
        os.environ |= {"KV_PROTO": "grpc", "SOUP_PEER_MARKER": marker,
                       "KV_PLUGIN": f"exec {args.server} 2>>'{stderr_file}'"}  # fmt: skip

        def kv(*words: str) -> tuple[int | None, str, str]:
            return run_bounded([str(HOST), *words], RUN_TIMEOUT)

        def run_ok(*words: str) -> str:
            code, out, err = kv(*words)
            if code != 0:
                raise contract.StepFailed(
                    f"kv {' '.join(words)}: exit {code}: {out.strip()} {err.strip()[-400:]}"
                )
            return out

        try:
            contract.step(result, "spawn", lambda: "the example host starts the plugin per command")
            put_out = run_ok("put", "soup-test-key", value)
            contract.step(result, "handshake", lambda: "kv put connected (go-plugin's client)")
            contract.step(result, "put", lambda: f"key=soup-test-key bytes={len(value)} {put_out}")
            got = run_ok("get", "soup-test-key").removesuffix("\n")

            def check_get() -> str:
                if got != value:
                    raise contract.StepFailed(f"get returned other bytes: {got[:120]!r}")
                return f"key=soup-test-key bytes={len(got)} same bytes"

            contract.step(result, "get", check_get)
            code, out, _ = kv("get", "soup-missing-key")

            def check_missing() -> str:
                if code == 0 or "NotFound" not in out:
                    raise contract.StepFailed(f"expected NOT_FOUND, got exit {code}: {out.strip()}")
                return f"key=soup-missing-key -> NOT_FOUND: {out.strip()}"

            contract.step(result, "get_missing", check_missing)
            contract.step(result, "health", contract.failing(
                "not available: the example host calls no health service"))  # fmt: skip
        except contract.StepFailed:
            pass
        left = _leftovers(marker)
        if result["error"] is None:
            result["ok"] = not left
        if left:
            result["steps"].append({"name": "shutdown", "ok": False, "ms": 0.0,
                                    "detail": f"plugin processes left running: {left}"})  # fmt: skip
        text = stderr_file.read_text(errors="replace") if stderr_file.exists() else ""
    result["plugin_stderr_tail"] = text[-4096:]
    result["server"] = contract.identity(text)
    result["mutual_tls"] = verify.judge(args.tls_mode, [], None)
    sys.stdout.write(json.dumps(result) + "\n")
    return 0 if result["ok"] else 1


def main() -> int:
    args = contract.parse(sys.argv[2:])
    impl = sys.argv[1]  # goplugin-example | goplugin-example-py
    if args.command == "version":
        print(version())
        return 0
    if args.role == "server-start":
        serve(args, impl)
    return client_test(args)


if __name__ == "__main__":
    sys.exit(main())
