"""The matrix as data: cells from matrix.toml, the command that runs one, and its verdict.

Everything here is plain data and functions; running processes is `run_cell`, the only IO.
"""

from __future__ import annotations

import fnmatch
import json
import os
import shlex
import signal
import subprocess
import time
import tomllib
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import kvprofiles
import mutual

DATA = Path(__file__).with_name("matrix.toml")
STEPS = ("spawn", "handshake", "put", "get", "get_missing", "health", "shutdown")
NO_KEY = "none"
# A cell that has not answered in this long is killed and fails, naming the bound.
CELL_TIMEOUT_S = 90.0
PLUGIN_START_TIMEOUT_S = 30


def load(path: Path = DATA) -> dict[str, Any]:
    """The matrix data, with one implementation `go@<release>` per older go-plugin release."""
    data: dict[str, Any] = tomllib.loads(path.read_text())
    data["implementations"] |= release_implementations(data)
    return data


GO = "go"


def releases(data: dict[str, Any]) -> list[dict[str, Any]]:
    """soup-go's go-plugin releases, newest (the default, the tree's go.mod) first."""
    found: list[dict[str, Any]] = data["implementations"][GO]["releases"]
    return found


def default_release(data: dict[str, Any]) -> str:
    return str(releases(data)[0]["go_plugin"])


def release_impl(data: dict[str, Any], go_plugin: str) -> str:
    """The implementation name of soup-go on a go-plugin release: `go` for the default."""
    return GO if go_plugin == default_release(data) else f"{GO}@{go_plugin}"


def impl_release(data: dict[str, Any], impl: str) -> str | None:
    """The go-plugin release an implementation is built on (None: not soup-go)."""
    if impl == GO:
        return default_release(data)
    base, _, release = impl.partition("@")
    return release if base == GO and release else None


def release_implementations(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """go@<release> for every non-default release: go's tables with the release's overrides."""
    base = data["implementations"][GO]
    out = {}
    for entry in releases(data)[1:]:
        impl = {k: v for k, v in base.items() if k != "releases"}
        for role in ("client", "server"):
            impl[role] = base[role] | entry.get(role, {})
        out[f"{GO}@{entry['go_plugin']}"] = impl
    return out


def base_impl(impl: str) -> str:
    """What an implementation calls itself in its logs: `go@1.4.8` is `go`."""
    return impl.partition("@")[0]


def cell_release(cell: Cell, data: dict[str, Any]) -> str:
    """The go-plugin release a cell tests: its non-default soup-go's, else the default."""
    default = default_release(data)
    found = {impl_release(data, i) or default for i in (cell.client, cell.server)} - {default}
    return found.pop() if found else default


@dataclass(frozen=True)
class Cell:
    client: str
    server: str
    mode: str
    client_key: str
    server_key: str
    transport: str
    client_args: tuple[str, ...] = ()
    server_args: tuple[str, ...] = ()
    # Set for negative cells: the run must fail and its error must contain this.
    expect_error: str | None = None
    reason: str | None = None
    variant: str | None = None

    @property
    def base_id(self) -> str:
        return (
            f"{self.client}->{self.server}/{self.mode}/"
            f"{self.client_key}->{self.server_key}/{self.transport}"
        )

    @property
    def id(self) -> str:
        return f"{self.base_id}+{self.variant}" if self.variant else self.base_id


@dataclass
class Verdict:
    cell: str
    outcome: str  # pass | fail | unsupported | xfail | stale | negative-pass
    reason: str | None = None
    command: str | None = None
    result: dict[str, Any] | None = None
    client_stderr: str = ""
    seconds: float = 0.0
    axes: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def parse_id(cell_id: str) -> Cell:
    """Inverse of Cell.id for a base id, e.g. 'go->python/auto/ec-p521->ec-p256/unix'."""
    impls, mode, keys, transport = cell_id.split("/")
    client, server = impls.split("->")
    client_key, server_key = keys.split("->")
    return Cell(client, server, mode, client_key, server_key, transport)


def _keys(spec: dict[str, Any], data: dict[str, Any]) -> list[str]:
    keys = spec.get("keys", "all")
    return list(data["key_types"]) if keys == "all" else list(keys)


def unsupported_reason(cell: Cell, data: dict[str, Any]) -> str | None:
    """Why an implementation's features table rules the cell out, or None if supported."""
    impls = data["implementations"]
    for role, impl, key in (
        ("client", cell.client, cell.client_key),
        ("server", cell.server, cell.server_key),
    ):
        table = impls[impl][role]
        if cell.mode not in table:
            return f"{impl} {role} does not support tls mode {cell.mode}"
        spec = table[cell.mode]
        if cell.mode != "disabled" and key not in _keys(spec, data):
            why = spec.get("why_not", f"{impl} {role} does not support key {key}")
            return f"{impl} {role} in {cell.mode} mode: {why}"
    if cell.transport not in impls[cell.server]["server"].get("transports", data["transports"]):
        return f"{cell.server} server does not support transport {cell.transport}"
    return None


def _pairs(data: dict[str, Any], peers: bool) -> list[tuple[str, str]]:
    """(client, server) pairs: a non-default go-plugin release meets Python, the default
    `go` and itself, never another old release (that says nothing about either);
    implementations marked ``peer`` only when asked (the peers suite)."""
    impls = [n for n, spec in data["implementations"].items() if peers or not spec.get("peer")]
    out = []
    for client in impls:
        for server in impls:
            old = {i for i in (client, server) if "@" in i}
            if len(old) <= 1:
                out.append((client, server))
    return out


def all_cells(
    data: dict[str, Any], go_plugin: Iterable[str] | None = None, *, peers: bool = False
) -> list[Cell]:
    """Every cell, or only those testing the given go-plugin releases (None: the default);
    peer implementations only with ``peers``."""
    wanted = set(go_plugin) if go_plugin is not None else {default_release(data)}
    cells = []
    for client, server in _pairs(data, peers):
        probe = Cell(client, server, "", "", "", "")
        if cell_release(probe, data) not in wanted:
            continue
        for mode in data["tls_modes"]:
            pairs = (
                [(NO_KEY, NO_KEY)]
                if mode == "disabled"
                else [(c, s) for c in data["key_types"] for s in data["key_types"]]
            )
            for client_key, server_key in pairs:
                for transport in data["transports"]:
                    cells.append(Cell(client, server, mode, client_key, server_key, transport))
    return cells


def negative_cells(data: dict[str, Any]) -> list[Cell]:
    out = []
    for entry in data.get("negative", []):
        base = parse_id(entry["cell"])
        variant = entry["id"].split("+", 1)[1]
        out.append(
            Cell(
                **{
                    k: v
                    for k, v in asdict(base).items()
                    if k in ("client", "server", "mode", "client_key", "server_key", "transport")
                },
                client_args=tuple(entry.get("client_args", ())),
                server_args=tuple(entry.get("server_args", ())),
                expect_error=entry["expect_error"],
                reason=entry["reason"],
                variant=variant,
            )
        )
    return out


def suite_cells(
    data: dict[str, Any], suite: str, go_plugin: Iterable[str] | None = None
) -> list[Cell]:
    """The cells of a suite: matrix cells matching its patterns, plus negative cells if asked
    (negative cells are the default release's)."""
    if suite not in data["suites"]:
        raise ValueError(f"unknown suite {suite!r}; known: {', '.join(data['suites'])}")
    spec = data["suites"][suite]
    patterns = spec["cells"]
    candidates = all_cells(data, go_plugin, peers=spec.get("peers", False))
    chosen = [c for c in candidates if any(fnmatch.fnmatchcase(c.id, p) for p in patterns)]
    if suite == "proof":  # keep the order the table is read in: Go->Go first
        chosen.sort(key=lambda c: patterns.index(c.id))
    if spec.get("negative") and (go_plugin is None or default_release(data) in go_plugin):
        chosen += negative_cells(data)
    return chosen


def known_failure(cell: Cell, data: dict[str, Any]) -> dict[str, str] | None:
    for entry in data.get("known_failures", []):
        if fnmatch.fnmatchcase(cell.id, entry["cell"]):
            return dict(entry)
    return None


@dataclass(frozen=True)
class Paths:
    """Where things are for this run: interpreter, soup-go, manual-mode certificates."""

    python: str
    soup_go: str
    certs: Path
    kv_root: Path
    # soup-go on older go-plugin releases: implementation name (go@1.4.8) -> binary.
    releases: Mapping[str, str] = field(default_factory=dict)


def impl_command(impl: str, data: dict[str, Any], paths: Paths, key: str = "command") -> list[str]:
    return [
        part.format(
            python=paths.python,
            soup_go=paths.releases.get(impl, paths.soup_go),
            root=DATA.parent.parent,
        )
        for part in data["implementations"][impl][key]
    ]


def tls_flags(mode: str, key: str, role: str, certs: Path) -> list[str]:
    flags = ["--tls-mode", mode]
    if mode == "disabled":
        return flags
    flags += ["--key-type", key]
    if mode == "manual":
        flags += [
            "--cert-file", str(certs / f"{role}-{key}.pem"),
            "--key-file", str(certs / f"{role}-{key}.key"),
            "--ca-file", str(certs / "ca.pem"),
        ]  # fmt: skip
    return flags


def command(cell: Cell, data: dict[str, Any], paths: Paths) -> list[str]:
    """The client command line that runs this cell: two real processes, like production."""
    kv_dir = paths.kv_root / cell.id.replace("/", "_").replace(">", "").replace("+", "_")
    server = [
        *impl_command(cell.server, data, paths),
        "rpc", "server-start",
        *tls_flags(cell.mode, cell.server_key, "server", paths.certs),
        "--transport", cell.transport,
        "--kv-dir", str(kv_dir),
        *cell.server_args,
    ]  # fmt: skip
    return [
        *impl_command(cell.client, data, paths),
        "rpc", "client", "test", "--json",
        "--timeout", str(PLUGIN_START_TIMEOUT_S),
        *tls_flags(cell.mode, cell.client_key, "client", paths.certs),
        *cell.client_args,
        *kvprofiles.client_args(cell, data),
        "--server", shlex.join(server),
    ]  # fmt: skip


def check_result(
    cell: Cell,
    result: dict[str, Any],
    server_version: str | None = None,
    data: dict[str, Any] | None = None,
) -> list[str]:
    """Everything wrong with a result that claims to be a pass for this cell.

    result.server is what the client read from the plugin's own first log line; it must
    name the cell's server implementation (and, when the runner knows it, its version):
    a cell whose plugin never said who it is, or said it is the other one, fails.
    """
    problems = []
    server = result.get("server") or {}
    if server.get("impl") != base_impl(cell.server):
        problems.append(
            f"server.impl is {server.get('impl')!r}, expected {base_impl(cell.server)!r} "
            "(as the plugin's own log says)"
        )
    elif server_version is not None and server.get("version") != server_version:
        problems.append(f"server.version is {server.get('version')!r}, expected {server_version!r}")
    if result.get("ok") is not True:
        problems.append(f"ok is {result.get('ok')!r}: {result.get('error')}")
    steps = {s.get("name"): s for s in result.get("steps", [])}
    for name in STEPS:
        if name not in steps:
            problems.append(f"step {name} missing")
        elif steps[name].get("ok") is not True:
            problems.append(f"step {name} failed: {steps[name].get('detail')}")
        elif str(steps[name].get("detail")).startswith("skipped:") and not (
            data and kvprofiles.skippable(cell, data, steps[name])
        ):
            problems.append(f"step {name} {steps[name].get('detail')}")
    tls = result.get("tls") or {}
    expected: dict[str, str | None] = {"mode": cell.mode}
    if cell.mode != "disabled":
        expected |= {
            "version": "TLSv1.3",
            # grpcio's own TLS hides the negotiated version: a native-backend host reports
            # a probe handshake with the same credentials, and must say so. Every other
            # backend reads it from the connection the RPCs used.
            "version_source": "probe" if tls.get("backend") == "native" else "live",
            "client_key": cell.client_key,
            "server_key": cell.server_key,
        }
    else:
        expected |= {"version": None}
    for name, want in expected.items():
        if tls.get(name) != want:
            problems.append(f"tls.{name} is {tls.get(name)!r}, expected {want!r}")
    problems += mutual.problems(cell.mode, result)  # both sides verified (mutual.py)
    if result.get("transport") != cell.transport:
        problems.append(f"transport is {result.get('transport')!r}, expected {cell.transport!r}")
    return problems


def judge(
    cell: Cell,
    returncode: int,
    result: dict[str, Any] | None,
    known: dict[str, str] | None,
    stderr: str,
    server_version: str | None = None,
    data: dict[str, Any] | None = None,
) -> tuple[str, str | None]:
    """Outcome and reason for a finished cell run."""
    error = (result or {}).get("error") or ""
    evidence = f"{error}\n{(result or {}).get('plugin_stderr_tail') or ''}\n{stderr}"
    expect = cell.expect_error or (known or {}).get("expect_error")
    if expect is not None:
        # A run that claims ok but breaks a rule (e.g. one-way TLS) has failed too.
        problems = check_result(cell, result, server_version, data) if result else []
        evidence += "\n" + "; ".join(problems)
        failed = returncode != 0 or not result or result.get("ok") is not True or bool(problems)
        if not failed:
            return "stale", f"expected to fail with {expect!r} but passed"
        if expect not in evidence:
            return "fail", f"failed, but not with {expect!r}: {error or stderr.strip()[-500:]}"
        return ("negative-pass" if cell.expect_error else "xfail"), cell.reason or (
            known or {}
        ).get("reason")
    if result is None:
        return "fail", f"no result JSON (exit {returncode}): {stderr.strip()[-800:]}"
    problems = check_result(cell, result, server_version, data)
    if returncode != 0 and not problems:
        problems.append(f"exit code {returncode} with ok result")
    return ("pass", None) if not problems else ("fail", "; ".join(problems))


def logged_backend(stderr_tail: object) -> str | None:
    """The TLS backend a plugin logged (hclog JSON key "backend"), or None."""
    backend = None
    for line in str(stderr_tail or "").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and isinstance(record.get("backend"), str):
            backend = record["backend"]
    return backend


def _kill_marked(marker: str) -> None:
    """Kill every process that carries this cell's marker in its environment.

    The plugin is the client's child in a process group of its own; if the client itself
    has to be killed, this finds the plugin it left behind.
    """
    needle = f"SOUP_CELL_MARKER={marker}".encode()
    for proc_dir in Path("/proc").glob("[0-9]*"):
        try:
            if needle in (proc_dir / "environ").read_bytes().split(b"\0"):
                os.kill(int(proc_dir.name), signal.SIGKILL)
        except (OSError, ValueError):
            continue


def run_bounded(argv: list[str], timeout: float) -> tuple[int | None, str, str]:
    """Run argv in its own process group; (returncode or None on timeout, stdout, stderr)."""
    returncode, out, err = run_bounded_bytes(argv, timeout)
    return returncode, out.decode("utf-8", "replace"), err.decode("utf-8", "replace")


def run_bounded_bytes(
    argv: list[str], timeout: float, stdin: bytes | None = None
) -> tuple[int | None, bytes, bytes]:
    """run_bounded with the raw output bytes (e.g. a `kv get` of a binary value); stdin:
    bytes to feed it (default: no input)."""
    marker = uuid.uuid4().hex
    env = {**os.environ, "SOUP_CELL_MARKER": marker}
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL if stdin is None else subprocess.PIPE,
        env=env, start_new_session=True,
    )  # fmt: skip
    try:
        out, err = proc.communicate(input=stdin, timeout=timeout)
        return proc.returncode, out, err
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        return None, out, err
    finally:
        _kill_marked(marker)


def run_cell(cell: Cell, data: dict[str, Any], paths: Paths, server_version: str | None) -> Verdict:
    """Run one cell. server_version: what the server's `version` command printed (None:
    unknown, then only result.server.impl is checked)."""
    argv = command(cell, data, paths)
    axes = {
        "client": cell.client, "server": cell.server, "mode": cell.mode,
        "client_key": cell.client_key, "server_key": cell.server_key, "transport": cell.transport,
        "variant": cell.variant or "", "go_plugin": cell_release(cell, data),
    }  # fmt: skip
    verdict = Verdict(cell=cell.id, outcome="fail", command=shlex.join(argv), axes=axes)
    reason = unsupported_reason(cell, data)
    if reason:
        verdict.outcome, verdict.reason = "unsupported", reason
        return verdict
    start = time.monotonic()
    returncode, stdout, stderr = run_bounded(argv, CELL_TIMEOUT_S)
    verdict.seconds = round(time.monotonic() - start, 3)
    verdict.client_stderr = stderr
    if returncode is None:
        verdict.reason = f"client did not finish within {CELL_TIMEOUT_S:.0f} s (killed)"
        return verdict
    try:
        result = json.loads(stdout)
        verdict.result = result if isinstance(result, dict) else None
    except json.JSONDecodeError:
        verdict.result = None
    if verdict.result is not None:
        # result.server is the client's own reading of the plugin's log (judged, never
        # overwritten here); the plugin's log also says which TLS stack served.
        tls = verdict.result.get("tls")
        if isinstance(tls, dict):
            tls["server_backend"] = logged_backend(verdict.result.get("plugin_stderr_tail"))
    known_version = None if (server_version or "unknown").startswith("unknown") else server_version
    verdict.outcome, verdict.reason = judge(
        cell, returncode, verdict.result, known_failure(cell, data), stderr, known_version, data
    )
    if verdict.outcome == "pass":  # a lenient KV profile says what differed (kvprofiles.py)
        verdict.reason = kvprofiles.difference(cell, data, verdict.result)
    return verdict
