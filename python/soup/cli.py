"""The ``soup`` command line (same contract as ``soup-go``).

Exit codes: 0 ok, 1 the operation failed, 2 usage error.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

from soup import certs, kvprofile, logs, verify
from soup.host import HostError, PluginClient, rpc_code, rpc_message
from soup.result import (
    BenchResult,
    Identity,
    RoundTrips,
    Step,
    TestResult,
    TLSEvidence,
    version_string,
)

__all__ = ["build_parser", "main"]

DEFAULT_TIMEOUT = 30.0
TEST_KEY = "soup-test-key"
ENV_LOG_LEVEL = "SOUP_LOG_LEVEL"

_DESCRIPTION = """\
soup: the go-plugin protocol in Python.

Run a go-plugin style KV plugin (rpc server-start), or act as a go-plugin host that
starts a plugin written in Python or Go and calls it (rpc client test, rpc kv ...).
"""

_EPILOG = """\
examples:
  # host (Python) -> plugin (Python), AutoMTLS over a unix socket, human output
  python -m soup rpc client test --server 'python -m soup rpc server-start'

  # the same as one JSON object, plugin on tcp with a P-521 key (OpenSSL bridge)
  python -m soup rpc client test --json \\
      --server 'python -m soup rpc server-start --transport tcp --key-type ec-p521'

  # host (Python) -> plugin (Go)
  python -m soup rpc client test --server 'soup-go rpc server-start'

  # one KV call
  python -m soup rpc kv put greeting hello --server 'python -m soup rpc server-start'

exit codes: 0 ok, 1 operation failed, 2 usage error.
log level of host commands: SOUP_LOG_LEVEL (default warn; logs go to stderr).
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {message}\n")


def _formatter(prog: str) -> argparse.HelpFormatter:
    return argparse.RawDescriptionHelpFormatter(prog, max_help_position=32)


def _positive(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def _plugin_command(text: str) -> str:
    """--server: must split with shell rules into a non-empty command (checked up front)."""
    try:
        argv = shlex.split(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc).lower()) from None
    if not argv:
        raise argparse.ArgumentTypeError("empty plugin command")
    return text


def _add_tls_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("TLS")
    group.add_argument(
        "--tls-mode",
        choices=("auto", "manual", "disabled"),
        default="auto",
        help="auto: go-plugin AutoMTLS (default); manual: --cert-file/--key-file/--ca-file; "
        "disabled: plaintext (must be chosen on both sides)",
    )
    group.add_argument(
        "--key-type",
        choices=certs.KEY_TYPES,
        default="ec-p256",
        help="key type of the own self-signed certificate in auto mode (default: ec-p256)",
    )
    group.add_argument("--cert-file", type=Path, help="manual mode: own certificate (PEM)")
    group.add_argument("--key-file", type=Path, help="manual mode: own private key (PEM)")
    group.add_argument(
        "--ca-file", type=Path, help="manual mode: CA (PEM) that issued the peer's certificate"
    )
    group.add_argument(
        "--tls-backend",
        choices=("auto", "native", "openssl"),
        default="auto",
        help="auto: grpcio's TLS when it can verify the peer's key (RSA, P-256, P-384), "
        "else the OpenSSL bridge (default); native/openssl: force one",
    )


def _add_host_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--server",
        required=True,
        type=_plugin_command,
        metavar="CMD",
        help="plugin command line, split with shell rules, e.g. 'soup-go rpc server-start'",
    )
    parser.add_argument(
        "--timeout",
        type=_positive,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help="bound on plugin start + handshake line (default: 30)",
    )
    _add_tls_flags(parser)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="soup", description=_DESCRIPTION, epilog=_EPILOG, formatter_class=_formatter
    )
    parser.add_argument("--version", action="version", version=version_string())
    top = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    top.add_parser("version", help="print the version", formatter_class=_formatter)

    rpc = top.add_parser(
        "rpc", help="plugin and host commands", epilog=_EPILOG, formatter_class=_formatter
    )
    rpc_sub = rpc.add_subparsers(dest="rpc_command", metavar="RPC_COMMAND", required=True)

    server = rpc_sub.add_parser(
        "server-start",
        help="run as a go-plugin plugin serving proto.KV (started by a host)",
        description="Run as a go-plugin plugin (needs the host's magic cookie BASIC_PLUGIN=hello\n"
        "in the environment) serving proto.KV, health, controller, stdio and broker.",
        formatter_class=_formatter,
    )
    _add_tls_flags(server)
    server.add_argument(
        "--transport", choices=("unix", "tcp"), default="unix", help="listener (default: unix)"
    )
    server.add_argument(
        "--kv-dir", type=Path, help="KV storage directory (default: a temporary one)"
    )

    client = rpc_sub.add_parser("client", help="act as host", formatter_class=_formatter)
    client_sub = client.add_subparsers(
        dest="client_command", metavar="CLIENT_COMMAND", required=True
    )
    test = client_sub.add_parser(
        "test",
        help="start a plugin, Put/Get/Get-missing/health/Shutdown, print evidence",
        description="Start the plugin CMD as a go-plugin host would, then run the steps\n"
        "spawn, handshake, put, get, get_missing, health, shutdown (stop at the first\n"
        "failure; the plugin is always stopped).",
        epilog=_EPILOG,
        formatter_class=_formatter,
    )
    _add_host_flags(test)
    test.add_argument("--json", action="store_true", help="print exactly one JSON object")
    test.add_argument(
        "--kv-profile", choices=kvprofile.PROFILES, default="strict",
        help="strict: exact bytes, NOT_FOUND; lenient: appended bytes, any error (peers)",
    )  # fmt: skip

    bench = client_sub.add_parser(
        "bench", help="Put+Get round trips against one plugin", formatter_class=_formatter
    )
    _add_host_flags(bench)
    bench.add_argument("--count", type=_count, default=1000, help="timed round trips (1000)")
    bench.add_argument("--warmup", type=_count, default=50, help="untimed round trips (50)")
    bench.add_argument("--json", action="store_true", help="print exactly one JSON object")

    kv = rpc_sub.add_parser("kv", help="one KV call against a plugin", formatter_class=_formatter)
    kv_sub = kv.add_subparsers(dest="kv_command", metavar="KV_COMMAND", required=True)
    put = kv_sub.add_parser(
        "put", help="Put KEY VALUE (prints nothing)", formatter_class=_formatter
    )
    put.add_argument("key")
    put.add_argument("value")
    _add_host_flags(put)
    get = kv_sub.add_parser(
        "get", help="Get KEY (prints the value bytes)", formatter_class=_formatter
    )
    get.add_argument("key")
    _add_host_flags(get)
    return parser


def _check_manual(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if getattr(args, "tls_mode", None) != "manual":
        return
    for flag in ("cert_file", "key_file", "ca_file"):
        if getattr(args, flag) is None:
            parser.error(f"--tls-mode manual requires --{flag.replace('_', '-')}")


def _check_key(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    # A gRPC string must be UTF-8; a non-UTF-8 argv byte arrives as a lone surrogate.
    key = getattr(args, "key", None)
    if key is not None:
        try:
            key.encode("utf-8")
        except UnicodeEncodeError:
            parser.error("KEY is not valid UTF-8")


def _configure_host_logging() -> None:
    logs.configure(sys.stderr, level=os.environ.get(ENV_LOG_LEVEL, "warn"), module="soup.host")


def _client(args: argparse.Namespace) -> PluginClient:
    return PluginClient(
        args.server,
        tls_mode=args.tls_mode,
        key_type=args.key_type,
        cert_file=args.cert_file,
        key_file=args.key_file,
        ca_file=args.ca_file,
        tls_backend=args.tls_backend,
        timeout=args.timeout,
    )


# --------------------------------------------------------------------------------------
# rpc client test


class _StepFailed(Exception):
    pass


def _fill(result_tls: TLSEvidence, client: PluginClient) -> None:
    details = client.tls
    result_tls.mode = details.mode
    if details.mode == "disabled":
        return
    result_tls.version = details.version
    result_tls.version_source = details.version_source
    result_tls.backend = details.backend
    result_tls.client_key = details.client_key
    result_tls.server_key = details.server_key
    result_tls.client_fingerprint = details.client_fingerprint
    result_tls.server_fingerprint = details.server_fingerprint
    result_tls.alpn = details.alpn


def run_test(args: argparse.Namespace) -> TestResult:
    """The ``client test`` steps; stops at the first failure, always kills the plugin."""
    result = TestResult()
    result.tls.mode = args.tls_mode

    def step(name: str, action: Callable[[], str]) -> None:
        started = time.perf_counter()
        try:
            detail = action()
            ok, error = True, None
        except (HostError, _StepFailed, OSError, ValueError) as exc:
            detail, ok, error = str(exc), False, str(exc)
        ms = (time.perf_counter() - started) * 1000
        result.steps.append(Step(name=name, ok=ok, ms=ms, detail=detail))
        if not ok:
            result.error = f"{name}: {error}"
            raise _StepFailed(result.error)

    try:
        client = _client(args)
    except (HostError, ValueError) as exc:
        result.error = f"spawn: {exc}"
        result.steps.append(Step(name="spawn", ok=False, ms=0.0, detail=str(exc)))
        return result
    value = b"hello from soup" + secrets.token_hex(8).encode()
    missing = f"soup-missing-key-{secrets.token_hex(8)}"
    shutdown_done = False
    try:
        step("spawn", lambda: f"pid {client.spawn()}")

        def do_handshake() -> str:
            info = client.handshake()
            tls_text = "plaintext"
            if client.tls.backend is not None:
                tls_text = f"{client.tls.version or 'TLS ?'} {client.tls.backend}"
            return f"{info.network} {info.address} app v{info.app_version} {tls_text}"

        try:
            step("handshake", do_handshake)
        finally:
            info = client.handshake_info
            if info is not None:
                result.transport = info.network
                result.address = info.address
                result.app_protocol_version = info.app_version

        def do_put() -> str:
            client.put(TEST_KEY, value)
            return f"key={TEST_KEY} bytes={len(value)}"

        step("put", do_put)

        def do_get() -> str:
            return kvprofile.check_get(args.kv_profile, TEST_KEY, value, client.get(TEST_KEY))

        step("get", do_get)

        def do_get_missing() -> str:
            try:
                got = client.get(missing)
            except HostError as exc:
                code = rpc_code(exc)
                name = code.name if code is not None else "UNKNOWN"
                return kvprofile.check_missing(args.kv_profile, missing, name, rpc_message(exc))
            return kvprofile.check_missing(args.kv_profile, missing, None, f"{len(got)} bytes")

        step("get_missing", do_get_missing)

        def do_health() -> str:
            status = client.health_check("plugin")
            if status != "SERVING":
                raise _StepFailed(f"health of service 'plugin' is {status}, expected SERVING")
            return "service=plugin SERVING"

        step("health", do_health)
        result.mutual_tls = verify.mutual_tls(client)  # while the plugin still serves

        def do_shutdown() -> str:
            nonlocal shutdown_done
            shutdown_done = True
            started = time.perf_counter()
            graceful = client.kill()
            ms = (time.perf_counter() - started) * 1000
            if not graceful:
                raise _StepFailed(
                    "plugin did not exit within 2 s after Shutdown; killed its process group"
                )
            return f"exited by itself after {ms:.1f} ms (exit code {client.exit.code})"

        step("shutdown", do_shutdown)
        result.ok = True
    except _StepFailed:
        result.ok = False
    finally:
        if not shutdown_done:
            client.kill()
        _fill(result.tls, client)
        # Who served, as the plugin's own log said (null if it never said).
        result.server = Identity(impl=client.server_impl, version=client.server_version)
        result.plugin_stderr_tail = client.stderr_tail()
    return result


def _print_human(args: argparse.Namespace, result: TestResult) -> None:
    out = sys.stdout
    t = result.tls
    out.write(f"soup client test: {result.client.version}\n")
    out.write(f"  plugin:     {args.server}\n")
    if t.mode == "disabled":
        out.write("  tls:        disabled (plaintext)\n")
    else:
        source = f" ({t.version_source})" if t.version_source else ""
        out.write(
            f"  tls:        mode {t.mode}, {t.version or 'version unknown'}{source}, "
            f"backend {t.backend or '-'}, alpn {t.alpn or '-'}\n"
        )
        out.write(f"  client key: {t.client_key or '-'} {t.client_fingerprint or ''}\n")
        out.write(f"  server key: {t.server_key or '-'} {t.server_fingerprint or ''}\n")
    out.write(
        f"  transport:  {result.transport or '-'} {result.address or ''} "
        f"(app protocol v{result.app_protocol_version or '-'})\n"
    )
    for step in result.steps:
        mark = "PASS" if step.ok else "FAIL"
        out.write(f"{mark} {step.name:<12} {step.ms:8.1f} ms  {step.detail}\n")
    if result.ok:
        out.write("RESULT: PASS\n")
    else:
        tail = result.plugin_stderr_tail.strip()
        if tail:
            out.write("plugin stderr (tail):\n")
            for line in tail.splitlines()[-20:]:
                out.write(f"  | {line}\n")
        out.write(f"RESULT: FAIL: {result.error}\n")
    out.flush()


def _cmd_test(args: argparse.Namespace) -> int:
    _configure_host_logging()
    result = run_test(args)
    if args.json:
        sys.stdout.write(result.to_json() + "\n")
        sys.stdout.flush()
    else:
        _print_human(args, result)
    return 0 if result.ok else 1


# --------------------------------------------------------------------------------------
# rpc client bench


def _cmd_bench(args: argparse.Namespace) -> int:
    _configure_host_logging()
    result = BenchResult(count=args.count)
    result.tls.mode = args.tls_mode
    samples: list[float] = []
    client: PluginClient | None = None
    try:
        client = _client(args)
        client.start()
        payload = secrets.token_bytes(64)
        for i in range(args.warmup + args.count):
            key = f"bench-{i % 16}"
            started = time.perf_counter()
            client.put(key, payload)
            if client.get(key) != payload:
                raise HostError(f"get {key}: other bytes returned")
            if i >= args.warmup:
                samples.append((time.perf_counter() - started) * 1e6)
        result.ok = True
    except (HostError, ValueError, OSError) as exc:
        result.error = str(exc)
    finally:
        if client is not None:
            client.kill()
            _fill(result.tls, client)
    result.round_trip_us = RoundTrips.from_samples(samples)
    if args.json:
        sys.stdout.write(result.to_json() + "\n")
    elif result.ok:
        r = result.round_trip_us
        sys.stdout.write(
            f"bench: {result.count} Put+Get round trips, tls {result.tls.mode} "
            f"{result.tls.backend or '-'}: mean {r.mean:.1f} us, p50 {r.p50:.1f}, "
            f"p90 {r.p90:.1f}, p99 {r.p99:.1f}, min {r.min:.1f}, max {r.max:.1f}\n"
        )
    else:
        sys.stdout.write(f"bench: FAIL: {result.error}\n")
    sys.stdout.flush()
    return 0 if result.ok else 1


# --------------------------------------------------------------------------------------
# rpc kv put|get


def _kv_error(exc: BaseException) -> int:
    code = rpc_code(exc)
    if code is not None:
        sys.stderr.write(f"error: {code.name}: {rpc_message(exc)}\n")
    else:
        sys.stderr.write(f"error: {exc}\n")
    sys.stderr.flush()
    return 1


def _cmd_kv(args: argparse.Namespace) -> int:
    _configure_host_logging()
    client: PluginClient | None = None
    try:
        client = _client(args)
        client.start()
        if args.kv_command == "put":
            client.put(args.key, os.fsencode(args.value))
        else:
            value = client.get(args.key)
            sys.stdout.buffer.write(value)
            sys.stdout.buffer.flush()
    except (HostError, ValueError, OSError) as exc:
        return _kv_error(exc)
    finally:
        if client is not None:
            client.kill()
    return 0


# --------------------------------------------------------------------------------------
# rpc server-start


def _cmd_server(args: argparse.Namespace) -> int:
    from soup.plugin import ServeOptions, serve  # noqa: PLC0415 - keep host commands light

    return serve(
        ServeOptions(
            tls_mode=args.tls_mode,
            key_type=args.key_type,
            cert_file=args.cert_file,
            key_file=args.key_file,
            ca_file=args.ca_file,
            transport=args.transport,
            kv_dir=args.kv_dir,
            tls_backend=args.tls_backend,
        )
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``soup`` / ``python -m soup``; returns the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        _check_manual(parser, args)
        _check_key(parser, args)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 2
    if args.command == "version":
        print(version_string())
        return 0
    if args.rpc_command == "server-start":
        return _cmd_server(args)
    if args.rpc_command == "client":
        if args.client_command == "bench":
            return _cmd_bench(args)
        return _cmd_test(args)
    return _cmd_kv(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
