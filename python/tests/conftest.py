"""Shared fixtures: plugin commands, hosts that always clean up, leftover checks."""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from soup.host import PluginClient

PYTHON = sys.executable
SOUP = f"{shlex.quote(PYTHON)} -m soup"
PLUGIN = f"{SOUP} rpc server-start"


def plugin_cmd(*args: str) -> str:
    """``python -m soup rpc server-start ARGS`` as a shell-style command line."""
    return " ".join([PLUGIN, *(shlex.quote(a) for a in args)])


def python_cmd(code: str) -> str:
    """``python -c CODE`` as a shell-style command line (a fake plugin)."""
    return f"{shlex.quote(PYTHON)} -c {shlex.quote(code)}"


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes whose process group is ``pgid`` (Linux /proc)."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        state, pgrp = fields[0], int(fields[2])
        if pgrp == pgid and state != "Z":
            members.append(int(entry.name))
    return members


@pytest.fixture
def make_client() -> Iterator[Any]:
    """Factory for :class:`PluginClient`; every client is killed and its group checked."""
    clients: list[PluginClient] = []

    def make(command: str, **kwargs: Any) -> PluginClient:
        kwargs.setdefault("timeout", 20.0)
        client = PluginClient(command, **kwargs)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.kill()
    for client in clients:
        if client.pid is not None:
            assert group_members(client.pid) == [], f"leftover processes of plugin {client.pid}"


@pytest.fixture
def plugin_env() -> dict[str, str]:
    """The environment a host gives a plugin (without a client cert)."""
    env = dict(os.environ)
    env.update({"BASIC_PLUGIN": "hello", "PLUGIN_PROTOCOL_VERSIONS": "1"})
    env.pop("PLUGIN_CLIENT_CERT", None)
    return env
