"""The hostile suite: every case of hostile.toml against every implementation it names.

A case passes when the attacking side observed the expected reason, the attacked side
is still healthy (see hostile.toml), and the attack took no longer than its bound.
Known failures must still fail the way the data says; one that passes is stale.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from cryptography.x509.oid import ExtendedKeyUsageOID

import fakes
import hygiene
from soup import bridge, certs
from soup.lab import demopb
from soup.lab.kvstore import is_temp_name

HERE = Path(__file__).resolve().parent
DATA = HERE / "hostile.toml"
FAKE_PLUGIN = HERE / "fake_plugin.py"
MAX_BOUND_S = 5.0
# Bound a host under test gets for the plugin's start and handshake line (--timeout):
# fake plugins start in milliseconds, but the machine may be busy; a case that is
# about that bound sets its own `host_timeout`. Real plugins get longer.
HOST_TIMEOUT_S = 5
REAL_PLUGIN_TIMEOUT_S = 10
# A process that should have ended by itself is killed after this long.
KILL_AFTER_S = 30.0
HUGE = "9" * 5000
DAY = datetime.timedelta(days=1)


def load(path: Path = DATA) -> dict[str, Any]:
    return tomllib.loads(path.read_text())


@dataclass(frozen=True)
class Case:
    """One case of hostile.toml run against one implementation."""

    spec: dict[str, Any]
    impl: str

    @property
    def id(self) -> str:
        return f"{self.spec['id']}[{self.impl}]"

    @property
    def expect(self) -> str:
        differs = self.spec.get("differs", {}).get(self.impl, {})
        return str(differs.get("expect", self.spec["expect"]))

    def get(self, key: str, default: Any = None) -> Any:
        return self.spec.get(key, default)


def cases(data: dict[str, Any]) -> list[Case]:
    out = []
    for spec in data["case"]:
        group = spec["id"].split("/")[0]
        for impl in spec.get("impls", data["groups"][group]):
            out.append(Case(spec, impl))
    return out


def known_failure(case: Case, data: dict[str, Any]) -> dict[str, str] | None:
    for entry in data.get("known_failure", []):
        if entry["case"] == case.spec["id"] and entry["impl"] == case.impl:
            return dict(entry)
    return None


@dataclass
class Outcome:
    """What the attacker saw, whether the attacked side is healthy, and how long it took."""

    observed: str
    healthy: bool
    health: str
    seconds: float
    details: str = ""

    def describe(self) -> str:
        return (
            f"observed: {self.observed!r}\nhealthy: {self.healthy} ({self.health})\n"
            f"took: {self.seconds:.2f} s\n{self.details}"
        )


@dataclass
class Env:
    """What an attack needs: commands of the implementations and a scratch directory."""

    data: dict[str, Any]
    python: str
    soup_go: str
    tmp: Path
    sock_dir: Path
    host: certs.CertKey = field(default_factory=lambda: certs.self_signed("ec-p256"))

    def command(self, impl: str) -> list[str]:
        spec = self.data["impls"][impl]
        return [a.format(python=self.python, soup_go=self.soup_go) for a in spec["command"]]

    def flags(self, impl: str) -> list[str]:
        return list(self.data["impls"][impl].get("flags", []))

    def plugin(self, impl: str, *args: str, kv_dir: Path | None = None) -> list[str]:
        kv = ["--kv-dir", str(kv_dir or self.tmp / "kv")]
        return [*self.command(impl), "rpc", "server-start", *self.flags(impl), *kv, *args]

    def host_cmd(
        self, impl: str, *args: str, server: str, timeout_s: int = HOST_TIMEOUT_S
    ) -> list[str]:
        timeout = ["--timeout", str(timeout_s)]
        return [*self.command(impl), "rpc", *args, *self.flags(impl), *timeout, "--server", server]


# ---------------------------------------------------------------------------------------
# certificates a fake host pins or presents, and a fake plugin serves


def _cert(kind: str) -> certs.CertKey:
    """A self-signed P-256 certificate, go-plugin style unless ``kind`` says what is wrong."""
    oid = ExtendedKeyUsageOID
    now = datetime.datetime.now(datetime.UTC)
    made: dict[str, Callable[[], certs.CertKey]] = {
        "good": lambda: certs.self_signed("ec-p256"),
        "expired": lambda: certs.self_signed("ec-p256", validity=(now - 10 * DAY, now - DAY)),
        "not-yet-valid": lambda: certs.self_signed("ec-p256", validity=(now + DAY, now + 10 * DAY)),
        "server-auth-only": lambda: certs.self_signed("ec-p256", usages=(oid.SERVER_AUTH,)),
        "client-auth-only": lambda: certs.self_signed("ec-p256", usages=(oid.CLIENT_AUTH,)),
        "code-signing-only": lambda: certs.self_signed("ec-p256", usages=(oid.CODE_SIGNING,)),
        "no-eku": lambda: certs.self_signed("ec-p256", usages=None),
    }
    return made[kind]()


def _presented(kind: str, pinned: certs.CertKey) -> certs.CertKey | None:
    if kind == "pinned":
        return pinned
    if kind == "foreign":
        return certs.issue_leaf(certs.issue_ca(), "ec-p256")
    if kind == "same-subject":  # same subject and SAN as the pinned cert, another key
        return certs.self_signed("ec-p256")
    if kind == "none":
        return None
    raise ValueError(f"unknown client certificate kind {kind!r}")


_TLS_VERSIONS = {"1.0": "TLSv1", "1.1": "TLSv1_1"}


def _client_context(case: Case, presented: certs.CertKey | None, trusted: bytes) -> Any:
    import ssl  # noqa: PLC0415

    max_tls = case.get("max_tls")
    version = getattr(ssl.TLSVersion, _TLS_VERSIONS[max_tls]) if max_tls else None
    return fakes.client_context(presented, trusted, max_version=version)


# ---------------------------------------------------------------------------------------
# attacks on plugins


def _no_line(plugin: fakes.Plugin, started: float) -> Outcome:
    return Outcome(
        f"no handshake line: {plugin.stderr_text()[-500:]}",
        False,
        "the plugin did not start",
        time.monotonic() - started,
    )


def _health_around(
    plugin: fakes.Plugin,
    own: certs.CertKey | None,
    attack: Callable[[], str],
    trusted: bytes | None = None,
) -> tuple[str, bool, str, float]:
    """A correct call before and after ``attack``: (observed, healthy, note, seconds)."""
    before = fakes.good_call(plugin, own, trusted)
    started = time.monotonic()
    observed = attack()
    seconds = time.monotonic() - started
    after = fakes.good_call(plugin, own, trusted)
    ok = before == after == "SERVING" and plugin.alive()
    return observed, ok, f"good call before: {before}, after: {after}", seconds


def attack_tls(case: Case, env: Env) -> Outcome:
    pinned = _cert(case.get("pinned", "good"))
    presented = _presented(case.get("client", "pinned"), pinned)
    started = time.monotonic()
    with fakes.running(
        env.plugin(case.impl), {"PLUGIN_CLIENT_CERT": pinned.cert_pem.decode()}
    ) as p:
        if not p.line:
            return _no_line(p, started)
        context = _client_context(case, presented, p.cert_pem())
        if case.get("healthy") == "call":
            observed, ok, note, seconds = _health_around(
                p, pinned, lambda: fakes.tls_attempt(p, context)
            )
        else:
            started = time.monotonic()
            observed = fakes.tls_attempt(p, context)
            seconds = time.monotonic() - started
            again = fakes.tls_attempt(p, _client_context(case, presented, p.cert_pem()))
            ok = p.alive() and again == observed
            note = f"still running: {p.alive()}; a second attempt saw: {again}"
        return Outcome(observed, ok, note, seconds, p.stderr_text()[-800:])


def attack_plaintext(case: Case, env: Env) -> Outcome:
    started = time.monotonic()
    with fakes.running(
        env.plugin(case.impl), {"PLUGIN_CLIENT_CERT": env.host.cert_pem.decode()}
    ) as p:
        if not p.line:
            return _no_line(p, started)
        observed, ok, note, seconds = _health_around(
            p, env.host, lambda: fakes.plaintext_attempt(p)
        )
        return Outcome(observed, ok, note, seconds, p.stderr_text()[-800:])


@dataclass(frozen=True)
class ManualPKI:
    ca_file: Path
    server: tuple[Path, Path]
    client: certs.CertKey
    ca: certs.CertKey

    @property
    def ca_pem(self) -> bytes:
        return self.ca.cert_pem


def _manual_pki(directory: Path) -> ManualPKI:
    ca = certs.issue_ca()
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "ca.pem").write_bytes(ca.cert_pem)
    server = (directory / "server.pem", directory / "server.key")
    certs.write_pair(certs.issue_leaf(ca, "ec-p256"), *server)
    return ManualPKI(directory / "ca.pem", server, certs.issue_leaf(ca, "ec-p256"), ca)


def _manual_args(pki: ManualPKI) -> list[str]:
    return [
        "--tls-mode", "manual", "--cert-file", str(pki.server[0]),
        "--key-file", str(pki.server[1]), "--ca-file", str(pki.ca_file),
    ]  # fmt: skip


def _intruder(kind: str, pki: ManualPKI) -> certs.CertKey:
    """A client leaf the plugin's CA did not sign.

    "other-ca": from another CA with the same name (its own key identifier);
    "forged-signature": naming the plugin's CA as issuer, its subject and key
    identifier copied, signed with another key: only the signature check refuses it.
    """
    if kind == "other-ca":
        return certs.issue_leaf(certs.issue_ca(), "ec-p256")
    if kind == "forged-signature":
        forger = certs.CertKey(cert=pki.ca.cert, key=certs.generate_key("ec-p256"))
        return certs.issue_leaf(forger, "ec-p256")
    raise ValueError(f"unknown intruder kind {kind!r}")


def attack_manual_intruder(case: Case, env: Env) -> Outcome:
    """Manual mode: a client certificate the plugin's CA did not sign."""
    pki = _manual_pki(env.tmp / "pki")
    intruder = _intruder(str(case.get("intruder", "other-ca")), pki)
    started = time.monotonic()
    with fakes.running(env.plugin(case.impl, *_manual_args(pki)), {}) as p:
        if not p.line:
            return _no_line(p, started)
        context = fakes.client_context(intruder, pki.ca_pem)
        observed, ok, note, seconds = _health_around(
            p, pki.client, lambda: fakes.tls_attempt(p, context), trusted=pki.ca_pem
        )
        return Outcome(observed, ok, note, seconds, p.stderr_text()[-800:])


def _env_values(case: Case) -> dict[str, str | None]:
    """The case's environment: "" unsets a variable, HUGE is 5,000 digits."""
    return {
        k: (None if v == "" else v.replace("HUGE", HUGE)) for k, v in case.get("env", {}).items()
    }


RUN_MARKER = "SOUP_HOSTILE_RUN"


def _run(
    argv: list[str], env: dict[str, str], timeout: float
) -> tuple[int | None, str, str, float]:
    """Run argv in its own session with a bound: (exit code or None, stdout, stderr, s).

    The seconds count from the process's first output (its interpreter or runtime is up)
    to its exit. Everything it started is killed afterwards, found by a marker in the
    environment (a killed host cannot stop its plugin).
    """
    marker = uuid.uuid4().hex
    proc = subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env={**env, RUN_MARKER: marker}, start_new_session=True,
    )  # fmt: skip
    first: list[float] = []
    chunks: dict[str, list[bytes]] = {"out": [], "err": []}

    def pump(pipe: Any, sink: list[bytes]) -> None:
        for chunk in iter(lambda: pipe.read1(65536), b""):
            first.append(time.monotonic())
            sink.append(chunk)

    readers = [
        threading.Thread(target=pump, args=(proc.stdout, chunks["out"]), daemon=True),
        threading.Thread(target=pump, args=(proc.stderr, chunks["err"]), daemon=True),
    ]
    for reader in readers:
        reader.start()
    started = time.monotonic()
    try:
        code: int | None = proc.wait(timeout)
    except subprocess.TimeoutExpired:
        code = None
    ended = time.monotonic()
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    for pid in hygiene.marked_processes(marker, RUN_MARKER):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    proc.wait(10)
    for reader in readers:
        reader.join(5)
    out, err = (b"".join(chunks[k]).decode(errors="replace") for k in ("out", "err"))
    return code, out, err, ended - (min(first) if first else started)


def attack_start(case: Case, env: Env) -> Outcome:
    """Start the plugin with a hostile environment or flags: it must refuse cleanly."""
    args = list(case.get("args", []))
    extra: dict[str, str | None] = {"PLUGIN_CLIENT_CERT": env.host.cert_pem.decode()}
    if case.get("manual"):
        args += _manual_args(_manual_pki(env.tmp / "pki"))
        extra["PLUGIN_CLIENT_CERT"] = None
    extra |= _env_values(case)
    full = fakes.host_env(extra, env.sock_dir)
    code, out, err, seconds = _run(env.plugin(case.impl, *args), full, KILL_AFTER_S)
    left = sorted(p.name for p in env.sock_dir.iterdir())
    ok = code == 1 and out == "" and "Traceback" not in err and not left
    note = f"exit {code}, stdout {out[:200]!r}, files left in the socket dir: {left}"
    return Outcome(err.strip()[-1500:], ok, note, seconds, err[-2000:])


def _auto_plugin(case: Case, env: Env) -> contextlib.AbstractContextManager[fakes.Plugin]:
    """The plugin in AutoMTLS with the fake host's certificate and the case's environment."""
    extra = {"PLUGIN_CLIENT_CERT": env.host.cert_pem.decode(), **_env_values(case)}
    return fakes.running(env.plugin(case.impl), extra)


def attack_versions(case: Case, env: Env) -> Outcome:
    """Hostile PLUGIN_PROTOCOL_VERSIONS: bad entries are skipped, the plugin serves."""
    started = time.monotonic()
    with _auto_plugin(case, env) as p:
        if not p.line:
            return _no_line(p, started)
        started = time.monotonic()  # the plugin's start is not the attack: its answer is
        call = fakes.good_call(p, env.host)
        seconds = time.monotonic() - started
        return Outcome(
            p.line[:60], call == "SERVING", f"good call: {call}", seconds, p.stderr_text()[-1500:]
        )


def _calls_as_the_host_muxes(plugin: fakes.Plugin, own: certs.CertKey) -> list[str]:
    """Health calls the way a go-plugin host makes them after reading field 7: over two yamux
    streams of one connection if the plugin says "true", else one call on a connection."""
    if plugin.fields[6:7] != ["true"]:
        return [fakes.good_call(plugin, own)]
    answers, ended = fakes.yamux_health(plugin, own)
    return answers if ended is None else [*answers, f"yamux session: {ended}"]


def attack_multiplex(case: Case, env: Env) -> Outcome:
    """PLUGIN_MULTIPLEX_GRPC=true: serve with multiplexing (7 fields) or without (6), the
    host's calls work, and SIGTERM ends the plugin with exit 0 and its socket removed.

    go-plugin's Serve ends with the host's yamux session, so the SIGTERM finds soup-go
    stopping or stopped: it must neither kill it half-way nor change its exit code."""
    started = time.monotonic()
    with _auto_plugin(case, env) as p:
        if not p.line:
            return _no_line(p, started)
        observed = f"{len(p.fields)} fields"
        calls = _calls_as_the_host_muxes(p, env.host)
        started = time.monotonic()
        p.proc.send_signal(signal.SIGTERM)
        code = p.wait_exit(MAX_BOUND_S)
        seconds = time.monotonic() - started
        socket_left = os.path.exists(p.address)
        ok = set(calls) == {"SERVING"} and code == 0 and not socket_left
        note = f"calls: {', '.join(calls)}; SIGTERM -> exit {code}; socket left: {socket_left}"
        return Outcome(observed, ok, note, seconds, p.stderr_text()[-1500:])


def _kv_plugin(
    case: Case, env: Env, kv_dir: Path
) -> contextlib.AbstractContextManager[fakes.Plugin]:
    argv = env.plugin(case.impl, "--tls-mode", "disabled", kv_dir=kv_dir)
    return fakes.running(argv, {"PLUGIN_CLIENT_CERT": None})


def _key_file(key: str) -> str:
    return base64.urlsafe_b64encode(key.encode()).rstrip(b"=").decode()


def _kv_key(case: Case) -> str:
    key = str(case.get("key"))
    return "k" * 181 if key == "LONG" else key


def attack_kv(case: Case, env: Env) -> Outcome:
    """One hostile Put (and Get): refused with the right code, or stored safely inside."""
    key, kv_dir = _kv_key(case), env.tmp / "store" / "kv"
    value = os.urandom(int(case.get("value_bytes", 16)))
    started = time.monotonic()
    with _kv_plugin(case, env, kv_dir) as p, fakes.channel(p, None) as chan:
        if not p.line:
            return _no_line(p, started)
        stub = fakes.kv_stub(chan)
        kv = demopb.kv_pb2

        def attack() -> str:
            if case.get("op") == "get":  # a key never stored
                return fakes.rpc(lambda: stub.Get(kv.GetRequest(key=key), timeout=MAX_BOUND_S))
            put = fakes.rpc(
                lambda: stub.Put(kv.PutRequest(key=key, value=value), timeout=MAX_BOUND_S)
            )
            if put != "OK":
                return put
            got = stub.Get(kv.GetRequest(key=key), timeout=MAX_BOUND_S).value
            store = env.tmp / "store"
            files = sorted(str(q.relative_to(store)) for q in store.rglob("*"))
            inside = files == ["kv", f"kv/{_key_file(key)}"]
            if got == value and inside:
                return "stored inside the directory under its base64url name"
            return f"read back {len(got)} bytes (same: {got == value}); files: {files}"

        before = fakes.health(chan)
        seconds_start = time.monotonic()
        observed = attack()
        seconds = time.monotonic() - seconds_start
        after = fakes.health(chan)
        ok = before == after == "SERVING" and p.alive()
        return Outcome(
            observed,
            ok,
            f"health before: {before}, after: {after}",
            seconds,
            p.stderr_text()[-800:],
        )


def attack_kv_writers(case: Case, env: Env) -> Outcome:
    """Many concurrent writers on one key: the final value is exactly one writer's."""
    writers, kv_dir = int(case.get("writers")), env.tmp / "kv"
    values = [bytes([i]) * 65536 for i in range(writers)]
    started = time.monotonic()
    with _kv_plugin(case, env, kv_dir) as p, fakes.channel(p, None) as chan:
        if not p.line:
            return _no_line(p, started)
        stub, kv = fakes.kv_stub(chan), demopb.kv_pb2
        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=writers) as pool:
            results = list(pool.map(
                lambda v: fakes.rpc(lambda: stub.Put(kv.PutRequest(key="contended", value=v), timeout=MAX_BOUND_S)),
                values,
            ))  # fmt: skip
        final = stub.Get(kv.GetRequest(key="contended"), timeout=MAX_BOUND_S).value
        seconds = time.monotonic() - started
        temps = [q.name for q in kv_dir.iterdir() if is_temp_name(q.name)]
        failed = [r for r in results if r != "OK"]
        observed = (
            "one writer's value"
            if final in values and not failed and not temps
            else f"final value ours: {final in values}; failed puts: {failed[:3]}; temp files: {temps}"
        )
        health = fakes.health(chan)
        return Outcome(observed, health == "SERVING", f"health after: {health}", seconds)


def attack_kv_crash(case: Case, env: Env) -> Outcome:
    """SIGKILL during concurrent Puts, restart on the same directory: nothing acked is lost."""
    puts, kv_dir = int(case.get("puts")), env.tmp / "kv"
    acked: dict[str, bytes] = {}
    lock = threading.Lock()
    started = time.monotonic()
    with _kv_plugin(case, env, kv_dir) as p, fakes.channel(p, None) as chan:
        if not p.line:
            return _no_line(p, started)
        stub, kv = fakes.kv_stub(chan), demopb.kv_pb2

        def put(i: int) -> None:
            key, value = f"key-{i}", os.urandom(64 * 1024)
            if (
                fakes.rpc(
                    lambda: stub.Put(kv.PutRequest(key=key, value=value), timeout=MAX_BOUND_S)
                )
                == "OK"
            ):
                with lock:
                    acked[key] = value

        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=32) as pool:
            for i in range(puts):
                pool.submit(put, i)
            fakes.wait_until(lambda: len(acked) >= 50, MAX_BOUND_S)
            os.killpg(p.proc.pid, signal.SIGKILL)
        seconds = time.monotonic() - started
    temps_after_crash = [q.name for q in kv_dir.iterdir() if is_temp_name(q.name)]
    with _kv_plugin(case, env, kv_dir) as p, fakes.channel(p, None) as chan:
        stub = fakes.kv_stub(chan)
        started = time.monotonic()
        wrong = [
            k
            for k, v in acked.items()
            if stub.Get(kv.GetRequest(key=k), timeout=MAX_BOUND_S).value != v
        ]
        temps = [q.name for q in kv_dir.iterdir() if is_temp_name(q.name)]
        health = fakes.health(chan)
        seconds += time.monotonic() - started
    observed = (
        "every acknowledged put read back, no temp file left"
        if acked and not wrong and not temps
        else f"acked {len(acked)}, wrong {len(wrong)}, temp files left after restart: {len(temps)}"
    )
    note = (
        f"health after restart: {health}; temp files right after the kill: {len(temps_after_crash)}"
    )
    return Outcome(observed, health == "SERVING", note, seconds)


# ---------------------------------------------------------------------------------------
# attacks on hosts


def _host_verdict(code: int | None, out: str, err: str) -> tuple[str, bool, str]:
    """(observed error text, host healthy, note): exit 1, one error line, no traceback."""
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    ok = code == 1 and len(errors) == 1 and out == "" and "Traceback" not in err
    note = f"exit {code}, {len(errors)} error line(s), stdout {out[:120]!r}"
    return " | ".join(errors) or err.strip()[-600:], ok, note


def _raw_b64(data: bytes) -> str:
    return base64.b64encode(data).decode().rstrip("=")


_FIELD6: dict[str, Callable[[bytes], str]] = {
    "served": _raw_b64,
    "padded": lambda der: base64.b64encode(der).decode(),
    "bad-base64": lambda der: "!" * 80,
    "not-der": lambda der: _raw_b64(b"\x30\x82 not a certificate" * 8),
    # The served certificate followed by a second one, as in a PEM chain: field 6 is
    # exactly one DER certificate, so the bytes after it are refused, not ignored.
    "chain": lambda der: _raw_b64(der + der),
}


def _prepare_fake(case: Case, directory: Path) -> None:
    """Write what fake_plugin.py serves and prints into its directory."""
    served = _cert(case.get("serve", "good"))
    while case.get("field6") == "padded" and len(served.cert_der) % 3 == 0:
        served = _cert(case.get("serve", "good"))  # padding needs a length not divisible by 3
    certs.write_pair(served, directory / "serve.pem", directory / "serve.key")
    der = (
        certs.self_signed("ec-p256").cert_der
        if case.get("advertise") == "other"
        else served.cert_der
    )
    field6 = _FIELD6[case.get("field6", "served")](der)
    line = str(case.get("line", "1|1|unix|{sock}|grpc|{cert}"))
    line = line.replace("{cert}", field6).replace("HUGE", HUGE).replace("LONG", "A" * 70_000)
    (directory / "line.txt").write_text(line)


def attack_fake_plugin(case: Case, env: Env) -> Outcome:
    """The host under test starts fake_plugin.py with a broken behaviour and must refuse it.

    Timed from the fake's own start (its ``started`` file), so the bound measures the
    host's reaction, not interpreter start-up.
    """
    _prepare_fake(case, env.sock_dir)
    server = shlex.join(
        [env.python, str(FAKE_PLUGIN), str(case.get("behaviour")), str(env.sock_dir)]
    )
    timeout_s = int(case.get("host_timeout", HOST_TIMEOUT_S))
    argv = env.host_cmd(case.impl, "kv", "get", "k", server=server, timeout_s=timeout_s)
    code, out, err, seconds = _run(argv, dict(os.environ), KILL_AFTER_S)
    ended = time.monotonic()
    started_file = env.sock_dir / "started"
    if started_file.exists():
        seconds = ended - float(started_file.read_text())
    observed, ok, note = _host_verdict(code, out, err)
    return Outcome(observed, ok, note, seconds, err[-2500:])


def _pid_wrapper(command: list[str], pid_file: Path) -> str:
    """A plugin command that writes the plugin's pid first (then execs it)."""
    return shlex.join(
        ["sh", "-c", f'echo $$ > {shlex.quote(str(pid_file))}; exec "$@"', "sh", *command]
    )


def _read_pid(pid_file: Path) -> int | None:
    if not fakes.wait_until(
        lambda: pid_file.exists() and pid_file.read_text().strip() != "", KILL_AFTER_S
    ):
        return None
    return int(pid_file.read_text())


def _busy(kv_dir: Path) -> bool:
    """True once the bench's Puts reach the store."""
    return kv_dir.is_dir() and any(kv_dir.iterdir())


@contextlib.contextmanager
def _bench(
    env: Env, host_impl: str, plugin_impl: str, timeout_s: int = REAL_PLUGIN_TIMEOUT_S
) -> Iterator[tuple[subprocess.Popen[bytes], int | None]]:
    """A host of ``host_impl`` (``--timeout timeout_s``) streaming Puts (``client bench``)
    to a real ``plugin_impl``.

    Yields the host process and the plugin's pid once Puts reach the store (pid None if
    that did not happen within the bound); the host's process group is killed at the end.
    """
    pid_file, kv_dir = env.tmp / "plugin.pid", env.tmp / "kv"
    plugin = [*env.command(plugin_impl), "rpc", "server-start", "--kv-dir", str(kv_dir)]
    argv = env.host_cmd(
        host_impl, "client", "bench", "--count", "1000000",
        server=_pid_wrapper(plugin, pid_file), timeout_s=timeout_s,
    )  # fmt: skip
    proc = subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        start_new_session=True,
    )  # fmt: skip
    try:
        pid = _read_pid(pid_file)
        busy = pid is not None and fakes.wait_until(lambda: _busy(kv_dir), KILL_AFTER_S)
        yield proc, pid if busy else None
    finally:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(ValueError):  # already read by the attack
            proc.communicate(timeout=10)


NOT_STARTED = Outcome("the bench never started", False, "no plugin pid or no Put", 0.0)


@contextlib.contextmanager
def _leftovers() -> Iterator[list[str]]:
    """Collects the TMPDIR entries that appear inside the block, and removes them.

    For attacks whose victim dies: what it left is part of the verdict (the host must
    remove what it handed a crashed plugin), reported by the case rather than by the
    hygiene fixture, so that a known failure stays a known failure.
    """
    root = Path(tempfile.gettempdir())
    before = set(os.listdir(root))
    found: list[str] = []
    try:
        yield found
    finally:
        for name in sorted(set(os.listdir(root)) - before):
            found.append(name)
            path = root / name
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)


def _judging_leftovers(attack: Callable[[Case, Env], Outcome]) -> Callable[[Case, Env], Outcome]:
    """``attack``, whose verdict also fails on anything left in TMPDIR."""

    def run(case: Case, env: Env) -> Outcome:
        with _leftovers() as left:
            outcome = attack(case, env)
        if left:
            outcome.healthy = False
            outcome.health += f"; left in TMPDIR: {left}"
        return outcome

    run.__doc__ = attack.__doc__
    return run


@_judging_leftovers
def attack_plugin_dies(case: Case, env: Env) -> Outcome:
    """A real plugin is SIGKILLed or SIGSTOPped while the host streams calls to it."""
    timeout_s = int(case.get("host_timeout", REAL_PLUGIN_TIMEOUT_S))
    with _bench(env, case.impl, "go", timeout_s) as (proc, pid):
        if pid is None:
            return NOT_STARTED
        os.kill(pid, getattr(signal, str(case.get("signal"))))
        started = time.monotonic()
        try:
            proc.wait(KILL_AFTER_S)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        seconds = time.monotonic() - started
        out, err = proc.communicate()
    text_out, text_err = out.decode(errors="replace"), err.decode(errors="replace")
    # bench reports its failure on stdout (one FAIL line), the host's log on stderr.
    ok = proc.returncode == 1 and "FAIL" in text_out and "Traceback" not in text_err
    note = f"exit {proc.returncode}, stdout {text_out[-300:]!r}"
    return Outcome(text_out.strip()[-400:], ok, note, seconds, text_err[-2500:])


@_judging_leftovers
def attack_host_dies(case: Case, env: Env) -> Outcome:
    """The host is SIGKILLed mid-stream: its plugin must exit by itself within 2 s."""
    with _bench(env, case.impl, case.impl) as (host, pid):
        if pid is None:
            return NOT_STARTED
        host.kill()  # the host process only: its plugin runs in a session of its own
        host.wait(10)
        started = time.monotonic()
        gone = fakes.wait_until(lambda: not _running(pid), 2.0)
        seconds = time.monotonic() - started
        if not gone:  # an orphan: this case's verdict says so
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
            fakes.wait_until(lambda: not _running(pid), 2.0)
    observed = "plugin exited" if gone else "plugin still running 2 s after its host died"
    return Outcome(observed, gone, f"plugin pid {pid} gone: {gone}", seconds)


def _running(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2 :].split()[0] != "Z"


def attack_shutdown_in_flight(case: Case, env: Env) -> Outcome:
    """GRPCController.Shutdown while 32 callers keep calling: every call ends, the plugin exits 0."""
    kv_dir = env.tmp / "kv"
    started = time.monotonic()
    with _kv_plugin(case, env, kv_dir) as p, fakes.channel(p, None) as chan:
        if not p.line:
            return _no_line(p, started)
        stub, kv = fakes.kv_stub(chan), demopb.kv_pb2
        stop = threading.Event()
        codes: list[str] = []

        def caller(i: int) -> None:
            while not stop.is_set():
                result = fakes.rpc(
                    lambda: stub.Put(
                        kv.PutRequest(key=f"k{i}", value=b"v" * 4096), timeout=MAX_BOUND_S
                    )
                )
                codes.append(result.split(":")[0])
                if result != "OK":
                    return

        with ThreadPoolExecutor(max_workers=32) as pool:
            for i in range(32):
                pool.submit(caller, i)
            fakes.wait_until(lambda: len(codes) >= 100, MAX_BOUND_S)
            started = time.monotonic()
            shut = fakes.shutdown(chan)
            code = p.wait_exit(MAX_BOUND_S)
            stop.set()
        seconds = time.monotonic() - started
        bad = sorted({c for c in codes if c not in ("OK", "UNAVAILABLE", "CANCELLED")})
        observed = f"plugin exited {code}" if code is not None else "plugin still running"
        ok = code == 0 and not bad and "Traceback" not in p.stderr_text()
        note = f"Shutdown: {shut}; call results: {sorted(set(codes))}; unexpected: {bad}"
        return Outcome(observed, ok, note, seconds, p.stderr_text()[-1500:])


ATTACKS: dict[str, Callable[[Case, Env], Outcome]] = {
    "tls": attack_tls,
    "plaintext": attack_plaintext,
    "manual-intruder": attack_manual_intruder,
    "start": attack_start,
    "versions": attack_versions,
    "multiplex": attack_multiplex,
    "kv": attack_kv,
    "kv-writers": attack_kv_writers,
    "kv-crash": attack_kv_crash,
    "fake-plugin": attack_fake_plugin,
    "plugin-dies": attack_plugin_dies,
    "host-dies": attack_host_dies,
    "shutdown-in-flight": attack_shutdown_in_flight,
}


# ---------------------------------------------------------------------------------------
# the runner

DATA_CACHE = load()
ALL = cases(DATA_CACHE)


def judge(case: Case, outcome: Outcome, bound: float) -> str | None:
    """None if the case passed, else why not."""
    problems = []
    if case.expect not in outcome.observed:
        problems.append(f"expected {case.expect!r} in what the attacker observed")
    if not outcome.healthy:
        problems.append(f"the attacked side is not healthy: {outcome.health}")
    if outcome.seconds > bound:
        problems.append(f"took {outcome.seconds:.1f} s, bound {bound:g} s")
    return "; ".join(problems) or None


@pytest.fixture
def env(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Env]:
    soup_go = Path(str(request.config.getoption("--soup-go"))).resolve()
    if not soup_go.is_file():
        pytest.exit(f"soup-go not found at {soup_go}: build it with `nox -s build`", returncode=4)
    sock_dir = bridge.private_socket_dir("soup-hs-")
    try:
        yield Env(DATA_CACHE, sys.executable, str(soup_go), tmp_path, sock_dir)
    finally:
        shutil.rmtree(sock_dir, ignore_errors=True)


def test_data_is_consistent() -> None:
    """Every case names a known attack, role and health check, bounds at most 5 s; every
    known failure names a case that runs against that implementation."""
    ids = [c["id"] for c in DATA_CACHE["case"]]
    assert len(ids) == len(set(ids)), "duplicate case ids"
    for spec in DATA_CACHE["case"]:
        assert spec["attack"] in ATTACKS, spec["id"]
        assert spec["role"] in ("plugin", "host"), spec["id"]
        assert spec["healthy"] in ("call", "alive", "refuses", "exits"), spec["id"]
        assert 0 < spec["bound"] <= MAX_BOUND_S, spec["id"]
        for impl, diff in spec.get("differs", {}).items():
            assert diff.get("why"), f"{spec['id']}: differs.{impl} needs a why"
            assert "expect" in diff, f"{spec['id']}: differs.{impl} needs an expect"
    runs = {c.id for c in ALL}
    for entry in DATA_CACHE.get("known_failure", []):
        assert f"{entry['case']}[{entry['impl']}]" in runs, entry
        assert entry.get("reason"), entry
        assert entry.get("error"), entry
    assert len(ALL) >= 60


@pytest.mark.parametrize("case", ALL, ids=[c.id for c in ALL])
def test_hostile(case: Case, env: Env) -> None:
    outcome = ATTACKS[case.get("attack")](case, env)
    problem = judge(case, outcome, float(case.get("bound")))
    known = known_failure(case, DATA_CACHE)
    if known is None:
        if problem:
            pytest.fail(f"{case.id}: {problem}\n{outcome.describe()}", pytrace=False)
        return
    if problem is None:
        pytest.fail(
            f"{case.id}: stale known failure (it passes now; remove it from hostile.toml): "
            f"{known['reason']}\n{outcome.describe()}",
            pytrace=False,
        )
    text = f"{problem}\n{outcome.observed}\n{outcome.health}\n{outcome.details}"
    if known["error"] not in text:
        pytest.fail(
            f"{case.id}: known failure ({known['reason']}) now fails differently: {problem}; "
            f"expected {known['error']!r} in the output\n{outcome.describe()}",
            pytrace=False,
        )
    pytest.xfail(f"known failure: {known['reason']}")
