"""Probes of what differs between go-plugin releases, run against soup-go built on each.

Each probe starts one real soup-go process (a plugin given some environment, or a host
launching a stand-in plugin) and returns what it saw as a short string; matrix.toml's
`[[go_plugin_behaviour]]` table holds what each release shows, and test_releases.py checks
the table against these probes, so the recorded differences come from real runs.
"""

from __future__ import annotations

import base64
import os
import select
import shlex
import signal
import socket
import ssl
import stat
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from soup import certs

COOKIE = {"BASIC_PLUGIN": "hello", "PLUGIN_PROTOCOL_VERSIONS": "1"}
HANDSHAKE_TIMEOUT_S = 30.0
READ_TIMEOUT_S = 5.0
STOP_TIMEOUT_S = 5.0


@contextmanager
def plugin(soup_go: str, env: dict[str, str], *args: str) -> Iterator[list[str]]:
    """A soup-go plugin started as a host would; yields its handshake line's fields."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("PLUGIN_")}
    # Its own TMPDIR: what a release leaves there (v1.4 ignores PLUGIN_UNIX_SOCKET_DIR and
    # puts its socket in the temp dir) goes with this directory.
    with tempfile.TemporaryDirectory(prefix="soup-release-") as tmp:
        kv_dir = Path(tmp) / "kv"
        kv_dir.mkdir()
        proc = subprocess.Popen(
            [soup_go, "rpc", "server-start", "--kv-dir", str(kv_dir), *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
            env=base | {"TMPDIR": tmp} | COOKIE | env, start_new_session=True,
        )  # fmt: skip
        try:
            yield _handshake(proc)
        finally:
            _stop(proc)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM (soup-go stops and removes its files), then SIGKILL the group if it lingers."""
    with suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.communicate(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=HANDSHAKE_TIMEOUT_S)


def _handshake(proc: subprocess.Popen[bytes]) -> list[str]:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], HANDSHAKE_TIMEOUT_S)
    if not ready:
        raise TimeoutError(f"no handshake line from the plugin within {HANDSHAKE_TIMEOUT_S} s")
    line = proc.stdout.readline().decode().strip()
    if not line:
        err = proc.stderr.read().decode() if proc.stderr else ""
        raise RuntimeError(f"plugin exited before its handshake line: {err[-500:]}")
    return line.split("|")


def unix_socket_dir(soup_go: str) -> str:
    """Does the plugin put its socket in PLUGIN_UNIX_SOCKET_DIR?"""
    with tempfile.TemporaryDirectory(prefix="soup-sock-") as wanted:
        env = {"PLUGIN_UNIX_SOCKET_DIR": wanted}
        with plugin(soup_go, env, "--tls-mode", "disabled") as fields:
            # soup-go nests its private run directory in the host's directory
            inside = Path(wanted) in Path(fields[3]).parents
    return "honoured" if inside else "ignored"


def unix_socket_group(soup_go: str) -> str:
    """Socket permissions when PLUGIN_UNIX_SOCKET_GROUP names our own group."""
    env = {"PLUGIN_UNIX_SOCKET_GROUP": str(os.getgid())}
    with plugin(soup_go, env, "--tls-mode", "disabled") as fields:
        mode = stat.S_IMODE(os.stat(fields[3]).st_mode)
    return f"mode {mode:04o}"


def multiplex(soup_go: str) -> str:
    """The handshake line's 7th field when the host sets PLUGIN_MULTIPLEX_GRPC=true."""
    with plugin(soup_go, {"PLUGIN_MULTIPLEX_GRPC": "true"}, "--tls-mode", "disabled") as fields:
        return f"mux field {fields[6]!r}" if len(fields) > 6 else "no mux field"


def automtls_cert(soup_go: str) -> str:
    """The plugin's AutoMTLS certificate (handshake field 6): key, CA flag, EKUs, lifetime."""
    host = certs.self_signed("ec-p521")
    env = {"PLUGIN_CLIENT_CERT": host.cert_pem.decode()}
    with plugin(soup_go, env, "--tls-mode", "auto") as fields:
        der = base64.b64decode(fields[5] + "=" * (-len(fields[5]) % 4))
    cert = x509.load_der_x509_certificate(der)
    key = cert.public_key()
    curve = key.curve.name if isinstance(key, ec.EllipticCurvePublicKey) else type(key).__name__
    ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    ekus = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    names = {ExtendedKeyUsageOID.SERVER_AUTH: "server", ExtendedKeyUsageOID.CLIENT_AUTH: "client"}
    years = (cert.not_valid_after_utc - cert.not_valid_before_utc).days // 365
    eku = "+".join(names.get(e, e.dotted_string) for e in ekus)
    return f"{curve} ca={ca} eku={eku} {years}y"


def alpn_required(soup_go: str) -> str:
    """Does the plugin's gRPC server accept a TLS client that offers no ALPN?

    gRPC-Go 1.67 started enforcing ALPN h2: the TLS handshake completes, then the server
    closes the connection. Before, it answers with its HTTP/2 SETTINGS frame.
    """
    host = certs.self_signed("ec-p521")
    env = {"PLUGIN_CLIENT_CERT": host.cert_pem.decode()}
    with (
        tempfile.TemporaryDirectory(prefix="soup-alpn-") as tmp,
        plugin(soup_go, env, "--tls-mode", "auto") as fields,
    ):
        (Path(tmp) / "host.pem").write_bytes(host.cert_pem)
        (Path(tmp) / "host.key").write_bytes(host.key_pem)
        der = base64.b64decode(fields[5] + "=" * (-len(fields[5]) % 4))
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.load_cert_chain(Path(tmp) / "host.pem", Path(tmp) / "host.key")
        context.load_verify_locations(cadata=der)
        try:
            first = _h2_preface_answer(context, fields[3])
        except (OSError, ssl.SSLError):  # the server hung up during or after the handshake
            return "refused"
    return "accepted" if first else "refused"


def _h2_preface_answer(context: ssl.SSLContext, path: str) -> bytes:
    """TLS without ALPN to a unix socket, send the HTTP/2 preface, read the first reply."""
    with socket.socket(socket.AF_UNIX) as raw:
        raw.settimeout(READ_TIMEOUT_S)
        raw.connect(path)
        with context.wrap_socket(raw, server_hostname="localhost") as conn:
            conn.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
            return conn.recv(9)


def host_env(soup_go: str) -> str:
    """The PLUGIN_* variables a soup-go host (AutoMTLS) passes to the plugin it starts."""
    with tempfile.TemporaryDirectory(prefix="soup-env-") as tmp:
        dump = Path(tmp) / "env"
        stand_in = shlex.join(["sh", "-c", f"env > {shlex.quote(str(dump))}; exit 3"])
        subprocess.run(
            [soup_go, "rpc", "client", "test", "--json", "--timeout", "10", "--server", stand_in],
            capture_output=True, timeout=HANDSHAKE_TIMEOUT_S, check=False,
            env={k: v for k, v in os.environ.items() if not k.startswith("PLUGIN_")},
        )  # fmt: skip
        names = sorted(
            line.split("=", 1)[0]
            for line in dump.read_text().splitlines()
            if line.startswith("PLUGIN_")
        )
    return ",".join(names)


PROBES: dict[str, Callable[[str], str]] = {
    "unix_socket_dir": unix_socket_dir,
    "unix_socket_group": unix_socket_group,
    "multiplex": multiplex,
    "automtls_cert": automtls_cert,
    "alpn_required": alpn_required,
    "host_env": host_env,
}
