"""Managed clients (go-plugin ``Managed`` / ``CleanupClients``), with real processes: gone
after ``cleanup_clients()``, and after SIGTERM of a host that opted in (its own handler
kept); left running by a host that did not opt in."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest
from plugin_commands import PYTHON, group_left_after, group_members, plugin_cmd, python_cmd

import soup

pytestmark = pytest.mark.slow

# A plugin that does not exit when its host dies: only a cleanup can end it.
_STAYING_PLUGIN = python_cmd(
    "import sys, soup\nsys.exit(soup.serve(soup.ServeConfig(watch_parent=False)))\n"
)


def test_cleanup_clients_kills_managed_clients_only(make_client: Any) -> None:
    managed = [make_client(plugin_cmd(), managed=True) for _ in range(2)]
    unmanaged = make_client(plugin_cmd())
    for client in [*managed, unmanaged]:
        client.start()
    soup.cleanup_clients()
    for client in managed:
        assert group_left_after(client.pid) == []
        assert client.exit.graceful is True  # Shutdown, as kill() does
    assert group_members(unmanaged.pid) != []
    assert unmanaged.health_check() == "SERVING"


def _host(opt_in: str) -> subprocess.Popen[str]:
    code = (
        "import signal, sys, time, soup\n"
        f"{opt_in}\n"
        f"c = soup.Client(soup.ClientConfig(cmd={_STAYING_PLUGIN!r}, managed=True, timeout=20))\n"
        "c.start()\n"
        "print(c.pid, c._socket_dir, flush=True)\n"
        "time.sleep(60)\n"
    )
    return subprocess.Popen(
        [PYTHON, "-c", code], stdout=subprocess.PIPE, text=True, start_new_session=True
    )


def _plugin_pid(host: subprocess.Popen[str]) -> tuple[int, Path]:
    """The plugin's pid and the host's socket directory for it, as the host printed them."""
    assert host.stdout is not None
    line = host.stdout.readline()
    pid, _, socket_dir = line.strip().partition(" ")
    assert pid.isdigit(), f"host printed {line!r}"
    return int(pid), Path(socket_dir)


def _end(pgid: int) -> None:
    if group_members(pgid):
        os.killpg(pgid, signal.SIGKILL)
    assert group_left_after(pgid) == []


@pytest.mark.parametrize(
    ("opt_in", "exit_code"),
    [
        ("soup.cleanup_clients_on_exit()", -signal.SIGTERM),
        # The user's own handler is kept: it runs after the cleanup.
        (
            "signal.signal(signal.SIGTERM, lambda s, f: sys.exit(3))\n"
            "soup.cleanup_clients_on_exit()",
            3,
        ),
    ],
    ids=["default-action", "user-handler"],
)
def test_sigterm_of_a_host_that_opted_in_kills_its_plugins(opt_in: str, exit_code: int) -> None:
    host = _host(opt_in)
    try:
        plugin, socket_dir = _plugin_pid(host)
        host.send_signal(signal.SIGTERM)
        assert host.wait(30) == exit_code
        assert group_left_after(plugin, within=5.0) == []
        assert not socket_dir.exists()  # the cleanup's kill() removed it
    finally:
        host.kill()
        host.wait(10)
        _end(host.pid)


def test_sigterm_of_a_host_that_did_not_opt_in_leaves_the_plugin() -> None:
    host = _host("")
    plugin, socket_dir = None, None
    try:
        plugin, socket_dir = _plugin_pid(host)
        host.send_signal(signal.SIGTERM)
        assert host.wait(30) == -signal.SIGTERM
        assert group_members(plugin) != []  # why the opt-in exists
    finally:
        host.kill()
        host.wait(10)
        if plugin is not None:
            _end(plugin)
        if socket_dir is not None:
            shutil.rmtree(socket_dir, ignore_errors=True)
        _end(host.pid)
