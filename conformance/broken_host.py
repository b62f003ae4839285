"""A go-plugin host with one deliberate fault, to prove each ``soup check host`` check can fail.

``python broken_host.py FAULT PLUGIN`` (``none`` for no fault). Without a fault it is a
correct host of app version 1 (the checker's own host, soup.lab.check.peer): it starts PLUGIN
with go-plugin's example cookie, PLUGIN_PROTOCOL_VERSIONS and AutoMTLS, parses the line as
go-plugin does, reads GRPCStdio, makes one health call, calls Shutdown and exits 0; it
exits 1 on any refusal. Each fault in FAULTS breaks one of those rules; check_fakes.toml
says which checks must then fail.
"""

from __future__ import annotations

import contextlib
import ssl
import sys
import threading
from collections.abc import Iterator

import grpc
from cryptography.hazmat.primitives.serialization import Encoding

from soup import certs, handshake, pb, tls
from soup.lab.check import peer

FAULTS = {
    "none": "no fault: every check passes",
    "no-versions": "starts the plugin without PLUGIN_PROTOCOL_VERSIONS",
    "plaintext-host": "sends no PLUGIN_CLIENT_CERT (no AutoMTLS)",
    "trusts-any-cert": "trusts whatever certificate the plugin serves, not field 6",
    "plaintext-fallback": "falls back to plaintext when field 6 is empty",
    "waits-for-valid-line": "skips lines it cannot parse, waiting for a valid one",
    "ignores-core-version": "accepts any core protocol version",
    "ignores-app-version": "accepts any app protocol version",
    "kills-without-shutdown": "kills the plugin without calling Shutdown",
    "no-stdio": "never opens GRPCStdio",
}
CONFIG = handshake.HandshakeConfig("BASIC_PLUGIN", "hello", (1,))
START_TIMEOUT_S = 10.0


class Refused(Exception):
    """The host refuses the plugin (exit 1 with the reason)."""


def _env(fault: str, own: certs.CertKey) -> dict[str, str]:
    pem = None if fault == "plaintext-host" else own.cert_pem
    given: dict[str, str | None] = {**handshake.host_env(CONFIG, client_cert_pem=pem)}
    if fault == "no-versions":
        given[handshake.ENV_PROTOCOL_VERSIONS] = None
    return peer.without_go_plugin_vars(given, cookie_key=CONFIG.cookie_key)


def _next_line(plugin: peer.Plugin) -> bool:
    """Take the next stdout line as the handshake line (the waits-for-valid-line fault)."""
    if not peer.wait_until(lambda: b"\n" in plugin.stdout_rest or not plugin.alive(), 60):
        return False
    if b"\n" not in plugin.stdout_rest:
        return False
    first, _, rest = bytes(plugin.stdout_rest).partition(b"\n")
    plugin.stdout_rest[:] = rest
    plugin.line = first.decode("utf-8", "replace").strip()
    return True


def _parse(fault: str, plugin: peer.Plugin) -> handshake.Handshake:
    fields = plugin.line.split("|")
    versions = set(CONFIG.app_versions)
    if fault == "ignores-core-version" and fields[0].isdigit():
        fields[0] = str(handshake.CORE_PROTOCOL_VERSION)
    if fault == "ignores-app-version" and len(fields) > 1 and fields[1].isdigit():
        versions.add(int(fields[1]))
    while True:
        try:
            parsed = handshake.parse_line("|".join(fields), app_versions=versions)
        except handshake.HandshakeError as exc:
            if fault == "waits-for-valid-line" and _next_line(plugin):
                fields = plugin.line.split("|")
                continue
            raise Refused(str(exc)) from None
        plugin.network, plugin.address = parsed.network, parsed.address
        return parsed


def _served_cert_pem(plugin: peer.Plugin, own: certs.CertKey) -> bytes:
    """The certificate the plugin serves, taken unverified (the trusts-any-cert fault)."""
    context = tls.client_ssl_context(own, plugin.cert_pem())
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with (
        peer.connect(plugin.network, plugin.address, 5.0) as raw,
        context.wrap_socket(raw, server_hostname=tls.SERVER_NAME) as conn,
    ):
        der = conn.getpeercert(binary_form=True) or b""
    return certs.load_cert_der(der).public_bytes(Encoding.PEM)


@contextlib.contextmanager
def _channel(
    fault: str, plugin: peer.Plugin, parsed: handshake.Handshake, own: certs.CertKey
) -> Iterator[grpc.Channel]:
    if fault == "plaintext-host":
        with peer.channel(plugin, None) as chan:
            yield chan
        return
    if parsed.server_cert_der is None:
        if fault != "plaintext-fallback":
            raise Refused("the plugin sent no certificate although this host asked for TLS")
        with peer.channel(plugin, None) as chan:
            yield chan
        return
    trusted = _served_cert_pem(plugin, own) if fault == "trusts-any-cert" else None
    with peer.channel(plugin, own, trusted) as chan:
        yield chan


def _read_stdio(chan: grpc.Channel) -> grpc.RpcContext:
    stream = pb.grpc_stdio_pb2_grpc.GRPCStdioStub(chan).StreamStdio(pb.empty_pb2.Empty())

    def drain() -> None:
        with contextlib.suppress(grpc.RpcError):
            for _ in stream:
                pass

    threading.Thread(target=drain, daemon=True).start()
    return stream


def _use(fault: str, plugin: peer.Plugin, own: certs.CertKey) -> None:
    parsed = _parse(fault, plugin)
    with _channel(fault, plugin, parsed, own) as chan:
        stdio = None if fault == "no-stdio" else _read_stdio(chan)
        answer = peer.health(chan)
        if answer != "SERVING":
            raise Refused(f"health: {answer}")
        if fault != "kills-without-shutdown":
            peer.shutdown(chan)
            plugin.wait_exit(2.0)
        if stdio is not None:
            stdio.cancel()  # type: ignore[no-untyped-call]  # grpc-stubs leaves it untyped


def run(fault: str, plugin_path: str) -> int:
    own = certs.self_signed("ec-p521")
    try:
        plugin = peer.start_plugin([plugin_path], _env(fault, own), START_TIMEOUT_S)
    except (OSError, peer.StartError) as exc:
        sys.stderr.write(f"broken_host: cannot start the plugin: {exc}\n")
        return 1
    try:
        _use(fault, plugin, own)
    except Refused as exc:
        sys.stderr.write(f"broken_host: refused the plugin: {exc}\n")
        return 1
    finally:
        plugin.kill()
    print("broken_host: done")
    return 0


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[1] not in FAULTS:
        sys.stderr.write(f"usage: broken_host.py FAULT PLUGIN, FAULT one of: {', '.join(FAULTS)}\n")
        return 2
    return run(argv[1], argv[2])


if __name__ == "__main__":
    sys.exit(main(sys.argv))
