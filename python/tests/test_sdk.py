"""The SDK as a user sees it: versions, your own services (plain and async), the default
TLS policy, stdio and log levels from a Python plugin to a Python host, host death."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import stat
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import grpc
import pytest
from plugin_commands import PYTHON, LogRecords, group_left_after, plugin_cmd, python_cmd

import soup
from soup import pb
from soup.lab.counter import AddHelperServicer
from soup.lab.kv import KVClient
from soup.stdio import StdioHub

pytestmark = pytest.mark.slow


def _app_plugin(body: str, config: str) -> str:
    """A plugin program: ``body`` defines registrations, ``config`` the ServeConfig args."""
    return python_cmd(
        "import asyncio, logging, sys, grpc, soup\n"
        + body
        + f"\nsys.exit(soup.serve(soup.ServeConfig({config})))\n"
    )


# -- version negotiation: a plugin serving 5 and 6


@pytest.mark.parametrize(("asked", "negotiated"), [((5,), 5), ((6,), 6), ((5, 6), 6), ((6, 5), 6)])
def test_version_negotiation(make_client: Any, asked: tuple[int, ...], negotiated: int) -> None:
    config = soup.HandshakeConfig(app_versions=asked)
    client = make_client(plugin_cmd("--protocol-versions", "5,6"), config=config)
    client.start()
    assert client.protocol_version == negotiated
    assert client.health_check() == "SERVING"


def test_version_none_in_common_fails_with_go_plugins_words(make_client: Any) -> None:
    config = soup.HandshakeConfig(app_versions=(7,))
    client = make_client(plugin_cmd("--protocol-versions", "5,6"), config=config)
    with pytest.raises(soup.HandshakeError) as err:
        client.start()
    text = str(err.value)
    assert isinstance(err.value, soup.HostError)
    assert text.startswith(
        "incompatible API version with plugin. Plugin version: 5, Client versions: [7]"
    )
    assert "bad handshake line" not in text
    assert f"plugin stopped by the host (pid {client.pid})" in text
    # A failed start() (not only the `with` form) kills the plugin, as go-plugin's Start.
    assert group_left_after(client.pid) == []


@pytest.mark.parametrize(("asked", "negotiated"), [("5", 5), ("6", 6), ("5,6", 6)])
def test_cli_reports_the_negotiated_version(asked: str, negotiated: int) -> None:
    server = plugin_cmd("--protocol-versions", "5,6", "--magic-cookie-key", "MY_COOKIE")
    proc = subprocess.run(
        [PYTHON, "-m", "soup", "rpc", "client", "test", "--json", "--protocol-versions", asked,
         "--magic-cookie-key", "MY_COOKIE", "--server", server],
        capture_output=True, timeout=90, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr.decode()
    result = json.loads(proc.stdout)
    assert result["protocol_version"] == negotiated


def test_cli_cookie_mismatch_is_not_a_plugin(make_client: Any) -> None:
    client = make_client(plugin_cmd("--magic-cookie-value", "other"))
    with pytest.raises(soup.HostError) as err:
        client.start()
    assert "This binary is a plugin" in str(err.value)
    assert "exit code 1" in str(err.value)


def test_only_the_negotiated_versions_services_are_served(make_client: Any) -> None:
    body = (
        "def greeter(text):\n"
        "    h = grpc.unary_unary_rpc_method_handler(lambda req, ctx: text.encode())\n"
        "    return grpc.method_handlers_generic_handler('t.Greeter', {'Greet': h})\n"
        "def v1(p): p.server.add_generic_rpc_handlers((greeter('one'),))\n"
        "def v2(p): p.server.add_generic_rpc_handlers((greeter('two'),))\n"
        "def other(p): p.server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("
        "'t.Other', {'Hi': grpc.unary_unary_rpc_method_handler(lambda r, c: b'hi')}),))\n"
    )
    command = _app_plugin(body, "plugins={1: [v1, other], 2: [v2]}")
    for versions, expect in (((1,), b"one"), ((1, 2), b"two")):
        client = make_client(command, config=soup.HandshakeConfig(app_versions=versions))
        client.start()
        assert client.channel.unary_unary("/t.Greeter/Greet")(b"", timeout=5) == expect
        other = client.channel.unary_unary("/t.Other/Hi")
        if versions == (1,):
            assert other(b"", timeout=5) == b"hi"
        else:
            with pytest.raises(grpc.RpcError) as err:
                other(b"", timeout=5)
            assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED  # type: ignore[attr-defined]
        assert client.kill() is True


# -- plain and async servicers, default TLS policy, no KV unless asked


def test_async_servicers(make_client: Any, caplog: pytest.LogCaptureFixture) -> None:
    body = (
        "async def greet(name, context):\n"
        "    await asyncio.sleep(0)\n"
        "    print('greeted', flush=True)\n"  # to the host over GRPCStdio, a plain servicer
        "    return b'async hello ' + name\n"
        "def register(p):\n"
        "    h = grpc.unary_unary_rpc_method_handler(greet)\n"
        "    p.server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("
        "'t.Greeter', {'Greet': h}),))\n"
        "    assert isinstance(p.server, grpc.aio.Server)\n"
        "from soup.lab.kv import service\n"
    )
    chunks: list[tuple[str, bytes]] = []
    client = make_client(
        _app_plugin(body, "asyncio=True, plugins={1: [register, service(None)]}"),
        tls_backend="openssl",
        on_stdio=lambda channel, data: chunks.append((channel, data)),
    )
    client.start()
    assert client.tls.backend == "openssl"
    greet = client.channel.unary_unary("/t.Greeter/Greet")
    assert greet(b"gopher", timeout=5) == b"async hello gopher"
    _wait(lambda: ("stdout", b"greeted\n") in chunks, "the plugin's print over GRPCStdio")
    kv = KVClient(client.channel)  # a plain servicer next to the async one
    kv.put("k", b"v")
    assert kv.get("k") == b"v"
    assert client.health_check() == "SERVING"
    assert client.kill() is True
    assert client.exit.code == 0
    # the internal streams (GRPCStdio, GRPCBroker) ran without failing in the plugin
    failed = [
        r.getMessage()
        for r in caplog.records
        if r.name == "soup.host.plugin" and "raised by servicer method" in r.getMessage()
    ]
    assert failed == []


def test_default_serves_plaintext_with_a_warning_when_the_host_did_not_ask(
    make_client: Any,
) -> None:
    client = make_client(_app_plugin("", ""), tls_mode="disabled")
    client.start()
    assert client.tls.backend is None
    assert client.health_check() == "SERVING"
    assert "the host sent no PLUGIN_CLIENT_CERT: serving plaintext" in client.stderr_tail()
    # no KV unless registered
    with pytest.raises(soup.HostError) as err:
        KVClient(client.channel).get("k")
    assert err.value.__cause__.code() == grpc.StatusCode.UNIMPLEMENTED  # type: ignore[union-attr]
    assert client.kill() is True


def test_require_tls_refuses_plaintext(make_client: Any) -> None:
    client = make_client(_app_plugin("", "require_tls=True"), tls_mode="disabled")
    with pytest.raises(soup.HostError) as err:
        client.start()
    assert "refusing to serve plaintext" in str(err.value)


def test_default_does_mutual_tls_when_the_host_asks(make_client: Any) -> None:
    client = make_client(_app_plugin("", ""))
    client.start()
    assert client.tls.backend == "native"
    assert client.tls.version == "TLSv1.3"
    assert client.tls.server_key == "ec-p256"


# -- go-plugin's UnixSocketConfig.Group on the host side


def _another_group() -> int:
    """A gid other than our primary one that we may give files to (root may use any)."""
    others = [g for g in os.getgroups() if g != os.getgid()]
    if others:
        return others[0]
    if os.geteuid() == 0:
        return 65534  # nogroup
    pytest.skip("no group but our primary one: the gid check could not fail")


def _mode_and_gid(path: Path) -> tuple[int, int]:
    st = path.stat()
    return stat.S_IMODE(st.st_mode), st.st_gid


@pytest.mark.parametrize("backend", ["native", "openssl"])
def test_unix_socket_group_reaches_the_plugin_and_the_hosts_broker(
    make_client: Any, backend: str
) -> None:
    gid = _another_group()
    client = make_client(plugin_cmd(), unix_socket_group=str(gid), tls_backend=backend)
    client.start()
    assert client.tls.backend == backend
    assert client._socket_dir is not None
    assert _mode_and_gid(client._socket_dir) == (0o710, gid)  # the group may enter, not list
    plugin_socket = Path(client.handshake_info.address)
    assert plugin_socket.parent == client._socket_dir
    assert _mode_and_gid(plugin_socket) == (0o660, gid)
    served = client.broker.accept_and_serve(client.broker.next_id(), AddHelperServicer().register)
    try:
        assert _mode_and_gid(Path(served.endpoint.address)) == (0o660, gid)
    finally:
        served.stop()


@pytest.mark.parametrize("group", ["soup-no-such-group", "-1"])
def test_unix_socket_group_that_does_not_exist_fails_at_once(group: str) -> None:
    # -1 would make chown leave the group as it is while the sockets became 0660.
    with pytest.raises(ValueError, match=f"unix_socket_group '{group}': no such group"):
        soup.ClientConfig(cmd=plugin_cmd(), unix_socket_group=group)


# -- logs and stdio from a Python plugin through a Python host

_TALKER = (
    "import threading\n"
    "app = logging.getLogger('myapp.worker')\n"
    "def talk():\n"
    "    app.debug('dbg line', extra={'n': 1})\n"
    "    app.info('info line', extra={'user': 'gopher'})\n"
    "    app.warning('warn line')\n"
    "    app.error('error line', extra={'code': 42})\n"
    "    logging.getLogger().info('root line')\n"
    "    print('out line', flush=True)\n"
    "    sys.stderr.write('err line\\n'); sys.stderr.flush()\n"
    "def register(p): threading.Timer(0.3, talk).start()\n"
)


def _wait(condition: Any, what: str, within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {within} s for {what}")
        time.sleep(0.05)


def test_logs_keep_their_level_and_fields_and_stdio_reaches_the_callback(
    make_client: Any,
) -> None:
    records = LogRecords()
    plugin_log = logging.getLogger("soup.host.plugin")
    plugin_log.addHandler(records)
    previous = plugin_log.level
    plugin_log.setLevel(logging.DEBUG)
    chunks: list[tuple[str, bytes]] = []
    try:
        client = make_client(
            # debug: the plugin's default (info) would drop the debug line.
            _app_plugin(_TALKER, "plugins={1: [register]}, log_level='debug'"),
            on_stdio=lambda channel, data: chunks.append((channel, data)),
        )
        client.start()
        _wait(lambda: len(chunks) >= 2, "two GRPCStdio chunks")
        assert ("stdout", b"out line\n") in chunks
        assert ("stderr", b"err line\n") in chunks
        assert client.kill() is True  # joins the stderr reader: every line is re-logged
    finally:
        plugin_log.removeHandler(records)
        plugin_log.setLevel(previous)
    expected = {
        "dbg line": logging.DEBUG,
        "info line": logging.INFO,
        "warn line": logging.WARNING,
        "error line": logging.ERROR,
        "root line": logging.INFO,
    }
    for message, level in expected.items():
        record = records.find(message)
        assert record is not None, message
        assert record.levelno == level, message
    info = records.find("info line")
    error = records.find("error line")
    assert info is not None
    assert error is not None
    assert (info.user, info.plugin_module) == ("gopher", "myapp.worker")  # type: ignore[attr-defined]
    assert error.code == 42  # type: ignore[attr-defined]
    # stdio went over gRPC, not the real stderr
    assert "err line" not in client.stderr_tail()


def test_stdio_written_before_close_is_still_streamed() -> None:
    # a host stopping the plugin right after a call must still get the call's output
    hub = StdioHub()
    hub.write(1, b"last words\n")
    hub.close()
    hub.write(2, b"after close\n")  # dropped: the plugin is stopping
    context = SimpleNamespace(is_active=lambda: True)
    sent = list(hub.StreamStdio(None, context))  # type: ignore[arg-type]
    assert [(m.channel, m.data) for m in sent] == [
        (pb.grpc_stdio_pb2.StdioData.STDOUT, b"last words\n")
    ]


def test_stdio_to_the_hosts_streams(make_client: Any, tmp_path: Path) -> None:
    out_path, err_path = tmp_path / "out", tmp_path / "err"
    with out_path.open("wb") as out, err_path.open("wb") as err:
        client = make_client(
            _app_plugin(_TALKER, "plugins={1: [register]}"), stdout=out, stderr=err
        )
        client.start()
        _wait(lambda: out_path.stat().st_size and err_path.stat().st_size, "stdio in the files")
        client.kill()
    assert out_path.read_bytes() == b"out line\n"
    assert err_path.read_bytes() == b"err line\n"


# -- the host dies: the plugin follows


def test_plugin_exits_when_its_host_is_killed(tmp_path: Path) -> None:
    host_code = (
        "import sys, time, soup\n"
        f"c = soup.Client(soup.ClientConfig(cmd={plugin_cmd()!r}))\n"
        "c.start()\n"
        "print(c.pid, c._socket_dir, flush=True)\n"
        "time.sleep(60)\n"
    )
    host = subprocess.Popen(
        [PYTHON, "-c", host_code], stdout=subprocess.PIPE, start_new_session=True
    )
    try:
        assert host.stdout is not None
        pid_text, socket_dir_text = host.stdout.readline().split()
        plugin_pid = int(pid_text)
        os.kill(host.pid, signal.SIGKILL)
        host.wait(10)
        # bounded wait: the plugin notices within its poll interval and stops gracefully
        assert group_left_after(plugin_pid, within=5.0) == []
        # A SIGKILLed host cannot remove its socket directory: the plugin, seeing its host
        # gone, removes its own files in it and then the directory the host made for it.
        socket_dir = Path(os.fsdecode(socket_dir_text))
        assert not socket_dir.exists(), sorted(p.name for p in socket_dir.iterdir())
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(host.pid, signal.SIGKILL)
        host.wait(10)
