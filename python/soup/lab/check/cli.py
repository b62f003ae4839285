"""``soup check plugin|host``: the command line of the checker.

Exit codes: 0 no required check failed, 1 one did, 2 usage error or a target that cannot
be checked at all (the message says which).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from soup.lab.check import catalogue
from soup.lab.check.catalogue import Check, Outcome, Verdict

USAGE_ERROR = 2

_DESCRIPTION = """\
Check a go-plugin plugin or host against go-plugin's protocol: the handshake, AutoMTLS,
the internal services and the process rules, one check at a time, each with its rule,
the go-plugin source it comes from, and the evidence. Only the protocol is judged,
never the plugin's own services. docs/check.md explains every check and its fix.
"""

_EPILOG = """\
examples:
  soup check plugin -- python -m soup rpc server-start
  soup check plugin --cookie TF_PLUGIN_MAGIC_COOKIE=d602bf8f... --versions 5,6 -- ./terraform-provider-x
  soup check plugin --only tls.auto --only health --json -- ./my-plugin
  soup check host -- python -m soup rpc client test --server {plugin}
  soup check host --report-dir build/check -- env KV_PLUGIN={plugin} ./kv put k v

exit codes: 0 no required check failed, 1 a required check failed, 2 usage error or a
command that cannot be checked. Progress goes to stderr when it is a terminal.
"""


def _cookie(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key or not value:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def _versions(text: str) -> tuple[int, ...]:
    from soup.handshake import parse_versions  # noqa: PLC0415 - keeps --help light

    try:
        return parse_versions(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _timeout(text: str) -> float:
    value = float(text)
    if not 0 < value <= 600:
        raise argparse.ArgumentTypeError(f"must be > 0 and <= 600 seconds, got {text}")
    return value


def _ids(text: str) -> list[str]:
    return [part for part in text.split(",") if part]


def _common(parser: argparse.ArgumentParser, timeout_help: str) -> None:
    parser.add_argument(
        "--cookie", type=_cookie, default=("BASIC_PLUGIN", "hello"), metavar="KEY=VALUE",
        help="the magic cookie (default: BASIC_PLUGIN=hello, go-plugin's examples)",
    )  # fmt: skip
    parser.add_argument(
        "--versions", type=_versions, default=(1,), metavar="1,2",
        help="app protocol versions (PLUGIN_PROTOCOL_VERSIONS; default: 1)",
    )  # fmt: skip
    parser.add_argument(
        "--only", type=_ids, action="extend", default=[], metavar="ID",
        help="run only these checks (repeat, or comma-separate)",
    )  # fmt: skip
    parser.add_argument(
        "--skip", type=_ids, action="extend", default=[], metavar="ID",
        help="leave these checks out (repeat, or comma-separate)",
    )  # fmt: skip
    parser.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    parser.add_argument(
        "--report-dir", type=Path, metavar="DIR",
        help="also write check.json, check.md, check.html and check.xml (JUnit) there",
    )  # fmt: skip
    parser.add_argument("--timeout", type=_timeout, default=10.0, metavar="S", help=timeout_help)
    parser.add_argument("command", nargs=argparse.REMAINDER, metavar="-- CMD [ARG ...]")


def build_parser() -> argparse.ArgumentParser:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog="soup check", description=_DESCRIPTION, epilog=_EPILOG, formatter_class=formatter
    )
    sub = parser.add_subparsers(dest="role", metavar="ROLE", required=True)
    plugin = sub.add_parser(
        "plugin", help="check a plugin: start CMD as a go-plugin host would",
        description="Start CMD as a go-plugin host would (as often as the checks need) "
        "and judge how it speaks go-plugin's protocol.", formatter_class=formatter,
    )  # fmt: skip
    plugin.add_argument(
        "--transport", choices=("unix", "tcp"),
        help="the network the plugin must advertise (default: either)",
    )  # fmt: skip
    _common(plugin, "bound on each start up to the handshake line (default: 10)")
    host = sub.add_parser(
        "host", help="check a host: run CMD with {plugin} replaced by soup's probe plugin",
        description="Run the host CMD once per check, with {plugin} (anywhere in its "
        "arguments) replaced by the path of a probe plugin that records what the host did.",
        formatter_class=formatter,
    )  # fmt: skip
    _common(host, "bound on each run of the host (default: 10)")
    return parser


def _command(parser: argparse.ArgumentParser, args: argparse.Namespace) -> list[str]:
    command = list(args.command)
    if command[:1] == ["--"]:
        command = command[1:]
    if not command:
        parser.error(f"no command to check: soup check {args.role} [options] -- CMD [ARG ...]")
    if args.role == "host" and not any("{plugin}" in arg for arg in command):
        parser.error("the host command must contain {plugin} where the plugin's path goes")
    return command


class Progress:
    """One line per check on stderr, only when stderr is a terminal."""

    def __init__(self, total: int) -> None:
        self.total, self.done = total, 0
        self.enabled = sys.stderr.isatty()

    def start(self, check: Check) -> None:
        if self.enabled:
            print(
                f"[{self.done + 1:2}/{self.total}] {check.id} ...",
                end="",
                file=sys.stderr,
                flush=True,
            )

    def end(self, outcome: Outcome) -> None:
        self.done += 1
        if self.enabled:
            print(f" {outcome.outcome} ({outcome.ms} ms)", file=sys.stderr, flush=True)


def run_checks(checks: Sequence[Check], run: Callable[[str], Verdict]) -> list[Outcome]:
    progress = Progress(len(checks))
    outcomes = []
    for check in checks:
        progress.start(check)
        started = time.monotonic()
        verdict = run(check.id)
        outcome = catalogue.outcome_of(check, verdict, round((time.monotonic() - started) * 1000))
        progress.end(outcome)
        outcomes.append(outcome)
    return outcomes


def _print_text(doc: dict[str, Any]) -> None:
    width = max(len(c["id"]) for c in doc["checks"]) if doc["checks"] else 0
    for c in doc["checks"]:
        print(f"{c['outcome'].upper():4}  {c['id']:{width}}  {c['detail']}")
    s = doc["summary"]
    print(
        f"{s['verdict'].upper()}: {s['pass']} pass, {s['fail']} fail, {s['warn']} warn, {s['skip']} skip"
    )


def _plugin_role(
    args: argparse.Namespace, command: list[str]
) -> tuple[dict[str, Any], Callable[[], list[Outcome]]]:
    from soup.lab.check import plugin_checks  # noqa: PLC0415 - grpc only when checking
    from soup.lab.check.target import Lab, PluginTarget, preflight  # noqa: PLC0415

    target = PluginTarget(
        command=tuple(command), cookie_key=args.cookie[0], cookie_value=args.cookie[1],
        versions=args.versions, transport=args.transport, timeout=args.timeout,
    )  # fmt: skip
    checks = catalogue.select(catalogue.for_role("plugin"), args.only, args.skip)

    def run() -> list[Outcome]:
        lab = Lab(target)
        try:
            preflight(lab)
            return run_checks(checks, lambda check_id: plugin_checks.run_one(lab, check_id))
        finally:
            lab.close()

    return {"role": "plugin", "transport": args.transport}, run


def _host_role(
    args: argparse.Namespace, command: list[str]
) -> tuple[dict[str, Any], Callable[[], list[Outcome]]]:
    from soup.lab.check import host_checks  # noqa: PLC0415 - grpc only when checking

    target = host_checks.HostTarget(
        command=tuple(command), cookie_key=args.cookie[0], cookie_value=args.cookie[1],
        versions=args.versions, timeout=args.timeout,
    )  # fmt: skip
    checks = catalogue.select(catalogue.for_role("host"), args.only, args.skip)

    def run() -> list[Outcome]:
        with host_checks.HostLab(target) as lab:
            return run_checks(checks, lambda check_id: host_checks.run_one(lab, check_id))

    return {"role": "host"}, run


def main(argv: Sequence[str]) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    command = _command(parser, args)
    role = _plugin_role if args.role == "plugin" else _host_role
    try:
        extra, run = role(args, command)
    except catalogue.SelectionError as exc:
        parser.error(str(exc))
    from soup.lab.check import report  # noqa: PLC0415
    from soup.lab.check.target import TargetError  # noqa: PLC0415

    try:
        outcomes = run()
    except TargetError as exc:
        print(f"soup check: error: {exc}", file=sys.stderr)
        return USAGE_ERROR
    target = {
        **extra, "command": command, "cookie": args.cookie[0], "versions": list(args.versions),
        "command_line": shlex.join(command),
    }  # fmt: skip
    doc = report.document(target, outcomes)
    if args.report_dir:
        report.write(doc, args.report_dir)
    if args.json:
        print(json.dumps(doc, indent=2))
    else:
        _print_text(doc)
    return 1 if doc["summary"]["verdict"] == catalogue.FAIL else 0
