"""Shared fixtures: plugin commands, hosts that always clean up, leftover checks."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from plugin_commands import group_left_after

from soup.host import PluginClient


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
            assert group_left_after(client.pid) == [], f"leftover processes of plugin {client.pid}"


@pytest.fixture
def plugin_env() -> dict[str, str]:
    """The environment a host gives a plugin (without a client cert)."""
    env = dict(os.environ)
    env.update({"BASIC_PLUGIN": "hello", "PLUGIN_PROTOCOL_VERSIONS": "1"})
    env.pop("PLUGIN_CLIENT_CERT", None)
    return env
