"""The plugin's OpenSSL listener bridge in a process of its own.

Why a process: under load the bridge's relay loop and grpcio's threads took turns at
one GIL. At 32 connections from a P-521 host the same bridge relayed x0.6 of the grpcio
floor's calls in the plugin's process and x1.2 in a process of its own (docs/bench.md).

The child is ``python -c`` this module's :func:`main` (with the plugin's own soup first
on its path), running :class:`soup.bridge.TLSListenerBridge` unchanged and importing
neither grpc nor cryptography. Its stdin is its lifeline, a unix SOCK_SEQPACKET socket:
one message brings its config (the certificate, key and trusted PEM, the private backend
socket's path, the log level) with the listening socket as SCM_RIGHTS (the key is
never on a command line or in the environment); EOF on it (the plugin closed it, or the plugin is gone) makes the child
close the bridge and exit, so it never outlives the plugin. It answers on stdout with
JSON lines: ``ready`` (or the ``error`` that stopped it), its log records, which the
plugin logs through its own ``soup.bridge`` logger (so the host reads them as before),
and its last TLS error as it ends.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from soup import tls
from soup.bridge import HANDSHAKE_TIMEOUT, JOIN_TIMEOUT, BridgeError, TLSListenerBridge

# The child imports this very soup (the plugin's, wherever it was found), not whatever
# `-m soup...` would find on the child's own path.
_SOUP_ROOT = str(Path(__file__).resolve().parent.parent)
_CHILD_MAIN = (
    "import sys; sys.path.insert(0, sys.argv[1]); "
    "from soup import bridgeproc; sys.exit(bridgeproc.main())"
)
_READY = "ready"
_ERROR = "error"
_LOG = "log"
_LAST_ERROR = "last_error"
_MAX_CONFIG = 1 << 20  # PEMs of the largest keys are a few KiB


class BridgeProcess:
    """A :class:`~soup.bridge.TLSListenerBridge` in a child process.

    Made before it is needed (:func:`soup.policy.bridge_process_wanted`), so that the
    child's interpreter starts while the plugin imports cryptography and makes its key;
    :meth:`serve` then hands it the listening socket and the TLS material, and
    :meth:`discard` lets it go if the plugin chose another backend after all. Then the
    bridge's own use: :meth:`start` (returns once the child accepts, or raises
    :class:`~soup.bridge.BridgeError` naming why not), :meth:`close`, ``last_error``.
    ``on_exit`` (of :meth:`serve`) is called with a reason if the child ends before
    :meth:`close`: its connections are refused from then on, and the plugin had better stop.
    """

    def __init__(
        self, *, logger: logging.Logger | None = None, ready_timeout: float = HANDSHAKE_TIMEOUT
    ) -> None:
        self.log = logger or logging.getLogger("soup.bridge")
        self.last_error: str | None = None
        self._on_exit: Callable[[str], None] | None = None
        self._ready_timeout = ready_timeout
        self._closing = False
        self._ready = threading.Event()  # set on ready, an error, or EOF before either
        self._failure: str | None = None
        # The lifeline: the config and the listening socket go this way (SEQPACKET keeps
        # the config one message); EOF on it ends the child.
        self._lifeline, child_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self._child: subprocess.Popen[bytes] = subprocess.Popen(
                [sys.executable, "-c", _CHILD_MAIN, _SOUP_ROOT],
                stdin=child_end.fileno(),
                stdout=subprocess.PIPE,
            )
        except OSError as exc:
            self._lifeline.close()
            raise BridgeError(
                f"cannot start the TLS bridge process ({sys.executable}): {exc}"
            ) from exc
        finally:
            child_end.close()
        assert self._child.stdout is not None
        self._stdout: IO[bytes] = self._child.stdout
        self._reader = threading.Thread(
            target=self._read_reports, name="soup-bridge-reports", daemon=True
        )
        self._reader.start()

    def serve(
        self,
        listen_sock: socket.socket,
        own_pem: tuple[bytes, bytes],
        trusted_pem: bytes,
        backend_path: str,
        *,
        on_exit: Callable[[str], None] | None = None,
    ) -> None:
        """Hand the child ``listen_sock`` (a copy: the caller still owns it) and the TLS
        material: own certificate and key (PEM), the trusted PEM, the grpcio socket."""
        self._on_exit = on_exit
        config = {
            "cert_pem": own_pem[0].decode("ascii"),
            "key_pem": own_pem[1].decode("ascii"),
            "trusted_pem": trusted_pem.decode("ascii"),
            "backend_path": backend_path,
            "log_level": self.log.getEffectiveLevel(),
        }
        try:
            socket.send_fds(self._lifeline, [json.dumps(config).encode()], [listen_sock.fileno()])
        except OSError as exc:  # it died already; start() says how
            self.log.debug("soup bridge: config not sent to the bridge process: %s", exc)

    def discard(self) -> None:
        """Not needed after all: the child ends at once (:meth:`close` reaps it)."""
        self._closing = True
        self._lifeline.close()

    @property
    def pid(self) -> int:
        return self._child.pid

    def start(self) -> None:
        """Wait (bounded) until the child accepts; its reports are read by a thread."""
        if not self._ready.wait(self._ready_timeout):
            self.close()
            raise BridgeError(
                f"the TLS bridge process (pid {self.pid}) was not ready within "
                f"{self._ready_timeout:g} s"
            )
        if self._failure is not None:
            self.close()
            raise BridgeError(f"the TLS bridge process failed: {self._failure}")

    def close(self) -> None:
        """Close the child's lifeline and wait for it (bounded; then it is killed)."""
        if self._stdout.closed:
            return
        self._closing = True
        self._lifeline.close()
        try:
            self._child.wait(JOIN_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.log.warning(
                "soup bridge: the bridge process (pid %d) did not stop within %g s; killed",
                self.pid,
                JOIN_TIMEOUT,
            )
            self._child.kill()
            self._child.wait(JOIN_TIMEOUT)
        self._reader.join(JOIN_TIMEOUT)  # the child's last words: its last TLS error
        self._stdout.close()

    def _read_reports(self) -> None:
        while (message := _read_message(self._stdout)) is not None:
            if not self._ready.is_set() and (_READY in message or _ERROR in message):
                self._failure = message.get(_ERROR)
                self._ready.set()
            self._handle(message)
        if not self._ready.is_set():
            self._failure = self._exit_description()
            self._ready.set()
        elif not self._closing and self._failure is None:
            reason = f"the TLS bridge process ended: {self._exit_description()}"
            self.log.error("soup bridge: %s; its connections are refused from now on", reason)
            if self._on_exit is not None:
                self._on_exit(reason)

    def _handle(self, message: dict[str, Any]) -> None:
        if _LOG in message:
            level, text = message[_LOG]
            self.log.log(int(level), "%s", text)
        if _LAST_ERROR in message:
            self.last_error = message[_LAST_ERROR]

    def _exit_description(self) -> str:
        try:
            code = self._child.wait(JOIN_TIMEOUT)
        except subprocess.TimeoutExpired:
            return "its output ended while it still runs"
        if code < 0:
            return f"killed by signal {signal.Signals(-code).name}"
        return f"exit code {code} (its stderr is the plugin's)"


def _read_message(stream: IO[bytes]) -> dict[str, Any] | None:
    """One JSON line of the child's; None at EOF. A line that is not ours is an error."""
    line = stream.readline()
    if not line:
        return None
    try:
        message = json.loads(line)
    except ValueError:
        return {_ERROR: f"unexpected output: {line[:200]!r}"}
    return message if isinstance(message, dict) else {_ERROR: f"unexpected output: {line!r}"}


# --------------------------------------------------------------------------------------
# The child


class _Reporter(logging.Handler):
    """Writes the child's messages to the plugin as JSON lines (records as ``log``)."""

    def __init__(self, stream: IO[bytes]) -> None:
        super().__init__()
        self._stream = stream
        self._write_lock = threading.Lock()

    def send(self, message: dict[str, Any]) -> None:
        data = json.dumps(message).encode() + b"\n"
        with self._write_lock, contextlib.suppress(OSError):  # the plugin is gone
            self._stream.write(data)
            self._stream.flush()

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if record.exc_info:
            text += "\n" + logging.Formatter().formatException(record.exc_info)
        self.send({_LOG: [record.levelno, text]})


def _serve(
    config: dict[str, Any], listen_fd: int, lifeline: socket.socket, reporter: _Reporter
) -> int:
    log = logging.getLogger("soup.bridge")
    log.setLevel(int(config["log_level"]))
    log.addHandler(reporter)
    log.propagate = False
    listen_sock = socket.socket(fileno=listen_fd)
    own_pem = (config["cert_pem"].encode(), config["key_pem"].encode())
    context = tls.server_ssl_context_pem(own_pem, config["trusted_pem"].encode())
    listener = TLSListenerBridge(listen_sock, context, config["backend_path"], logger=log)
    try:
        listener.start()
    except BridgeError as exc:
        listener.close()
        reporter.send({_ERROR: str(exc)})
        return 1
    reporter.send({_READY: True})
    while lifeline.recv(1):  # nothing more is sent on it: this waits for its EOF
        pass
    listener.close()
    reporter.send({_LAST_ERROR: listener.last_error})
    return 0


def main() -> int:
    # The plugin decides when this ends (EOF on the lifeline): a Ctrl-C or a SIGTERM sent
    # to the whole process group must not cut connections while the plugin drains them.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    reporter = _Reporter(os.fdopen(os.dup(sys.stdout.fileno()), "wb"))
    lifeline = socket.socket(fileno=os.dup(sys.stdin.fileno()))
    try:
        data, fds, _, _ = socket.recv_fds(lifeline, _MAX_CONFIG, 1)
        if not data:
            return 0  # discarded before it was needed
        if len(fds) != 1:
            raise ValueError(f"expected the listening socket with the config, got {len(fds)} fds")
        return _serve(json.loads(data), fds[0], lifeline, reporter)
    except Exception as exc:  # whatever stops it is the plugin's error to report
        reporter.send({_ERROR: f"{type(exc).__name__}: {exc}"})
        return 1


if __name__ == "__main__":
    sys.exit(main())
