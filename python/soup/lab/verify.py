"""Both-ways mutual-TLS evidence for ``rpc client test``: did each side verify the other?

A test that only checks that RPCs work cannot tell mutual TLS from server-only TLS: a
plugin that never asks for the host's certificate passes it. So after the test's RPCs,
while the plugin still serves, the host opens extra TLS connections to the plugin's
address:

- ``no_client_cert``: presents no certificate. A plugin that requires one refuses; in
  TLS 1.3 it checks the client's certificate only after the client's handshake is done,
  so the refusal (an alert) arrives when the first bytes are read.
- ``foreign_client_cert``: presents a fresh self-signed certificate the plugin was never
  told about: a plugin that verifies the certificate (not just its presence) refuses.
- ``foreign_trust``: the host's own verifier, trusting a foreign certificate instead of
  the plugin's, must refuse the plugin (verification is on, not just configured).

Judging the probes is pure (:func:`judge`), and so is the verdict on the evidence
(:func:`problems`: ``client test`` fails without both-ways verification, and the matrix
runner applies the same rule to every host's result); the connections are
:func:`probe_plugin`. The wording (alert names, evidence) is the same in soup-go
(verify.go).
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from soup import certs, tls
from soup.connect import dial

if TYPE_CHECKING:
    from soup.host import Client

__all__ = [
    "H2_PREFACE",
    "HOST_DID_NOT_VERIFY",
    "PLUGIN_DID_NOT_VERIFY",
    "Probe",
    "alert_name",
    "client_context",
    "first_answer",
    "judge",
    "mutual_tls",
    "probe_plugin",
    "problems",
]

PROBE_TIMEOUT = 5.0
ALERT_WAIT = 1.0  # a refusing plugin alerts right after the handshake
# HTTP/2 client preface and an empty SETTINGS frame: a serving peer answers with its SETTINGS.
H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
_ALERT_PREFIXES = ("TLSV13_ALERT_", "TLSV1_ALERT_", "SSLV3_ALERT_")
PLUGIN_DID_NOT_VERIFY = "plugin did not verify the host's certificate"
HOST_DID_NOT_VERIFY = "host did not verify the plugin's certificate"


@dataclass(frozen=True)
class Probe:
    """One extra connection: was it refused, and how (alert or local verify error)."""

    name: str
    refused: bool
    detail: str


def alert_name(reason: str) -> str:
    """OpenSSL's reason code as the alert's name, e.g. ``certificate required``."""
    for prefix in _ALERT_PREFIXES:
        if reason.startswith(prefix):
            return "alert " + reason.removeprefix(prefix).lower().replace("_", " ")
    return reason.lower().replace("_", " ")


def client_context(
    own: certs.CertKey | None,
    trusted_pem: bytes,
    *,
    max_version: ssl.TLSVersion | None = None,
) -> ssl.SSLContext:
    """A host-side probe context; without ``own`` it presents no client certificate.

    ``max_version`` offers only protocol versions up to it (TLS 1.0/1.1 probes).
    """
    if own is not None:
        context = tls.client_ssl_context(own, trusted_pem)
    else:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_verify_locations(cadata=trusted_pem.decode("ascii"))
        context.set_alpn_protocols(["h2"])
    if max_version is not None:
        # Old protocol versions need the lowest security level to be offered at all.
        context.minimum_version = ssl.TLSVersion.TLSv1
        context.maximum_version = max_version
        context.set_ciphers("DEFAULT:@SECLEVEL=0")
    return context


def first_answer(
    conn: ssl.SSLSocket, alert_wait: float = ALERT_WAIT, timeout: float = PROBE_TIMEOUT
) -> bytes:
    """Read first (a refusing plugin's alert is already on its way), then send the preface.

    In TLS 1.3 the server judges the client certificate after the client's handshake is
    done, so a refusal shows up on the first read as the server's alert. Writing first can
    make the kernel drop that alert, and the refusal would look like a bare EOF.
    """
    conn.settimeout(alert_wait)
    try:
        return conn.recv(64)
    except TimeoutError:
        conn.settimeout(timeout)
        conn.sendall(H2_PREFACE)
        return conn.recv(64)


Dial = Callable[[float], socket.socket]
"""Opens one plain connection to the plugin within the timeout given."""


def _attempt(name: str, connect: Dial, context: ssl.SSLContext) -> Probe:
    """Handshake, send the HTTP/2 preface, read: served (not refused) or refused, and how."""
    try:
        with (
            connect(PROBE_TIMEOUT) as raw,
            context.wrap_socket(raw, server_hostname=tls.SERVER_NAME) as conn,
        ):
            data = first_answer(conn)
    except ssl.SSLCertVerificationError as exc:
        return Probe(name, True, f"refused by the host's verifier: {exc.verify_message}")
    except ssl.SSLError as exc:
        return Probe(name, True, f"refused: {alert_name(exc.reason or str(exc))}")
    except TimeoutError:
        return Probe(name, False, f"no answer within {PROBE_TIMEOUT:g} s (not refused)")
    except OSError as exc:
        return Probe(name, True, f"refused: connection closed ({exc.strerror or exc})")
    if not data:
        return Probe(name, True, "refused: connection closed without an alert")
    return Probe(name, False, f"served: the plugin answered HTTP/2 ({len(data)} bytes)")


def probe_plugin(connect: Dial, own: certs.CertKey, trusted_pem: bytes) -> list[Probe]:
    """The three extra connections (see the module doc), against a serving plugin."""
    foreign = certs.self_signed(own.key_type)
    return [
        _attempt("no_client_cert", connect, client_context(None, trusted_pem)),
        _attempt("foreign_client_cert", connect, client_context(foreign, trusted_pem)),
        _attempt("foreign_trust", connect, client_context(own, foreign.cert_pem)),
    ]


def judge(mode: str, probes: list[Probe], pinned_match: bool | None) -> dict[str, Any]:
    """The ``mutual_tls`` object of the result from the probes (pure).

    pinned_match: whether the plugin certificate on the test's connection is the one
    pinned from the handshake (auto mode), None where not applicable (manual: a CA).
    """
    if mode == "disabled":
        return {
            "plugin_verified_client": None,
            "host_verified_plugin": None,
            "plugin_evidence": "tls disabled: no certificates",
            "host_evidence": "tls disabled: no certificates",
            "probes": [],
        }
    by_name = {p.name: p for p in probes}
    client_side = [by_name[n] for n in ("no_client_cert", "foreign_client_cert") if n in by_name]
    plugin_ok = len(client_side) == 2 and all(p.refused for p in client_side)
    trust = by_name.get("foreign_trust")
    host_ok = bool(trust and trust.refused and "host's verifier" in trust.detail)
    host_text = [f"trusting a foreign certificate: {trust.detail if trust else 'not probed'}"]
    if pinned_match is not None:
        host_ok = host_ok and pinned_match
        host_text.append(
            "the plugin certificate on the connection is the one from the handshake"
            if pinned_match
            else "the plugin certificate on the connection is NOT the one from the handshake"
        )
    return {
        "plugin_verified_client": plugin_ok,
        "host_verified_plugin": host_ok,
        "plugin_evidence": "; ".join(f"{p.name}: {p.detail}" for p in client_side) or "not probed",
        "host_evidence": "; ".join(host_text),
        "probes": [asdict(p) for p in probes],
    }


def problems(mode: str, evidence: object) -> list[str]:
    """What is missing for both-ways verification in a ``mutual_tls`` object (empty: both
    sides verified, or TLS is disabled). A working RPC alone cannot tell mutual TLS from
    one-way TLS, so missing evidence is a problem too."""
    if mode == "disabled":
        return []
    if not isinstance(evidence, dict):
        return ["no mutual_tls evidence in the result (cannot tell mutual from one-way TLS)"]
    out = []
    if evidence.get("plugin_verified_client") is not True:
        out.append(f"{PLUGIN_DID_NOT_VERIFY}: {evidence.get('plugin_evidence')}")
    if evidence.get("host_verified_plugin") is not True:
        out.append(f"{HOST_DID_NOT_VERIFY}: {evidence.get('host_evidence')}")
    return out


def mutual_tls(client: Client) -> dict[str, Any]:
    """Evidence for a connected :class:`soup.host.Client` (while the plugin serves)."""
    mode = client.config.tls.mode
    info, own, trusted = client.handshake_info, client._own, client._trusted_pem
    if mode == "disabled" or info is None or own is None or trusted is None:
        return judge(mode, [], None)

    def connect(timeout: float) -> socket.socket:
        # Multiplexed: a stream of the host's session (a go-plugin plugin serves no other
        # connection), else a connection to the plugin's address.
        stream = client.open_stream(timeout)
        return stream if stream is not None else dial(info.network, info.address, timeout)

    probes = probe_plugin(connect, own, trusted)
    pinned = None
    if mode == "auto":
        pinned = certs.fingerprint(certs.load_cert_pem(trusted)) == client.tls.server_fingerprint
    return judge(mode, probes, pinned)
