"""Tests for soup.bridgeproc: the OpenSSL listener bridge in a child process.

The bridge's own behaviour is test_bridge.py's; here: the child relays with the same
certificate policy, reports why it failed or ended, logs through the plugin's logger,
and never outlives its plugin.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_bridge import TIMEOUT, Backend, client_context, echo, exchange, pair

from soup.bridge import BridgeError
from soup.bridgeproc import BridgeProcess


class Records(logging.Handler):
    """The parent's view of the child's log records."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[tuple[int, str]] = []
        self.warned = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append((record.levelno, record.getMessage()))
        if record.levelno >= logging.WARNING:
            self.warned.set()


def gone(pid: int, within: float) -> bool:
    """Whether ``pid`` has exited (a zombie counts) within ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return True
        if state == "Z":
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)


@pytest.fixture
def backend() -> Iterator[Backend]:
    server = Backend(echo)
    yield server
    server.close()


@pytest.fixture
def records() -> Iterator[tuple[logging.Logger, Records]]:
    logger = logging.getLogger(f"test.bridgeproc.{os.getpid()}.{time.monotonic_ns()}")
    logger.setLevel(logging.DEBUG)
    handler = Records()
    logger.addHandler(handler)
    yield logger, handler
    logger.removeHandler(handler)


def listening(tmp_path: Path) -> tuple[socket.socket, str]:
    path = str(tmp_path / "plugin.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(path)
    sock.listen(16)
    return sock, path


def bridge_process(
    tmp_path: Path, backend_path: str, logger: logging.Logger, **kwargs: object
) -> tuple[BridgeProcess, socket.socket, str]:
    sock, path = listening(tmp_path)
    server = pair("ec-p256")
    process = BridgeProcess(logger=logger)
    process.serve(
        sock,
        (server.cert_pem, server.key_pem),
        pair("ec-p521").cert_pem,  # the host's certificate, as go-plugin's AutoMTLS pins it
        backend_path,
        **kwargs,  # type: ignore[arg-type]
    )
    return process, sock, path


@contextlib.contextmanager
def started(
    tmp_path: Path, backend_path: str, logger: logging.Logger, **kwargs: object
) -> Iterator[tuple[BridgeProcess, str]]:
    """A started bridge process and its address; closed (and its socket) at the end."""
    process, sock, path = bridge_process(tmp_path, backend_path, logger, **kwargs)
    try:
        process.start()
        yield process, path
    finally:
        process.close()
        sock.close()


def tls_connect(path: str, tmp_path: Path, own: str | None) -> ssl.SSLSocket:
    ctx = client_context(None if own is None else pair(own), pair("ec-p256"), tmp_path)
    raw = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    raw.settimeout(TIMEOUT)
    raw.connect(path)
    return ctx.wrap_socket(raw, server_hostname="localhost")


def test_relays_tls_from_a_p521_host_and_ends_on_close(
    tmp_path: Path, backend: Backend, records: tuple[logging.Logger, Records]
) -> None:
    logger, _ = records
    with started(tmp_path, backend.path, logger) as (process, path):
        assert process.pid != os.getpid()
        with tls_connect(path, tmp_path, "ec-p521") as tls:
            assert tls.version() == "TLSv1.3"
            assert tls.selected_alpn_protocol() == "h2"
            assert exchange(tls) == b"hello"
        assert backend.accepted == 1
    assert gone(process.pid, 0.1)
    assert process.last_error is None


def test_a_client_without_certificate_is_refused_and_the_reason_logged(
    tmp_path: Path, backend: Backend, records: tuple[logging.Logger, Records]
) -> None:
    logger, handler = records
    with started(tmp_path, backend.path, logger) as (process, path):
        with (
            tls_connect(path, tmp_path, None) as tls,
            pytest.raises((ssl.SSLError, ConnectionError)),
        ):
            exchange(tls)
        assert handler.warned.wait(TIMEOUT)
    warnings = [text for level, text in handler.messages if level == logging.WARNING]
    assert any("PEER_DID_NOT_RETURN_A_CERTIFICATE" in text for text in warnings), warnings
    assert process.last_error is not None
    assert "PEER_DID_NOT_RETURN_A_CERTIFICATE" in process.last_error
    assert backend.accepted == 0


def test_start_names_why_the_child_could_not_serve(
    tmp_path: Path, records: tuple[logging.Logger, Records]
) -> None:
    logger, _ = records
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    shared.chmod(0o755)
    process, sock, _ = bridge_process(tmp_path, str(shared / "grpc.sock"), logger)
    try:
        with pytest.raises(BridgeError, match=r"bridge process failed: .*must be .*mode 0700"):
            process.start()
    finally:
        process.close()
        sock.close()
    assert gone(process.pid, 0.1)


def test_a_child_that_dies_is_reported_with_its_signal(
    tmp_path: Path, backend: Backend, records: tuple[logging.Logger, Records]
) -> None:
    logger, handler = records
    ended: list[str] = []
    called = threading.Event()

    def on_exit(reason: str) -> None:
        ended.append(reason)
        called.set()

    with started(tmp_path, backend.path, logger, on_exit=on_exit) as (process, _):
        os.kill(process.pid, signal.SIGKILL)
        assert called.wait(TIMEOUT)
    assert ended == ["the TLS bridge process ended: killed by signal SIGKILL"]
    assert any(level == logging.ERROR and "refused" in text for level, text in handler.messages)


def test_the_child_does_not_outlive_a_killed_plugin(tmp_path: Path, backend: Backend) -> None:
    """SIGKILL of the plugin (a host's Kill after its grace) ends the child too."""
    script = (
        "import socket, sys, time\n"
        "from test_bridgeproc import bridge_process\n"
        "from pathlib import Path\n"
        "import logging\n"
        "process, sock, _ = bridge_process(Path(sys.argv[1]), sys.argv[2], logging.getLogger())\n"
        "process.start()\n"
        "print(process.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), *sys.path])}
    plugin = subprocess.Popen(
        [sys.executable, "-c", script, str(tmp_path), backend.path],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    child = 0
    try:
        assert plugin.stdout is not None
        child = int(plugin.stdout.readline())
        assert not gone(child, 0.2)
        plugin.kill()
        plugin.wait(TIMEOUT)
        assert gone(child, TIMEOUT)
    finally:
        plugin.kill()
        plugin.wait(TIMEOUT)
        if child and not gone(child, 0):
            os.kill(child, signal.SIGKILL)


def test_a_discarded_process_ends_quietly(records: tuple[logging.Logger, Records]) -> None:
    """Made early, then not needed (the host's key chose the native backend)."""
    logger, handler = records
    process = BridgeProcess(logger=logger)
    process.discard()
    assert gone(process.pid, TIMEOUT)
    process.close()
    assert handler.messages == []
    assert process.last_error is None


def test_the_child_loads_neither_grpc_nor_cryptography(
    tmp_path: Path, backend: Backend, records: tuple[logging.Logger, Records]
) -> None:
    logger, _ = records
    with started(tmp_path, backend.path, logger) as (process, _):
        maps = Path(f"/proc/{process.pid}/maps").read_text()
    assert "cygrpc" not in maps
    assert "_rust.abi3" not in maps  # cryptography's binding
