"""GRPCStdio, both sides: a plugin's stdout/stderr after the handshake, streamed to its host.

Plugin side: ``serve`` swaps ``sys.stdout``/``sys.stderr`` for writers into a
:class:`StdioHub`, which ``/plugin.GRPCStdio/StreamStdio`` drains. Host side:
:class:`StdioReader` reads that stream and hands each chunk to a callback.
"""

from __future__ import annotations

import contextlib
import io
import logging
import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any, TextIO

import grpc

from soup import pb
from soup.streaming import rpc_active

__all__ = ["StdioHub", "StdioReader", "hub_writer"]

POLL = 0.2  # seconds: how often long-lived streams look at their stop flags
_QUEUE = 4096  # chunks buffered for GRPCStdio before dropping
CHANNELS = {1: "stdout", 2: "stderr"}
_WIRE_CHANNELS = {1: pb.grpc_stdio_pb2.StdioData.STDOUT, 2: pb.grpc_stdio_pb2.StdioData.STDERR}


class StdioHub(pb.grpc_stdio_pb2_grpc.GRPCStdioServicer):
    """Bytes written to the swapped sys.stdout/sys.stderr, waiting for StreamStdio."""

    def __init__(self) -> None:
        self._queue: queue.Queue[tuple[int, bytes] | None] = queue.Queue(maxsize=_QUEUE)
        self.closed = threading.Event()
        self.dropped = 0
        # Chunks queued but not yet taken by the transport: drain() waits for none, so
        # that a reply sent after it follows the output on the connection.
        self._progress = threading.Condition()
        self._unsent = 0

    def write(self, channel: int, data: bytes) -> None:
        if not data or self.closed.is_set():
            return
        with self._progress:
            try:
                self._queue.put_nowait((channel, data))
            except queue.Full:
                self.dropped += 1
                return
            self._unsent += 1

    def drain(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s until a stream has sent every chunk written so far.

        False: the wait ran out. A host opens StreamStdio as it connects, but a busy
        plugin may not have started that stream yet when Shutdown comes, so no reader is
        no reason to stop waiting.
        """
        with self._progress:
            return self._progress.wait_for(lambda: self._unsent == 0, timeout)

    def close(self) -> None:
        self.closed.set()
        with contextlib.suppress(queue.Full):
            self._queue.put_nowait(None)  # wake a waiting stream now

    # /plugin.GRPCStdio/StreamStdio
    def StreamStdio(self, request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        active = rpc_active(context)
        while active():
            # What was written before close() is still sent (close() queues its None
            # after it): a host stopping the plugin right after a call still gets the
            # call's output.
            try:
                item = self._queue.get(timeout=POLL)
            except queue.Empty:
                if self.closed.is_set():
                    return
                continue
            if item is None:
                with contextlib.suppress(queue.Full):
                    self._queue.put_nowait(None)  # for any other stream
                return
            channel, data = item
            yield pb.grpc_stdio_pb2.StdioData(channel=_WIRE_CHANNELS[channel], data=data)
            # resumed: grpc has sent the chunk
            with self._progress:
                self._unsent -= 1
                self._progress.notify_all()


class _HubRaw(io.RawIOBase):
    """A raw binary stream that forwards every write to a :class:`StdioHub` channel."""

    def __init__(self, hub: StdioHub, channel: int) -> None:
        super().__init__()
        self._hub = hub
        self._channel = channel

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        chunk = bytes(data)
        self._hub.write(self._channel, chunk)
        return len(chunk)


def hub_writer(hub: StdioHub, channel: int) -> TextIO:
    """A line-buffered text stream whose bytes go to ``hub`` on ``channel`` (1 or 2)."""
    return io.TextIOWrapper(
        io.BufferedWriter(_HubRaw(hub, channel)),
        encoding="utf-8",
        errors="backslashreplace",
        line_buffering=True,
        write_through=True,
    )


class StdioReader:
    """Reads the plugin's GRPCStdio stream in a daemon thread, best effort."""

    def __init__(
        self,
        channel: grpc.Channel,
        on_data: Callable[[str, bytes], None],
        log: logging.Logger,
    ) -> None:
        self._log = log
        stub = pb.grpc_stdio_pb2_grpc.GRPCStdioStub(channel)
        try:
            self._call = stub.StreamStdio(pb.empty_pb2.Empty())
        except grpc.RpcError as exc:
            log.debug("stdio stream unavailable", extra={"error": str(exc)})
            return
        self._on_data = on_data
        self.thread = threading.Thread(target=self._pump, name="soup-host-stdio", daemon=True)
        self.thread.start()

    def _pump(self) -> None:
        try:
            for data in self._call:
                self._on_data(CHANNELS.get(data.channel, "stderr"), bytes(data.data))
        except grpc.RpcError as exc:
            self._log.debug("stdio stream ended", extra={"error": str(exc.code())})
