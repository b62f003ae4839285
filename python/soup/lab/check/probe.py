"""The probe plugin ``soup check host`` gives a host under test: ``python -m soup.lab.check.probe DIR``.

DIR holds ``config.json`` (variant, the versions it supports, the cookie to expect) and
gets ``events.jsonl``: what the host did, one JSON object a line, written as it happens
(the environment it was started with, every gRPC method the host called, TLS
connections the bridge refused). Variants:

  good            a correct go-plugin plugin (AutoMTLS when the host sends
                  PLUGIN_CLIENT_CERT, plaintext otherwise, as go-plugin does) that answers
                  every method of the host's own services with an empty message
  cert-mismatch   serves one certificate and puts another in field 6
  plaintext       serves plaintext and no certificate although the host sent one
  malformed-line  prints a line that is not a handshake line
  core-version    core protocol version 2 in field 1, correct otherwise
  app-version     an app version the host did not offer in field 2, correct otherwise

It listens only on unix sockets in a private directory and exits on Shutdown, when its
host goes away, or after LIFETIME_S.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from soup import bridge, certs, handshake, pb, tls

LIFETIME_S = 60
PROBE_KEY_TYPE = "ec-p256"  # verifiable by every host, grpcio's included
STDOUT_MARKER = b"soup check probe: written to stdout after the handshake\n"
EVENTS = "events.jsonl"
CONFIG = "config.json"
PRIVATE_PREFIX = "soup-probe-"  # the sockets' directory, removed by the checker if we are killed
VARIANTS = ("good", "cert-mismatch", "plaintext", "malformed-line", "core-version", "app-version")


class Recorder:
    """Appends events to DIR/events.jsonl, one line each, flushed as they happen."""

    def __init__(self, directory: Path) -> None:
        self._file = (directory / EVENTS).open("a", encoding="utf-8")
        self._lock = threading.Lock()
        self.tls_versions: Callable[[], list[str]] = list  # the TLS listener's, once there is one

    def __call__(self, event: str, **data: Any) -> None:
        with self._lock:
            self._file.write(json.dumps({"event": event, "t": time.monotonic(), **data}) + "\n")
            self._file.flush()


def read_events(directory: Path) -> list[dict[str, Any]]:
    path = directory / EVENTS
    if not path.exists():
        return []
    events = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            events.append(json.loads(line))
        except ValueError:
            continue  # a line cut short by a kill
    return events


class _Recording(grpc.ServerInterceptor):  # type: ignore[type-arg]
    def __init__(self, record: Recorder) -> None:
        self._record = record

    def intercept_service(self, continuation: Callable[[Any], Any], details: Any) -> Any:
        # The TLS connections so far go with every call: a host may SIGKILL the probe next.
        self._record("rpc", method=details.method, tls=self._record.tls_versions())
        return continuation(details)


class _AnyMethod(grpc.GenericRpcHandler):  # type: ignore[type-arg]
    """Answers every other unary method with an empty message (valid for any type)."""

    def service(self, details: Any) -> Any:
        return grpc.unary_unary_rpc_method_handler(lambda request, context: b"")


class _Controller(pb.grpc_controller_pb2_grpc.GRPCControllerServicer):
    def __init__(self, done: threading.Event) -> None:
        self._done = done

    def Shutdown(self, request: Any, context: Any) -> Any:
        self._done.set()
        return pb.grpc_controller_pb2.Empty()


class _Stdio(pb.grpc_stdio_pb2_grpc.GRPCStdioServicer):
    def __init__(self, done: threading.Event) -> None:
        self._done = done

    def StreamStdio(self, request: Any, context: Any) -> Iterator[Any]:
        yield pb.grpc_stdio_pb2.StdioData(
            channel=pb.grpc_stdio_pb2.StdioData.STDOUT, data=STDOUT_MARKER
        )
        while not self._done.wait(0.1) and context.is_active():
            pass


class _Broker(pb.grpc_broker_pb2_grpc.GRPCBrokerServicer):
    def StartStream(self, request_iterator: Iterator[Any], context: Any) -> Iterator[Any]:
        for _ in request_iterator:
            pass
        return
        yield


def _grpc_server(record: Recorder, done: threading.Event, path: str) -> grpc.Server:
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=8), interceptors=[_Recording(record)]
    )
    status = health.HealthServicer()
    status.set("plugin", health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(status, server)
    pb.grpc_controller_pb2_grpc.add_GRPCControllerServicer_to_server(_Controller(done), server)
    pb.grpc_stdio_pb2_grpc.add_GRPCStdioServicer_to_server(_Stdio(done), server)
    pb.grpc_broker_pb2_grpc.add_GRPCBrokerServicer_to_server(_Broker(), server)
    server.add_generic_rpc_handlers((_AnyMethod(),))
    server.add_insecure_port(f"unix:{path}")
    server.start()
    return server


def _line(core: int, app: int, address: str, cert_der: bytes | None) -> bytes:
    return handshake.format_line(
        handshake.Handshake(core, app, "unix", address, "grpc", server_cert_der=cert_der)
    )


def _watch_bridge(
    listener: bridge.TLSListenerBridge, record: Recorder, done: threading.Event
) -> None:
    seen: str | None = None
    accepted = 0
    while not done.wait(0.05):
        error = listener.last_error
        if error and error != seen:
            record("tls-refused", reason=error)
            seen = error
        versions = listener.tls_versions
        if len(versions) > accepted:  # as it happens: a host may SIGKILL the probe
            record("tls", versions=versions[accepted:])
            accepted = len(versions)
        if os.getppid() == 1:  # the host is gone
            record("host-gone")
            done.set()


def _serve(config: dict[str, Any], record: Recorder, directory: Path) -> None:
    variant = config["variant"]
    versions = tuple(config["versions"])
    offered = os.environ.get(handshake.ENV_PROTOCOL_VERSIONS, "")
    app = handshake.negotiate_version(offered, versions)
    private = bridge.private_socket_dir(PRIVATE_PREFIX)
    record("private", path=str(private))  # a host may SIGKILL us: the checker removes it
    done = threading.Event()
    server = _grpc_server(record, done, str(private / "grpc.sock"))
    client_pem = os.environ.get(handshake.ENV_CLIENT_CERT, "").encode()
    listener = None
    try:
        core = 2 if variant == "core-version" else handshake.CORE_PROTOCOL_VERSION
        if variant == "app-version":
            parsed = [int(v) for v in offered.split(",") if v.strip().isdigit()]
            app = max([*parsed, *versions]) + 1000
        if variant == "malformed-line":
            sys.stdout.buffer.write(b"soup check probe: this is not a handshake line\n")
        elif not client_pem or variant == "plaintext":
            sys.stdout.buffer.write(_line(core, app, str(private / "grpc.sock"), None))
        else:
            own = certs.self_signed(PROBE_KEY_TYPE)
            shown = certs.self_signed(PROBE_KEY_TYPE) if variant == "cert-mismatch" else own
            listen = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            listen.bind(str(private / "plugin.sock"))
            listen.listen(64)
            listener = bridge.TLSListenerBridge(
                listen, tls.server_ssl_context(own, client_pem), str(private / "grpc.sock")
            )
            listener.start()
            record.tls_versions = lambda: listener.tls_versions if listener else []
            threading.Thread(
                target=_watch_bridge, args=(listener, record, done), daemon=True
            ).start()
            sys.stdout.buffer.write(_line(core, app, str(private / "plugin.sock"), shown.cert_der))
        sys.stdout.flush()
        record("line", variant=variant, app=app, core=core)
        done.wait(LIFETIME_S)
        record("shutdown" if os.getppid() != 1 else "host-gone")
    finally:
        if listener is not None:
            listener.close()
        server.stop(0.5)
        shutil.rmtree(private, ignore_errors=True)


def main(argv: list[str]) -> int:
    directory = Path(argv[1])
    config = json.loads((directory / CONFIG).read_text(encoding="utf-8"))
    record = Recorder(directory)
    watched = [handshake.ENV_PROTOCOL_VERSIONS, config["cookie_key"], handshake.ENV_CLIENT_CERT]
    env = {k: v for k, v in os.environ.items() if k in watched or k.startswith("PLUGIN_")}
    record("start", pid=os.getpid(), env=env)
    signal.signal(signal.SIGALRM, lambda *_: os._exit(3))
    signal.alarm(LIFETIME_S + 5)  # never outlive a host that forgot it by much
    if os.environ.get(config["cookie_key"]) != config["cookie_value"]:
        sys.stderr.write(handshake.NOT_A_PLUGIN_MESSAGE + "\n")
        return 1
    _serve(config, record, directory)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
