"""The ``soup`` command line (same contract as ``soup-go``).

Exit codes: 0 ok, 1 the operation failed, 2 usage error.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from soup import version_string
from soup.lab import cliplugin, kvprofile
from soup.lab.cliplugin import (
    COMMAND,
    USAGE_PARSER,
    Parser,
    add_handshake_flags,
    add_server_parser,
    add_tls_flags,
    check_tls_args,
    formatter,
    path_arg,
)

if TYPE_CHECKING:
    from soup.reattach import ReattachConfig

__all__ = ["build_parser", "main"]

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


CALLBACK_TEST_HELP = """\
Start the plugin CMD as a go-plugin host would and prove GRPCBroker callbacks both
ways with the counter demo (go-plugin's examples/bidirectional): steps spawn,
handshake, put and put_again (Counter.Put; the plugin calls the host's AddHelper.Sum
through the broker), get (the total is the sum), host_helper (the host's AddHelper saw
exactly those Sum calls), plugin_helper (Counter.OpenAdder: the host dials the
plugin's AddHelper through the broker), shutdown. Every soup and soup-go
`rpc server-start` plugin serves the counter demo."""


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
    # Here, not at the top: only --reattach needs it (and json), not the parser.
    from soup.reattach import ReattachConfig, ReattachError  # noqa: PLC0415

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
    plugin.add_argument(
        "--grpc-broker-multiplex",
        action="store_true",
        help="go-plugin's GRPCBrokerMultiplex (v1.6.0+): every connection, the main one and "
        "the brokered ones, is a stream of one yamux session; a plugin that does not say so "
        "in field 7 is refused",
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
        description=CALLBACK_TEST_HELP,
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
    put.add_argument("--value-file", type=path_arg, metavar="F", help="read the value from file F")
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
    if getattr(args, "grpc_broker_multiplex", False) and args.reattach is not None:
        parser.error(
            "--grpc-broker-multiplex cannot be used with --reattach "
            "(go-plugin supports neither together)"
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
    if args.command == "version":
        print(version_string())
        return 0
    # Here, not at the top: the parser alone (--help, --version, usage errors) needs none of
    # the host's modules (grpc, protobuf, cryptography), which take most of a start-up.
    from soup.lab import clihost  # noqa: PLC0415

    cliplugin.end_startup()
    return clihost.run(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
