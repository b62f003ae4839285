"""The checks of ``soup check host``: run the host once per check with a probe variant.

``{plugin}`` in the host's command becomes the path of a small executable that starts
``soup.lab.check.probe`` with that run's directory; the probe records what the host did,
and the host's exit status and output are the rest of the evidence.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, NamedTuple

from soup import certs, handshake
from soup.lab.check import probe
from soup.lab.check.catalogue import Verdict, failed, passed, skipped
from soup.lab.check.target import TargetError

PLACEHOLDER = "{plugin}"


@dataclass(frozen=True)
class HostTarget:
    command: tuple[str, ...]
    cookie_key: str = "BASIC_PLUGIN"
    cookie_value: str = "hello"
    versions: tuple[int, ...] = (1,)
    timeout: float = 10.0


class HostRun(NamedTuple):
    """One run of the host: how it ended and what the probe recorded."""

    code: int | None  # None: killed after the timeout
    output: str
    events: list[dict[str, Any]]

    def of(self, name: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["event"] == name]

    @property
    def env(self) -> dict[str, str]:
        starts = self.of("start")
        return dict(starts[0]["env"]) if starts else {}

    @property
    def methods(self) -> list[str]:
        return [e["method"] for e in self.of("rpc")]

    def tail(self, limit: int = 300) -> str:
        text = self.output.strip()
        return text if len(text) <= limit else "..." + text[-limit:]

    def ended(self) -> str:
        return "still running at the timeout (killed)" if self.code is None else f"exit {self.code}"


class HostLab:
    """The host under test and a scratch directory for its runs (removed on exit)."""

    def __init__(self, target: HostTarget) -> None:
        self.target = target
        self.scratch = Path(tempfile.mkdtemp(prefix="soup-check-host-"))
        self._runs = 0

    def __enter__(self) -> HostLab:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        shutil.rmtree(self.scratch, ignore_errors=True)

    def _probe_command(self, variant: str) -> Path:
        self._runs += 1
        directory = self.scratch / f"{self._runs}-{variant}"
        directory.mkdir(mode=0o700)
        config = {
            "variant": variant, "versions": list(self.target.versions),
            "cookie_key": self.target.cookie_key, "cookie_value": self.target.cookie_value,
        }  # fmt: skip
        (directory / probe.CONFIG).write_text(json.dumps(config))
        script = directory / "plugin"
        argv = shlex.join([sys.executable, "-m", "soup.lab.check.probe", str(directory)])
        script.write_text(f'#!/bin/sh\nexec {argv} "$@"\n')
        script.chmod(0o700)
        return script

    def run(self, variant: str) -> HostRun:
        """Run the host once with the probe ``variant``; nothing it started outlives this."""
        script = self._probe_command(variant)
        argv = [arg.replace(PLACEHOLDER, str(script)) for arg in self.target.command]
        try:
            proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        except OSError as exc:
            raise TargetError(f"cannot start {argv[0]!r}: {exc}") from None
        try:
            output, _ = proc.communicate(timeout=self.target.timeout)
            code: int | None = proc.returncode
        except subprocess.TimeoutExpired:
            _kill_group(proc.pid)
            output, _ = proc.communicate(timeout=10)
            code = None
        _kill_group(proc.pid)
        events = probe.read_events(script.parent)
        for start in [e for e in events if e["event"] == "start"]:
            _kill_probe(int(start["pid"]))
        for private in [Path(e["path"]) for e in events if e["event"] == "private"]:
            if private.name.startswith(probe.PRIVATE_PREFIX):
                shutil.rmtree(private, ignore_errors=True)
        return HostRun(code, output.decode("utf-8", "replace"), events)


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def _kill_probe(pid: int) -> None:
    """SIGKILL a probe the host left running (only if that pid is still our probe)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return
    if b"soup.lab.check.probe" in cmdline:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


def _never_started(run: HostRun) -> Verdict:
    return failed(f"the host never started {PLACEHOLDER} ({run.ended()}; output: {run.tail()!r})")


def env(lab: HostLab) -> Verdict:
    run = lab.run("good")
    if not run.of("start"):
        return _never_started(run)
    given = run.env
    key, want = lab.target.cookie_key, lab.target.cookie_value
    if given.get(key) != want:
        return failed(f"cookie {key}={given.get(key)!r}, expected {want!r}")
    versions = given.get(handshake.ENV_PROTOCOL_VERSIONS)
    if not versions:
        return failed(f"no {handshake.ENV_PROTOCOL_VERSIONS}")
    try:
        handshake.parse_versions(versions)
    except ValueError as exc:
        return failed(f"{handshake.ENV_PROTOCOL_VERSIONS}={versions!r}: {exc}")
    return passed(f"{key}={want}, {handshake.ENV_PROTOCOL_VERSIONS}={versions}")


def auto_mtls(lab: HostLab) -> Verdict:
    run = lab.run("good")
    if not run.of("start"):
        return _never_started(run)
    pem = run.env.get(handshake.ENV_CLIENT_CERT)
    if not pem:
        return failed(f"no {handshake.ENV_CLIENT_CERT}: the host does not use AutoMTLS")
    try:
        key = certs.key_type_of(certs.load_cert_pem(pem.encode()))
    except ValueError as exc:
        return failed(f"{handshake.ENV_CLIENT_CERT} is not a PEM certificate: {exc}")
    versions = {v for e in run.of("tls") for v in e["versions"]}
    versions |= {v for e in run.of("rpc") for v in e.get("tls", [])}
    refused = [e["reason"] for e in run.of("tls-refused")]
    if not versions:
        return failed(
            f"no TLS connection presented the {key} certificate it sent; refused: {refused}"
        )
    return passed(f"sent and presented a {key} certificate ({', '.join(sorted(set(versions)))})")


def _uses_auto_mtls(lab: HostLab) -> bool | str:
    run = lab.run("good")
    if not run.of("start"):
        return f"the host never started {PLACEHOLDER} ({run.ended()})"
    return bool(run.env.get(handshake.ENV_CLIENT_CERT))


def _refuses(lab: HostLab, variant: str, what: str) -> Verdict:
    run = lab.run(variant)
    if not run.of("start"):
        return _never_started(run)
    own = [m for m in run.methods if not m.startswith("/plugin.GRPC")]
    if run.code is None:
        return failed(f"{what}: the host hung until the timeout; calls it made: {run.methods}")
    if own or run.code == 0:
        return failed(
            f"{what}: {run.ended()}, calls it made: {run.methods}; output: {run.tail()!r}"
        )
    return passed(f"{what}: {run.ended()}, no call; output: {run.tail(160)!r}")


def _refuses_tls(lab: HostLab, variant: str, what: str) -> Verdict:
    uses = _uses_auto_mtls(lab)
    if isinstance(uses, str):
        return failed(uses)
    if not uses:
        return skipped("the host does not use AutoMTLS (see host.auto-mtls)")
    return _refuses(lab, variant, what)


def shutdown(lab: HostLab) -> Verdict:
    run = lab.run("good")
    if not run.of("start"):
        return _never_started(run)
    if "/plugin.GRPCController/Shutdown" in run.methods:
        return passed(f"called Shutdown; {run.ended()}")
    return failed(f"never called Shutdown ({run.ended()}); calls: {run.methods}")


def stdio(lab: HostLab) -> Verdict:
    run = lab.run("good")
    if not run.of("start"):
        return _never_started(run)
    if "/plugin.GRPCStdio/StreamStdio" in run.methods:
        return passed("opened StreamStdio")
    return failed(f"never opened StreamStdio; calls: {run.methods}")


CHECKS: dict[str, Callable[[HostLab], Verdict]] = {
    "host.env": env,
    "host.auto-mtls": auto_mtls,
    "host.refuses-cert-mismatch": lambda lab: _refuses_tls(
        lab, "cert-mismatch", "served certificate differs from field 6"
    ),
    "host.refuses-plaintext": lambda lab: _refuses_tls(
        lab, "plaintext", "plaintext plugin after PLUGIN_CLIENT_CERT"
    ),
    "host.refuses-malformed-line": lambda lab: _refuses(lab, "malformed-line", "malformed line"),
    "host.refuses-core-version": lambda lab: _refuses(lab, "core-version", "core version 2"),
    "host.refuses-app-version": lambda lab: _refuses(lab, "app-version", "app version not offered"),
    "host.shutdown": shutdown,
    "host.stdio": stdio,
}


def run_one(lab: HostLab, check_id: str) -> Verdict:
    return CHECKS[check_id](lab)
