"""Shared fixtures: plugin commands, hosts that always clean up, leftover checks."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from plugin_commands import group_left_after

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "conformance"))
import hygiene
from soup.host import Client, ClientConfig
from soup.settings import TLSSettings

_TLS_FIELDS = {"tls_mode": "mode", "key_type": "key_type", "tls_backend": "backend"}
_TLS_FIELDS |= {name: name for name in ("cert_file", "key_file", "ca_file")}


def client_config(command: str, **kwargs: Any) -> ClientConfig:
    """A ClientConfig from the tests' short keyword names (tls_mode=..., config=...)."""
    tls = {_TLS_FIELDS[k]: kwargs.pop(k) for k in list(kwargs) if k in _TLS_FIELDS}
    if "config" in kwargs:
        kwargs["handshake"] = kwargs.pop("config")
    return ClientConfig(cmd=command, tls=TLSSettings(**tls), **kwargs)


_TMPDIR_KEY = pytest.StashKey[Path]()


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_TMPDIR_KEY] = hygiene.private_tmpdir()


def pytest_unconfigure(config: pytest.Config) -> None:
    hygiene.remove_tmpdir(config.stash[_TMPDIR_KEY])


@pytest.fixture(autouse=True)
def _hygiene(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail a test that leaves a process, socket or temporary file behind."""
    yield from hygiene.check_test(request)


@pytest.fixture
def make_client() -> Iterator[Any]:
    """Factory for :class:`Client`; every client is killed and its group checked."""
    clients: list[Client] = []

    def make(command: str, **kwargs: Any) -> Client:
        kwargs.setdefault("timeout", 20.0)
        client = Client(client_config(command, **kwargs))
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
