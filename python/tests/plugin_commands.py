"""Command lines and process checks shared by the tests (imported by name, not via conftest)."""

from __future__ import annotations

import logging
import shlex
import sys
import time
from pathlib import Path

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


def group_left_after(pgid: int, within: float = 2.0) -> list[int]:
    """The group's live members once they had ``within`` seconds to finish dying.

    SIGKILL is asynchronous: a killed process can still show as running for a moment
    after the host returns, so a check right away would race with the kernel.
    """
    deadline = time.monotonic() + within
    while (members := group_members(pgid)) and time.monotonic() < deadline:
        time.sleep(0.02)
    return members


class LogRecords(logging.Handler):
    """Keeps every record it is given (add it to a logger to see what the host logs)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def find(self, message: str) -> logging.LogRecord | None:
        return next((r for r in self.records if r.getMessage() == message), None)
