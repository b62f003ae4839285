"""Fake hosts for the hostile suite: the checker's host (soup.lab.check.peer) with the suite's
defaults (the cookie, PLUGIN_PROTOCOL_VERSIONS=1, a private PLUGIN_UNIX_SOCKET_DIR).

Fake *plugins* (attacking hosts) live in fake_plugin.py, run as real processes.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import grpc

from soup import bridge
from soup.lab import demopb
from soup.lab.check.peer import (
    Plugin,
    channel,
    good_call,
    health,
    plaintext_attempt,
    rpc,
    shutdown,
    start_plugin,
    tls_attempt,
    wait_until,
    without_go_plugin_vars,
    yamux_health,
)
from soup.lab.verify import client_context

__all__ = [
    "Plugin",
    "channel",
    "client_context",
    "good_call",
    "health",
    "host_env",
    "kv_stub",
    "plaintext_attempt",
    "rpc",
    "running",
    "shutdown",
    "tls_attempt",
    "wait_until",
    "yamux_health",
]

COOKIE = {"BASIC_PLUGIN": "hello"}


def host_env(extra: Mapping[str, str | None], socket_dir: Path) -> dict[str, str]:
    """What the suite's host gives its plugin (cookie, versions "1", socket dir), plus ``extra``."""
    base = {**COOKIE, "PLUGIN_PROTOCOL_VERSIONS": "1", "PLUGIN_UNIX_SOCKET_DIR": str(socket_dir)}
    return without_go_plugin_vars({**base, **extra}, cookie_key="BASIC_PLUGIN")


@contextlib.contextmanager
def running(argv: list[str], env: Mapping[str, str | None]) -> Iterator[Plugin]:
    """A plugin started with host_env plus ``env``, killed (and its socket dir removed) after."""
    socket_dir = bridge.private_socket_dir("soup-fh-")
    plugin = start_plugin(argv, host_env(env, socket_dir), timeout=30.0, private_dir=socket_dir)
    try:
        yield plugin
    finally:
        plugin.kill()


def kv_stub(chan: grpc.Channel) -> Any:
    return demopb.kv_pb2_grpc.KVStub(chan)
