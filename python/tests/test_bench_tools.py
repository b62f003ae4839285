"""The bench's reference processes do what their rows say (no timing is judged here)."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

from soup.lab.kv import KVClient
from soup.lab.kvstore import key_filename

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


def test_host_floor_times_round_trips_and_ends_its_plugin(tmp_path: Path) -> None:
    plugin = [sys.executable, "-m", "soup", "rpc", "server-start", "--tls-mode", "disabled"]
    plugin += ["--kv-dir", str(tmp_path / "kv")]
    host = [sys.executable, str(SCRIPTS / "bench_floor_host.py"), "rpc", "client", "bench"]
    host += ["--json", "--count", "5", "--warmup", "1", "--tls-mode", "disabled"]
    done = subprocess.run(
        [*host, "--server", shlex.join(plugin)],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(done.stdout)
    assert result["ok"] is True
    assert result["count"] == 5
    assert result["round_trip_us"]["p50"] > 0
    # The Puts reached the plugin's store: the keys' files are there.
    assert (tmp_path / "kv" / key_filename("bench-0")).read_bytes()


def test_host_floor_reaches_its_plugin_through_its_relay(tmp_path: Path) -> None:
    plugin = [sys.executable, str(SCRIPTS / "bench_floor.py"), "--dir", str(tmp_path), "--durable"]
    host = [sys.executable, str(SCRIPTS / "bench_floor_host.py"), "--count", "3", "--warmup", "0"]
    host += ["--tls-mode", "disabled", "--relay", "--server", shlex.join(plugin)]
    done = subprocess.run(host, check=False, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(done.stdout)["count"] == 3
    assert (tmp_path / "kv" / key_filename("bench-2")).read_bytes()


def test_host_floor_refuses_tls() -> None:
    host = [sys.executable, str(SCRIPTS / "bench_floor_host.py"), "--tls-mode", "auto"]
    done = subprocess.run(
        [*host, "--server", "true"], check=False, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 2
    assert "invalid choice: 'auto'" in done.stderr


def test_durable_relayed_floor_stores_through_its_relay(make_client: Any, tmp_path: Path) -> None:
    floor = [sys.executable, str(SCRIPTS / "bench_floor.py"), "--dir", str(tmp_path)]
    client = make_client(shlex.join([*floor, "--durable", "--relay"]), tls_mode="disabled")
    client.start()
    kv = KVClient(client.channel)
    kv.put("k", b"value")
    assert kv.get("k") == b"value"
    assert (tmp_path / "kv" / key_filename("k")).read_bytes() == b"value"
    assert [p.name for p in tmp_path.glob("relay-*.sock")] == [f"relay-{client.pid}.sock"]
    client.kill()
