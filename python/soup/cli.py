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
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from soup import certs, clienttest, handshake, kvprofile, logs
from soup.connect import rpc_code, rpc_message
from soup.errors import HostError
from soup.handshake import DEFAULT_KEY_TYPE, ENV_LOG_LEVEL, HandshakeConfig
from soup.host import Client, ClientConfig
from soup.kv import KVClient, service
from soup.plugin import ServeConfig, serve
from soup.reattach import ReattachConfig, ReattachError
from soup.result import BenchResult, RoundTrips, TestResult, version_string
from soup.settings import TLSSettings

__all__ = ["build_parser", "main", "run_test"]

DEFAULT_TIMEOUT = 30.0

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


def _versions(text: str) -> tuple[int, ...]:
    try:
        return handshake.parse_versions(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _reattach(text: str) -> ReattachConfig:
    try:
        return ReattachConfig.from_json(text)
    except ReattachError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _add_handshake_flags(parser: argparse.ArgumentParser) -> None:
    defaults = HandshakeConfig()
    group = parser.add_argument_group("handshake (must match on host and plugin)")
    group.add_argument(
        "--magic-cookie-key",
        default=defaults.cookie_key,
        metavar="K",
        help=f"environment variable of the magic cookie (default: {defaults.cookie_key})",
    )
    group.add_argument(
        "--magic-cookie-value",
        default=defaults.cookie_value,
        metavar="V",
        help=f"its value (default: {defaults.cookie_value})",
    )
    group.add_argument(
        "--protocol-versions",
        type=_versions,
        default=defaults.app_versions,
        metavar="LIST",
        help="app protocol versions, comma list of positive integers (default: 1); a plugin "
        "serves these (the highest the host asks for wins), a host asks for and accepts these",
    )


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
        default=DEFAULT_KEY_TYPE,
        help=f"key type of the own self-signed certificate in auto mode (default: {DEFAULT_KEY_TYPE})",
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
    plugin = parser.add_argument_group("plugin (exactly one of --server and --reattach)")
    which = plugin.add_mutually_exclusive_group(required=True)
    which.add_argument(
        "--server",
        type=_plugin_command,
        metavar="CMD",
        help="plugin command line, split with shell rules, e.g. 'soup-go rpc server-start'",
    )
    which.add_argument(
        "--reattach",
        type=_reattach,
        metavar="JSON",
        help="connect to a running plugin instead of starting one: the reattach config "
        "`rpc server-start --debug` prints; the plugin gets Shutdown at the end",
    )
    plugin.add_argument(
        "--keep-running",
        action="store_true",
        help="with --reattach: send no Shutdown at the end, leave the plugin running",
    )
    parser.add_argument(
        "--timeout",
        type=_positive,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help="bound on plugin start + handshake line (default: 30)",
    )
    _add_handshake_flags(parser)
    _add_tls_flags(parser)


def _add_server_parser(rpc_sub: Any) -> None:
    server = rpc_sub.add_parser(
        "server-start",
        help="run as a go-plugin plugin serving proto.KV (started by a host)",
        description="Run as a go-plugin plugin (needs the host's magic cookie, by default\n"
        "BASIC_PLUGIN=hello, in the environment) serving proto.KV, health, controller,\n"
        "stdio and broker. --tls-mode auto refuses to serve plaintext.",
        formatter_class=_formatter,
    )
    _add_handshake_flags(server)
    _add_tls_flags(server)
    server.add_argument(
        "--transport", choices=("unix", "tcp"), default="unix", help="listener (default: unix)"
    )
    server.add_argument(
        "--kv-dir", type=Path, help="KV storage directory (default: a temporary one)"
    )
    server.add_argument(
        "--debug",
        action="store_true",
        help="debug (reattach) mode: started by hand, no magic cookie; prints the reattach "
        "config as one JSON line on stdout and serves until Shutdown or SIGTERM "
        "(needs --tls-mode manual or disabled)",
    )


def _add_client_parsers(rpc_sub: Any) -> None:
    client = rpc_sub.add_parser("client", help="act as host", formatter_class=_formatter)
    client_sub = client.add_subparsers(
        dest="client_command", metavar="CLIENT_COMMAND", required=True
    )
    test = client_sub.add_parser(
        "test",
        help="start a plugin, Put/Get/Get-missing/health/Shutdown, print evidence",
        description="Start the plugin CMD as a go-plugin host would (or reattach to one), then\n"
        "run the steps spawn, handshake, put, get, get_missing, health, shutdown (stop at\n"
        "the first failure; the plugin is always stopped unless --keep-running).",
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


def _add_kv_parsers(rpc_sub: Any) -> None:
    kv = rpc_sub.add_parser("kv", help="one KV call against a plugin", formatter_class=_formatter)
    kv_sub = kv.add_subparsers(dest="kv_command", metavar="KV_COMMAND", required=True)
    put = kv_sub.add_parser(
        "put",
        help="Put KEY VALUE (prints nothing)",
        description="Put KEY with VALUE (argv), '-' (stdin, binary, any size) or --value-file F.",
        formatter_class=_formatter,
    )
    put.add_argument("key")
    put.add_argument("value", nargs="?", help="the value; '-' reads it from stdin")
    put.add_argument("--value-file", type=Path, metavar="F", help="read the value from file F")
    _add_host_flags(put)
    get = kv_sub.add_parser(
        "get", help="Get KEY (prints the value bytes)", formatter_class=_formatter
    )
    get.add_argument("key")
    _add_host_flags(get)


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
    _add_server_parser(rpc_sub)
    _add_client_parsers(rpc_sub)
    _add_kv_parsers(rpc_sub)
    return parser


def _check_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Usage rules argparse cannot express (exit 2)."""
    if getattr(args, "tls_mode", None) == "manual":
        for flag in ("cert_file", "key_file", "ca_file"):
            if getattr(args, flag) is None:
                parser.error(f"--tls-mode manual requires --{flag.replace('_', '-')}")
    if getattr(args, "keep_running", False) and args.reattach is None:
        parser.error(
            "--keep-running needs --reattach (a plugin the host started always ends with it)"
        )
    if getattr(args, "kv_command", None) == "put" and (args.value is None) == (
        args.value_file is None
    ):
        parser.error("kv put needs exactly one of VALUE, '-' (stdin) and --value-file")
    # A gRPC string must be UTF-8; a non-UTF-8 argv byte arrives as a lone surrogate.
    key = getattr(args, "key", None)
    if key is not None:
        try:
            key.encode("utf-8")
        except UnicodeEncodeError:
            parser.error("KEY is not valid UTF-8")


def _configure_host_logging() -> None:
    logs.configure(sys.stderr, level=os.environ.get(ENV_LOG_LEVEL, "warn"), module="soup.host")


def _handshake(args: argparse.Namespace) -> HandshakeConfig:
    return HandshakeConfig(
        cookie_key=args.magic_cookie_key,
        cookie_value=args.magic_cookie_value,
        app_versions=tuple(args.protocol_versions),
    )


def _tls(args: argparse.Namespace) -> TLSSettings:
    return TLSSettings(
        mode=args.tls_mode,
        key_type=args.key_type,
        cert_file=args.cert_file,
        key_file=args.key_file,
        ca_file=args.ca_file,
        backend=args.tls_backend,
    )


def _client_config(args: argparse.Namespace) -> ClientConfig:
    return ClientConfig(
        cmd=args.server,
        reattach=args.reattach,
        handshake=_handshake(args),
        tls=_tls(args),
        timeout=args.timeout,
        keep_running=args.keep_running,
    )


def run_test(args: argparse.Namespace) -> TestResult:
    """``rpc client test`` for parsed arguments (see ``soup.clienttest``)."""
    return clienttest.run(lambda: _client_config(args), args.kv_profile)


def _plugin_label(args: argparse.Namespace) -> str:
    if args.reattach is not None:
        return f"reattach {args.reattach.to_json()}"
    return str(args.server)


def _cmd_test(args: argparse.Namespace) -> int:
    _configure_host_logging()
    result = run_test(args)
    if args.json:
        sys.stdout.write(result.to_json() + "\n")
        sys.stdout.flush()
    else:
        sys.stdout.write(clienttest.human_report(_plugin_label(args), result))
        sys.stdout.flush()
    return 0 if result.ok else 1


# --------------------------------------------------------------------------------------
# rpc client bench


def _bench_rounds(client: Client, args: argparse.Namespace) -> list[float]:
    kv = KVClient(client.channel, client.config.rpc_timeout)
    payload = secrets.token_bytes(64)
    samples: list[float] = []
    for i in range(args.warmup + args.count):
        key = f"bench-{i % 16}"
        started = time.perf_counter()
        kv.put(key, payload)
        if kv.get(key) != payload:
            raise HostError(f"get {key}: other bytes returned")
        if i >= args.warmup:
            samples.append((time.perf_counter() - started) * 1e6)
    return samples


def _print_bench(args: argparse.Namespace, result: BenchResult) -> None:
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


def _cmd_bench(args: argparse.Namespace) -> int:
    _configure_host_logging()
    result = BenchResult(count=args.count)
    result.tls.mode = args.tls_mode
    samples: list[float] = []
    client: Client | None = None
    try:
        client = Client(_client_config(args))
        client.start()
        samples = _bench_rounds(client, args)
        result.ok = True
    except (HostError, ValueError, OSError) as exc:
        result.error = str(exc)
    finally:
        if client is not None:
            client.kill()
            result.tls = client.tls
    result.round_trip_us = RoundTrips.from_samples(samples)
    _print_bench(args, result)
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


def _put_value(args: argparse.Namespace) -> bytes:
    if args.value_file is not None:
        return bytes(args.value_file.read_bytes())
    if args.value == "-":
        return sys.stdin.buffer.read()
    return os.fsencode(args.value)


def _cmd_kv(args: argparse.Namespace) -> int:
    _configure_host_logging()
    client: Client | None = None
    try:
        value = _put_value(args) if args.kv_command == "put" else b""
        client = Client(_client_config(args))
        client.start()
        kv = KVClient(client.channel, client.config.rpc_timeout)
        if args.kv_command == "put":
            kv.put(args.key, value)
        else:
            sys.stdout.buffer.write(kv.get(args.key))
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
    config = _handshake(args)
    return serve(
        ServeConfig(
            handshake=config,
            plugins={version: [service(args.kv_dir)] for version in config.app_versions},
            tls=_tls(args),
            # The CLI is strict: auto mode never serves plaintext (the API's default
            # follows go-plugin and does, with a warning).
            require_tls=True,
            transport=args.transport,
            debug=args.debug,
        )
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``soup`` / ``python -m soup``; returns the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        _check_args(parser, args)
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
