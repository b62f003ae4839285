"""The host commands of the command line: ``rpc client test|bench|callback-test`` and
``rpc kv put|get``, for arguments ``soup.lab.cli`` parsed.

A module of their own so that ``soup --help`` and ``soup --version`` (``soup.lab.cli``'s
parser) import none of grpc, protobuf and cryptography: ``soup.lab.cli`` imports this only
once a host command is to run.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import time

from soup import logs
from soup.connect import rpc_code, rpc_message
from soup.errors import HostError
from soup.handshake import ENV_LOG_LEVEL
from soup.host import RPC_TIMEOUT, Client, ClientConfig
from soup.lab import callbacktest, clienttest
from soup.lab.cliplugin import handshake_config, tls_settings
from soup.lab.kv import KVClient
from soup.lab.result import BenchResult, RoundTrips, TestResult

__all__ = ["run", "run_test"]


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
        grpc_broker_multiplex=args.grpc_broker_multiplex,
    )


def run_test(args: argparse.Namespace) -> TestResult:
    """``rpc client test`` for parsed arguments (see ``soup.lab.clienttest``)."""
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
        result.error = client._explain(exc) if client is not None else str(exc)
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


def run(args: argparse.Namespace) -> int:
    """Run the parsed host command (``rpc client ...`` or ``rpc kv ...``); the exit status."""
    if args.rpc_command == "kv":
        return _cmd_kv(args)
    if args.client_command == "bench":
        return _cmd_bench(args)
    if args.client_command == "callback-test":
        return _cmd_callback_test(args)
    return _cmd_test(args)
