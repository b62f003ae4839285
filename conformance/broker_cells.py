"""The broker suite's cells (broker.toml), the command that runs one, and its checks.

Plain data and functions; the IO is cells.run_bounded, called by test_broker.py.
"""

from __future__ import annotations

import dataclasses
import json
import shlex
import tomllib
from collections.abc import Collection
from pathlib import Path
from typing import Any

import cells as matrix

DATA = Path(__file__).with_name("broker.toml")
STEPS = (
    "spawn", "handshake", "put", "put_again", "get", "host_helper", "plugin_helper", "shutdown",
)  # fmt: skip


def load(path: Path = DATA) -> dict[str, Any]:
    data: dict[str, Any] = tomllib.loads(path.read_text())
    return data


def auto_keys(impl: str, role: str, matrix_data: dict[str, Any]) -> list[str]:
    """The key types ``impl`` supports in auto mode as ``role`` (matrix.toml's features)."""
    spec = matrix_data["implementations"][impl][role]["auto"]
    keys = spec.get("keys", "all")
    return list(matrix_data["key_types"]) if keys == "all" else list(keys)


def cells(data: dict[str, Any], matrix_data: dict[str, Any]) -> list[matrix.Cell]:
    """Per direction: each supported key type on each side at least once, on every transport
    (``every_transport``) or with the transports taking turns (each one still used)."""
    out = []
    for client, server in data["directions"]:
        client_keys = auto_keys(client, "client", matrix_data)
        server_keys = auto_keys(server, "server", matrix_data)
        shift = data["rotate"] if len(server_keys) > 1 else 0
        transports = data["transports"]
        for i in range(max(len(client_keys), len(server_keys))):
            chosen = transports if data["every_transport"] else [transports[i % len(transports)]]
            for transport in chosen:
                out.append(
                    matrix.Cell(
                        client, server, data["mode"],
                        client_keys[i % len(client_keys)],
                        server_keys[(i + shift) % len(server_keys)],
                        transport,
                    )
                )  # fmt: skip
    return out + [matrix.parse_id(cell_id) for cell_id in data.get("extra_cells", [])]


def multiplex_cells(
    data: dict[str, Any], matrix_data: dict[str, Any], go_plugin: Collection[str]
) -> list[matrix.Cell]:
    """The ``[multiplex]`` cells, the host asking for go-plugin's broker multiplexing:
    once per listed release in ``go_plugin``, soup-go on that release on its `go` sides
    (a cell without `go` once, with the default release)."""
    default = matrix.default_release(matrix_data)
    out = []
    for release in data["multiplex"]["releases"]:
        if release not in go_plugin:
            continue
        impl = matrix.release_impl(matrix_data, release)
        for cell_id in data["multiplex"]["cells"]:
            cell = matrix.parse_id(cell_id)
            if matrix.GO not in (cell.client, cell.server) and release != default:
                continue
            out.append(
                dataclasses.replace(
                    cell,
                    client=impl if cell.client == matrix.GO else cell.client,
                    server=impl if cell.server == matrix.GO else cell.server,
                    client_args=("--grpc-broker-multiplex",),
                    variant="multiplex",
                )
            )
    return out


def suite_cells(
    data: dict[str, Any], matrix_data: dict[str, Any], go_plugin: list[str]
) -> list[matrix.Cell]:
    """What a run testing the releases ``go_plugin`` takes: the four directions when the
    default release is among them, and the multiplexing cells of each."""
    base = cells(data, matrix_data) if matrix.default_release(matrix_data) in go_plugin else []
    return base + multiplex_cells(data, matrix_data, go_plugin)


def command(cell: matrix.Cell, matrix_data: dict[str, Any], paths: matrix.Paths) -> list[str]:
    """The host's `rpc client callback-test --json` against a plain `rpc server-start`."""
    server = [
        *matrix.impl_command(cell.server, matrix_data, paths),
        "rpc", "server-start",
        *matrix.tls_flags(cell.mode, cell.server_key, "server", paths.certs),
        "--transport", cell.transport,
    ]  # fmt: skip
    return [
        *matrix.impl_command(cell.client, matrix_data, paths),
        "rpc", "client", "callback-test", "--json", *cell.client_args,
        "--timeout", str(matrix.PLUGIN_START_TIMEOUT_S),
        *matrix.tls_flags(cell.mode, cell.client_key, "client", paths.certs),
        "--server", shlex.join(server),
    ]  # fmt: skip


def _steps_problems(result: dict[str, Any]) -> list[str]:
    steps = {s.get("name"): s for s in result.get("steps") or []}
    problems = []
    for name in STEPS:
        if name not in steps:
            problems.append(f"step {name} missing")
        elif steps[name].get("ok") is not True:
            problems.append(f"step {name} failed: {steps[name].get('detail')}")
    return problems


def _callback_problems(result: dict[str, Any]) -> list[str]:
    """The callbacks crossed the broker: the numbers only a real round trip gives."""
    values = result.get("values")
    if not (
        isinstance(values, list) and len(values) == 2 and all(isinstance(v, int) for v in values)
    ):
        return [f"values is {values!r}, expected two integers"]
    a, b = values
    problems = []
    if result.get("total") != a + b:
        problems.append(f"total is {result.get('total')!r}, expected {a + b}")
    if result.get("host_helper_calls") != [[0, a], [a, b]]:
        problems.append(
            f"host_helper_calls is {result.get('host_helper_calls')!r}: the host's AddHelper "
            f"must have served Sum(0, {a}) and Sum({a}, {b}) for the plugin"
        )
    if result.get("plugin_helper_sum") != a + b:
        problems.append(
            f"plugin_helper_sum is {result.get('plugin_helper_sum')!r}, expected {a + b}"
        )
    return problems


def check(cell: matrix.Cell, result: dict[str, Any]) -> list[str]:
    """Everything wrong with a result that claims to be a pass for this cell."""
    problems = []
    if result.get("ok") is not True:
        problems.append(f"ok is {result.get('ok')!r}: {result.get('error')}")
    for role, impl in (("client", cell.client), ("server", cell.server)):
        side = result.get(role) or {}
        if side.get("impl") != matrix.base_impl(impl):
            problems.append(f"{role}.impl is {side.get('impl')!r}, expected {impl!r}")
        release = impl.partition("@")[2]  # soup-go on an older go-plugin: that build ran
        if release and f"go-plugin v{release})" not in str(side.get("version")):
            problems.append(f"{role}.version is {side.get('version')!r}, not go-plugin v{release}")
    expected = {
        "tls_mode": cell.mode,
        "client_key": cell.client_key,
        "server_key": cell.server_key,
        "transport": cell.transport,
    }
    for name, want in expected.items():
        if result.get(name) != want:
            problems.append(f"{name} is {result.get(name)!r}, expected {want!r}")
    return problems + _steps_problems(result) + _callback_problems(result)


def judge(cell: matrix.Cell, returncode: int | None, stdout: str, stderr: str) -> matrix.Verdict:
    """The verdict of one finished (or killed: returncode None) cell run."""
    verdict = matrix.Verdict(cell=cell.id, outcome="fail", client_stderr=stderr)
    if returncode is None:
        verdict.reason = f"client did not finish within {matrix.CELL_TIMEOUT_S:.0f} s (killed)"
        return verdict
    try:
        result = json.loads(stdout)
    except json.JSONDecodeError:
        result = None
    if not isinstance(result, dict):
        verdict.reason = f"no result JSON (exit {returncode}): {stderr.strip()[-800:]}"
        return verdict
    verdict.result = result
    problems = check(cell, result)
    if returncode != 0 and not problems:
        problems.append(f"exit code {returncode} with ok result")
    verdict.outcome = "fail" if problems else "pass"
    verdict.reason = "; ".join(problems) or None
    return verdict
