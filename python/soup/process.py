"""Running a plugin process: spawn it in its own group, read its first stdout line, re-log
its stderr, say how it ended, and end the whole group.

go-plugin's host discards a plugin's later stdout and turns its stderr lines into log
records: hclog JSON at the line's level with its key/values, plain lines at debug, and
a line longer than its buffer in pieces at debug (``soup.loglines`` cuts them).
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import shlex
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from soup import logs
from soup.loglines import DEFAULT_BUFFER_SIZE, LineSplitter, Piece

__all__ = [
    "MAX_LINE",
    "PluginProcess",
    "ProcessError",
    "find_executable",
    "split_command",
    "wait_pid_gone",
]

MAX_LINE = 64 * 1024
# soup-go's wording: go-plugin's line scanner stops at MAX_LINE.
LINE_TOO_LONG_MESSAGE = (
    "the plugin's first line on stdout is longer than 64 KiB (go-plugin's limit), "
    "so it is no handshake line"
)
STDERR_TAIL_BYTES = 4096
READ_CHUNK = 64 * 1024
JOIN_WAIT = 1.0  # for the reader threads once the group is gone

# LogRecord attributes an ``extra`` dict must not overwrite.
_RESERVED = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class ProcessError(Exception):
    """The plugin process could not be started or read (the message says why)."""


def split_command(command: str | Sequence[str]) -> list[str]:
    """A command line (shell rules) or argv as argv; ``ProcessError`` if empty."""
    argv = shlex.split(command) if isinstance(command, str) else list(command)
    if not argv:
        raise ProcessError("empty plugin command")
    return argv


def find_executable(name: str, env: Mapping[str, str]) -> str | None:
    """The file ``name`` runs, or None if there is none: a name with a slash as it is,
    any other looked up on ``env``'s ``PATH`` (the default path without one), as
    ``subprocess`` looks it up."""
    if os.path.dirname(name):
        return name
    return shutil.which(name, path=os.pathsep.join(os.get_exec_path(dict(env))))


@dataclass
class _Tail:
    limit: int = STDERR_TAIL_BYTES
    data: bytearray = field(default_factory=bytearray)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, chunk: bytes) -> None:
        with self.lock:
            self.data += chunk
            if len(self.data) > self.limit:
                del self.data[: len(self.data) - self.limit]

    def text(self) -> str:
        with self.lock:
            return bytes(self.data).decode("utf-8", "replace")


def relog(logger: logging.Logger, line: str, **context: object) -> dict[str, object] | None:
    """Log one plugin stderr line on ``logger`` the way go-plugin does; its hclog fields."""
    if not line:
        return None
    record = logs.parse_line(line)
    if record is None:
        logger.debug("%s", line, extra=context)
        return None
    try:
        level = logs.python_level(str(record.get("@level", "debug")))
    except ValueError:
        level = logging.DEBUG
    extra: dict[str, object] = {
        (k if k not in _RESERVED else f"plugin_{k}"): v
        for k, v in record.items()
        if not k.startswith("@")
    }
    module = record.get("@module")
    if module is not None:
        extra["plugin_module"] = module
    logger.log(level, "%s", record.get("@message", ""), extra={**context, **extra})
    return record


class PluginProcess:
    """One plugin process in its own process group, with reader threads for its pipes."""

    def __init__(
        self,
        argv: Sequence[str],
        env: Mapping[str, str],
        *,
        plugin_log: logging.Logger,
        on_record: Callable[[dict[str, object]], None] | None = None,
        executable: str | None = None,
        log_buffer_size: int = DEFAULT_BUFFER_SIZE,
    ) -> None:
        """``executable``: the file to run (default: ``argv[0]`` on ``env``'s PATH);
        ``log_buffer_size``: the longest stderr line logged as one (go-plugin's
        ``PluginLogBufferSize``)."""
        self.argv = list(argv)
        self.plugin_log = plugin_log
        self._on_record = on_record
        self._log_lines = LineSplitter(log_buffer_size)
        self._tail = _Tail()
        self._lines: queue.Queue[bytes | BaseException] = queue.Queue()
        self._threads: list[tuple[threading.Thread, IO[bytes]]] = []
        try:
            self.proc = subprocess.Popen(
                self.argv,
                executable=executable,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=dict(env),
                start_new_session=True,
            )
        except OSError as exc:
            raise ProcessError(f"cannot start plugin {shlex.join(self.argv)!r}: {exc}") from exc
        self.started_at = time.monotonic()
        assert self.proc.stdout is not None
        assert self.proc.stderr is not None
        self._reader(self._read_stdout, self.proc.stdout, "stdout")
        self._reader(self._read_stderr, self.proc.stderr, "stderr")

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stderr_tail(self) -> str:
        """The last ~4 KiB the plugin wrote to stderr."""
        return self._tail.text()

    # -- readers
    def _reader(self, target: Callable[[IO[bytes]], None], pipe: IO[bytes], name: str) -> None:
        thread = threading.Thread(
            target=target, args=(pipe,), name=f"soup-host-{name}", daemon=True
        )
        thread.start()
        self._threads.append((thread, pipe))

    def _read_stdout(self, pipe: IO[bytes]) -> None:
        try:
            self._lines.put(pipe.readline(MAX_LINE))
            # go-plugin discards the plugin's later stdout: drain so the pipe never fills.
            while pipe.read(MAX_LINE):
                pass
        except (OSError, ValueError) as exc:
            self._lines.put(exc)

    def _read_stderr(self, pipe: IO[bytes]) -> None:
        try:
            while chunk := os.read(pipe.fileno(), READ_CHUNK):
                self._tail.add(chunk)
                self._relog(self._log_lines.feed(chunk))
        except (OSError, ValueError):
            return
        self._relog(self._log_lines.end())

    def _relog(self, pieces: list[Piece]) -> None:
        for piece in pieces:
            if piece.whole:
                record = relog(self.plugin_log, piece.text, plugin_pid=self.pid)
                if record is not None and self._on_record is not None:
                    self._on_record(record)
            elif piece.text:  # a piece of a longer line: as it is, at debug (go-plugin)
                self.plugin_log.debug("%s", piece.text, extra={"plugin_pid": self.pid})

    # -- the first stdout line
    def first_line(self, timeout: float) -> bytes:
        """The handshake line (``b""`` at EOF); ``ProcessError`` after ``timeout`` s from spawn."""
        remaining = max(0.0, timeout - (time.monotonic() - self.started_at))
        try:
            item = self._lines.get(timeout=remaining)
        except queue.Empty:
            raise self.failure(
                f"timed out after {timeout:g} s waiting for the plugin's handshake line on stdout"
            ) from None
        if isinstance(item, BaseException):
            raise self.failure(f"cannot read the plugin's stdout: {item}")
        if len(item) >= MAX_LINE and not item.endswith(b"\n"):
            raise self.failure(LINE_TOO_LONG_MESSAGE)
        if not item:
            self.settle()
        return item

    def settle(self, within: float = 1.0) -> None:
        """Give an exiting plugin a moment to exit and its stderr to drain."""
        deadline = time.monotonic() + within
        while self.peek_exit() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        for thread, _ in self._threads:
            if thread.name.endswith("stderr"):
                thread.join(min(0.5, within))

    # -- error text
    def failure(self, what: str, *, tail: bool = True, stopping: bool = False) -> ProcessError:
        """``what`` plus the exit status and (if ``tail``) the last stderr lines.

        ``stopping``: the caller kills a running plugin next, so do not call it running.
        """
        parts = [what]
        code = self.peek_exit()
        if code is None:
            if tail:
                state = "stopped by the host" if stopping else "still running"
                parts.append(f"plugin {state} (pid {self.pid})")
        elif code < 0:
            parts.append(f"plugin killed by signal {-code}")
        else:
            parts.append(f"plugin exit code {code}")
        if tail:
            parts.append("plugin stderr: " + (self._tail_summary() or "(empty)"))
        return ProcessError("; ".join(parts))

    def last_stderr_line(self) -> str:
        """The plugin's last stderr line as in errors (hclog JSON as ``[level] message``)."""
        return self._tail_summary(lines=1) or "(empty)"

    def _tail_summary(self, lines: int = 6, limit: int = 1200) -> str:
        """The last stderr lines on one line; hclog JSON shown as ``[level] message``."""
        out: list[str] = []
        for line in self.stderr_tail().splitlines()[-lines:]:
            record = logs.parse_line(line)
            if record is not None:
                text = f"[{record.get('@level')}] {record.get('@message')}"
                error = record.get("error")
                if error is not None:
                    text += f": {error}"
                out.append(text)
            elif line.strip():
                out.append(line.strip())
        summary = " | ".join(out)
        return summary if len(summary) <= limit else "..." + summary[-limit:]

    # -- exit status without reaping (the group stays killable)
    def peek_exit(self) -> int | None:
        """The exit status if the plugin has exited (negative: signal), without reaping it."""
        if self.proc.returncode is not None:
            return self.proc.returncode
        try:
            info = os.waitid(os.P_PID, self.proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return self.proc.poll()
        if info is None:
            return None
        if info.si_code == os.CLD_EXITED:
            return info.si_status
        return -info.si_status

    def wait_exit(self, timeout: float) -> bool:
        """True once the plugin has exited (within ``timeout`` s), without reaping it."""
        deadline = time.monotonic() + timeout
        while self.peek_exit() is None:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)
        return True

    def signal_group(self, signum: signal.Signals) -> None:
        """Signal whatever is left in the plugin's process group (the plugin is unreaped)."""
        if self.proc.returncode is not None:
            return  # already reaped: its pid (and group id) may belong to someone else now
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signum)

    def end_group(self) -> int | None:
        """SIGKILL the group, reap the plugin (its exit code) and release the reader threads."""
        self.signal_group(signal.SIGKILL)
        try:
            code: int | None = self.proc.wait(5.0)
        except subprocess.TimeoutExpired:
            code = None
        # The group is gone, so the pipes are at EOF unless something outside the group
        # holds them: one short bound for all reader threads (daemons), not one each.
        deadline = time.monotonic() + JOIN_WAIT
        for thread, _ in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        for thread, pipe in self._threads:
            if not thread.is_alive():  # closing a pipe a thread still reads would block
                with contextlib.suppress(OSError):
                    pipe.close()
        return code


def _pid_alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie, exited but unreaped, counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat[stat.rindex(")") + 2 :].split()[0] != "Z"


def wait_pid_gone(pid: int, timeout: float) -> bool:
    """True once ``pid`` (not our child: a reattached plugin) is gone, within ``timeout`` s."""
    if pid <= 0:
        return False
    deadline = time.monotonic() + timeout
    while _pid_alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)
    return True
