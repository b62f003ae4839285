"""The least a Python relay can be, for the bench's reference rows (no TLS, no limits).

A listening unix socket; each accepted connection gets a connection to the backend and
two daemon threads, one blocking ``recv``/``sendall`` loop each way, the half-close
passed on; both sockets are closed when both ways have ended. Any Python plugin or host
that talks to a P-521 go-plugin peer needs such a hop (grpcio cannot verify P-521), so
its cost bounds soup's OpenSSL bridge from below. In-process (:func:`start`, as soup's
host-side bridge runs) or in a process of its own (:func:`start_process`, as soup's
plugin-side bridge runs). Benchmark use only: the threads end with their connection or
the process; the process ends when its parent closes its stdin (or is gone).
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import threading

CHUNK = 64 * 1024


def _pump(source: socket.socket, target: socket.socket) -> None:
    """Copy one direction until its end, then pass the half-close on."""
    with contextlib.suppress(OSError):
        while data := source.recv(CHUNK):
            target.sendall(data)
    with contextlib.suppress(OSError):
        target.shutdown(socket.SHUT_WR)


def _relay(conn: socket.socket, family: int, backend: str | tuple[str, int]) -> None:
    """One connection: the backend's answer one way in a thread, the other way here."""
    with conn:
        back = socket.socket(family, socket.SOCK_STREAM)
        try:
            back.connect(backend)
        except OSError:
            back.close()
            return  # the host sees its connection close
        with back:
            answers = threading.Thread(target=_pump, args=(back, conn), daemon=True)
            answers.start()
            _pump(conn, back)
            answers.join()


def start(listen_path: str, family: int, backend: str | tuple[str, int]) -> None:
    """Listen on ``listen_path``; relay every connection to ``backend`` (of ``family``)."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(listen_path)
    listener.listen(64)

    def accept() -> None:
        while True:
            conn, _ = listener.accept()
            threading.Thread(target=_relay, args=(conn, family, backend), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()


def start_process(listen_path: str, backend_path: str) -> subprocess.Popen[bytes]:
    """:func:`start` in a child process (unix sockets both sides), once it listens."""
    child = subprocess.Popen(
        [sys.executable, __file__, listen_path, backend_path],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert child.stdout is not None
    if child.stdout.readline() != b"listening\n":
        child.kill()
        raise RuntimeError(f"the minimal relay process did not start (exit {child.wait()})")
    return child


if __name__ == "__main__":
    start(sys.argv[1], socket.AF_UNIX, sys.argv[2])
    sys.stdout.write("listening\n")
    sys.stdout.flush()
    sys.stdin.buffer.read()  # the lifeline: EOF when the parent closes it or is gone
