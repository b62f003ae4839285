"""docs/tls-interop.md's grpcio x grpcio table, measured: every server key x client key.

Each cell is a grpcio server (mutual TLS required, trusting only the client's
certificate) and a grpcio client (trusting only the server's) making one call over a
unix socket. The table in the document must be what this measures on the grpcio line
under test, and it must agree with ``soup.tls.GRPCIO_VERIFIABLE``, the backend choice
built on it. On a mismatch the failure shows the measured table to paste.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest

from soup import certs, tls

DOC = Path(__file__).resolve().parents[2] / "docs" / "tls-interop.md"
TABLE = re.compile(
    r"<!-- measured by python/tests/test_tls_interop_doc.py -->\n(.*?)\n<!-- end -->", re.S
)
NAMES = {
    "rsa-2048": "RSA-2048", "rsa-4096": "RSA-4096", "ec-p256": "P-256",
    "ec-p384": "P-384", "ec-p521": "P-521", "ed25519": "Ed25519",
}  # fmt: skip
CALL_TIMEOUT_S = 10.0
ECHO = "/interop.Echo/Echo"


def render(cells: dict[tuple[str, str], bool]) -> str:
    """The markdown table: rows are server keys, columns client keys (pure)."""
    keys = certs.KEY_TYPES
    lines = [
        "| server \\ client | " + " | ".join(NAMES[k] for k in keys) + " |",
        "|---" * (len(keys) + 1) + "|",
    ]
    for server in keys:
        marks = ["ok" if cells[server, client] else "fail" for client in keys]
        lines.append(f"| {NAMES[server]} | " + " | ".join(marks) + " |")
    return "\n".join(lines)


def _echo_server(own: certs.CertKey, trusted: certs.CertKey, path: str) -> grpc.Server:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    echo = grpc.unary_unary_rpc_method_handler(lambda request, _context: request)
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("interop.Echo", {"Echo": echo}),)
    )
    creds = grpc.ssl_server_credentials(
        [(own.key_pem, own.cert_pem)], root_certificates=trusted.cert_pem, require_client_auth=True
    )
    assert server.add_secure_port(f"unix:{path}", creds)
    server.start()
    return server


def handshake_works(server_cert: certs.CertKey, client_cert: certs.CertKey, path: str) -> bool:
    """One call from a grpcio client to a grpcio server over mutual TLS 1.3."""
    server = _echo_server(server_cert, client_cert, path)
    creds = grpc.ssl_channel_credentials(
        root_certificates=server_cert.cert_pem,
        private_key=client_cert.key_pem,
        certificate_chain=client_cert.cert_pem,
    )
    options = [("grpc.ssl_target_name_override", tls.SERVER_NAME)]
    try:
        with grpc.secure_channel(f"unix:{path}", creds, options) as channel:
            try:
                answer = channel.unary_unary(ECHO)(b"ping", timeout=CALL_TIMEOUT_S)
            except grpc.RpcError as exc:
                # A handshake refused by either side; anything else is no measurement.
                if exc.code() != grpc.StatusCode.UNAVAILABLE:
                    pytest.fail(f"not a refused handshake: {exc}")
                return False
            return bool(answer == b"ping")
    finally:
        server.stop(None).wait(CALL_TIMEOUT_S)


@pytest.fixture(scope="module")
def measured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[tuple[str, str], bool]]:
    directory = Path("/tmp") / tmp_path_factory.mktemp("i").name  # short: a socket path
    directory.mkdir(mode=0o700)
    own = {key: certs.self_signed(key) for key in certs.KEY_TYPES}  # one per key type
    try:
        yield {
            (server, client): handshake_works(
                own[server], own[client], str(directory / f"{server}-{client}.sock")
            )
            for server in certs.KEY_TYPES
            for client in certs.KEY_TYPES
        }
    finally:
        for sock in directory.iterdir():
            sock.unlink()
        directory.rmdir()


def test_the_documented_table_is_what_grpcio_does(measured: dict[tuple[str, str], bool]) -> None:
    found = TABLE.search(DOC.read_text())
    assert found is not None, f"no measured table in {DOC}"
    table = render(measured)
    assert found.group(1) == table, f"{DOC.name} is stale; measured here:\n{table}"


def test_the_backend_choice_agrees(measured: dict[tuple[str, str], bool]) -> None:
    # grpcio works exactly when both peers' keys are ones it can verify.
    for (server, client), works in measured.items():
        both = tls.is_grpcio_verifiable(server) and tls.is_grpcio_verifiable(client)
        assert works == both, (server, client)
