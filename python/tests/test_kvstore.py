"""soup.lab.kvstore: key rules, file naming, crash-safe writes (semantics shared with soup-go)."""

from __future__ import annotations

import base64
import concurrent.futures
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from soup.lab import kvstore
from soup.lab.kvstore import (
    MAX_KEY_BYTES,
    TEMP_PREFIX,
    FileStore,
    InvalidKeyError,
    KeyNotFoundError,
    is_temp_name,
    key_filename,
)


def _files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def test_round_trip(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    store.put("soup-test-key", b"hello from soup")
    assert store.get("soup-test-key") == b"hello from soup"
    assert _files(tmp_path) == [key_filename("soup-test-key")]


def test_binary_and_empty_values(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    store.put("bin", bytes(range(256)) * 100)
    store.put("empty", b"")
    assert store.get("bin") == bytes(range(256)) * 100
    assert store.get("empty") == b""


def test_value_larger_than_one_read(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    value = os.urandom(3 * 64 * 1024 + 7)  # a Get reads in 64 KiB chunks
    store.put("big", value)
    assert store.get("big") == value


def test_a_temporary_name_in_use_is_not_a_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two writers may draw the same name: O_EXCL refuses the second, which takes another.
    names = iter([0xABC, 0xABC, 0xDEF])
    monkeypatch.setattr(kvstore._TEMP_NAMES, "getrandbits", lambda _bits: next(names))
    (tmp_path / f"{TEMP_PREFIX}{0xABC:016x}").write_bytes(b"another writer's")
    store = FileStore(tmp_path)  # opening removes the unlocked leftover: make it again
    (tmp_path / f"{TEMP_PREFIX}{0xABC:016x}").write_bytes(b"another writer's")
    store.put("k", b"v")
    assert store.get("k") == b"v"
    assert (tmp_path / f"{TEMP_PREFIX}{0xABC:016x}").read_bytes() == b"another writer's"


def test_overwrite(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    store.put("k", b"first value, longer")
    store.put("k", b"second")
    assert store.get("k") == b"second"
    assert len(_files(tmp_path)) == 1


def test_values_survive_a_new_store(tmp_path: Path) -> None:
    FileStore(tmp_path).put("k", b"v")
    assert FileStore(tmp_path).get("k") == b"v"


def test_missing_key(tmp_path: Path) -> None:
    with pytest.raises(KeyNotFoundError) as info:
        FileStore(tmp_path).get("nope")
    assert str(info.value) == "key not found"
    assert info.value.args == ("key not found",)
    assert isinstance(info.value, KeyError)


@pytest.mark.parametrize("op", ["put", "get"])
def test_empty_key(tmp_path: Path, op: str) -> None:
    store = FileStore(tmp_path)
    call = (lambda: store.put("", b"v")) if op == "put" else (lambda: store.get(""))
    with pytest.raises(InvalidKeyError) as info:
        call()
    assert str(info.value) == "key must not be empty"
    assert isinstance(info.value, ValueError)
    assert _files(tmp_path) == []


@pytest.mark.parametrize("op", ["put", "get"])
def test_too_long_key(tmp_path: Path, op: str) -> None:
    store = FileStore(tmp_path)
    call = (lambda: store.put("k" * 181, b"v")) if op == "put" else (lambda: store.get("k" * 181))
    with pytest.raises(InvalidKeyError) as info:
        call()
    assert str(info.value) == "key is too long: 181 bytes (at most 180)"
    assert _files(tmp_path) == []


def test_too_long_counts_utf8_bytes(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    key = "é" * 91  # 182 bytes, 91 characters
    with pytest.raises(InvalidKeyError) as info:
        store.put(key, b"v")
    assert str(info.value) == "key is too long: 182 bytes (at most 180)"
    store.put("é" * 90, b"ok")  # exactly 180 bytes
    assert store.get("é" * 90) == b"ok"


def test_longest_key_file_name_fits(tmp_path: Path) -> None:
    key = "x" * MAX_KEY_BYTES
    assert len(key_filename(key)) == 240
    FileStore(tmp_path).put(key, b"v")
    assert FileStore(tmp_path).get(key) == b"v"


def test_key_filename_is_base64url_without_padding() -> None:
    assert key_filename("a") == "YQ"
    assert key_filename("soup") == "c291cA"
    assert key_filename("??>") == "Pz8-"  # '-' rather than '+'
    assert key_filename("\xff\xff") == "w7_Dvw"  # '_' rather than '/', no '=='


@pytest.mark.parametrize(
    "key",
    ["..", "../escape", "/etc/passwd", "a/b", "./x", ".tmp-abc", "\\..\\x", "\x00", "~", "."],
)
def test_path_tricks_stay_inside(tmp_path: Path, key: str) -> None:
    directory = tmp_path / "store"
    store = FileStore(directory)
    store.put(key, b"inside")
    assert store.get(key) == b"inside"
    names = _files(directory)
    assert len(names) == 1
    assert names[0] == key_filename(key)
    assert "/" not in names[0]
    assert not names[0].startswith(".")
    assert _files(tmp_path) == ["store"]


@pytest.mark.parametrize("key", ["ключ", "鍵", "🔑 key", "e\u0301", "\u00e9", "Key", "key"])
def test_unicode_keys(tmp_path: Path, key: str) -> None:
    store = FileStore(tmp_path)
    store.put(key, key.encode())
    assert store.get(key) == key.encode()


def test_distinct_keys_distinct_files(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    keys = ["e\u0301", "\u00e9", "Key", "key", "a", "a\x00"]
    for key in keys:
        store.put(key, key.encode("utf-8"))
    for key in keys:
        assert store.get(key) == key.encode("utf-8")
    assert len(_files(tmp_path)) == len(keys)


def test_lone_surrogate_key_rejected(tmp_path: Path) -> None:
    with pytest.raises(InvalidKeyError, match="not valid UTF-8"):
        FileStore(tmp_path).put("\udc80", b"v")


def test_no_temp_files_left(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    for i in range(20):
        store.put(f"k{i % 3}", os.urandom(100))
    assert not [n for n in _files(tmp_path) if n.startswith(TEMP_PREFIX)]
    assert len(_files(tmp_path)) == 3


def test_missing_directory_created_0700(tmp_path: Path) -> None:
    directory = tmp_path / "a" / "b" / "kv"
    old = os.umask(0o022)
    try:
        store = FileStore(directory)
    finally:
        os.umask(old)
    assert directory.is_dir()
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    store.put("k", b"v")
    assert store.get("k") == b"v"


def test_directory_removed_after_creation_is_recreated(tmp_path: Path) -> None:
    directory = tmp_path / "kv"
    store = FileStore(directory)
    directory.rmdir()
    with pytest.raises(KeyNotFoundError):
        store.get("k")
    store.put("k", b"v")
    assert store.get("k") == b"v"
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700


def test_concurrent_puts_after_directory_removed_all_land_in_the_new_one(tmp_path: Path) -> None:
    # Every Put that finds the directory gone makes (or joins) the one new directory:
    # none writes into the removed one, so every acknowledged value can be read back.
    directory = tmp_path / "kv"
    store = FileStore(directory)
    directory.rmdir()
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda i: store.put(f"k{i}", b"v%d" % i), range(32)))
    assert sorted(_files(directory)) == sorted(key_filename(f"k{i}") for i in range(32))
    assert all(store.get(f"k{i}") == b"v%d" % i for i in range(32))


def test_existing_directory_mode_untouched(tmp_path: Path) -> None:
    tmp_path.chmod(0o755)
    FileStore(tmp_path).put("k", b"v")
    assert stat.S_IMODE(tmp_path.stat().st_mode) == 0o755


def test_value_file_mode(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    store.put("k", b"v")
    assert stat.S_IMODE(store.path_for("k").stat().st_mode) == 0o600


@pytest.mark.parametrize("step", ["fsync", "replace"])
def test_crash_keeps_old_value(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, step: str) -> None:
    # a crash while writing the temp file (fsync) or while renaming it over the old one
    store = FileStore(tmp_path)
    store.put("k", b"old value")

    def crash(*args: object, **kwargs: object) -> None:
        raise OSError(f"simulated crash during {step}")

    monkeypatch.setattr(os, step, crash)
    with pytest.raises(OSError, match=f"simulated crash during {step}"):
        store.put("k", b"new value")
    monkeypatch.undo()
    assert store.get("k") == b"old value"
    assert _files(tmp_path) == [key_filename("k")]


def test_leftover_temp_file_is_not_a_key(tmp_path: Path) -> None:
    # A real crash can leave a temp file behind: it never shadows a key.
    (tmp_path / f"{TEMP_PREFIX}00000000deadbeef").write_bytes(b"partial")
    store = FileStore(tmp_path)
    with pytest.raises(KeyNotFoundError):
        store.get(f"{TEMP_PREFIX}00000000deadbeef")


def test_write_path_calls_fsync_and_replace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        calls.append("dir-fsync" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file-fsync")
        real_fsync(fd)

    def replace(src: str, dst: str, *, src_dir_fd: int, dst_dir_fd: int) -> None:
        # Both names relative to the store's one open directory: a rename within it.
        assert src_dir_fd == dst_dir_fd
        assert os.path.samestat(os.fstat(src_dir_fd), tmp_path.stat())
        assert is_temp_name(src)
        assert dst == key_filename("k")
        calls.append("replace")
        real_replace(src, dst, src_dir_fd=src_dir_fd, dst_dir_fd=dst_dir_fd)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    FileStore(tmp_path).put("k", b"v")
    assert calls == ["file-fsync", "replace", "dir-fsync"]


@settings(max_examples=60, deadline=None)
@given(key=st.text(min_size=1, max_size=45), value=st.binary(max_size=64))
def test_property_round_trip(
    tmp_path_factory: pytest.TempPathFactory, key: str, value: bytes
) -> None:
    directory = tmp_path_factory.mktemp("kv")
    store = FileStore(directory)
    store.put(key, value)
    assert store.get(key) == value
    name = key_filename(key)
    assert set(name) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    assert base64.urlsafe_b64decode(name + "=" * (-len(name) % 4)).decode("utf-8") == key
    assert _files(directory) == [name]


def test_opening_removes_temp_files_of_interrupted_writes(tmp_path: Path) -> None:
    FileStore(tmp_path).put("kept", b"acknowledged")
    # What a writer killed between open and rename leaves behind (full size).
    (tmp_path / f"{TEMP_PREFIX}0123456789abcdef").write_bytes(b"x" * 4096)
    (tmp_path / f"{TEMP_PREFIX}fedcba9876543210").write_bytes(b"")
    store = FileStore(tmp_path)
    assert store.removed_temp_files == 2
    assert _files(tmp_path) == [key_filename("kept")]
    assert store.get("kept") == b"acknowledged"


# Names and kinds the store did not make: all of them stay, and opening never blocks.
NOT_THE_STORES = [
    ".tmp-notes",  # a user's file (earlier builds removed every .tmp-* file)
    ".tmp-0123456789abcdef",
    f"{TEMP_PREFIX}",
    f"{TEMP_PREFIX}0123456789ABCDEF",  # upper case: not a name the store gives
    f"{TEMP_PREFIX}0123456789abcdef0",  # 17 digits
    f"{TEMP_PREFIX}0123456789abcdef.bak",
]


def test_opening_leaves_what_the_store_did_not_make(tmp_path: Path) -> None:
    for name in NOT_THE_STORES:
        (tmp_path / name).write_bytes(b"the user's")
    (tmp_path / "target").write_bytes(b"a symlink's target")
    (tmp_path / f"{TEMP_PREFIX}000000000000000a").symlink_to(tmp_path / "target")
    os.mkfifo(tmp_path / f"{TEMP_PREFIX}000000000000000b")  # opening it would block
    (tmp_path / f"{TEMP_PREFIX}000000000000000c").mkdir()
    (tmp_path / f"{TEMP_PREFIX}000000000000000c" / "inside").write_bytes(b"x")
    before = _files(tmp_path)
    store = FileStore(tmp_path)
    assert store.removed_temp_files == 0
    assert _files(tmp_path) == before
    for name in NOT_THE_STORES:
        assert (tmp_path / name).read_bytes() == b"the user's"
    assert (tmp_path / f"{TEMP_PREFIX}000000000000000a").read_bytes() == b"a symlink's target"


# The store opened in a child whose mount namespace sees the directory read-only (a real
# EROFS, for root too): it opens, reads, refuses a Put, and leaves the stale file.
READ_ONLY_CHILD = """
import errno, sys
from soup.lab.kvstore import FileStore
store = FileStore(sys.argv[1])
try:
    store.put("k", b"new")
except OSError as exc:
    put = errno.errorcode[exc.errno]
print(store.removed_temp_files, store.get("k").decode(), put)
"""


def test_a_read_only_store_with_a_stale_temp_file_opens_for_reading(tmp_path: Path) -> None:
    FileStore(tmp_path).put("k", b"v")
    stale = tmp_path / f"{TEMP_PREFIX}0123456789abcdef"
    stale.write_bytes(b"interrupted")
    mount_ro = 'mount --bind -o ro "$0" "$0" && exec "$@"'
    argv = ["unshare", "-rm", "sh", "-c", mount_ro, str(tmp_path)]
    child = subprocess.run(
        [*argv, sys.executable, "-c", READ_ONLY_CHILD, str(tmp_path)],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert (child.returncode, child.stdout) == (0, "0 v EROFS\n"), child.stderr
    assert stale.read_bytes() == b"interrupted"


def test_opening_leaves_a_write_in_progress_alone(tmp_path: Path) -> None:
    # A writer in another process holds an exclusive flock on its temporary file
    # (as the Go store does): an opening store must not take it for stale.
    busy = tmp_path / f"{TEMP_PREFIX}00000000000b0551"
    busy.write_bytes(b"half a value")
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import fcntl, os, sys; fd = os.open(sys.argv[1], os.O_RDONLY); "
         "fcntl.flock(fd, fcntl.LOCK_EX); print('locked', flush=True); sys.stdin.read()",
         str(busy)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
    )  # fmt: skip
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline() == b"locked\n"
        assert FileStore(tmp_path).removed_temp_files == 0
        assert busy.exists()
    finally:
        holder.communicate(timeout=10)
    # Its writer gone (the lock released), the file is stale.
    assert FileStore(tmp_path).removed_temp_files == 1
    assert not busy.exists()
