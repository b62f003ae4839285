"""go-plugin's SecureConfig, SkipHostEnv and PluginLogBufferSize on ``soup.ClientConfig``,
with real plugin processes."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from plugin_commands import PYTHON, LogRecords, plugin_cmd, python_cmd

import soup
from soup import logs
from soup.reattach import ReattachConfig

pytestmark = pytest.mark.slow

SOUP_SOURCE = str(Path(__file__).resolve().parents[1])  # python/, where `soup` is


def _sha256(path: str | Path) -> bytes:
    return hashlib.sha256(Path(path).read_bytes()).digest()


def _script(path: Path, body: str) -> Path:
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return path


# -- secure_config (go-plugin's SecureConfig)


def test_the_executable_with_the_checksum_is_started(make_client: Any) -> None:
    client = make_client(plugin_cmd(), secure_config=soup.SecureConfig(_sha256(PYTHON)))
    client.start()
    assert client.health_check() == "SERVING"


def test_another_checksum_refuses_the_start_with_both_digests(make_client: Any) -> None:
    expected = hashlib.sha256(b"the plugin we released").digest()
    client = make_client(plugin_cmd(), secure_config=soup.SecureConfig(expected))
    with pytest.raises(soup.HostError) as err:
        client.start()
    assert str(err.value) == (
        f"checksums did not match: plugin executable {PYTHON}: expected sha256 "
        f"{expected.hex()}, actual {_sha256(PYTHON).hex()}; it is not the file the "
        "checksum was made for (SecureConfig.checksum): refusing to start it"
    )
    assert client.pid is None  # nothing was started


def test_a_name_is_looked_up_on_the_path_of_env_and_that_file_runs(
    make_client: Any, tmp_path: Path
) -> None:
    # Only the plugin's env has this directory on PATH: a name is looked up there.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    plugin = _script(bin_dir / "soup-plugin", f"exec {plugin_cmd()}")
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    assert str(bin_dir) not in os.environ.get("PATH", "")
    wrong = soup.SecureConfig(hashlib.sha512(b"x").digest(), hash="sha512")
    refused = make_client("soup-plugin", env=env, secure_config=wrong)
    with pytest.raises(soup.HostError) as err:
        refused.start()
    actual = hashlib.sha512(plugin.read_bytes()).hexdigest()
    assert f"checksums did not match: plugin executable {plugin}: expected sha512 " in str(
        err.value
    )
    assert f", actual {actual};" in str(err.value)
    started = make_client("soup-plugin", env=env, secure_config=soup.SecureConfig(_sha256(plugin)))
    started.start()
    assert started.health_check() == "SERVING"


def test_a_missing_or_unreadable_executable_is_not_started(
    make_client: Any, tmp_path: Path
) -> None:
    secure = soup.SecureConfig(hashlib.sha256(b"").digest())
    missing = make_client("soup-no-such-plugin --flag", secure_config=secure)
    with pytest.raises(soup.HostError) as err:
        missing.start()
    assert str(err.value).startswith(
        "error verifying checksum: plugin executable 'soup-no-such-plugin' not found on "
        "PATH (env's PATH when env is given, else the host's)"
    )
    folder = tmp_path / "plugin.d"  # a path, but no file to hash (or run)
    folder.mkdir()
    closed = make_client(str(folder), secure_config=secure)
    with pytest.raises(soup.HostError) as err:
        closed.start()
    assert f"error verifying checksum: cannot read {folder}: [Errno 21]" in str(err.value)
    assert closed.pid is None


def test_secure_config_with_reattach_is_refused_as_in_go_plugin() -> None:
    running = ReattachConfig("unix", "/tmp/soup-none.sock", pid=1)
    with pytest.raises(ValueError, match="only one of reattach and secure_config can be set"):
        soup.ClientConfig(
            reattach=running,
            tls=soup.TLSSettings(mode="disabled"),
            secure_config=soup.SecureConfig(hashlib.sha256(b"").digest()),
        )


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"checksum": b""}, ValueError, "no checksum provided"),
        ({"checksum": b"ab" * 32}, ValueError, r"64 bytes, but a sha256 digest is 32: .*fromhex"),
        ({"checksum": "ab" * 32}, TypeError, "checksum must be bytes, got str"),
        ({"checksum": b"x" * 32, "hash": "sha-257"}, ValueError, "'sha-257': not a hash"),
        ({"checksum": b"x" * 32, "hash": "shake_256"}, ValueError, "no fixed size"),
    ],
)
def test_a_bad_secure_config_fails_when_made(
    kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        soup.SecureConfig(**kwargs)


# -- skip_host_env (go-plugin's SkipHostEnv)


def _env_reporting_plugin(out: Path) -> str:
    """A plugin that writes the environment it was started with to ``out``, then serves.

    It reads /proc/self/environ: Python itself may add to ``os.environ`` (LC_CTYPE,
    PEP 538). It finds ``soup`` by path, not PYTHONPATH, which the host may not pass.
    """
    return python_cmd(
        f"import sys; sys.path.insert(0, {SOUP_SOURCE!r})\n"
        "import json, soup\n"
        "raw = open('/proc/self/environ', 'rb').read().decode()\n"
        "env = dict(item.split('=', 1) for item in raw.split('\\0') if item)\n"
        f"open({str(out)!r}, 'w').write(json.dumps(env))\n"
        "sys.exit(soup.serve(soup.ServeConfig()))\n"
    )


@pytest.fixture
def host_only_var(monkeypatch: pytest.MonkeyPatch) -> str:
    """A variable only the host's environment has."""
    monkeypatch.setenv("SOUP_TEST_HOST_ONLY", "from the host")
    return "SOUP_TEST_HOST_ONLY"


def _started_env(
    make_client: Any, out: Path, cmd: str | None = None, **kwargs: Any
) -> dict[str, str]:
    """The environment the plugin (default: ``_env_reporting_plugin``) was started with."""
    client = make_client(cmd or _env_reporting_plugin(out), **kwargs)
    client.start()
    assert client.health_check() == "SERVING"
    env: dict[str, str] = json.loads(out.read_text())
    return env


def test_the_host_environment_is_inherited_by_default(
    make_client: Any, tmp_path: Path, host_only_var: str
) -> None:
    env = _started_env(make_client, tmp_path / "env.json")
    assert env[host_only_var] == "from the host"


def test_skip_host_env_gives_only_the_handshake_variables(
    make_client: Any, tmp_path: Path, host_only_var: str
) -> None:
    env = _started_env(make_client, tmp_path / "env.json", skip_host_env=True)
    assert host_only_var not in env
    assert sorted(env) == [
        "BASIC_PLUGIN",
        "PLUGIN_CLIENT_CERT",  # AutoMTLS
        "PLUGIN_MAX_PORT",
        "PLUGIN_MIN_PORT",
        "PLUGIN_PROTOCOL_VERSIONS",
        "PLUGIN_UNIX_SOCKET_DIR",  # the host's private socket directory
    ]
    assert (env["BASIC_PLUGIN"], env["PLUGIN_PROTOCOL_VERSIONS"]) == ("hello", "1")


def test_skip_host_env_still_finds_the_command_on_the_hosts_path(
    make_client: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # as go-plugin's exec.Command, which looks the name up before the env is made
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    out = tmp_path / "env.json"
    plugin = _script(bin_dir / "soup-env-plugin", f"exec {_env_reporting_plugin(out)}")
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    secure = soup.SecureConfig(_sha256(plugin))
    env = _started_env(
        make_client, out, cmd="soup-env-plugin", skip_host_env=True, secure_config=secure
    )
    assert "PATH" not in env


def test_env_replaces_the_hosts_and_the_handshake_variables_win(
    make_client: Any, tmp_path: Path, host_only_var: str
) -> None:
    given = {"MINE": "1", "BASIC_PLUGIN": "not the cookie", "PLUGIN_PROTOCOL_VERSIONS": "9"}
    for skip in (False, True):  # with env, skip_host_env changes nothing
        out = tmp_path / f"env-{skip}.json"
        env = _started_env(make_client, out, tls_mode="disabled", env=given, skip_host_env=skip)
        assert host_only_var not in env
        assert env["MINE"] == "1"
        assert (env["BASIC_PLUGIN"], env["PLUGIN_PROTOCOL_VERSIONS"]) == ("hello", "1")
        assert "PLUGIN_CLIENT_CERT" not in env  # plaintext: none, whatever env holds


# -- plugin_log_buffer_size (go-plugin's PluginLogBufferSize)


@pytest.fixture
def plugin_records() -> Iterator[list[logging.LogRecord]]:
    """Every record the host re-logs from a plugin's real stderr, in order."""
    handler = LogRecords()
    logger = logging.getLogger("soup.host.plugin")
    previous = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    yield handler.records
    logger.removeHandler(handler)
    logger.setLevel(previous)


def _stderr_writing_plugin(source: Path, *lines: str) -> str:
    """A plugin that writes ``lines`` (and newlines) to its stderr, then serves; they go
    through the file ``source`` (a command line cannot hold 64 KiB)."""
    source.write_bytes("".join(line + "\n" for line in lines).encode())
    return python_cmd(
        "import sys, soup\n"
        f"sys.stderr.buffer.write(open({str(source)!r}, 'rb').read()); sys.stderr.flush()\n"
        "sys.exit(soup.serve(soup.ServeConfig()))\n"
    )


def _pieces_of(records: list[logging.LogRecord], line: str) -> list[logging.LogRecord]:
    """The consecutive stderr records that start with ``line``'s start and add up to it."""
    stderr = [r for r in records if hasattr(r, "plugin_pid")]
    first = next(i for i, r in enumerate(stderr) if line.startswith(r.getMessage()[:16]))
    pieces, text = [], ""
    for record in stderr[first:]:
        if text == line:
            break
        pieces.append(record)
        text += record.getMessage()
    return pieces


@pytest.mark.parametrize(
    ("limit", "line"),
    [
        # a 2-byte character across the cut at 128: the first piece ends before it
        (128, "L" * 127 + "é" + "o" * 200),
        # go-plugin's default, 64 KiB: the rest after the first 65536 bytes
        (None, "D" * (64 * 1024 + 100)),
    ],
)
def test_a_line_longer_than_the_buffer_is_logged_in_pieces_without_losing_bytes(
    make_client: Any,
    plugin_records: list[logging.LogRecord],
    tmp_path: Path,
    limit: int | None,
    line: str,
) -> None:
    size = limit or 64 * 1024
    after = logs.format_record("warn", "after", module="t")
    assert len(after) + 1 <= size  # it fits: one record, at its level
    long_hclog = logs.format_record("error", "x" * size, module="t")
    extra = {} if limit is None else {"plugin_log_buffer_size": limit}
    client = make_client(
        _stderr_writing_plugin(tmp_path / "lines", line, long_hclog, after), **extra
    )
    client.start()
    assert client.kill() is True  # joins the stderr reader: every line is re-logged

    pieces = _pieces_of(plugin_records, line)
    assert "".join(p.getMessage() for p in pieces) == line
    assert all(len(p.getMessage().encode()) <= size for p in pieces)
    expected_sizes = [127, 128, 74] if limit == 128 else [64 * 1024, 100]
    assert [len(p.getMessage().encode()) for p in pieces] == expected_sizes
    assert {p.levelno for p in pieces} == {logging.DEBUG}
    # An hclog line longer than the buffer is pieces as it is, at debug (go-plugin).
    json_pieces = _pieces_of(plugin_records, long_hclog)
    assert "".join(p.getMessage() for p in json_pieces) == long_hclog
    assert {p.levelno for p in json_pieces} == {logging.DEBUG}
    # ... and the reader goes on: the next line is one record at its own level.
    warned = [r for r in plugin_records if r.getMessage() == "after"]
    assert [(r.levelno, r.plugin_module) for r in warned] == [(logging.WARNING, "t")]  # type: ignore[attr-defined]


@pytest.mark.parametrize("size", [0, -1, True, 1.5, "64k"])
def test_a_log_buffer_size_that_is_no_positive_int_is_refused(size: object) -> None:
    with pytest.raises(ValueError, match="plugin_log_buffer_size must be a positive number"):
        soup.ClientConfig(cmd=shlex.join([PYTHON]), plugin_log_buffer_size=size)  # type: ignore[arg-type]
