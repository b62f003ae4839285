"""The checks of ``soup check plugin``: one function per check id, each a host's experiment.

Each takes the run's :class:`~soup.lab.check.target.Lab`, starts the plugin as often as it
needs (every start is killed before it returns) and returns a Verdict with the evidence.

Long because it is the catalogue's plugin half, one short function per check id, which
the ``CHECKS`` table at the end maps; splitting it would only split that table.
"""

from __future__ import annotations

import contextlib
import grp
import os
import socket
import ssl
import stat
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc

from soup import certs, handshake, pb, process
from soup.lab import verify
from soup.lab.check import peer
from soup.lab.check.catalogue import Verdict, failed, passed, skipped
from soup.lab.check.target import COOKIE_MESSAGE, Lab, TargetError

# go-plugin's Kill waits this long after Shutdown before it kills the plugin.
SHUTDOWN_WAIT_S = 2.0
HOST_DEATH_WAIT_S = 2.0
STREAM_PROBE_S = 1.0
HELD_CONNECTIONS = 50
CALL_TIMEOUT_S = 5.0
# A TLS record header announcing a 512-byte ClientHello, and a little of it: never finished.
PARTIAL_CLIENT_HELLO = bytes.fromhex("160301020001000200fc0303")
GARBAGE = bytes(range(256)) * 16
# OpenSSL's reason when the checker itself refused the plugin's certificate.
UNVERIFIED = "CERTIFICATE_VERIFY_FAILED"


# -- helpers


def _parse(plugin: peer.Plugin, offered: tuple[int, ...]) -> handshake.Handshake:
    """The plugin's line as a Go host parses it; HandshakeLineError says why not."""
    return handshake.parse_line(plugin.line, app_versions=offered)


@contextlib.contextmanager
def _tls_plugin(lab: Lab) -> Iterator[tuple[peer.Plugin, str | None]]:
    """A plugin started with AutoMTLS, and why it cannot be judged on TLS (None: it can)."""
    with lab.running() as plugin:
        try:
            line = _parse(plugin, lab.target.versions)
        except handshake.HandshakeError as exc:
            yield plugin, f"its handshake line is not valid: {exc}"
            return
        if line.server_cert_der is None:
            yield plugin, "no certificate in field 6: it does not serve AutoMTLS (see tls.auto)"
            return
        yield plugin, None


def _tls_refusal(lab: Lab, context: Callable[[peer.Plugin], ssl.SSLContext], what: str) -> Verdict:
    """Pass when the plugin refuses a TLS connection made with ``context``."""
    with _tls_plugin(lab) as (plugin, problem):
        if problem:
            return failed(problem)
        answer = peer.tls_attempt(plugin, context(plugin))
    if answer == peer.ACCEPTED:
        return failed(f"{what}: the plugin completed the handshake and answered HTTP/2")
    if UNVERIFIED in answer:
        # The checker gave up on the plugin's certificate: the plugin never got to judge ours.
        return failed(
            f"{what}: not judged, the served certificate does not verify against field 6 "
            f"(see tls.cert-matches-handshake): {answer}"
        )
    return passed(f"{what}: refused ({answer})")


def _alert(answer: str) -> bool:
    return "ALERT" in answer.upper()


# -- handshake


def cookie(lab: Lab) -> Verdict:
    plugin = lab.start(cookie=False)
    try:
        if plugin.line:
            return failed(f"printed a line without the cookie: {plugin.line[:120]!r}")
        code = plugin.wait_exit(lab.target.timeout)
        if code is None:
            return failed(f"still running {lab.target.timeout:g} s after a start without cookie")
        if code == 0:
            return failed("exited 0 without the cookie (go-plugin exits 1)")
        if COOKIE_MESSAGE not in plugin.stderr_text():
            return failed(
                f"exit {code}, but stderr lacks go-plugin's message: {plugin.stderr_tail()!r}"
            )
        return passed(f"exit {code}, stderr: {plugin.stderr_tail(120)!r}")
    finally:
        plugin.kill()


def line(lab: Lab) -> Verdict:
    with lab.running() as plugin:
        if not plugin.line:
            return failed(f"no handshake line; stderr: {plugin.stderr_tail()!r}")
        try:
            parsed = _parse(plugin, lab.target.versions)
        except handshake.HandshakeError as exc:
            return failed(f"{exc} (line {plugin.line[:160]!r})")
        problem = _address_problem(parsed, lab.target.transport)
        if problem:
            return failed(problem)
        return passed(
            f"core {parsed.core_version}, app {parsed.app_version}, {parsed.network} "
            f"{parsed.address}, {parsed.protocol}, {len(plugin.fields)} fields"
        )


def _address_problem(parsed: handshake.Handshake, transport: str | None) -> str | None:
    if transport and parsed.network != transport:
        return f"network {parsed.network!r}, but --transport {transport} was asked for"
    if parsed.network == "unix":
        try:
            mode = os.stat(parsed.address).st_mode
        except OSError as exc:
            return f"unix socket {parsed.address!r} does not exist: {exc}"
        return None if stat.S_ISSOCK(mode) else f"{parsed.address!r} is not a unix socket"
    host = parsed.address.rpartition(":")[0].strip("[]")
    if host not in ("127.0.0.1", "::1", "localhost"):
        return (
            f"tcp address {parsed.address!r} is not loopback (a local plugin must not listen there)"
        )
    return None


def _advertised(lab: Lab, offered: tuple[int, ...]) -> int | str:
    """The app version the plugin advertises when offered ``offered``, or what went wrong."""
    with lab.running(versions=offered) as plugin:
        if not plugin.line:
            code = plugin.wait_exit(2.0)
            return f"no line (exit {code}; stderr {plugin.stderr_tail(160)!r})"
        fields = plugin.fields
        with contextlib.suppress(IndexError, ValueError):
            return int(fields[1])
        return f"field 2 is not a number: {plugin.line[:80]!r}"


def versions(lab: Lab) -> Verdict:
    offered = lab.target.versions
    singles = {v: _advertised(lab, (v,)) for v in offered}
    supported = [v for v, got in singles.items() if got == v]
    if not supported:
        return failed(
            f"supports none of --versions {offered}: offered one at a time it said {singles}"
        )
    chosen = _advertised(lab, offered)
    if chosen != max(supported):
        return failed(
            f"offered {offered}, it chose {chosen}; it supports {supported}, so {max(supported)} was due"
        )
    unknown = (max(offered) + 1000,)
    fallback = _advertised(lab, unknown)
    if fallback in unknown:
        return failed(f"offered only {unknown[0]}, which it does not support, it claimed it")
    return passed(
        f"supports {supported} of {list(offered)}; chose {chosen}; offered {unknown[0]} "
        f"it answered {fallback} (a host refuses that)"
    )


# -- TLS


def auto(lab: Lab) -> Verdict:
    with _tls_plugin(lab) as (plugin, problem):
        if problem:
            return failed(problem)
        context = verify.client_context(lab.own, plugin.cert_pem())
        try:
            with (
                peer.connect(plugin.network, plugin.address, 5.0) as raw,
                context.wrap_socket(raw, server_hostname="localhost") as conn,
            ):
                version, alpn = conn.version(), conn.selected_alpn_protocol()
        except (OSError, ssl.SSLError) as exc:
            return failed(f"TLS with the host's certificate failed: {peer.reason(exc)}")
    if alpn != "h2":
        return failed(f"{version}, but ALPN selected {alpn!r}, not 'h2'")
    key = certs.key_type_of(certs.load_cert_der(plugin.cert_der))
    return passed(f"{version}, ALPN h2, field 6 is a {key} certificate")


def cert_matches(lab: Lab) -> Verdict:
    with _tls_plugin(lab) as (plugin, problem):
        if problem:
            return failed(problem)
        context = verify.client_context(lab.own, plugin.cert_pem())
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE  # to see any certificate it serves
        try:
            with (
                peer.connect(plugin.network, plugin.address, 5.0) as raw,
                context.wrap_socket(raw, server_hostname="localhost") as conn,
            ):
                served = conn.getpeercert(binary_form=True) or b""
        except (OSError, ssl.SSLError) as exc:
            return failed(f"TLS failed: {peer.reason(exc)}")
    advertised = certs.fingerprint(certs.load_cert_der(plugin.cert_der))
    if not served:
        return failed("the plugin served no certificate")
    got = certs.fingerprint(certs.load_cert_der(served))
    if got != advertised:
        return failed(f"served {got}, field 6 has {advertised}")
    return passed(f"served certificate is field 6's ({got[:23]}...)")


def client_cert_required(lab: Lab) -> Verdict:
    return _tls_refusal(
        lab, lambda p: verify.client_context(None, p.cert_pem()), "no client certificate"
    )


def foreign_cert(lab: Lab) -> Verdict:
    return _tls_refusal(
        lab,
        lambda p: verify.client_context(lab.foreign, p.cert_pem()),
        "a foreign client certificate",
    )


def no_plaintext(lab: Lab) -> Verdict:
    with _tls_plugin(lab) as (plugin, problem):
        if problem:
            return failed(problem)
        answer = peer.plaintext_attempt(plugin)
    if answer == peer.ACCEPTED:
        return failed("answered a plaintext HTTP/2 preface with SETTINGS")
    return passed(f"plaintext refused ({answer})")


def old_versions(lab: Lab) -> Verdict:
    answers = {}
    with _tls_plugin(lab) as (plugin, problem):
        if problem:
            return failed(problem)
        for name, version in (
            ("TLS 1.0", ssl.TLSVersion.TLSv1),
            ("TLS 1.1", ssl.TLSVersion.TLSv1_1),
        ):
            context = verify.client_context(lab.own, plugin.cert_pem(), max_version=version)
            answers[name] = peer.tls_attempt(plugin, context)
    local = [n for n, a in answers.items() if "NO_PROTOCOLS_AVAILABLE" in a or "NO_CIPHERS" in a]
    if local:
        return skipped(f"this machine's OpenSSL cannot offer {', '.join(local)}: {answers}")
    accepted = [n for n, a in answers.items() if a == peer.ACCEPTED]
    if accepted:
        return failed(f"accepted {', '.join(accepted)}")
    silent = [n for n, a in answers.items() if not _alert(a)]
    if silent:
        return failed(f"refused without an alert: {answers}")
    return passed("; ".join(f"{n}: {a.split(':')[0]}" for n, a in answers.items()))


# -- services


def health(lab: Lab) -> Verdict:
    with _tls_plugin(lab) as (plugin, problem):
        if problem:
            return failed(problem)
        answer = peer.good_call(plugin, lab.own, timeout=CALL_TIMEOUT_S)
    return passed("SERVING") if answer == "SERVING" else failed(f'Check("plugin") -> {answer}')


def shutdown(lab: Lab) -> Verdict:
    with _tls_plugin(lab) as (plugin, problem):
        if problem:
            return failed(problem)
        with peer.channel(plugin, lab.own) as chan:
            started = time.monotonic()
            answer = peer.shutdown(chan)
            code = plugin.wait_exit(SHUTDOWN_WAIT_S)
        took = (time.monotonic() - started) * 1000
    if code is None:
        return failed(f"Shutdown -> {answer}; still running {SHUTDOWN_WAIT_S:g} s later")
    return passed(f"Shutdown -> {answer}; exited with status {code} after {took:.0f} ms")


def _stream_status(open_stream: Callable[[grpc.Channel], Iterator[object]], lab: Lab) -> Verdict:
    """Open a server stream for STREAM_PROBE_S: served (open or ended) or UNIMPLEMENTED.

    We cancel the call ourselves rather than give it a deadline: with a deadline, a Go
    server may reset the stream (CANCELLED) just before our own DEADLINE_EXCEEDED."""
    with _tls_plugin(lab) as (plugin, problem):
        if problem:
            return failed(problem)
        got = 0
        with peer.channel(plugin, lab.own) as chan:
            call = open_stream(chan)
            stopped = threading.Event()

            def stop() -> None:
                stopped.set()
                call.cancel()  # type: ignore[attr-defined]  # a grpc call is also a Future

            stopper = threading.Timer(STREAM_PROBE_S, stop)
            stopper.start()
            try:
                for _ in call:
                    got += 1
            except grpc.RpcError as exc:
                code = exc.code()
                if not (code == grpc.StatusCode.CANCELLED and stopped.is_set()):
                    return failed(f"{code.name}: {exc.details()}")
            finally:
                stopper.cancel()
    return passed(f"served; {got} message(s) in {STREAM_PROBE_S:g} s")


def stdio(lab: Lab) -> Verdict:
    def open_stream(chan: grpc.Channel) -> Iterator[object]:
        stub = pb.grpc_stdio_pb2_grpc.GRPCStdioStub(chan)
        return stub.StreamStdio(pb.empty_pb2.Empty())  # type: ignore[return-value]

    return _stream_status(open_stream, lab)


def broker(lab: Lab) -> Verdict:
    done = threading.Event()

    def nothing() -> Iterator[pb.grpc_broker_pb2.ConnInfo]:
        done.wait(STREAM_PROBE_S * 2)
        return
        yield

    def open_stream(chan: grpc.Channel) -> Iterator[object]:
        stub = pb.grpc_broker_pb2_grpc.GRPCBrokerStub(chan)
        return stub.StartStream(nothing())  # type: ignore[return-value]

    try:
        return _stream_status(open_stream, lab)
    finally:
        done.set()


def multiplex(lab: Lab) -> Verdict:
    with lab.running(extra={handshake.ENV_MULTIPLEX_GRPC: "true"}) as plugin:
        verdict = _field7(plugin)
        if verdict is not None:
            return verdict
        try:
            line = _parse(plugin, lab.target.versions)
        except handshake.HandshakeError as exc:
            return failed(f"field 7 'true', but the line is not valid: {exc}")
        if line.server_cert_der is None:
            return failed("field 7 'true', but no certificate in field 6 (see tls.auto)")
        return _over_yamux(plugin, lab)


def _field7(plugin: peer.Plugin) -> Verdict | None:
    """The verdict on a plugin that does not say 'true' in field 7 (None when it does)."""
    fields = plugin.fields
    if not plugin.line:
        return failed(f"no handshake line with {handshake.ENV_MULTIPLEX_GRPC}=true")
    if len(fields) < 7:
        return passed(
            "field 7 absent: the plugin does not multiplex (a host that needs it refuses clearly)"
        )
    if fields[6] == "false":
        return passed("field 7 'false': the plugin does not multiplex")
    if fields[6] != "true":
        return failed(f"field 7 is {fields[6]!r}, neither 'true' nor 'false'")
    return None


def _over_yamux(plugin: peer.Plugin, lab: Lab) -> Verdict:
    answers, ended = peer.yamux_health(plugin, lab.own)
    said = ", ".join(answers)
    if answers != ["SERVING", "SERVING"]:
        why = f" (yamux session: {ended})" if ended else ""
        return failed(f"field 7 'true', but Check over yamux streams -> {said}{why}")
    return passed(f"field 7 'true'; two yamux streams on one connection, each mTLS: {said}")


# -- process and files


def _other_group() -> grp.struct_group | None:
    """A group this process may give a file that is not its own primary group."""
    mine = set(os.getgroups())
    for group in grp.getgrall():
        if group.gr_gid != os.getegid() and (os.geteuid() == 0 or group.gr_gid in mine):
            return group
    return None


def socket_group(lab: Lab) -> Verdict:
    group = _other_group()
    if group is None:
        return skipped("this user has no second group to ask for")
    with lab.running(extra={handshake.ENV_UNIX_SOCKET_GROUP: group.gr_name}) as plugin:
        if plugin.network != "unix":
            return skipped(
                f"the plugin listens on {plugin.network or 'nothing'}, not a unix socket"
            )
        try:
            info = os.stat(plugin.address)
        except OSError as exc:
            return failed(f"cannot stat {plugin.address}: {exc}")
    mode, gid = stat.S_IMODE(info.st_mode), info.st_gid
    if gid != group.gr_gid or mode != 0o660:
        return failed(
            f"asked for group {group.gr_name} ({group.gr_gid}): socket has gid {gid}, mode {mode:04o}"
        )
    return passed(f"group {group.gr_name}, mode 0660")


# The host between the checker and the plugin: it starts the plugin (a session of its own,
# so the checker can end it), passes its line on prefixed with the pid, and waits to be killed.
_HOST_SHIM = """
import subprocess, sys, time
p = subprocess.Popen(sys.argv[1:], stdout=subprocess.PIPE, start_new_session=True)
line = p.stdout.readline().decode("utf-8", "replace").strip()
print(f"{p.pid} {line}", flush=True)
time.sleep(3600)
"""


def host_death(lab: Lab) -> Verdict:
    host = lab.start(wrapper=(sys.executable, "-c", _HOST_SHIM))
    pid = 0
    try:
        pid_text, _, rest = host.line.partition(" ")
        pid = int(pid_text)
        if not rest:
            return failed("the plugin printed no handshake line under the host shim")
        os.kill(host.proc.pid, 9)
        killed = time.monotonic()
        if process.wait_pid_gone(pid, HOST_DEATH_WAIT_S):
            return passed(
                f"exited {(time.monotonic() - killed) * 1000:.0f} ms after its host was SIGKILLed"
            )
        return failed(f"still running {HOST_DEATH_WAIT_S:g} s after its host was SIGKILLed")
    finally:
        if pid > 0:  # first: it holds the shim's stderr open
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, 9)
        host.kill()


def _left_in(directory: Path) -> list[str]:
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*"))


def tmpdir(lab: Lab) -> Verdict:
    with _tls_plugin(lab) as (plugin, problem):
        if problem:
            return failed(problem)
        assert plugin.private_dir is not None
        with peer.channel(plugin, lab.own) as chan:
            peer.shutdown(chan)
            code = plugin.wait_exit(SHUTDOWN_WAIT_S)
        if code is None:
            return failed(
                f"did not exit within {SHUTDOWN_WAIT_S:g} s of Shutdown (see controller.shutdown)"
            )
        left = _left_in(plugin.private_dir)
    if left:
        return failed(f"left in its TMPDIR after exit {code}: {', '.join(left[:10])}")
    return passed(f"exit {code}; its TMPDIR is empty")


def garbage(lab: Lab) -> Verdict:
    with _tls_plugin(lab) as (plugin, problem):
        if problem:
            return failed(problem)
        held: list[socket.socket] = []
        try:
            with peer.connect(plugin.network, plugin.address, 5.0) as junk:
                junk.sendall(GARBAGE)
            for _ in range(HELD_CONNECTIONS):
                conn = peer.connect(plugin.network, plugin.address, 5.0)
                held.append(conn)
                conn.sendall(PARTIAL_CLIENT_HELLO)
            answer = peer.good_call(plugin, lab.own, timeout=CALL_TIMEOUT_S)
        except OSError as exc:
            answer = peer.reason(exc)
        finally:
            for conn in held:
                conn.close()
        alive = plugin.alive()
    if answer != "SERVING" or not alive:
        return failed(
            f"after the attack: health -> {answer}; plugin {'alive' if alive else 'dead'}"
        )
    return passed(
        f"{len(GARBAGE)} garbage bytes and {HELD_CONNECTIONS} stalled handshakes; health -> SERVING"
    )


CHECKS: dict[str, Callable[[Lab], Verdict]] = {
    "handshake.cookie": cookie,
    "handshake.line": line,
    "handshake.versions": versions,
    "tls.auto": auto,
    "tls.cert-matches-handshake": cert_matches,
    "tls.client-cert-required": client_cert_required,
    "tls.foreign-cert-refused": foreign_cert,
    "tls.no-plaintext": no_plaintext,
    "tls.old-versions-refused": old_versions,
    "health": health,
    "controller.shutdown": shutdown,
    "stdio": stdio,
    "broker": broker,
    "multiplex": multiplex,
    "socket-group": socket_group,
    "exit.host-death": host_death,
    "hygiene.tmpdir": tmpdir,
    "robust.garbage": garbage,
}


def run_one(lab: Lab, check_id: str) -> Verdict:
    """One check; a TargetError inside it (the plugin stopped starting) is its failure."""
    try:
        return CHECKS[check_id](lab)
    except TargetError as exc:
        return failed(str(exc))
