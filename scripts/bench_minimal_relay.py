"""The least a Python relay can be, for the bench's reference rows (no TLS, no limits).

A listening unix socket; each accepted connection gets a connection to the backend and
two daemon threads, one blocking ``recv``/``sendall`` loop each way, the half-close
passed on; both sockets are closed when both ways have ended. Any Python plugin or host that talks to a P-521 go-plugin peer needs such a
hop (grpcio cannot verify P-521), so its cost bounds soup's OpenSSL bridge from below.
Benchmark use only: the threads end with their connection or the process.
"""

from __future__ import annotations

import contextlib
import socket
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
