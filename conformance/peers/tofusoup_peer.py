"""Adapter: TofuSoup 0.8.2 + pyvider-rpcplugin 0.5.5 (PyPI) as a matrix implementation.

Runs with the interpreter of their own venv (build/peers/tofusoup, made by `nox -s peers`;
they install a `soup` command of their own, so it is called by absolute path, never PATH).
- plugin role: `rpc server-start ...` becomes `soup rpc kv server --tls-mode auto|disabled
  --tls-key-type ec|rsa [--tls-curve C] --transport T` with KV_STORAGE_DIR;
- host role: `rpc client test --json ... --server CMD` drives `tofusoup.rpc.client.KVClient`
  (which wants a plugin *path*: a two-line wrapper script execs CMD) and writes the result
  JSON soup's hosts write, with the plugin-side mutual-TLS probes from soup.lab.verify.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import stat
import sys
import tempfile
import time
import types
from importlib.metadata import version as dist_version
from pathlib import Path
from typing import Any

import contract

VENV = contract.PEERS_BUILD / "tofusoup"
PEER_SOUP = VENV / "bin" / "soup"
IMPL = "tofusoup"
# key type -> (--tls-key-type, --tls-curve); TofuSoup names no RSA size.
KEYS = {
    "ec-p256": ("ec", "secp256r1"),
    "ec-p384": ("ec", "secp384r1"),
    "ec-p521": ("ec", "secp521r1"),
    "rsa-2048": ("rsa", ""),
}
SHUTDOWN_WAIT = 5.0


def version() -> str:
    return (
        f"tofusoup {dist_version('tofusoup')} "
        f"(pyvider-rpcplugin {dist_version('pyvider-rpcplugin')})"
    )


def serve(args: Any) -> None:
    contract.announce(IMPL, version())
    flags = ["--tls-mode", args.tls_mode]
    if args.tls_mode == "auto":
        key_type, curve = KEYS[args.key_type]
        flags += ["--tls-key-type", key_type] + (["--tls-curve", curve] if curve else [])
    env = {**os.environ, "KV_STORAGE_DIR": args.kv_dir}
    argv = [str(PEER_SOUP), "rpc", "kv", "server", *flags, "--transport", args.transport]
    contract.exec_plugin(argv, env)


def _wrapper(directory: Path, server: str, stderr_file: Path) -> Path:
    """KVClient takes a plugin path and appends its own flags: exec our command instead."""
    path = directory / "plugin"
    path.write_text(f"#!/bin/sh\nexec {server} 2>>'{stderr_file}'\n")
    path.chmod(stat.S_IRWXU)
    return path


def _pid_gone(pid: int, within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return True
        if state == "Z":
            return True
        time.sleep(0.05)
    return False


def _soup_without_init() -> None:
    """Make ``from soup import verify`` skip soup/__init__.py: that imports soup's generated
    KV stubs, whose proto package ``proto`` collides with TofuSoup's own in the process's one
    descriptor pool. verify, certs and tls need nothing else of soup."""
    if "soup" not in sys.modules:
        package = types.ModuleType("soup")
        package.__path__ = [str(contract.ROOT / "python" / "soup")]
        sys.modules["soup"] = package


def _tls_evidence(result: dict[str, Any], peer: Any, mode: str) -> None:
    """Key types, a probe handshake (grpcio hides its version), and the probes."""
    from cryptography.hazmat.primitives.serialization import (  # noqa: PLC0415
        Encoding,
        load_pem_private_key,
    )

    _soup_without_init()
    from soup import certs, connect, tls  # noqa: PLC0415
    from soup.lab import verify  # noqa: PLC0415

    cert = certs.load_cert_pem(peer.client_cert.encode())
    key = load_pem_private_key(peer.client_key_pem.encode(), None)
    own = certs.CertKey(cert=cert, key=key)  # type: ignore[arg-type]
    server_der = base64.b64decode(peer._server_cert + "=" * (-len(peer._server_cert) % 4))
    trusted = certs.load_cert_der(server_der).public_bytes(Encoding.PEM)
    network, address = peer._transport_name, peer._address
    context = tls.client_ssl_context(own, trusted)
    with (
        connect.dial(network, address, verify.PROBE_TIMEOUT) as raw,
        context.wrap_socket(raw, server_hostname=tls.SERVER_NAME) as conn,
    ):
        live = certs.load_cert_der(conn.getpeercert(binary_form=True) or b"")
        result["tls"] |= {"version": conn.version(), "version_source": "probe",
                          "alpn": conn.selected_alpn_protocol()}  # fmt: skip
    result["tls"] |= {
        "backend": "native", "client_key": own.key_type, "client_fingerprint": own.fingerprint,
        "server_key": certs.key_type_of(live), "server_fingerprint": certs.fingerprint(live),
    }  # fmt: skip
    probes = verify.probe_plugin(
        lambda timeout: connect.dial(network, address, timeout), own, trusted
    )
    result["mutual_tls"] = verify.judge(mode, probes, None) | contract.not_measured(
        "TofuSoup's KVClient verifies inside grpcio; no probe here can reach its verifier"
    )


async def _client_test(args: Any, result: dict[str, Any], work: Path) -> None:
    import grpc  # noqa: PLC0415
    from grpc_health.v1 import health_pb2, health_pb2_grpc  # noqa: PLC0415
    from tofusoup.rpc.client import KVClient  # noqa: PLC0415

    stderr_file = work / "plugin.stderr"
    key_type, curve = KEYS.get(args.key_type, ("ec", "secp256r1"))
    mode = "disabled" if args.tls_mode == "disabled" else "auto"
    kv = KVClient(str(_wrapper(work, args.server, stderr_file)), tls_mode=mode,
                  tls_key_type=key_type, tls_curve=curve or "secp256r1")  # fmt: skip
    loop = asyncio.get_running_loop()
    value = b"hello from soup " + os.urandom(4).hex().encode()
    try:
        started = time.perf_counter()
        try:
            await asyncio.wait_for(kv.start(), args.timeout)
            spawn_error = None
        except Exception as exc:
            spawn_error = f"{type(exc).__name__}: {exc}"
        peer = kv._client
        elapsed = f"{(time.perf_counter() - started) * 1000:.0f} ms"
        contract.step(result, "spawn", lambda: f"KVClient.start in {elapsed}")
        if spawn_error or peer is None or not kv.is_started:
            contract.step(result, "handshake", contract.failing(spawn_error or "not connected"))
        result["transport"], result["address"] = peer._transport_name, peer._address
        result["app_protocol_version"] = getattr(peer, "_protocol_version", None)
        contract.step(result, "handshake", lambda: f"{peer._transport_name} {peer._address}")
        await kv.put("soup-test-key", value)
        contract.step(result, "put", lambda: f"key=soup-test-key bytes={len(value)}")
        got = await kv.get("soup-test-key")

        def check_get() -> str:
            if got != value:
                raise contract.StepFailed(f"get returned other bytes: {got!r}")
            return f"key=soup-test-key bytes={len(got)} same bytes"

        contract.step(result, "get", check_get)
        missing = await kv.get("soup-missing-key")

        def check_missing() -> str:
            if missing is not None:
                raise contract.StepFailed(f"expected NOT_FOUND, got {missing!r}")
            return "key=soup-missing-key -> NOT_FOUND (KVClient.get returned None)"

        contract.step(result, "get_missing", check_missing)
        reply = await health_pb2_grpc.HealthStub(peer.grpc_channel).Check(
            health_pb2.HealthCheckRequest(service="plugin"), timeout=5
        )
        status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
        contract.step(result, "health", lambda: f"service=plugin {status}")
        if mode != "disabled":
            await loop.run_in_executor(None, _tls_evidence, result, peer, mode)
        else:
            _soup_without_init()
            from soup.lab import verify  # noqa: PLC0415

            result["mutual_tls"] = verify.judge("disabled", [], None)
        pid = peer._process.pid if peer._process else None
        await asyncio.wait_for(kv.close(), SHUTDOWN_WAIT)
        gone = pid is None or _pid_gone(pid, SHUTDOWN_WAIT)

        def check_shutdown() -> str:
            if not gone:
                raise contract.StepFailed(
                    f"plugin pid {pid} still running {SHUTDOWN_WAIT} s after close"
                )
            return "KVClient.close: plugin exited"

        contract.step(result, "shutdown", check_shutdown)
        result["ok"] = True
    except (contract.StepFailed, grpc.RpcError, OSError, TimeoutError) as exc:
        if not result["error"]:
            result["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        if kv._client is not None:
            await asyncio.wait_for(kv.close(), SHUTDOWN_WAIT)
        text = stderr_file.read_text(errors="replace") if stderr_file.exists() else ""
        result["plugin_stderr_tail"] = text[-4096:]
        result["server"] = contract.identity(text)


def client_test(args: Any) -> int:
    result = contract.new_result(IMPL, version(), args.tls_mode)
    with tempfile.TemporaryDirectory(prefix="soup-peer-") as work:
        asyncio.run(_client_test(args, result, Path(work)))
    sys.stdout.write(json.dumps(result) + "\n")
    return 0 if result["ok"] else 1


def main() -> int:
    args = contract.parse(sys.argv[1:])
    if args.command == "version":
        print(version())
        return 0
    if args.role == "server-start":
        serve(args)
    return client_test(args)


if __name__ == "__main__":
    sys.exit(main())
