"""GRPCStdio's plugin side: what the swapped stdout/stderr wrote reaches the stream."""

from __future__ import annotations

from soup import pb
from soup.stdio import StdioHub, hub_writer


class ActiveContext:
    """The part of ``grpc.ServicerContext`` StreamStdio uses: the host is still there."""

    def is_active(self) -> bool:
        return True


def test_writes_before_close_are_still_streamed() -> None:
    """A print just before Shutdown (the host's stream not yet drained) is sent, then
    the stream ends: closing must not drop what was queued."""
    hub = StdioHub()
    out, err = hub_writer(hub, 1), hub_writer(hub, 2)
    out.write("stdout line\n")
    err.write("stderr line\n")
    hub.close()
    sent = [(d.channel, d.data) for d in hub.StreamStdio(None, ActiveContext())]  # type: ignore[arg-type]
    data = pb.grpc_stdio_pb2.StdioData
    assert sent == [(data.STDOUT, b"stdout line\n"), (data.STDERR, b"stderr line\n")]


def test_writes_after_close_are_ignored() -> None:
    hub = StdioHub()
    hub.close()
    hub_writer(hub, 1).write("late\n")
    assert list(hub.StreamStdio(None, ActiveContext())) == []  # type: ignore[arg-type]
    assert hub.dropped == 0


def test_drain_waits_until_a_stream_has_sent_everything() -> None:
    """Shutdown's wait: drain is true only once a stream has been resumed after the last
    chunk (grpc sent it). Before any stream reads, it waits for one, up to its bound."""
    hub = StdioHub()
    assert hub.drain(0.0)  # nothing written
    hub_writer(hub, 1).write("one\n")
    assert not hub.drain(0.05)  # no stream yet
    stream = hub.StreamStdio(None, ActiveContext())  # type: ignore[arg-type]
    assert next(stream).data == b"one\n"  # taken from the queue, not yet sent
    assert not hub.drain(0.05)
    hub_writer(hub, 2).write("two\n")
    assert next(stream).data == b"two\n"  # resuming marks "one" sent; "two" is out
    assert not hub.drain(0.05)
    hub.close()
    assert list(stream) == []  # "two" sent, then the stream ends on close
    assert hub.drain(0.0)
