"""CPU cost of the OpenSSL bridge per relayed round trip, in one process.

A client writes a small message through a TLSDialerBridge -> TLSListenerBridge ->
echo backend chain and reads the echo back, --count times. Reported: wall and CPU
time (user+sys of this process: both bridges, the echo and the client) per round
trip, and the system calls per round trip when ``strace`` is given. CPU time per
round trip hardly depends on how busy the machine is, so it compares bridge
versions (e.g. ``PYTHONPATH=<old checkout>/python``) even on a loaded machine.
Only the public bridge API is used. Benchmark use only.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import socket
import ssl
import sys
import tempfile
import threading
import time
from pathlib import Path

from soup import bridge, certs


def _contexts(tmp: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    server, client = certs.self_signed("ec-p256"), certs.self_signed("ec-p256")
    files = {}
    for name, pair in (("server", server), ("client", client)):
        cert, key = tmp / f"{name}.crt", tmp / f"{name}.key"
        cert.write_bytes(pair.cert_pem)
        key.write_bytes(pair.key_pem)
        files[name] = (cert, key)
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(*files["server"])
    server_ctx.load_verify_locations(cadata=client.cert_pem.decode())
    server_ctx.verify_mode = ssl.CERT_REQUIRED
    client_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client_ctx.load_cert_chain(*files["client"])
    client_ctx.load_verify_locations(cadata=server.cert_pem.decode())
    return server_ctx, client_ctx


def _echo(listen: socket.socket) -> None:
    conn, _ = listen.accept()
    with conn:
        while data := conn.recv(65536):
            conn.sendall(data)


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure(count: int, size: int) -> dict[str, float]:
    tmp = Path(tempfile.mkdtemp(prefix="soup-bench-bridge-"))
    backend_dir = bridge.private_socket_dir()
    try:
        server_ctx, client_ctx = _contexts(tmp)
        backend = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        backend_path = str(backend_dir / "echo.sock")
        backend.bind(backend_path)
        backend.listen(1)
        threading.Thread(target=_echo, args=(backend,), daemon=True).start()
        front = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        front_path = str(tmp / "front.sock")
        front.bind(front_path)
        front.listen(8)
        listener = bridge.TLSListenerBridge(front, server_ctx, backend_path)
        dialer = bridge.TLSDialerBridge("unix", front_path, client_ctx)
        listener.start()
        target = dialer.start().removeprefix("unix:")
        dialer.first_handshake(10)
        message = b"x" * size
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
            client.settimeout(10)
            client.connect(target)
            for _ in range(50):  # warm-up
                client.sendall(message)
                _read_exactly(client, size)
            wall0, cpu0 = time.perf_counter(), _cpu()
            for _ in range(count):
                client.sendall(message)
                _read_exactly(client, size)
            wall, cpu = time.perf_counter() - wall0, _cpu() - cpu0
        dialer.close()
        listener.close()
        backend.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(backend_dir, ignore_errors=True)
    return {
        "count": count,
        "size": size,
        "wall_us_per_round_trip": round(wall / count * 1e6, 1),
        "cpu_us_per_round_trip": round(cpu / count * 1e6, 1),
    }


def _read_exactly(sock: socket.socket, size: int) -> None:
    got = 0
    while got < size:
        chunk = sock.recv(size - got)
        if not chunk:
            raise ConnectionError("the chain closed the connection")
        got += len(chunk)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--count", type=int, default=5000)
    parser.add_argument("--size", type=int, default=100, help="message bytes (100)")
    args = parser.parse_args()
    sys.stdout.write(json.dumps(measure(args.count, args.size)) + "\n")


if __name__ == "__main__":
    main()
