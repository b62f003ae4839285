"""Diagnostic for the bench: `soup` with the OpenSSL bridge relaying *without* TLS.

Runs the soup command line (``python scripts/bench_relay.py rpc ...``) with every
``SSLContext.wrap_bio`` object replaced by a pass-through, on both sides: the bridges
keep their sockets, event loop, buffers and hops, but encrypt nothing (the wire carries
plaintext HTTP/2). Comparing it with the real openssl backend separates the cost of
the extra relay hop (a Python thread between grpcio and the socket, on both sides)
from the cost of the TLS work itself. The plugin's bridge process (soup.bridgeproc) is
started with the same pass-through. Never use it for anything but the benchmark.
"""

from __future__ import annotations

import ssl
import sys
from pathlib import Path
from typing import Any


class PassThrough:
    """Just enough of ``ssl.SSLObject`` for soup.bridge: bytes in = bytes out."""

    session = None

    def __init__(self, incoming: ssl.MemoryBIO, outgoing: ssl.MemoryBIO) -> None:
        self._in, self._out = incoming, outgoing

    def do_handshake(self) -> None:
        pass

    def read(self, size: int = 1024, buffer: Any = None) -> Any:
        data = self._in.read(size)
        if not data:
            if self._in.eof:
                return 0 if buffer is not None else b""
            raise ssl.SSLWantReadError("no data")
        if buffer is None:
            return data
        buffer[: len(data)] = data
        return len(data)

    def pending(self) -> int:
        return 0

    def write(self, data: Any) -> int:
        self._out.write(data)
        return len(data)

    def unwrap(self) -> None:
        pass

    def version(self) -> str:
        return "none (diagnostic relay)"

    def cipher(self) -> None:
        return None

    def selected_alpn_protocol(self) -> str:
        return "h2"

    def getpeercert(self, binary_form: bool = False) -> None:
        return None


def _wrap_bio(
    self: ssl.SSLContext, incoming: ssl.MemoryBIO, outgoing: ssl.MemoryBIO, **_: object
) -> PassThrough:
    return PassThrough(incoming, outgoing)


def pass_through() -> None:
    """Replace TLS by the pass-through in this process."""
    ssl.SSLContext.wrap_bio = _wrap_bio  # type: ignore[assignment,method-assign]


# The bridge process: the pass-through first, then soup's own child main.
_CHILD_MAIN = (
    f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); "
    "import bench_relay; bench_relay.pass_through(); "
)


if __name__ == "__main__":
    from soup import bridgeproc
    from soup.lab.cli import main

    pass_through()
    bridgeproc._CHILD_MAIN = _CHILD_MAIN + bridgeproc._CHILD_MAIN
    sys.argv[0] = "soup"
    sys.exit(main())
