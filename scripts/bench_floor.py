"""The bench's floor: the least a Python go-plugin plugin on grpcio can be.

The KV service of proto/kv.proto over an in-memory dict, plaintext HTTP/2 on a unix
socket (in ``--dir``, which the bench removes), no TLS, no logging, no health, stdio
or broker services, and the go-plugin handshake line written by hand. Whatever a host
measures against it is the price of grpcio itself; soup's own plugin is compared with
it. GRPCController.Shutdown is served only so that the host's Kill ends it at once
(it is not on the per-call path). Benchmark use only.

``--auto-mtls`` adds the least AutoMTLS can cost a Python plugin: cryptography's x509
(a new EC P-256 key and a self-signed certificate, as go-plugin makes them), grpcio's
own TLS with the host's ``PLUGIN_CLIENT_CERT`` as the only root, and the certificate in
the handshake line. grpcio cannot verify go-plugin's usual P-521 host certificates, so
a host that calls it uses a P-256 key (the bench's cold start only reads the line).

Two options add, one at a time, what soup's plugin must pay and grpcio does not, so that
the bench can show what bounds soup's ratios to the floor:

* ``--durable``: every Put is stored by soup's own crash-safe file store
  (``soup.lab.kvstore``: temp file, fsync, rename, directory fsync), as soup's plugin must.
* ``--relay``: grpcio listens on a private socket and the host's connection reaches it
  through the least a Python relay can be (scripts/bench_minimal_relay.py), no TLS, in a
  process of its own as soup's plugin-side bridge.

``--workers`` sizes grpcio's thread pool: 32 for the floor itself; soup's plugin keeps 4
threads while calls move (soup.workers), so its reference rows take 4 too.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc

import bench_minimal_relay
from soup import pb
from soup.lab import demopb


class _Store(demopb.kv_pb2_grpc.KVServicer):
    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}

    def Put(self, request: Any, context: Any) -> Any:
        self.data[request.key] = request.value
        return demopb.kv_pb2.Empty()

    def Get(self, request: Any, context: Any) -> Any:
        return demopb.kv_pb2.GetResponse(value=self.data.get(request.key, b""))


class _DurableStore(demopb.kv_pb2_grpc.KVServicer):
    def __init__(self, directory: str) -> None:
        from soup.lab.kvstore import FileStore  # noqa: PLC0415 - only this mode loads it

        self.files = FileStore(Path(directory))

    def Put(self, request: Any, context: Any) -> Any:
        self.files.put(request.key, request.value)
        return demopb.kv_pb2.Empty()

    def Get(self, request: Any, context: Any) -> Any:
        return demopb.kv_pb2.GetResponse(value=self.files.get(request.key))


class _Controller(pb.grpc_controller_pb2_grpc.GRPCControllerServicer):
    def __init__(self, server: grpc.Server) -> None:
        self.server = server

    def Shutdown(self, request: Any, context: Any) -> Any:
        threading.Thread(target=self.server.stop, args=(0.5,)).start()
        return pb.empty_pb2.Empty()


def _auto_mtls(server: grpc.Server, address: str) -> str:
    """Serve ``address`` over mutual TLS; the handshake line's certificate field."""
    import base64  # noqa: PLC0415 - only this mode pays for its imports
    import datetime  # noqa: PLC0415

    from cryptography import x509  # noqa: PLC0415
    from cryptography.hazmat.primitives import hashes, serialization  # noqa: PLC0415
    from cryptography.hazmat.primitives.asymmetric import ec  # noqa: PLC0415
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID  # noqa: PLC0415

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    usages = [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    cert = (
        x509.CertificateBuilder(name, name, key.public_key(), x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(seconds=30))
        .not_valid_after(now + datetime.timedelta(hours=262980))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    credentials = grpc.ssl_server_credentials(
        [(key_pem, cert.public_bytes(serialization.Encoding.PEM))],
        root_certificates=os.environ["PLUGIN_CLIENT_CERT"].encode(),
        require_client_auth=True,
    )
    server.add_secure_port(address, credentials)
    der = cert.public_bytes(serialization.Encoding.DER)
    return base64.b64encode(der).decode().rstrip("=")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--dir", required=True, help="existing private directory for the socket")
    parser.add_argument(
        "--auto-mtls", action="store_true", help="serve mutual TLS with a new certificate"
    )
    parser.add_argument(
        "--durable", action="store_true", help="store every Put with soup's crash-safe file store"
    )
    parser.add_argument(
        "--relay", action="store_true", help="reach grpcio through a minimal Python relay"
    )
    parser.add_argument("--workers", type=int, default=32, help="grpcio's thread pool (32)")
    args = parser.parse_args()
    if args.relay and args.auto_mtls:
        parser.error("--relay relays plaintext: it does not go with --auto-mtls")
    if os.environ.get("BASIC_PLUGIN") != "hello":
        sys.exit("bench_floor: start me from a go-plugin host (magic cookie missing)")
    path = os.path.join(args.dir, f"floor-{os.getpid()}.sock")
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=args.workers))
    store = _DurableStore(os.path.join(args.dir, "kv")) if args.durable else _Store()
    demopb.kv_pb2_grpc.add_KVServicer_to_server(store, server)
    pb.grpc_controller_pb2_grpc.add_GRPCControllerServicer_to_server(_Controller(server), server)
    cert = ""
    if args.auto_mtls:
        if not os.environ.get("PLUGIN_CLIENT_CERT"):
            sys.exit("bench_floor: --auto-mtls needs the host's PLUGIN_CLIENT_CERT")
        cert = _auto_mtls(server, "unix:" + path)
    else:
        server.add_insecure_port("unix:" + path)
    server.start()
    relay = None
    if args.relay:
        public = os.path.join(args.dir, f"relay-{os.getpid()}.sock")
        relay = bench_minimal_relay.start_process(public, path)  # also ends if we are killed
        path = public
    sys.stdout.write(f"1|1|unix|{path}|grpc|{cert}\n")
    sys.stdout.flush()
    server.wait_for_termination()
    if relay is not None:
        assert relay.stdin is not None
        relay.stdin.close()
        relay.wait(5)


if __name__ == "__main__":
    main()
