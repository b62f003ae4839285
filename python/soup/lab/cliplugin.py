"""``soup rpc server-start``: the plugin side of the command line, on its own.

A host starts a plugin for every command, so this path imports only what a plugin
serves with: no host, no client commands, no parser for them (``soup.lab.cli`` is those).
"""

from __future__ import annotations

import argparse
import gc
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NoReturn

from soup import defaults

if TYPE_CHECKING:
    from pathlib import Path

    from soup.handshake import HandshakeConfig
    from soup.settings import TLSSettings

__all__ = [
    "COMMAND",
    "USAGE_PARSER",
    "Parser",
    "add_handshake_flags",
    "add_server_parser",
    "add_tls_flags",
    "check_tls_args",
    "end_startup",
    "formatter",
    "handshake_config",
    "main",
    "path_arg",
    "run",
    "tls_settings",
]

COMMAND = ("rpc", "server-start")
"""The argv words that select this command."""


class Parser(argparse.ArgumentParser):
    """Usage errors exit 2 after the usage line (the CLI's contract)."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {message}\n")


def formatter(prog: str) -> argparse.HelpFormatter:
    return argparse.RawDescriptionHelpFormatter(prog, max_help_position=32)


def path_arg(text: str) -> Path:
    """argparse type of the file and directory flags: pathlib loads only when one is given
    (``soup --help`` goes without it)."""
    from pathlib import Path  # noqa: PLC0415

    return Path(text)


def _versions(text: str) -> tuple[int, ...]:
    from soup.handshake import parse_versions  # noqa: PLC0415 - not for the help alone

    try:
        return parse_versions(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_handshake_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("handshake (must match on host and plugin)")
    group.add_argument(
        "--magic-cookie-key",
        default=defaults.COOKIE_KEY,
        metavar="K",
        help=f"environment variable of the magic cookie (default: {defaults.COOKIE_KEY})",
    )
    group.add_argument(
        "--magic-cookie-value",
        default=defaults.COOKIE_VALUE,
        metavar="V",
        help=f"its value (default: {defaults.COOKIE_VALUE})",
    )
    group.add_argument(
        "--protocol-versions",
        type=_versions,
        default=defaults.APP_VERSIONS,
        metavar="LIST",
        help="app protocol versions, comma list of positive integers (default: 1); a plugin "
        "serves these (the highest the host asks for wins), a host asks for and accepts these",
    )


# The namespace key of the (sub)command parser that owns the TLS flags: a usage error found
# after parsing prints that subcommand's usage, not the top-level one.
USAGE_PARSER = "usage_parser"


def add_tls_flags(parser: argparse.ArgumentParser) -> None:
    parser.set_defaults(**{USAGE_PARSER: parser})
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
        choices=defaults.KEY_TYPES,
        default=defaults.KEY_TYPE,
        help=f"key type of the own self-signed certificate in auto mode (default: {defaults.KEY_TYPE})",
    )
    group.add_argument("--cert-file", type=path_arg, help="manual mode: own certificate (PEM)")
    group.add_argument("--key-file", type=path_arg, help="manual mode: own private key (PEM)")
    group.add_argument(
        "--ca-file", type=path_arg, help="manual mode: CA (PEM) that issued the peer's certificate"
    )
    group.add_argument(
        "--tls-backend",
        choices=("auto", "native", "openssl"),
        default="auto",
        help="auto: grpcio's TLS when it can verify the peer's key (RSA, P-256, P-384), "
        "else the OpenSSL bridge (default); native/openssl: force one",
    )


def _define(server: argparse.ArgumentParser) -> None:
    add_handshake_flags(server)
    add_tls_flags(server)
    server.add_argument(
        "--transport", choices=("unix", "tcp"), default="unix", help="listener (default: unix)"
    )
    server.add_argument(
        "--kv-dir", type=path_arg, help="KV storage directory (default: a temporary one)"
    )
    server.add_argument(
        "--debug",
        action="store_true",
        help="debug (reattach) mode: started by hand, no magic cookie; prints the reattach "
        "config as one JSON line on stdout and serves until Shutdown or SIGTERM "
        "(needs --tls-mode manual or disabled)",
    )


_HELP = "run as a go-plugin plugin serving proto.KV (started by a host)"
_DESCRIPTION = (
    "Run as a go-plugin plugin (needs the host's magic cookie, by default\n"
    "BASIC_PLUGIN=hello, in the environment) serving proto.KV, counter.Counter (the\n"
    "broker callback demo), health, controller, stdio and broker. --tls-mode auto\n"
    "refuses to serve plaintext."
)


def add_server_parser(rpc_sub: Any) -> None:
    """``server-start`` as a subcommand of the full parser (for ``soup rpc --help``)."""
    server = rpc_sub.add_parser(
        COMMAND[1], help=_HELP, description=_DESCRIPTION, formatter_class=formatter
    )
    _define(server)


def check_tls_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """--tls-mode manual needs all three files (exit 2)."""
    if getattr(args, "tls_mode", None) == "manual":
        for flag in ("cert_file", "key_file", "ca_file"):
            if getattr(args, flag) is None:
                parser.error(f"--tls-mode manual requires --{flag.replace('_', '-')}")


def handshake_config(args: argparse.Namespace) -> HandshakeConfig:
    from soup.handshake import HandshakeConfig  # noqa: PLC0415 - not for the help alone

    return HandshakeConfig(
        cookie_key=args.magic_cookie_key,
        cookie_value=args.magic_cookie_value,
        app_versions=tuple(args.protocol_versions),
    )


def tls_settings(args: argparse.Namespace) -> TLSSettings:
    # Here, not at the top: soup.settings imports cryptography, which the parser (and so
    # `soup --help`) does without.
    from soup.settings import TLSSettings  # noqa: PLC0415

    return TLSSettings(
        mode=args.tls_mode,
        key_type=args.key_type,
        cert_file=args.cert_file,
        key_file=args.key_file,
        ca_file=args.ca_file,
        backend=args.tls_backend,
    )


def end_startup() -> None:
    """The command has its modules: when ``soup.__main__`` turned cycle collection off for
    the imports, move every object alive now (modules, classes, constants, all kept until
    exit) to the permanent generation and turn collection back on. No collection scans them
    again, also not the ones at exit (a full collection there took ~100 ms of a plugin's
    shutdown). Without ``soup.__main__`` (an embedding process) this does nothing."""
    if not gc.isenabled():
        gc.freeze()
        gc.enable()


def run(args: argparse.Namespace) -> int:
    """Serve the KV and counter plugin for parsed ``server-start`` arguments; the exit status."""
    # Here, not at the top: the host commands share this module's flags, not the plugin.
    from soup.lab import counter  # noqa: PLC0415
    from soup.lab.kv import service  # noqa: PLC0415
    from soup.plugin import ServeConfig, serve  # noqa: PLC0415

    end_startup()
    config = handshake_config(args)
    return serve(
        ServeConfig(
            handshake=config,
            plugins={
                version: [service(args.kv_dir), counter.service()]
                for version in config.app_versions
            },
            tls=tls_settings(args),
            # The CLI is strict: auto mode never serves plaintext (the API's default
            # follows go-plugin and does, with a warning).
            require_tls=True,
            transport=args.transport,
            debug=args.debug,
        )
    )


def main(argv: Sequence[str]) -> int:
    """``soup rpc server-start ARGV...``: parse only this command's flags, then serve."""
    parser = Parser(
        prog=f"soup {' '.join(COMMAND)}", description=_DESCRIPTION, formatter_class=formatter
    )
    _define(parser)
    try:
        args = parser.parse_args(argv)
        check_tls_args(parser, args)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 2
    return run(args)
