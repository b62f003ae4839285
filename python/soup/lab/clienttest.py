"""``rpc client test``: the seven steps against one plugin, and their evidence.

spawn (or reattach), handshake, put, get, get_missing, health, shutdown; the run stops
at the first failure and always ends the plugin (unless reattached with keep_running).
With TLS, the verdict also needs both-ways mutual-TLS evidence (soup.lab.verify, gathered
before the shutdown): a plugin that never verifies the host fails although every step
passed.
"""

from __future__ import annotations

import io
import secrets
import time
from collections.abc import Callable

from soup.connect import rpc_code, rpc_message
from soup.errors import HostError
from soup.host import Client, ClientConfig
from soup.lab import kvprofile, verify
from soup.lab.kv import KVClient
from soup.lab.result import Identity, Step, TestResult

__all__ = ["KEEP_RUNNING_DETAIL", "TEST_KEY", "run"]

TEST_KEY = "soup-test-key"
KEEP_RUNNING_DETAIL = "skipped: --keep-running, the plugin keeps running"


class _StepFailed(Exception):
    pass


class _Steps:
    def __init__(self, client: Client, result: TestResult, kv_profile: str) -> None:
        self.client = client
        self.result = result
        self.kv_profile = kv_profile
        self.value = b"hello from soup" + secrets.token_hex(8).encode()
        self.missing = f"soup-missing-key-{secrets.token_hex(8)}"
        self.kv: KVClient | None = None
        self.shutdown_done = False

    def run(self, name: str, action: Callable[[], str]) -> None:
        started = time.perf_counter()
        try:
            detail = action()
            ok, error = True, None
        except (HostError, _StepFailed, OSError, ValueError) as exc:
            detail, ok, error = str(exc), False, str(exc)
        ms = (time.perf_counter() - started) * 1000
        self.result.steps.append(Step(name=name, ok=ok, ms=ms, detail=detail))
        if not ok:
            self.result.error = f"{name}: {error}"
            raise _StepFailed(self.result.error)

    def spawn(self) -> str:
        return spawn_step(self.client)

    def handshake(self) -> str:
        info = self.client._handshake()
        self.kv = KVClient(self.client.channel, self.client.config.rpc_timeout)
        evidence = self.client.tls
        tls_text = "plaintext"
        if evidence.backend is not None:
            tls_text = f"{evidence.version or 'TLS ?'} {evidence.backend}"
        return f"{info.network} {info.address} app v{info.app_version} {tls_text}"

    def put(self) -> str:
        assert self.kv is not None
        self.kv.put(TEST_KEY, self.value)
        return f"key={TEST_KEY} bytes={len(self.value)}"

    def get(self) -> str:
        assert self.kv is not None
        return kvprofile.check_get(self.kv_profile, TEST_KEY, self.value, self.kv.get(TEST_KEY))

    def get_missing(self) -> str:
        assert self.kv is not None
        try:
            got = self.kv.get(self.missing)
        except HostError as exc:
            code = rpc_code(exc)
            name = code.name if code is not None else "UNKNOWN"
            return kvprofile.check_missing(self.kv_profile, self.missing, name, rpc_message(exc))
        return kvprofile.check_missing(self.kv_profile, self.missing, None, f"{len(got)} bytes")

    def health(self) -> str:
        status = self.client.health_check("plugin")
        if status != "SERVING":
            raise _StepFailed(f"health of service 'plugin' is {status}, expected SERVING")
        return "service=plugin SERVING"

    def shutdown(self) -> str:
        self.shutdown_done = True
        started = time.perf_counter()
        graceful = self.client.kill()
        ms = (time.perf_counter() - started) * 1000
        if self.client.config.keep_running:
            return KEEP_RUNNING_DETAIL
        if not graceful:
            raise _StepFailed(
                "plugin did not exit within 2 s after Shutdown; killed its process group"
            )
        code = self.client.exit.code
        status = f"exit code {code}" if code is not None else "reattached: not our child"
        return f"exited by itself after {ms:.1f} ms ({status})"


def spawn_step(client: Client) -> str:
    """The spawn step of the host commands: start the plugin, or name the one reattached."""
    reattach = client.config.reattach
    if reattach is not None:
        return f"reattach to pid {reattach.pid} at {reattach.network} {reattach.address}"
    return f"pid {client._spawn()}"


def run(
    config: ClientConfig | Callable[[], ClientConfig], kv_profile: str = "strict"
) -> TestResult:
    """The ``client test`` steps; stops at the first failure, always ends the plugin.

    ``kv_profile``: how get/get_missing judge the plugin's answers (``soup.lab.kvprofile``).
    """
    result = TestResult()
    try:
        made = config() if callable(config) else config
        result.tls.mode = made.tls.mode
        client = Client(made)
    except (HostError, ValueError) as exc:
        result.error = f"spawn: {exc}"
        result.steps.append(Step(name="spawn", ok=False, ms=0.0, detail=str(exc)))
        return result
    steps = _Steps(client, result, kv_profile)
    try:
        steps.run("spawn", steps.spawn)
        try:
            steps.run("handshake", steps.handshake)
        finally:
            info = client.handshake_info
            if info is not None:
                result.transport = info.network
                result.address = info.address
                result.app_protocol_version = info.app_version
        for name in ("put", "get", "get_missing", "health"):
            steps.run(name, getattr(steps, name))
        result.mutual_tls = verify.mutual_tls(client)  # while the plugin still serves
        steps.run("shutdown", steps.shutdown)
        one_way = verify.problems(made.tls.mode, result.mutual_tls)
        result.ok = not one_way
        if one_way:
            result.error = "mutual_tls: " + "; ".join(one_way)
    except _StepFailed:
        result.ok = False
    finally:
        if not steps.shutdown_done:
            client.kill()
        result.tls = client.tls
        # Who served, as the plugin's own log said (null if it never said).
        result.server = Identity(impl=client.server_impl, version=client.server_version)
        result.plugin_stderr_tail = client.stderr_tail()
    return result


def human_report(plugin: str, result: TestResult) -> str:
    """The human form of ``client test``'s result (``plugin`` names what was tested)."""
    out = io.StringIO()
    t = result.tls
    out.write(f"soup client test: {result.client.version}\n")
    out.write(f"  plugin:     {plugin}\n")
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
    out.write(_mutual_tls_lines(result.mutual_tls))
    if result.ok:
        out.write("RESULT: PASS\n")
    else:
        tail = result.plugin_stderr_tail.strip()
        if tail:
            out.write("plugin stderr (tail):\n")
            for line in tail.splitlines()[-20:]:
                out.write(f"  | {line}\n")
        out.write(f"RESULT: FAIL: {result.error}\n")
    return out.getvalue()


def _mutual_tls_lines(evidence: dict[str, object] | None) -> str:
    """Who verified whom, with the probes' evidence (soup-go prints the same lines)."""
    if evidence is None:
        return ""
    lines = []
    for who, verified, detail in (
        ("plugin verified the host", "plugin_verified_client", "plugin_evidence"),
        ("host verified the plugin", "host_verified_plugin", "host_evidence"),
    ):
        value = evidence.get(verified)
        said = "yes" if value is True else "NO" if value is False else "-"
        lines.append(f"mutual TLS: {who}: {said} ({evidence.get(detail)})\n")
    return "".join(lines)
