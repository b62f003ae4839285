"""Hygiene: fail any test that leaves a process, a socket or a temporary file behind.

Precise, so that other work on the same machine never trips it:
- every pytest process (controller and each xdist worker) gets a TMPDIR of its own,
  inherited by everything it starts, so a snapshot of that directory before and after
  a test sees exactly what this test's processes left there (sockets, directories,
  files), nobody else's;
- every test gets a marker in the environment (``SOUP_HYGIENE_TEST``), inherited by
  every process it starts, even after a host dies and its plugin is re-parented; a
  process still carrying the marker after the test is a leftover.
SIGKILL and exit are asynchronous: leftovers get ``GRACE_S`` to finish going away.
A leftover is removed or killed after it is reported, so one test's mess does not
fail the next.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

MARKER = "SOUP_HYGIENE_TEST"
GRACE_S = 2.0
# Short, so that unix socket paths below it stay under the 104-byte limit.
TMP_PARENT = "/tmp"
# pytest's own temporary root (tmp_path lives there) is not a leftover.
_PYTEST_ROOT_PREFIX = "pytest-of-"


def private_tmpdir() -> Path:
    """Make this process's own TMPDIR (and its children's); returns it."""
    # pytest's tmp_path stays where it was: unix socket paths under it must stay short.
    os.environ.setdefault("PYTEST_DEBUG_TEMPROOT", tempfile.gettempdir())
    path = Path(tempfile.mkdtemp(prefix="soup-hy-", dir=TMP_PARENT))
    os.environ["TMPDIR"] = str(path)
    tempfile.tempdir = None  # forget the cached default: gettempdir() reads TMPDIR again
    return path


def remove_tmpdir(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def _tmp_entries() -> set[str]:
    root = Path(tempfile.gettempdir())
    return {p.name for p in root.iterdir() if not p.name.startswith(_PYTEST_ROOT_PREFIX)}


def marked_processes(marker: str, name: str = MARKER) -> list[int]:
    """Live (non-zombie) processes whose environment carries ``name=marker``."""
    needle = f"{name}={marker}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle not in (entry / "environ").read_bytes().split(b"\0"):
                continue
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if stat[stat.rindex(")") + 2 :].split()[0] != "Z":
            found.append(int(entry.name))
    return found


def _describe(pid: int) -> str:
    try:
        cmdline = (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ")
    except OSError:
        return str(pid)
    return f"{pid} ({cmdline.decode(errors='replace').strip()[:160]})"


def _settled(marker: str, before: set[str]) -> tuple[list[int], set[str]]:
    deadline = time.monotonic() + GRACE_S
    while True:
        procs, files = marked_processes(marker), _tmp_entries() - before
        if (not procs and not files) or time.monotonic() > deadline:
            return procs, files
        time.sleep(0.05)


def _clean(procs: list[int], files: set[str]) -> None:
    for pid in procs:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            continue
    root = Path(tempfile.gettempdir())
    for name in files:
        path = root / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def check_test(request: pytest.FixtureRequest) -> Iterator[None]:
    """The autouse fixture's body: mark, run the test, then report what it left behind."""
    marker = uuid.uuid4().hex
    before = _tmp_entries()
    previous = os.environ.get(MARKER)
    os.environ[MARKER] = marker
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(MARKER, None)
        else:
            os.environ[MARKER] = previous
    procs, files = _settled(marker, before)
    problems = []
    if procs:
        problems.append("processes: " + ", ".join(_describe(p) for p in procs))
    if files:
        problems.append(f"in TMPDIR {tempfile.gettempdir()}: " + ", ".join(sorted(files)))
    _clean(procs, files)
    if problems:
        pytest.fail(
            f"{request.node.nodeid} left things behind (hygiene): " + "; ".join(problems),
            pytrace=False,
        )
