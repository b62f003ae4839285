"""Plugin processes for the bench's hosts: go-plugin's environment, a handshake line read
within a bound, and the end of the plugin's process group (nothing is left running)."""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import subprocess

EXIT_WAIT = 5.0


def plugin_env(cert_pem: str | None) -> dict[str, str]:
    """Our environment with the KV plugin's magic cookie (and AutoMTLS's host certificate)."""
    env = {**os.environ, "BASIC_PLUGIN": "hello", "PLUGIN_PROTOCOL_VERSIONS": "1"}
    env.pop("PLUGIN_CLIENT_CERT", None)
    if cert_pem is not None:
        env["PLUGIN_CLIENT_CERT"] = cert_pem
    return env


def read_line_bounded(proc: subprocess.Popen[bytes], timeout: float) -> bytes:
    """The plugin's first stdout line; TimeoutError if none came within ``timeout``."""
    assert proc.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        if not selector.select(timeout):
            raise TimeoutError(f"no handshake line within {timeout:g} s")
    return proc.stdout.readline()


def end_group(proc: subprocess.Popen[bytes], wait: float = 0.0) -> None:
    """Give the plugin ``wait`` s to exit by itself, then SIGTERM its process group and
    SIGKILL it after another EXIT_WAIT s."""
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(wait)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(EXIT_WAIT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(EXIT_WAIT)
    if proc.stdout is not None:
        proc.stdout.close()
