"""The KV plugin's storage: one file per key in a directory, crash-safe writes.

Semantics shared with soup-go (conformance tests compare both):

- a key is a non-empty string of at most ``MAX_KEY_BYTES`` bytes of UTF-8;
- its file name is the URL-safe base64 of those bytes without padding (only
  ``A-Z a-z 0-9 - _``: no ``.``, no ``/``, so no key can leave the directory or
  collide with a temporary file);
- a write goes to ``.soup-put-<16 lowercase hex digits>`` in the same directory, is
  fsynced, renamed over the target, and the directory is fsynced; the directory is
  created (mode 0700, with parents) when missing;
- a writer holds an exclusive ``flock`` on its temporary file until the rename; opening
  a store removes the temporary files nobody holds: those a killed writer left behind (a
  write that was interrupted never happened, so they hold nothing anyone acknowledged),
  never a write in progress in another process;
- only what the store can prove it made is removed: a name of exactly that pattern, a
  regular file (``lstat``: never a symlink, FIFO, socket or directory, and nothing is
  opened that could block), owned by this user. Anything else in the directory (a user's
  ``.tmp-notes``) is left alone. A temporary file the store may not remove (a read-only
  directory or file system) is left too: the store still opens, for reading.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import fcntl
import os
import random
import re
import stat
import threading
from pathlib import Path

__all__ = [
    "EMPTY_KEY_MESSAGE",
    "MAX_KEY_BYTES",
    "NOT_FOUND_MESSAGE",
    "TEMP_PREFIX",
    "FileStore",
    "InvalidKeyError",
    "KeyNotFoundError",
    "is_temp_name",
    "key_filename",
    "remove_stale_temp_files",
]

MAX_KEY_BYTES = 180
EMPTY_KEY_MESSAGE = "key must not be empty"
NOT_FOUND_MESSAGE = "key not found"
TEMP_PREFIX = ".soup-put-"
# The whole name of a temporary file (a key's name has no '.', so none can match).
_TEMP_NAME = re.compile(re.escape(TEMP_PREFIX) + "[0-9a-f]{16}")
# Removing a leftover is housekeeping: where the store may not remove it, it stays.
_CANNOT_REMOVE = frozenset({errno.EACCES, errno.EPERM, errno.EROFS})

_DIR_MODE = 0o700
_FILE_MODE = 0o600
_READ_SIZE = 64 * 1024
_TEMP_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
# Temporary names: a generator of the store's own (a plugin's random.seed() cannot make
# its names repeat), seeded by the OS once; a clash only costs another name (O_EXCL).
# Unpredictability is not needed in a 0700 directory, and it costs no syscall per Put.
_TEMP_NAMES = random.Random()  # noqa: S311 - names, not secrets (see above)
os.register_at_fork(after_in_child=_TEMP_NAMES.seed)


class InvalidKeyError(ValueError):
    """The key is empty or too long; ``str()`` is the gRPC INVALID_ARGUMENT message."""


class KeyNotFoundError(KeyError):
    """No value is stored under the key; ``str()`` is the gRPC NOT_FOUND message."""

    def __init__(self, message: str = NOT_FOUND_MESSAGE) -> None:
        super().__init__(message)

    def __str__(self) -> str:  # KeyError would add quotes
        return str(self.args[0])


def _key_bytes(key: str) -> bytes:
    if not key:
        raise InvalidKeyError(EMPTY_KEY_MESSAGE)
    try:
        data = key.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidKeyError("key is not valid UTF-8") from None
    if len(data) > MAX_KEY_BYTES:
        raise InvalidKeyError(f"key is too long: {len(data)} bytes (at most {MAX_KEY_BYTES})")
    return data


def key_filename(key: str) -> str:
    """Validate ``key`` and return its file name (URL-safe base64, no padding)."""
    return base64.urlsafe_b64encode(_key_bytes(key)).rstrip(b"=").decode("ascii")


def _fsync_dir(fd: int) -> None:
    try:
        os.fsync(fd)
    except OSError as exc:  # some file systems cannot sync a directory
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise


def is_temp_name(name: str) -> bool:
    """True if ``name`` is one the store gives its temporary files."""
    return _TEMP_NAME.fullmatch(name) is not None


def _is_own_file(st: os.stat_result) -> bool:
    return stat.S_ISREG(st.st_mode) and st.st_uid == os.geteuid()


def _remove_if_unlocked(path: str) -> bool:
    """Remove ``path`` unless a live writer holds its lock; True if removed.

    O_NONBLOCK and O_NOFOLLOW: should the name have become a FIFO or a symlink since the
    directory was listed, the open neither blocks nor follows; fstat then rules it out."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ELOOP, *_CANNOT_REMOVE):
            return False  # renamed or removed meanwhile, now a symlink, or not ours to read
        raise
    try:
        if not _is_own_file(os.fstat(fd)):
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # a Put in progress
        os.unlink(path)
        return True
    except OSError as exc:
        if exc.errno in (errno.ENOENT, *_CANNOT_REMOVE):
            return False  # gone meanwhile, or a read-only store: it stays
        raise
    finally:
        os.close(fd)


def remove_stale_temp_files(directory: Path) -> int:
    """Remove the temporary files of interrupted writes in ``directory``; how many."""
    removed = 0
    with os.scandir(directory) as entries:
        for entry in entries:
            if is_temp_name(entry.name) and entry.is_file(follow_symlinks=False):
                removed += _remove_if_unlocked(entry.path)
    return removed


def _create_locked_temp(dir_fd: int) -> tuple[int, str]:
    """A new temporary file in the directory ``dir_fd``, locked; made anew if a store
    opening removed it first. Returns its fd and its name within the directory."""
    while True:
        temp = f"{TEMP_PREFIX}{_TEMP_NAMES.getrandbits(64):016x}"
        try:
            fd = os.open(temp, _TEMP_FLAGS, _FILE_MODE, dir_fd=dir_fd)
        except FileExistsError:
            continue  # another writer's (or a forked twin's) name: take another
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            if os.fstat(fd).st_nlink > 0:
                return fd, temp
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(temp, dir_fd=dir_fd)
            raise
        os.close(fd)


class FileStore:
    """Values stored as files in ``directory`` (created 0700 if missing).

    The store's syscalls are most of a plugin call's cost beyond grpcio's (each one hands
    the GIL over), so a Put makes as few as it can: it works relative to a descriptor of
    the directory that the store keeps open (no open and close of the directory to fsync
    it), and checks its directory only when creating the temporary file fails. A Get is
    open, read to the end, close, also relative to that descriptor: reads and writes
    always see the same directory. When the directory has been removed, the next Put
    makes it again and opens the new one; Gets before that find no keys."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self._dir = os.fspath(self.directory)
        self._dir_fd = self._open_directory()
        self._reopen_lock = threading.Lock()
        self.removed_temp_files = remove_stale_temp_files(self.directory)

    def _open_directory(self) -> int:
        if not os.path.isdir(self._dir):
            os.makedirs(self._dir, mode=_DIR_MODE, exist_ok=True)
            # makedirs' mode is filtered by the umask: make sure the leaf is exactly 0700.
            os.chmod(self._dir, _DIR_MODE)
        return os.open(self._dir, _DIR_FLAGS)

    def _reopen_directory(self, failed: int) -> int:
        """The directory of ``failed`` was removed: make it again, work in the new one.

        The old descriptor stays open: another Put may be using it, and closing it could
        let its number be reused under that Put (a rename into another directory)."""
        with self._reopen_lock:
            if self._dir_fd == failed:
                self._dir_fd = self._open_directory()
            return self._dir_fd

    def path_for(self, key: str) -> Path:
        """The file that holds ``key``'s value (validates the key)."""
        return self.directory / key_filename(key)

    def put(self, key: str, value: bytes) -> None:
        """Store ``value`` under ``key`` atomically and durably."""
        target = key_filename(key)
        dir_fd = self._dir_fd
        try:
            fd, temp = _create_locked_temp(dir_fd)
        except FileNotFoundError:  # the directory was removed: make it again
            dir_fd = self._reopen_directory(dir_fd)
            fd, temp = _create_locked_temp(dir_fd)
        try:
            try:
                view = memoryview(value)
                while view:
                    written = os.write(fd, view)
                    view = view[written:]
                os.fsync(fd)
                # Still locked: no store opening meanwhile takes it for stale.
                os.replace(temp, target, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
            finally:
                os.close(fd)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp, dir_fd=dir_fd)
            raise
        _fsync_dir(dir_fd)

    def get(self, key: str) -> bytes:
        """The value stored under ``key``; ``KeyNotFoundError`` if there is none."""
        target = key_filename(key)
        try:
            fd = os.open(target, os.O_RDONLY | os.O_CLOEXEC, dir_fd=self._dir_fd)
        except (FileNotFoundError, NotADirectoryError):
            raise KeyNotFoundError() from None
        try:
            chunks = []
            while chunk := os.read(fd, _READ_SIZE):
                chunks.append(chunk)
            return b"".join(chunks)
        finally:
            os.close(fd)
