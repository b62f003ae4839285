"""Unit tests for soup.tlspipe, the sans-IO TLS relay core: two pipes, no sockets.

A client pipe and a server pipe exchange ciphertext in memory; each test drives
them step by step and checks bytes, end-of-stream states and refusals.
"""

from __future__ import annotations

import os
import ssl
from pathlib import Path

import pytest
from test_bridge import client_context, pair, server_context

from soup.tlspipe import Flow, Phase, PipeStateError, TLSPipe


def shuttle(src: TLSPipe, dst: TLSPipe) -> int:
    """Move every ciphertext byte ``src`` has for the wire into ``dst``."""
    out = bytes(src.tls_to_send())
    src.tls_sent(len(out))
    if out:
        dst.receive_tls(out)
    return len(out)


def drain(pipe: TLSPipe) -> bytes:
    got = bytearray()
    while chunk := pipe.plain_to_send():
        got += chunk
        pipe.plain_sent(len(chunk))
    return bytes(got)


def connected(tmp_path: Path, max_version: ssl.TLSVersion | None = None) -> tuple[TLSPipe, TLSPipe]:
    client = TLSPipe(
        client_context(pair("ec-p256"), pair("ec-p521"), tmp_path, max_version),
        server_side=False,
        server_hostname="localhost",
    )
    server = TLSPipe(server_context(pair("ec-p521"), pair("ec-p256"), tmp_path), server_side=True)
    for _ in range(6):
        client.do_handshake()
        shuttle(client, server)
        server.do_handshake()
        shuttle(server, client)
    assert client.phase is Phase.OPEN
    assert server.phase is Phase.OPEN
    return client, server


def test_handshake_reports_what_was_negotiated(tmp_path: Path) -> None:
    client, server = connected(tmp_path)
    assert client.info is not None
    assert server.info is not None
    assert client.info.version == server.info.version == "TLSv1.3"
    assert client.info.peer_cert_der == pair("ec-p521").cert_der
    assert server.info.peer_cert_der == pair("ec-p256").cert_der
    drain(client)  # processes the server's session tickets
    assert client.has_ticket()


def test_bytes_both_ways_and_partial_writes(tmp_path: Path) -> None:
    client, server = connected(tmp_path)
    payload = os.urandom(300_000)
    client.send(memoryview(payload))
    ciphertext = client.tls_to_send()
    assert len(ciphertext) > len(payload)  # encrypted at once, records and all
    client.tls_sent(10)  # a short write: the rest is offered again, in order
    rest = bytes(client.tls_to_send())
    assert rest == bytes(ciphertext)[10:]
    server.receive_tls(bytes(ciphertext)[:10] + rest)
    client.tls_sent(len(rest))
    first = server.plain_to_send()
    assert 0 < len(first) <= 64 * 1024  # bounded chunks out of one reusable buffer
    server.plain_sent(5)
    assert bytes(server.plain_to_send()) == bytes(first)[5:]  # offered again until sent
    received = bytes(first[:5]) + drain(server)
    assert received == payload
    server.send(b"pong")
    shuttle(server, client)
    assert drain(client) == b"pong"


def test_half_close_each_direction_in_order(tmp_path: Path) -> None:
    client, server = connected(tmp_path)
    client.send(b"last words")
    client.send_eof()
    assert client.forward is Flow.NOTIFIED  # close_notify queued after the data
    assert not client.should_shut_tls  # ...but not yet written
    shuttle(client, server)
    assert client.should_shut_tls
    client.tls_shut()
    assert client.forward is Flow.ENDED
    assert drain(server) == b"last words"
    assert server.backward is Flow.ENDING
    assert server.should_shut_plain
    server.plain_shut()
    # The other direction still works after the half-close.
    server.send(b"answer")
    server.send_eof()
    shuttle(server, client)
    assert drain(client) == b"answer"
    assert client.should_shut_plain
    client.plain_shut()
    assert client.done
    server.tls_shut()
    assert server.done


def test_ragged_eof_ends_the_stream_like_close_notify(tmp_path: Path) -> None:
    client, server = connected(tmp_path)
    client.send(b"data")
    shuttle(client, server)
    server.receive_tls_eof()  # TCP FIN without close_notify
    assert drain(server) == b"data"
    assert server.backward is Flow.ENDING


def test_tampered_record_is_an_error(tmp_path: Path) -> None:
    client, server = connected(tmp_path)
    client.send(b"data")
    out = bytearray(client.tls_to_send())
    out[-1] ^= 1  # one bit of the authentication tag
    server.receive_tls(out)
    with pytest.raises(ssl.SSLError, match=r"BAD_RECORD_MAC"):
        drain(server)


def test_close_notify_waits_for_queued_records(tmp_path: Path) -> None:
    """Our EOF while the peer's records still wait: close_notify only once they are read."""
    client, server = connected(tmp_path)
    drain(client)
    payload = os.urandom(200_000)
    server.send(payload)
    shuttle(server, client)
    first = client.plain_to_send()
    got = bytearray(first)
    client.plain_sent(len(first))
    client.send_eof()
    got += drain(client)
    shuttle(client, server)
    assert bytes(got) == payload
    assert client.forward is Flow.NOTIFIED


def test_rejected_peer_raises_with_openssl_reason(tmp_path: Path) -> None:
    client = TLSPipe(
        client_context(pair("ec-p256"), pair("ec-p521/other"), tmp_path),
        server_side=False,
        server_hostname="localhost",
    )
    server = TLSPipe(server_context(pair("ec-p521"), pair("ec-p256"), tmp_path), server_side=True)
    client.do_handshake()
    shuttle(client, server)
    server.do_handshake()
    shuttle(server, client)
    with pytest.raises(ssl.SSLCertVerificationError, match="CERTIFICATE_VERIFY_FAILED"):
        client.do_handshake()
    assert client.tls_to_send()  # the alert for the server
    assert client.phase is Phase.HANDSHAKE


def test_transitions_are_checked(tmp_path: Path) -> None:
    client, _ = connected(tmp_path)
    with pytest.raises(PipeStateError, match="plain->TLS open -> ended"):
        client.tls_shut()
    with pytest.raises(PipeStateError, match="TLS->plain open -> ended"):
        client.plain_shut()
    client.close()
    assert client.phase is Phase.CLOSED
    assert not client.tls_to_send()
    client.close()  # idempotent
