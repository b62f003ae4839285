"""``rpc client callback-test``: the host side of the broker callback demo (``soup.lab.counter``).

Steps spawn, handshake, put, put_again, get, host_helper, plugin_helper, shutdown prove
GRPCBroker callbacks both ways (go-plugin's examples/bidirectional).
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import grpc

from soup.broker import BrokerError, GRPCBroker
from soup.errors import HostError
from soup.host import Client
from soup.lab import demopb
from soup.lab.clienttest import spawn_step
from soup.lab.counter import AddHelperServicer
from soup.lab.result import Identity, Step

__all__ = ["CallbackResult", "run_callback_test", "run_command"]

RPC_TIMEOUT = 10.0  # a Put includes a broker dial (waits up to 5 s) and a Sum
COUNTER_KEY = "soup-counter"


@dataclass
class CallbackResult:
    """The JSON of ``rpc client callback-test`` (same fields in soup-go)."""

    ok: bool = False
    error: str | None = None
    client: Identity = field(default_factory=Identity.me)
    server: Identity = field(default_factory=Identity)
    tls_mode: str = "auto"
    client_key: str | None = None
    server_key: str | None = None
    transport: str | None = None
    values: list[int] = field(default_factory=list)
    """The two values put; the expected total is their sum."""
    total: int | None = None
    """What Counter.Get returned after both puts."""
    host_helper_calls: list[list[int]] = field(default_factory=list)
    """The (a, b) of every Sum the plugin called on the host's AddHelper."""
    plugin_helper_sum: int | None = None
    """What the plugin's AddHelper (dialled by the host) returned for Sum(values)."""
    steps: list[Step] = field(default_factory=list)
    plugin_stderr_tail: str = ""

    def to_json(self) -> str:
        data = asdict(self)
        data["steps"] = [step.to_dict() for step in self.steps]
        return json.dumps(data)


class _StepFailed(Exception):
    pass


def _host_put(client: Client, value: int, helper: AddHelperServicer) -> int:
    """One Put with a fresh AddHelper served through the broker (as go's example does)."""
    broker = _broker(client)
    service_id = broker.next_id()
    served = broker.accept_and_serve(service_id, helper.register)
    try:
        stub = demopb.counter_pb2_grpc.CounterStub(client.channel)
        request = demopb.counter_pb2.CounterPutRequest(
            add_server=service_id, key=COUNTER_KEY, value=value
        )
        return int(stub.Put(request, timeout=RPC_TIMEOUT).total)
    finally:
        served.stop()


def _plugin_sum(client: Client, a: int, b: int) -> int:
    """Ask the plugin to serve an AddHelper through the broker, dial it, call Sum."""
    stub = demopb.counter_pb2_grpc.CounterStub(client.channel)
    opened = stub.OpenAdder(demopb.counter_pb2.OpenAdderRequest(), timeout=RPC_TIMEOUT)
    with _broker(client).dial(int(opened.add_server)) as channel:
        adder = demopb.counter_pb2_grpc.AddHelperStub(channel)
        return int(adder.Sum(demopb.counter_pb2.SumRequest(a=a, b=b), timeout=RPC_TIMEOUT).r)


def _broker(client: Client) -> GRPCBroker:
    if client.broker is None:
        raise _StepFailed("not connected: no broker")
    return client.broker


def _run_step(result: CallbackResult, name: str, action: Callable[[], str]) -> bool:
    """Run one step and record it; False (and result.error set) if it failed."""
    started = time.perf_counter()
    try:
        detail, error = action(), None
    except (HostError, BrokerError, _StepFailed, OSError, ValueError) as exc:
        detail = error = str(exc)
    except grpc.RpcError as exc:
        detail = error = f"{exc.code().name}: {exc.details()}"
    ms = (time.perf_counter() - started) * 1000
    result.steps.append(Step(name=name, ok=error is None, ms=ms, detail=detail))
    if error is not None:
        result.error = f"{name}: {error}"
    return error is None


def _shutdown(client: Client) -> str:
    if not client.kill():
        raise _StepFailed("plugin did not exit within 2 s after Shutdown")
    return f"exited by itself (exit code {client.exit.code})"


def run_callback_test(client: Client, result: CallbackResult) -> None:
    """Steps spawn, handshake, put, put_again, get, host_helper, plugin_helper, shutdown.

    Stops at the first failure; the plugin is always killed (kill is idempotent).
    """
    helper = AddHelperServicer()
    a, b = (secrets.randbelow(1_000_000) + 1 for _ in range(2))
    result.values = [a, b]
    steps: list[tuple[str, Callable[[], str]]] = [
        ("spawn", lambda: spawn_step(client)),
        ("handshake", lambda: _handshake(client, result)),
        ("put", lambda: f"Put({COUNTER_KEY}, {a}) -> total {_host_put(client, a, helper)}"),
        ("put_again", lambda: f"Put({COUNTER_KEY}, {b}) -> total {_host_put(client, b, helper)}"),
        ("get", lambda: _check_total(client, result, a + b)),
        ("host_helper", lambda: _check_host_calls(helper, [[0, a], [a, b]])),
        ("plugin_helper", lambda: _check_plugin_sum(client, result, a, b)),
        ("shutdown", lambda: _shutdown(client)),
    ]
    try:
        result.ok = all(_run_step(result, name, action) for name, action in steps)
    finally:
        client.kill()
        result.host_helper_calls = [list(call) for call in helper.calls]
        result.client_key = client.tls.client_key
        result.server_key = client.tls.server_key
        result.server = Identity(impl=client.server_impl, version=client.server_version)
        result.plugin_stderr_tail = client.stderr_tail()


def _handshake(client: Client, result: CallbackResult) -> str:
    info = client._handshake()
    result.transport = info.network
    backend = client.tls.backend or "plaintext"
    return f"{info.network} {info.address} backend {backend}; broker stream open"


def _check_total(client: Client, result: CallbackResult, expected: int) -> str:
    stub = demopb.counter_pb2_grpc.CounterStub(client.channel)
    got = int(
        stub.Get(demopb.counter_pb2.CounterGetRequest(key=COUNTER_KEY), timeout=RPC_TIMEOUT).value
    )
    result.total = got
    if got != expected:
        raise _StepFailed(f"Get({COUNTER_KEY}) = {got}, expected {expected}")
    return f"Get({COUNTER_KEY}) = {got}"


def _check_host_calls(helper: AddHelperServicer, expected: list[list[int]]) -> str:
    calls = [list(call) for call in helper.calls]
    if calls != expected:
        raise _StepFailed(f"the host's AddHelper saw Sum calls {calls}, expected {expected}")
    return f"the host's AddHelper served {len(calls)} Sum calls from the plugin: {calls}"


def _check_plugin_sum(client: Client, result: CallbackResult, a: int, b: int) -> str:
    got = _plugin_sum(client, a, b)
    result.plugin_helper_sum = got
    if got != a + b:
        raise _StepFailed(f"the plugin's AddHelper returned Sum({a}, {b}) = {got}")
    return f"the plugin's AddHelper, dialled by the host: Sum({a}, {b}) = {got}"


def run_command(make_client: Callable[[], Client], tls_mode: str, as_json: bool) -> int:
    """``rpc client callback-test``: run, print (JSON or lines), exit 0 pass / 1 fail."""
    result = CallbackResult(tls_mode=tls_mode)
    try:
        client = make_client()
    except (HostError, ValueError) as exc:
        result.error = f"spawn: {exc}"
        result.steps.append(Step(name="spawn", ok=False, ms=0.0, detail=str(exc)))
    else:
        run_callback_test(client, result)
    if as_json:
        print(result.to_json(), flush=True)
    else:
        for item in result.steps:
            mark = "PASS" if item.ok else "FAIL"
            print(f"{mark} {item.name:<13} {item.ms:8.1f} ms  {item.detail}")
        print("RESULT: PASS" if result.ok else f"RESULT: FAIL: {result.error}", flush=True)
    return 0 if result.ok else 1
