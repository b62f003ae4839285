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
from typing import Any

from soup import callbacktest, clienttest, cliplugin, kvprofile, logs
from soup.cliplugin import (
    COMMAND,
    USAGE_PARSER,
    Parser,
    add_handshake_flags,
    add_server_parser,
    add_tls_flags,
    check_tls_args,
    formatter,
    handshake_config,
    tls_settings,
)
from soup.connect import rpc_code, rpc_message
from soup.errors import HostError
from soup.handshake import ENV_LOG_LEVEL
from soup.host import RPC_TIMEOUT, Client, ClientConfig
from soup.kv import KVClient
from soup.reattach import ReattachConfig, ReattachError
from soup.result import BenchResult, RoundTrips, TestResult, version_string

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


def _rounds(text: str) -> int:
    """bench --count: at least one timed round trip (as soup-go), or there is nothing to time."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text}")
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


def _reattach(text: str) -> ReattachConfig:
    try:
        return ReattachConfig.from_json(text)
    except ReattachError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


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
    add_handshake_flags(parser)
    add_tls_flags(parser)


def _add_client_parsers(rpc_sub: Any) -> None:
    client = rpc_sub.add_parser("client", help="act as host", formatter_class=formatter)
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
        formatter_class=formatter,
    )
    _add_host_flags(test)
    test.add_argument("--json", action="store_true", help="print exactly one JSON object")
    test.add_argument(
        "--kv-profile", choices=kvprofile.PROFILES, default="strict",
        help="strict: exact bytes, NOT_FOUND; lenient: appended bytes, any error (peers)",
    )  # fmt: skip

    callback = client_sub.add_parser(
        "callback-test",
        help="start a plugin, prove GRPCBroker callbacks both ways (counter demo)",
        description=callbacktest.CALLBACK_TEST_HELP,
        formatter_class=formatter,
    )
    _add_host_flags(callback)
    callback.add_argument("--json", action="store_true", help="print exactly one JSON object")

    bench = client_sub.add_parser(
        "bench", help="Put+Get round trips against one plugin", formatter_class=formatter
    )
    _add_host_flags(bench)
    bench.add_argument("--count", type=_rounds, default=1000, help="timed round trips (1000)")
    bench.add_argument("--warmup", type=_count, default=50, help="untimed round trips (50)")
    bench.add_argument("--json", action="store_true", help="print exactly one JSON object")


def _add_kv_parsers(rpc_sub: Any) -> None:
    kv = rpc_sub.add_parser("kv", help="one KV call against a plugin", formatter_class=formatter)
    kv_sub = kv.add_subparsers(dest="kv_command", metavar="KV_COMMAND", required=True)
    put = kv_sub.add_parser(
        "put",
        help="Put KEY VALUE (prints nothing)",
        description="Put KEY with VALUE (argv), '-' (stdin, binary, any size) or --value-file F.",
        formatter_class=formatter,
    )
    put.add_argument("key")
    put.add_argument("value", nargs="?", help="the value; '-' reads it from stdin")
    put.add_argument("--value-file", type=Path, metavar="F", help="read the value from file F")
    _add_host_flags(put)
    get = kv_sub.add_parser(
        "get", help="Get KEY (prints the value bytes)", formatter_class=formatter
    )
    get.add_argument("key")
    _add_host_flags(get)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="soup", description=_DESCRIPTION, epilog=_EPILOG, formatter_class=formatter
    )
    parser.add_argument("--version", action="version", version=version_string())
    top = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    top.add_parser("version", help="print the version", formatter_class=formatter)
    # `soup check` is dispatched before this parser (soup.__main__): listed here for --help.
    top.add_parser("check", help="check anyone's go-plugin plugin or host (soup check --help)")
    rpc = top.add_parser(
        "rpc", help="plugin and host commands", epilog=_EPILOG, formatter_class=formatter
    )
    rpc_sub = rpc.add_subparsers(dest="rpc_command", metavar="RPC_COMMAND", required=True)
    add_server_parser(rpc_sub)
    _add_client_parsers(rpc_sub)
    _add_kv_parsers(rpc_sub)
    return parser


def _check_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Usage rules argparse cannot express (exit 2), with the subcommand's usage."""
    parser = getattr(args, USAGE_PARSER, parser)
    check_tls_args(parser, args)
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


def _client_config(args: argparse.Namespace) -> ClientConfig:
    return ClientConfig(
        cmd=args.server,
        reattach=args.reattach,
        handshake=handshake_config(args),
        tls=tls_settings(args),
        timeout=args.timeout,
        rpc_timeout=min(args.timeout, RPC_TIMEOUT),  # every host wait bounded by --timeout
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
        result.error = client.explain(exc) if client is not None else str(exc)
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


def _cmd_callback_test(args: argparse.Namespace) -> int:
    _configure_host_logging()
    return callbacktest.run_command(lambda: Client(_client_config(args)), args.tls_mode, args.json)


def _cmd_client(args: argparse.Namespace) -> int:
    if args.client_command == "bench":
        return _cmd_bench(args)
    if args.client_command == "callback-test":
        return _cmd_callback_test(args)
    return _cmd_test(args)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``soup`` / ``python -m soup``; returns the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    # The plugin (what a host spawns): only its own flags; the full parser below has
    # server-start for help text alone (no option may precede a subcommand).
    if tuple(argv[: len(COMMAND)]) == COMMAND:
        return cliplugin.main(argv[len(COMMAND) :])
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        _check_args(parser, args)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 2
    cliplugin.end_startup()
    if args.command == "version":
        print(version_string())
        return 0
    if args.rpc_command == "client":
        return _cmd_client(args)
    return _cmd_kv(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
