"""A real Python plugin subprocess served and called by the host in-process."""

from __future__ import annotations

import base64
import os
import shlex
import signal
import socket
import ssl
import subprocess
import time
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography.hazmat.primitives.serialization import Encoding
from plugin_commands import PYTHON, group_left_after, plugin_cmd, python_cmd

from soup import certs, handshake, listen, tls
from soup.connect import rpc_code, rpc_message
from soup.errors import HostError, PluginError
from soup.host import Client
from soup.lab.kv import KVClient

pytestmark = pytest.mark.slow


def exercise(client: Client) -> None:
    """put / get / get missing / health / graceful shutdown."""
    kv = KVClient(client.channel)
    kv.put("k1", b"value \x00\xff")
    assert kv.get("k1") == b"value \x00\xff"
    with pytest.raises(HostError) as missing:
        kv.get("no-such-key")
    assert rpc_code(missing.value) == grpc.StatusCode.NOT_FOUND
    assert rpc_message(missing.value) == "key not found"
    with pytest.raises(HostError) as empty:
        kv.put("", b"x")
    assert rpc_code(empty.value) == grpc.StatusCode.INVALID_ARGUMENT
    assert rpc_message(empty.value) == "key must not be empty"
    assert client.health_check("plugin") == "SERVING"
    assert client.health_check("") == "SERVING"
    assert client.kill() is True
    assert client.exit.code == 0


def start_fails(client: Client, within: float) -> str:
    """``client.start()`` must fail with a ``HostError`` within ``within`` seconds: its text."""
    started = time.monotonic()
    with pytest.raises(HostError) as err:
        client.start()
    assert time.monotonic() - started < within
    return str(err.value)


def serve_fails(env: dict[str, str], *flags: str) -> str:
    """``soup rpc server-start FLAGS`` must exit 1 with nothing on stdout: its stderr."""
    proc = subprocess.run(
        [PYTHON, "-m", "soup", "rpc", "server-start", *flags],
        env=env, capture_output=True, timeout=30, check=False,
    )  # fmt: skip
    assert proc.returncode == 1
    assert proc.stdout == b""
    return proc.stderr.decode()


# host key, plugin key, transport, host backend (plugin backend follows the host key)
AUTO_CASES = [
    ("ec-p256", "ec-p256", "unix", "native"),
    ("ec-p256", "ec-p256", "tcp", "native"),
    ("ec-p256", "ec-p521", "unix", "openssl"),
    ("ed25519", "ec-p256", "tcp", "native"),
    ("rsa-2048", "ec-p384", "unix", "native"),
    ("ec-p521", "ed25519", "tcp", "openssl"),
]


@pytest.mark.parametrize(
    ("host_key", "plugin_key", "transport", "backend"),
    AUTO_CASES,
    ids=[f"{h}->{p}/{t}" for h, p, t, _ in AUTO_CASES],
)
def test_auto_mtls(
    make_client: Any, host_key: str, plugin_key: str, transport: str, backend: str
) -> None:
    client = make_client(
        plugin_cmd("--key-type", plugin_key, "--transport", transport), key_type=host_key
    )
    client.start()
    info = client.handshake_info
    assert info is not None
    assert info.network == transport
    assert info.app_version == 1
    assert info.server_cert_der
    if transport == "tcp":
        host, port = info.address.rsplit(":", 1)
        assert host == "127.0.0.1"
        assert 10000 <= int(port) <= 25000
    else:
        assert Path(info.address).name.startswith("plugin")
    details = client.tls
    assert details.backend == backend
    assert details.client_key == host_key
    assert details.server_key == plugin_key
    assert details.version == "TLSv1.3"
    assert details.version_source == ("live" if backend == "openssl" else "probe")
    assert details.alpn == "h2"
    assert details.server_fingerprint == certs.fingerprint(
        certs.load_cert_der(info.server_cert_der)
    )
    # the plugin says which backend it picked for the host's key
    plugin_backend = tls.choose_backend("auto", host_key)
    assert f'"backend":"{plugin_backend}"' in client.stderr_tail().replace(" ", "")
    exercise(client)
    if transport == "unix":
        assert not Path(info.address).exists(), "socket left behind"


@pytest.mark.parametrize("backend", ["native", "openssl"])
def test_forced_backend_both_sides(make_client: Any, backend: str) -> None:
    client = make_client(plugin_cmd("--tls-backend", backend), tls_backend=backend)
    client.start()
    assert client.tls.backend == backend
    assert f'"backend":"{backend}"' in client.stderr_tail().replace(" ", "")
    exercise(client)


def test_forced_native_against_p521_fails_fast(make_client: Any) -> None:
    client = make_client(plugin_cmd("--key-type", "ec-p521"), tls_backend="native")
    text = start_fails(client, 15)
    assert "grpcio's native TLS cannot verify the plugin's ec-p521 signature" in text
    assert "--tls-backend auto or openssl" in text
    # the connection was never verified: no Shutdown RPC and no 2 s wait on a channel
    # known broken, but SIGTERM (the plugin stops cleanly) and a short bound
    started = time.monotonic()
    assert client.kill() is False
    assert time.monotonic() - started < 1.5
    assert client.exit.code is not None


@pytest.fixture
def manual_certs(tmp_path: Path) -> dict[str, Path]:
    ca = certs.issue_ca("ec-p256")
    files = {"ca": tmp_path / "ca.pem"}
    files["ca"].write_bytes(ca.cert_pem)
    for role, key_type in (("server", "ec-p521"), ("client", "ec-p384")):
        leaf = certs.issue_leaf(ca, key_type)
        certs.write_pair(leaf, tmp_path / f"{role}.pem", tmp_path / f"{role}-key.pem")
        files[role] = tmp_path / f"{role}.pem"
        files[f"{role}-key"] = tmp_path / f"{role}-key.pem"
    return files


def test_manual_mode_with_ca(make_client: Any, manual_certs: dict[str, Path]) -> None:
    f = manual_certs
    command = plugin_cmd(
        "--tls-mode", "manual", "--cert-file", str(f["server"]),
        "--key-file", str(f["server-key"]), "--ca-file", str(f["ca"]),
    )  # fmt: skip
    client = make_client(
        command, tls_mode="manual", cert_file=f["client"], key_file=f["client-key"], ca_file=f["ca"]
    )
    client.start()
    info = client.handshake_info
    assert info is not None
    assert info.server_cert_der is None  # manual mode: no field 6
    assert client.tls.client_key == "ec-p384"
    assert client.tls.server_key == "ec-p521"  # seen on the live connection
    assert client.tls.version == "TLSv1.3"
    exercise(client)


def test_disabled_mode(make_client: Any) -> None:
    client = make_client(plugin_cmd("--tls-mode", "disabled"), tls_mode="disabled")
    client.start()
    assert client.handshake_info is not None
    assert client.handshake_info.server_cert_der is None
    assert client.tls.backend is None
    assert client.tls.version is None
    exercise(client)


def test_sigterm_stops_gracefully_and_sigint_is_ignored(make_client: Any) -> None:
    client = make_client(plugin_cmd("--transport", "tcp"))
    client.start()
    assert client._process is not None
    proc = client._process.proc
    proc.send_signal(2)  # SIGINT: ignored like Go plugins
    time.sleep(0.3)
    assert client.health_check() == "SERVING"
    proc.terminate()
    assert proc.wait(10) == 0
    assert "SIGTERM" in client.stderr_tail()


def test_sigterm_while_the_wait_holds_its_lock_still_stops() -> None:
    # The handler runs in the main thread between two bytecodes, here (deterministically)
    # where the plugin's wait may be: holding the stop Event's lock. Setting the Event
    # from the handler deadlocked the plugin for good (it never exited on SIGTERM).
    code = (
        "import logging, os, signal\n"
        "from soup import plugin\n"
        "run = plugin._Run(plugin.ServeConfig(), {}, logging.getLogger('t'))\n"
        "with plugin._signals(run, run.log):\n"
        "    with run.stop_requested._cond:\n"
        "        os.kill(os.getpid(), signal.SIGTERM)\n"
        "    run.wait()\n"
        "run.finish()\n"
        "print(run.stop_reason)\n"
    )
    proc = subprocess.run(
        [PYTHON, "-c", code], capture_output=True, text=True, timeout=20, check=False
    )
    assert (proc.returncode, proc.stdout) == (0, "SIGTERM\n"), proc.stderr


# --------------------------------------------------------------------------------------
# Handshake failures: each names its cause within its bound


def test_plugin_without_cookie(plugin_env: dict[str, str]) -> None:
    del plugin_env["BASIC_PLUGIN"]
    assert serve_fails(plugin_env) == handshake.NOT_A_PLUGIN_MESSAGE + "\n"


def test_plugin_auto_mode_without_client_cert(plugin_env: dict[str, str]) -> None:
    text = serve_fails(plugin_env)
    assert "the host sent no PLUGIN_CLIENT_CERT; refusing to serve plaintext" in text


def test_plugin_disabled_mode_but_host_asked_for_tls(plugin_env: dict[str, str]) -> None:
    plugin_env["PLUGIN_CLIENT_CERT"] = certs.self_signed("ec-p256").cert_pem.decode()
    text = serve_fails(plugin_env, "--tls-mode", "disabled")
    assert "tls-mode disabled but the host asked for TLS" in text


def test_host_disabled_plugin_auto_refuses(make_client: Any) -> None:
    client = make_client(plugin_cmd(), tls_mode="disabled")
    with pytest.raises(HostError) as err:
        client.start()
    text = str(err.value)
    assert "exited before we could connect" in text
    assert "exit code 1" in text
    assert "refusing to serve plaintext" in text


def test_version_mismatch(make_client: Any) -> None:
    config = handshake.HandshakeConfig(app_versions=(2,))
    client = make_client(plugin_cmd(), config=config)
    with pytest.raises(HostError) as err:
        client.start()
    assert "incompatible API version with plugin" in str(err.value)


def test_garbage_handshake_line(make_client: Any) -> None:
    client = make_client(
        python_cmd("print('hello world', flush=True); import time; time.sleep(30)")
    )
    text = start_fails(client, 5)
    assert "bad handshake line from plugin" in text
    assert "Unrecognized remote plugin message" in text
    assert f"plugin stopped by the host (pid {client.pid})" in text
    assert group_left_after(client.pid) == []


def test_no_handshake_line_times_out(make_client: Any) -> None:
    code = "import sys, time; sys.stderr.write('thinking\\n'); sys.stderr.flush(); time.sleep(30)"
    client = make_client(python_cmd(code), timeout=1.0)
    text = start_fails(client, 3)
    assert "timed out after 1 s waiting for the plugin's handshake line on stdout" in text
    assert "thinking" in text
    started = time.monotonic()
    assert client.kill() is False  # no connection, did not exit: killed
    assert time.monotonic() - started < 5


def test_plugin_exits_early(make_client: Any) -> None:
    client = make_client(python_cmd("import sys; sys.stderr.write('boom\\n'); sys.exit(3)"))
    text = start_fails(client, 5)
    assert "plugin exited before we could connect" in text
    assert "exit code 3" in text
    assert "boom" in text


def test_missing_command(make_client: Any) -> None:
    client = make_client("/nonexistent/soup-plugin")
    with pytest.raises(HostError, match="cannot start plugin"):
        client.start()


def test_auto_mode_plugin_returning_no_cert(make_client: Any, tmp_path: Path) -> None:
    sock = str(tmp_path / "p.sock")
    code = f"print('1|1|unix|{sock}|grpc|', flush=True); import time; time.sleep(30)"
    client = make_client(python_cmd(code))
    with pytest.raises(HostError) as err:
        client.start()
    assert "plugin did not return a certificate; refusing plaintext" in str(err.value)


def test_child_processes_are_killed_with_the_group(make_client: Any) -> None:
    # a wrapper whose child keeps running: killing the group takes both
    code = (
        "import subprocess, sys, time; "
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
        "time.sleep(60)"
    )
    client = make_client(python_cmd(code), timeout=1.0)
    with pytest.raises(HostError):
        client.start()
    # the failed start killed the group: the wrapper and its child
    assert client.pid is not None
    assert group_left_after(client.pid) == []


# --------------------------------------------------------------------------------------
# Rogue clients against a running plugin: refused by the TLS handshake on both backends


def _connect(info: handshake.Handshake) -> socket.socket:
    if info.network == "unix":
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(5)
        sock.connect(info.address)
        return sock
    host, port = info.address.rsplit(":", 1)
    return socket.create_connection((host, int(port)), timeout=5)


def _rogue_tls(info: handshake.Handshake, own: certs.CertKey | None) -> str:
    """Handshake + first read as a client with ``own`` (or no) cert; the OpenSSL error."""
    assert info.server_cert_der is not None
    plugin_pem = certs.load_cert_der(info.server_cert_der)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(cadata=plugin_pem.public_bytes(_PEM).decode())
    context.set_alpn_protocols(["h2"])
    if own is not None:
        context = tls.client_ssl_context(own, plugin_pem.public_bytes(_PEM))
    raw = _connect(info)
    try:
        with context.wrap_socket(
            raw, server_hostname="localhost", suppress_ragged_eofs=False
        ) as conn:
            # TLS 1.3: the server checks the client certificate after the client's
            # handshake is done; its verdict arrives with the first read.
            conn.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
            data = conn.recv(1024)
            return f"no error, got {data!r}"
    except (ssl.SSLError, OSError) as exc:
        return f"{type(exc).__name__}: {exc}"


_PEM = Encoding.PEM


@pytest.fixture(params=["native", "openssl"])
def running_plugin(request: pytest.FixtureRequest, make_client: Any) -> Client:
    # The plugin picks its backend from the host's key: P-256 -> native, Ed25519 -> openssl.
    host_key = "ec-p256" if request.param == "native" else "ed25519"
    client: Client = make_client(plugin_cmd("--transport", "tcp"), key_type=host_key)
    client.start()
    assert f'"backend":"{request.param}"' in client.stderr_tail().replace(" ", "")
    return client


def _plugin_error_logged(client: Client, needle: str) -> bool:
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        if needle in client.stderr_tail():
            return True
        time.sleep(0.05)
    return False


# What the rogue client sees: the OpenSSL bridge answers with an alert naming the
# problem; grpcio's BoringSSL just closes the connection (no alert). Either way the
# plugin logs the reason on its stderr (hclog line from the bridge, or gRPC core's log
# line for the native backend), which the host collects.
CLIENT_SIDE = {
    "foreign": ("TLSV1_ALERT_UNKNOWN_CA", "UNEXPECTED_EOF_WHILE_READING"),
    "none": ("TLSV13_ALERT_CERTIFICATE_REQUIRED", "UNEXPECTED_EOF_WHILE_READING"),
}


def test_rogue_client_with_foreign_cert_is_refused(running_plugin: Client) -> None:
    info = running_plugin.handshake_info
    assert info is not None
    error = _rogue_tls(info, certs.self_signed("ec-p256"))
    assert any(reason in error for reason in CLIENT_SIDE["foreign"]), error
    assert _plugin_error_logged(running_plugin, "CERTIFICATE_VERIFY_FAILED")
    assert running_plugin.health_check() == "SERVING"  # the real host still works


def test_rogue_client_without_cert_is_refused(running_plugin: Client) -> None:
    info = running_plugin.handshake_info
    assert info is not None
    error = _rogue_tls(info, None)
    assert any(reason in error for reason in CLIENT_SIDE["none"]), error
    assert _plugin_error_logged(running_plugin, "PEER_DID_NOT_RETURN_A_CERTIFICATE")
    assert running_plugin.health_check() == "SERVING"


def test_plaintext_client_is_refused(running_plugin: Client) -> None:
    info = running_plugin.handshake_info
    assert info is not None
    raw = _connect(info)
    with raw:
        raw.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        data = b""
        try:
            while chunk := raw.recv(4096):
                data += chunk
        except OSError:
            pass
    # never an HTTP/2 answer: at most a TLS alert record (content type 21), then EOF
    assert not data or data[0] == 0x15, data
    assert _plugin_error_logged(running_plugin, "WRONG_VERSION_NUMBER")
    with grpc.insecure_channel(info.address, options=[("grpc.enable_http_proxy", 0)]) as channel:
        call = channel.unary_unary("/grpc.health.v1.Health/Check")
        with pytest.raises(grpc.RpcError) as err:
            call(b"", timeout=5)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE  # type: ignore[attr-defined]
    assert running_plugin.health_check() == "SERVING"


def test_environment_is_unchanged() -> None:
    assert "BASIC_PLUGIN" not in os.environ


def test_host_socket_dir_removed_even_after_sigkill(make_client: Any) -> None:
    # forced native against P-521: the host cannot talk to the plugin, so it is SIGKILLed
    client = make_client(plugin_cmd("--key-type", "ec-p521"), tls_backend="native", rpc_timeout=2.0)
    with pytest.raises(HostError):
        client.start()
    # the failed start killed it (not gracefully) and removed the host's socket dir
    info = client.handshake_info
    assert info is not None
    assert Path(info.address).parent.name.startswith(handshake.HOST_SOCKET_DIR_PREFIX)
    assert client.exit.graceful is False
    assert not Path(info.address).parent.exists()


def test_unix_socket_dir_and_group_from_env(make_client: Any, tmp_path: Path) -> None:
    env = dict(os.environ)
    env["PLUGIN_UNIX_SOCKET_DIR"] = str(tmp_path)
    env["PLUGIN_UNIX_SOCKET_GROUP"] = str(os.getgid())
    for backend in ("native", "openssl"):
        client = make_client(plugin_cmd("--tls-backend", backend), env=env)
        client.start()
        info = client.handshake_info
        assert info is not None
        path = Path(info.address)
        assert path.parent == tmp_path
        st = path.stat()
        assert oct(st.st_mode & 0o777) == oct(0o660)
        assert st.st_gid == os.getgid()
        exercise(client)
    assert list(tmp_path.iterdir()) == []  # sockets, private dirs, kv dir: all removed


def test_unknown_socket_group_fails(plugin_env: dict[str, str]) -> None:
    plugin_env["PLUGIN_UNIX_SOCKET_GROUP"] = "no-such-group-soup"
    text = serve_fails(plugin_env, "--tls-mode", "disabled")
    assert "failed to find gid from 'no-such-group-soup'" in text


@pytest.mark.parametrize("backend", ["native", "openssl"])
def test_tcp_port_range(plugin_env: dict[str, str], backend: str) -> None:
    plugin_env.update({"PLUGIN_MIN_PORT": "25000", "PLUGIN_MAX_PORT": "24000"})
    plugin_env["PLUGIN_CLIENT_CERT"] = certs.self_signed("ec-p256").cert_pem.decode()
    text = serve_fails(plugin_env, "--transport", "tcp", "--tls-backend", backend)
    assert "PLUGIN_MIN_PORT value of 25000 is greater than PLUGIN_MAX_PORT value of 24000" in text


@pytest.mark.parametrize("backend", ["native", "openssl"])
def test_tcp_busy_port_is_skipped(make_client: Any, backend: str) -> None:
    first = make_client(plugin_cmd("--transport", "tcp", "--tls-backend", backend))
    second = make_client(plugin_cmd("--transport", "tcp", "--tls-backend", backend))
    first.start()
    second.start()
    assert first.handshake_info is not None
    assert second.handshake_info is not None
    assert first.handshake_info.address != second.handshake_info.address
    exercise(first)
    exercise(second)


def test_tcp_port_taken_between_bind_and_listen_is_skipped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Two plugins racing for one port: with SO_REUSEADDR both may bind it while neither
    # listens; the rival listens first, so our listen() fails EADDRINUSE: next port.
    rival = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    rival.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    rival.bind(("127.0.0.1", 0))
    port = rival.getsockname()[1]
    real_bind = socket.socket.bind

    def bind_then_rival_listens(self: socket.socket, address: Any) -> None:
        real_bind(self, address)
        if address == ("127.0.0.1", port) and rival.fileno() != -1:
            rival.listen(1)

    monkeypatch.setattr(socket.socket, "bind", bind_then_rival_listens)
    env = {"PLUGIN_MIN_PORT": str(port), "PLUGIN_MAX_PORT": str(min(port + 50, 65535))}
    try:
        sock = listen.listen_tcp_range(env)
    finally:
        rival.close()
    with sock:
        assert sock.getsockname()[1] != port
        sock.settimeout(5)
        with socket.create_connection(sock.getsockname(), timeout=5):
            sock.accept()[0].close()  # really listening


def test_tcp_port_range_exhausted_names_the_range(monkeypatch: pytest.MonkeyPatch) -> None:
    holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    holder.bind(("127.0.0.1", 0))
    holder.listen(1)
    port = holder.getsockname()[1]
    with holder, pytest.raises(PluginError) as err:
        listen.listen_tcp_range({"PLUGIN_MIN_PORT": str(port), "PLUGIN_MAX_PORT": str(port)})
    assert f"127.0.0.1:{port}..{port}" in str(err.value)
    assert "in use" in str(err.value)


@pytest.mark.parametrize("text", [" 1", "1_0", "\u0661", "9" * 5000, "2147483648"])
def test_tcp_port_is_parsed_like_go(text: str) -> None:
    # Go's strconv.ParseInt(text, 10, 32), as go-plugin reads PLUGIN_MIN_PORT.
    with pytest.raises(PluginError) as err:
        listen.listen_tcp_range({"PLUGIN_MIN_PORT": text, "PLUGIN_MAX_PORT": "0"})
    assert "couldn't get value from PLUGIN_MIN_PORT" in str(err.value)


def test_stdio_is_forwarded_over_grpc(make_client: Any) -> None:
    code = (
        "import sys, threading, time\n"
        "from soup.lab.kv import service\n"
        "from soup.plugin import ServeConfig, serve\n"
        "def talk():\n"
        "    # after the handshake line, when serve has swapped sys.stdout (10 s bound)\n"
        "    deadline = time.monotonic() + 10\n"
        "    while sys.stdout is sys.__stdout__ and time.monotonic() < deadline:\n"
        "        time.sleep(0.01)\n"
        "    print('hello on stdout', flush=True)\n"
        "    sys.stderr.write('hello on stderr\\n'); sys.stderr.flush()\n"
        "threading.Thread(target=talk, daemon=True).start()\n"
        "sys.exit(serve(ServeConfig(transport='tcp', plugins={1: [service(None)]})))\n"
    )
    client = make_client(python_cmd(code))
    client.start()
    deadline = time.monotonic() + 5
    while len(client.stdio) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert ("stdout", b"hello on stdout\n") in client.stdio
    assert ("stderr", b"hello on stderr\n") in client.stdio
    assert "hello on" not in client.stderr_tail()  # not on the real stderr
    exercise(client)


@pytest.mark.parametrize("backend", ["native", "openssl"])
def test_a_plugin_that_accepts_and_never_answers_fails_within_the_rpc_bound(
    make_client: Any, backend: str, tmp_path: Path
) -> None:
    # The bridge's TLS handshake and the health RPC share one bound (rpc_timeout, 5 s), as
    # grpcio's own TLS does; before, the bridge alone waited 10 s.
    served = certs.self_signed("ec-p256")
    field6 = base64.b64encode(served.cert_der).decode().rstrip("=")
    (tmp_path / "line.txt").write_text(f"1|1|unix|{{sock}}|grpc|{field6}")
    fake = Path(__file__).resolve().parents[2] / "conformance" / "fake_plugin.py"
    command = f"{shlex.quote(PYTHON)} {shlex.quote(str(fake))} hold {shlex.quote(str(tmp_path))}"
    client = make_client(command, tls_backend=backend, timeout=30.0, rpc_timeout=5.0)
    text = start_fails(client, 20)  # a hang guard, not a speed check
    assert "the plugin did not answer within 5 s" in text
    expected = "DEADLINE_EXCEEDED" if backend == "native" else "timed out after 5 s"
    assert expected in text


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        found += [int(child) for child in task.read_text().split()]
    return found


def _cmdline(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()


def _children_after(pid: int, within: float = 5.0) -> list[int]:
    """``pid``'s live children once they had ``within`` s to end (a discarded one ends)."""
    deadline = time.monotonic() + within
    while (children := _children(pid)) and time.monotonic() < deadline:
        time.sleep(0.02)
    return children


def test_a_p521_host_is_served_by_the_bridge_process(make_client: Any) -> None:
    client = make_client(plugin_cmd(), key_type="ec-p521")
    client.start()
    assert '"backend":"openssl"' in client.stderr_tail().replace(" ", "")  # the plugin's
    assert client.pid is not None
    (child,) = _children(client.pid)
    assert "bridgeproc" in _cmdline(child)
    exercise(client)  # ends with the plugin's graceful exit: the child went with it
    assert client.exit.code == 0


def test_a_native_host_discards_the_early_bridge_process(make_client: Any) -> None:
    client = make_client(plugin_cmd(), key_type="ec-p256")
    client.start()
    assert '"backend":"native"' in client.stderr_tail().replace(" ", "")  # the plugin's
    assert client.pid is not None
    assert _children_after(client.pid) == []
    exercise(client)


def test_the_plugin_stops_when_its_bridge_process_dies(make_client: Any) -> None:
    client = make_client(plugin_cmd(), key_type="ec-p521")
    client.start()
    assert client.pid is not None
    (child,) = _children(client.pid)
    os.kill(child, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while client._process.proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    client.kill()
    assert client.exit.code == 1
    text = client.stderr_tail()
    assert "the TLS bridge process ended: killed by signal SIGKILL" in text
