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
import re
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


_CODE = re.compile(r"code = (\w+) desc = (.*)")


def _grpc_code(go_name: str) -> str:
    """Go's codes.NotFound.String() 'NotFound' as the wire name NOT_FOUND."""
    return re.sub(r"(?<!^)([A-Z])", r"_\1", go_name).upper()


class _Host:
    """The example CLI: one `kv` process (and plugin process) per command, bounded."""

    def __init__(self, server: str, work: Path, marker: str) -> None:
        # The host logs no plugin address: a copy of the plugin's stdout (its handshake
        # lines) says which transport it used. No exec: sh waits for the pipeline.
        self.stdout_file = work / "plugin.stdout"
        self.stderr_file = work / "plugin.stderr"
        plugin = f"{server} 2>>'{self.stderr_file}' | tee -a '{self.stdout_file}'"
        self.env = {"KV_PROTO": "grpc", "SOUP_PEER_MARKER": marker, "KV_PLUGIN": plugin}
        self.log = ""

    def run(self, *words: str) -> tuple[int | None, str]:
        from cells import run_bounded  # noqa: PLC0415 - the runner's bounded process runner

        os.environ.update(self.env)
        code, out, err = run_bounded([str(HOST), *words], RUN_TIMEOUT)
        self.log += err
        return code, out

    def ok(self, *words: str) -> str:
        code, out = self.run(*words)
        if code != 0:
            raise contract.StepFailed(f"kv {' '.join(words)}: exit {code}: {out.strip()}")
        return out


def _steps(args: Any, result: dict[str, Any], host: _Host, value: bytes) -> None:
    from soup.lab import kvprofile  # noqa: PLC0415

    contract.step(result, "spawn", lambda: "the example host starts the plugin per command")
    host.ok("put", "soup-test-key", value.decode())
    line = host.stdout_file.read_text().partition("\n")[0].strip()
    fields = line.split("|")
    if len(fields) >= 4:
        result["transport"], result["address"] = fields[2], fields[3]
    contract.step(result, "handshake", lambda: f"kv put connected; handshake line {line}")
    contract.step(result, "put", lambda: f"key=soup-test-key bytes={len(value)}")
    got = host.ok("get", "soup-test-key").removesuffix("\n").encode()
    contract.step(
        result, "get", lambda: kvprofile.check_get(args.kv_profile, "soup-test-key", value, got)
    )
    code, out = host.run("get", "soup-missing-key")
    error = _CODE.search(out)

    def missing() -> str:
        if code == 0:
            return kvprofile.check_missing(args.kv_profile, "soup-missing-key", None, out)
        name = _grpc_code(error.group(1)) if error else "UNKNOWN"
        return kvprofile.check_missing(
            args.kv_profile, "soup-missing-key", name, error.group(2) if error else out.strip()
        )

    contract.step(result, "get_missing", missing)
    contract.step(result, "health", lambda: "skipped: the example host calls no health service")


def client_test(args: Any) -> int:
    from soup.lab import verify  # noqa: PLC0415

    result = contract.new_result("goplugin-example", version(), args.tls_mode)
    marker = uuid.uuid4().hex
    value = ("hello-from-soup-" + marker[:8]).encode()
    with tempfile.TemporaryDirectory(prefix="soup-peer-") as work:
        host = _Host(args.server, Path(work), marker)
        stderr_file = host.stderr_file
        try:
            _steps(args, result, host, value)
            left = _leftovers(marker)

            def shutdown() -> str:
                if left:
                    raise contract.StepFailed(f"plugin processes left running: {left}")
                return "every plugin the example host started has exited (go-plugin's Kill)"

            contract.step(result, "shutdown", shutdown)
            result["ok"] = True
        except contract.StepFailed:
            pass
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
