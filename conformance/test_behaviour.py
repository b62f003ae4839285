"""Same input, same behaviour: soup (Python) and soup-go compared on real processes.

The matrix (test_matrix.py) proves that every pairing works; this file proves that the two
implementations also *fail* alike and store alike: `rpc kv` key validation and its error
lines, the on-disk store, the plugin's refusals, the host's refusals and usage errors.
Every case runs each relevant implementation (host x plugin where both take part) and
asserts the same exit code and the same error line, or the same meaning where the
implementations word details differently (exit status text, stderr tails).
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import os
import re
import select
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pytest

import cells as matrix

IMPLS = ("go", "python")
PAIRS = list(itertools.product(IMPLS, IMPLS))  # (client, server)
# One CLI run (host + plugin) is killed after this long; a healthy one takes ~2 s.
RUN_TIMEOUT_S = 30.0
# Bound the host puts on the plugin's start and handshake line.
HOST_TIMEOUT = ["--timeout", "15"]
MAX_KEY_BYTES = 180

T = TypeVar("T")
R = TypeVar("R")


def pair_id(pair: tuple[str, str]) -> str:
    return f"{pair[0]}->{pair[1]}"


@dataclass(frozen=True)
class Run:
    """One finished command: exit code (None: killed at the bound), output, its error lines."""

    argv: list[str]
    returncode: int | None
    stdout: bytes
    stderr: str

    @property
    def errors(self) -> list[str]:
        """The `error: ...` lines; hosts may add log lines around them, which differ."""
        return [line for line in self.stderr.splitlines() if line.startswith("error: ")]

    def describe(self) -> str:
        # Arguments may carry raw bytes (as surrogates): show them escaped, reports are UTF-8.
        shown = [os.fsencode(a).decode("utf-8", "backslashreplace") for a in self.argv]
        return (
            f"$ {shlex.join(shown)}\nexit {self.returncode}\n"
            f"stdout: {self.stdout[-500:]!r}\nstderr:\n{self.stderr[-2000:]}"
        )


@pytest.fixture(scope="session")
def impls(request: pytest.FixtureRequest) -> dict[str, list[str]]:
    """Command prefix of each implementation, as matrix.toml says how to run it."""
    soup_go = Path(str(request.config.getoption("--soup-go"))).resolve()
    if not soup_go.is_file():
        pytest.exit(f"soup-go not found at {soup_go}: build it with `nox -s build`", returncode=4)
    paths = matrix.Paths(python=sys.executable, soup_go=str(soup_go), certs=Path(), kv_root=Path())
    data = matrix.load()
    return {impl: matrix.impl_command(impl, data, paths) for impl in IMPLS}


def run(argv: list[str], timeout: float = RUN_TIMEOUT_S, stdin: bytes | None = None) -> Run:
    returncode, out, err = matrix.run_bounded_bytes(argv, timeout, stdin)
    return Run(argv, returncode, out, err.decode("utf-8", "replace"))


def parallel(fn: Callable[[T], R], items: Iterable[T]) -> list[R]:
    """Run fn over items concurrently (each a pair of processes that mostly waits)."""
    items = list(items)
    with ThreadPoolExecutor(max_workers=max(1, min(6, len(items)))) as pool:
        return list(pool.map(fn, items))


def plugin_cmd(impls: dict[str, list[str]], impl: str, *args: str) -> str:
    return shlex.join([*impls[impl], "rpc", "server-start", *args])


def kv(
    impls: dict[str, list[str]], client: str, op: list[str], server: str, *extra: str
) -> list[str]:
    """`<client> rpc kv <op...> --server '<server command>'` (op: ["put", K, V] / ["get", K])."""
    return [*impls[client], "rpc", "kv", *op, *HOST_TIMEOUT, *extra, "--server", server]


def plugin_env(*assignments: str, unset: Iterable[str] = ()) -> list[str]:
    """An `env` prefix: the plugin run by hand with exactly these go-plugin variables."""
    dropped = ["BASIC_PLUGIN", "PLUGIN_CLIENT_CERT", *unset]
    return ["env", *(f"-u{name}" for name in dropped), *assignments]


def assert_same(runs: dict[str, Run], what: Callable[[Run], object]) -> object:
    """All runs agree on what(run); returns the common value."""
    seen = {name: what(r) for name, r in runs.items()}
    values = list(seen.values())
    if any(v != values[0] for v in values):
        details = "\n\n".join(f"[{name}] {r.describe()}" for name, r in runs.items())
        pytest.fail(f"implementations differ: {seen!r}\n\n{details}", pytrace=False)
    return values[0]


def expect(r: Run, condition: bool, what: str) -> None:
    if not condition:
        pytest.fail(f"{what}\n{r.describe()}", pytrace=False)


# ---------------------------------------------------------------------------------------
# 1. rpc kv: key validation, one error line, same for every host x plugin pairing

KEY_ERRORS = {
    "put-empty-key": (["put", "", "v"], "error: INVALID_ARGUMENT: key must not be empty"),
    "get-empty-key": (["get", ""], "error: INVALID_ARGUMENT: key must not be empty"),
    "put-181-bytes": (
        ["put", "k" * 181, "v"],
        "error: INVALID_ARGUMENT: key is too long: 181 bytes (at most 180)",
    ),
    # The limit counts UTF-8 bytes, not characters: 61 x 3 bytes.
    "get-183-utf8-bytes": (
        ["get", "\u20ac" * 61],
        "error: INVALID_ARGUMENT: key is too long: 183 bytes (at most 180)",
    ),
    "get-missing-key": (["get", "no-such-key"], "error: NOT_FOUND: key not found"),
}


@pytest.mark.parametrize("case", list(KEY_ERRORS))
def test_kv_error_line_is_the_same_everywhere(
    case: str, impls: dict[str, list[str]], tmp_path: Path
) -> None:
    op, line = KEY_ERRORS[case]

    def one(pair: tuple[str, str]) -> Run:
        client, server = pair
        kv_dir = tmp_path / pair_id(pair).replace(">", "")
        return run(kv(impls, client, op, plugin_cmd(impls, server, "--kv-dir", str(kv_dir))))

    runs = dict(zip(map(pair_id, PAIRS), parallel(one, PAIRS), strict=True))
    assert_same(runs, lambda r: (r.returncode, r.stdout, r.errors))
    r = next(iter(runs.values()))
    expect(r, r.returncode == 1, "expected exit 1")
    expect(r, r.errors == [line], f"expected exactly the stderr line {line!r}")
    expect(r, r.stdout == b"", "expected nothing on stdout")


# ---------------------------------------------------------------------------------------
# 1 + 2. keys that look like paths, unicode, the longest key, binary values: written
# through one implementation's plugin, read back through the other's from the same files

# (key, value as raw argv bytes): the CLI takes VALUE as a string, both send its bytes.
ROUND_TRIP: list[tuple[str, bytes]] = [
    ("../x", b"dot-dot-slash"),
    ("a/b", b"slash \xff\xfe not utf-8"),
    ("..", b"ctrl \x01\x02\x7f\t\r\nend\n"),
    (".tmp-x", b""),
    ("\u043a\u043b\u044e\u0447 \U0001f511", "unicode value \u00e9\U0001f511".encode()),
    ("\u00e9" * 90, b"longest key: 90 x 2 bytes = 180"),
]


def filename(key: str) -> str:
    return base64.urlsafe_b64encode(key.encode()).rstrip(b"=").decode()


@pytest.mark.parametrize("pair", PAIRS, ids=pair_id)
def test_store_round_trip_across_plugins(
    pair: tuple[str, str], impls: dict[str, list[str]], tmp_path: Path
) -> None:
    client, writer = pair
    reader = "python" if writer == "go" else "go"
    store = tmp_path / "store" / "kv"  # created by the plugin
    at = ["--kv-dir", str(store)]

    def put(item: tuple[str, bytes]) -> Run:
        key, value = item
        return run(
            kv(impls, client, ["put", key, os.fsdecode(value)], plugin_cmd(impls, writer, *at))
        )

    def get(item: tuple[str, bytes]) -> Run:
        return run(kv(impls, client, ["get", item[0]], plugin_cmd(impls, reader, *at)))

    for r in parallel(put, ROUND_TRIP):
        expect(
            r, r.returncode == 0 and r.stdout == b"" and not r.errors, "put must succeed silently"
        )
    # The files: base64url names, raw value bytes, inside the directory, no temp files left.
    assert sorted(p.name for p in (tmp_path / "store").iterdir()) == ["kv"]
    on_disk = {p.name: p.read_bytes() for p in store.iterdir()}
    assert on_disk == {filename(k): v for k, v in ROUND_TRIP}
    assert (store.stat().st_mode & 0o777) == 0o700
    for (key, value), r in zip(ROUND_TRIP, parallel(get, ROUND_TRIP), strict=True):
        expect(r, r.returncode == 0 and not r.errors, f"get {key!r} through {reader} failed")
        expect(r, r.stdout == value, f"get {key!r}: expected exactly {value!r}")


# ---------------------------------------------------------------------------------------
# 2b. opening a store removes only the temporary files the store itself made, never blocks
# on what it finds, and a read-only store still opens for reading

STALE_TEMP = ".soup-put-0123456789abcdef"  # what a Put killed before its rename leaves
USER_FILES = [".tmp-notes", ".tmp-0123456789abcdef", ".soup-put-0123456789ABCDEF"]
SYMLINK, FIFOS = ".soup-put-000000000000000a", [".soup-put-000000000000000b", ".tmp-fifo"]


def store_with_leftovers(directory: Path) -> None:
    """A store holding key `k`, the store's own stale temp file and what a user put there."""
    directory.mkdir(mode=0o700)
    (directory / filename("k")).write_bytes(b"acknowledged")
    (directory / STALE_TEMP).write_bytes(b"interrupted put")
    for name in USER_FILES:
        (directory / name).write_bytes(b"the user's")
    (directory / "target").write_bytes(b"a symlink's target")
    (directory / SYMLINK).symlink_to("target")
    for name in FIFOS:
        os.mkfifo(directory / name)  # opening one blocks until a writer comes


def listing(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


@pytest.mark.parametrize("server", IMPLS)
def test_opening_a_store_keeps_what_it_did_not_make(
    server: str, impls: dict[str, list[str]], tmp_path: Path
) -> None:
    store = tmp_path / "kv"
    store_with_leftovers(store)
    r = run(kv(impls, server, ["get", "k"], plugin_cmd(impls, server, "--kv-dir", str(store))))
    # Before: the user's files were removed, and soup-go blocked on a FIFO before its
    # handshake line (the host gave up after --timeout).
    expect(r, r.returncode == 0 and r.stdout == b"acknowledged", "get k must succeed")
    expected = sorted({filename("k"), *USER_FILES, "target", SYMLINK, *FIFOS})
    expect(r, listing(store) == expected, f"only {STALE_TEMP} removed: {listing(store)}")
    for name in USER_FILES:
        assert (store / name).read_bytes() == b"the user's"
    assert (store / SYMLINK).is_symlink()
    assert (store / "target").read_bytes() == b"a symlink's target"


def read_only(directory: Path, command: list[str]) -> str:
    """command run where `directory` is mounted read-only (its own mount namespace: a real
    EROFS, also for root, and nothing changes outside the process)."""
    mount_ro = 'mount --bind -o ro "$0" "$0" && exec "$@"'
    return shlex.join(["unshare", "--map-root-user", "--mount", "sh", "-c", mount_ro,
                       str(directory), *command])  # fmt: skip


@pytest.mark.parametrize("server", IMPLS)
def test_a_read_only_store_with_a_stale_temp_file_serves_reads(
    server: str, impls: dict[str, list[str]], tmp_path: Path
) -> None:
    store = tmp_path / "kv"
    store.mkdir(mode=0o700)
    (store / filename("k")).write_bytes(b"acknowledged")
    (store / STALE_TEMP).write_bytes(b"interrupted put")
    plugin = read_only(store, [*impls[server], "rpc", "server-start", "--kv-dir", str(store)])
    # Before: both refused to start (removing the stale file failed).
    got = run(kv(impls, server, ["get", "k"], plugin))
    expect(got, got.returncode == 0 and got.stdout == b"acknowledged", "get k must succeed")
    put = run(kv(impls, server, ["put", "k", "new"], plugin))
    expect(
        put,
        put.returncode == 1
        and len(put.errors) == 1
        and "read-only file system" in put.errors[0].lower(),
        "put must fail with one error line naming the read-only file system",
    )
    assert listing(store) == sorted([filename("k"), STALE_TEMP])
    assert (store / filename("k")).read_bytes() == b"acknowledged"


# ---------------------------------------------------------------------------------------
# 3. the plugin started by hand (no magic cookie): go-plugin's own message, byte for byte

NOT_A_PLUGIN = (
    b"This binary is a plugin. These are not meant to be executed directly.\n"
    b"Please execute the program that consumes these plugins, which will\n"
    b"load any plugins automatically\n"
)


@pytest.mark.parametrize("cookie", [[], ["BASIC_PLUGIN=wrong"]], ids=["no-cookie", "wrong-cookie"])
def test_plugin_without_cookie_prints_go_plugins_message(
    cookie: list[str], impls: dict[str, list[str]]
) -> None:
    argvs = {i: [*plugin_env(*cookie), *impls[i], "rpc", "server-start"] for i in IMPLS}
    runs = dict(zip(IMPLS, parallel(run, argvs.values()), strict=True))
    assert_same(runs, lambda r: (r.returncode, r.stdout, r.stderr))
    r = runs["go"]
    expect(r, r.returncode == 1 and r.stdout == b"", "expected exit 1 and no handshake line")
    expect(r, r.stderr.encode() == NOT_A_PLUGIN, "expected go-plugin's 3-line message")


# ---------------------------------------------------------------------------------------
# 4. refusals: the side that asked for TLS never gets plaintext, and says why


@pytest.mark.parametrize("pair", PAIRS, ids=pair_id)
def test_plaintext_plugin_refuses_a_host_that_asked_for_tls(
    pair: tuple[str, str], impls: dict[str, list[str]]
) -> None:
    client, server = pair
    r = run(kv(impls, client, ["get", "k"], plugin_cmd(impls, server, "--tls-mode", "disabled")))
    expect(r, r.returncode == 1 and r.stdout == b"", "expected exit 1")
    expect(
        r,
        len(r.errors) == 1
        and "tls-mode disabled but the host asked for TLS (PLUGIN_CLIENT_CERT set)" in r.errors[0],
        "the host's error must carry the plugin's reason: the host asked for TLS",
    )


def _hclog_errors(r: Run) -> list[str]:
    """The @message of each hclog JSON error line on stderr (every line must be JSON)."""
    messages = []
    for line in r.stderr.splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            pytest.fail(f"plugin stderr line is not hclog JSON: {line!r}\n{r.describe()}")
        if record.get("@level") == "error":
            messages.append(str(record.get("@message")))
    return messages


@pytest.mark.parametrize(
    ("env", "reason"),
    [
        (["BASIC_PLUGIN=hello", "PLUGIN_PROTOCOL_VERSIONS=1"], "the host sent no PLUGIN_CLIENT_CERT; refusing to serve plaintext"),
        (["BASIC_PLUGIN=hello", "PLUGIN_CLIENT_CERT=not a certificate"], "PLUGIN_CLIENT_CERT is not a PEM certificate"),
    ],
    ids=["no-client-cert", "garbage-client-cert"],
)  # fmt: skip
def test_auto_plugin_refuses_without_a_usable_client_cert(
    env: list[str], reason: str, impls: dict[str, list[str]]
) -> None:
    argvs = [[*plugin_env(*env), *impls[i], "rpc", "server-start"] for i in IMPLS]
    # A plugin that does not refuse serves until killed at this bound.
    runs = dict(zip(IMPLS, parallel(lambda a: run(a, timeout=10), argvs), strict=True))
    assert_same(runs, lambda r: (r.returncode, r.stdout))
    for r in runs.values():
        expect(r, r.returncode == 1, "expected exit 1")
        expect(r, r.stdout == b"", "no handshake line: the plugin must not serve at all")
        errors = _hclog_errors(r)
        expect(r, len(errors) == 1 and reason in errors[0], f"expected one error naming {reason!r}")


@pytest.fixture(scope="session")
def manual_certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from soup import certs  # noqa: PLC0415 - the package under test

    directory = tmp_path_factory.mktemp("certs")
    ca = certs.issue_ca()
    (directory / "ca.pem").write_bytes(ca.cert_pem)
    certs.write_pair(certs.issue_leaf(ca, "ec-p256"), directory / "s.pem", directory / "s.key")
    return directory


NO_CERT = "plugin did not return a certificate; refusing plaintext"
# A plugin that prints a valid handshake line without field 6 (the server certificate).
FAKE_NO_CERT = "import time; print('1|1|tcp|127.0.0.1:9|grpc', flush=True); time.sleep(10)"
FAKE_GARBAGE = "import time; print('soup says hello', flush=True); time.sleep(10)"


def _host_cases() -> list[tuple[str, str, str, float]]:
    """(id, server kind, expected error substring, max seconds) for host-side refusals."""
    return [
        ("fake-plugin-without-cert", "fake-no-cert", NO_CERT, 15.0),
        ("manual-plugin-of-the-other-impl", "other-manual", NO_CERT, 15.0),
        (
            "handshake-timeout",
            "sleep",
            "timed out after 1 s waiting for the plugin's handshake line on stdout",
            6.0,
        ),
        ("garbage-handshake-line", "fake-garbage", "Unrecognized remote plugin message: soup says hello", 15.0),
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("server", "reason", "bound"),
    [c[1:] for c in _host_cases()],
    ids=[c[0] for c in _host_cases()],
)
def test_host_refusals_say_the_same(
    server: str, reason: str, bound: float, impls: dict[str, list[str]], manual_certs: Path
) -> None:
    def command(host: str) -> str:
        if server == "fake-no-cert":
            return shlex.join([sys.executable, "-c", FAKE_NO_CERT])
        if server == "fake-garbage":
            return shlex.join([sys.executable, "-c", FAKE_GARBAGE])
        if server == "sleep":
            return "sleep 5"
        other = "python" if host == "go" else "go"
        return plugin_cmd(
            impls, other, "--tls-mode", "manual",
            "--cert-file", str(manual_certs / "s.pem"), "--key-file", str(manual_certs / "s.key"),
            "--ca-file", str(manual_certs / "ca.pem"),
        )  # fmt: skip

    timeout = ["--timeout", "1"] if server == "sleep" else []

    def one(host: str) -> tuple[Run, float]:
        started = time.monotonic()
        argv = [*kv(impls, host, ["get", "k"], command(host)), *timeout]
        return run(argv, timeout=bound + 10), time.monotonic() - started

    results = dict(zip(IMPLS, parallel(one, IMPLS), strict=True))
    runs = {host: r for host, (r, _) in results.items()}
    assert_same(runs, lambda r: (r.returncode, r.stdout, len(r.errors)))
    for r, seconds in results.values():
        expect(r, r.returncode == 1 and r.stdout == b"", "expected exit 1, nothing on stdout")
        expect(
            r, len(r.errors) == 1 and reason in r.errors[0], f"expected an error with {reason!r}"
        )
        expect(r, seconds < bound, f"took {seconds:.1f} s, expected under {bound} s")


# ---------------------------------------------------------------------------------------
# 5. usage errors: exit 2 on both, the message names the flag (or the argument)

MANUAL = ["--tls-mode", "manual"]
USAGE = {
    "bad-key-type": (["--key-type", "ec-p999"], ["--key-type", "ec-p999"]),
    "bad-tls-mode": (["--tls-mode", "bogus"], ["--tls-mode", "bogus"]),
    "manual-without-files": (MANUAL, ["--tls-mode manual requires --cert-file"]),
    "manual-without-key-file": (
        [*MANUAL, "--cert-file", "c.pem", "--ca-file", "ca.pem"],
        ["--tls-mode manual requires --key-file"],
    ),
    "manual-without-ca-file": (
        [*MANUAL, "--cert-file", "c.pem", "--key-file", "c.key"],
        ["--tls-mode manual requires --ca-file"],
    ),
}
HOST_USAGE = {
    "server-unclosed-quote": (["--server", "'soup"], ["--server", "no closing quotation"]),
    "server-empty": (["--server", " "], ["--server"]),
    "key-not-utf8": (["--server", "true", "--", os.fsdecode(b"k\xff")], ["KEY is not valid UTF-8"]),
}


def _usage_cases() -> list[tuple[str, list[str], list[str]]]:
    cases = []
    for name, (flags, words) in USAGE.items():
        cases.append((f"server-start/{name}", ["rpc", "server-start", *flags], words))
        cases.append(
            (f"kv-get/{name}", ["rpc", "kv", "get", "k", "--server", "true", *flags], words)
        )
        cases.append(
            (f"client-test/{name}", ["rpc", "client", "test", "--server", "true", *flags], words)
        )
    for name, (flags, words) in HOST_USAGE.items():
        key = [] if "--" in flags else ["k"]
        cases.append((f"kv-get/{name}", ["rpc", "kv", "get", *key, *flags], words))
    # soup-go: "--count and --concurrency must be >= 1"; soup has no --concurrency
    bench = ["rpc", "client", "bench", "--server", "true", "--count", "0"]
    cases.append(("bench/count-zero", bench, ["--count", "must be >= 1"]))
    return cases  # fmt: skip


@pytest.mark.parametrize(
    ("args", "words"), [c[1:] for c in _usage_cases()], ids=[c[0] for c in _usage_cases()]
)
def test_usage_errors_exit_2_and_name_the_flag(
    args: list[str], words: list[str], impls: dict[str, list[str]]
) -> None:
    # With the cookie set, so that a plugin command reaches its flag checks either way.
    runs = dict(
        zip(IMPLS, parallel(run, [[*plugin_env("BASIC_PLUGIN=hello"), *impls[i], *args] for i in IMPLS]), strict=True)
    )  # fmt: skip
    assert_same(runs, lambda r: (r.returncode, r.stdout))
    for r in runs.values():
        expect(r, r.returncode == 2 and r.stdout == b"", "expected a usage error: exit 2")
        expect(r, all(w in r.stderr for w in words), f"the message must name {words}")


# ---------------------------------------------------------------------------------------
# 6. handshake config on the CLI: app protocol versions and a custom magic cookie


def client_test(impls: dict[str, list[str]], client: str, server: str, *extra: str) -> list[str]:
    """`<client> rpc client test --json ... --server '<server command>'`."""
    return [*impls[client], "rpc", "client", "test", "--json", *HOST_TIMEOUT, *extra, "--server", server]  # fmt: skip


def result_of(r: Run) -> dict[str, object]:
    """The one JSON object `client test --json` prints."""
    try:
        doc = json.loads(r.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"stdout is not one JSON object\n{r.describe()}", pytrace=False)
    expect(r, isinstance(doc, dict), "expected a JSON object")
    return dict(doc)


def _error(r: Run) -> str:
    return str(result_of(r).get("error") or "")


SERVED = ("--protocol-versions", "5,6")
INCOMPATIBLE = "incompatible API version with plugin. Plugin version: 5, Client versions: [7]"
# What the host asks for -> the version it must get (None: go-plugin's error above).
NEGOTIATION: dict[str, int | None] = {"5": 5, "6": 6, "5,6": 6, "7": None}


@pytest.mark.parametrize("asked", list(NEGOTIATION))
def test_version_negotiation(asked: str, impls: dict[str, list[str]]) -> None:
    want = NEGOTIATION[asked]

    def one(pair: tuple[str, str]) -> Run:
        client, server = pair
        server_cmd = plugin_cmd(impls, server, *SERVED)
        return run(client_test(impls, client, server_cmd, "--protocol-versions", asked))

    runs = dict(zip(map(pair_id, PAIRS), parallel(one, PAIRS), strict=True))
    assert_same(runs, lambda r: (r.returncode, result_of(r).get("protocol_version")))
    for r in runs.values():
        doc = result_of(r)
        if want is None:
            expect(r, r.returncode == 1 and doc["ok"] is False, "expected the host to fail")
            expect(r, INCOMPATIBLE in _error(r), f"expected go-plugin's error {INCOMPATIBLE!r}")
        else:
            expect(r, r.returncode == 0 and doc["ok"] is True, "expected a pass")
            expect(r, doc.get("protocol_version") == want, f"expected protocol_version {want}")


COOKIE = ("--magic-cookie-key", "SOUP_TEST_COOKIE", "--magic-cookie-value", "s3cret")


@pytest.mark.parametrize("pair", PAIRS, ids=pair_id)
def test_custom_cookie_host_and_plugin_agree(
    pair: tuple[str, str], impls: dict[str, list[str]]
) -> None:
    client, server = pair
    r = run(client_test(impls, client, plugin_cmd(impls, server, *COOKIE), *COOKIE))
    expect(r, r.returncode == 0 and result_of(r)["ok"] is True, "same cookie: expected a pass")


@pytest.mark.parametrize("pair", PAIRS, ids=pair_id)
def test_custom_cookie_mismatch_is_not_a_plugin(
    pair: tuple[str, str], impls: dict[str, list[str]]
) -> None:
    client, server = pair
    # The host sends SOUP_TEST_COOKIE=s3cret; the plugin waits for BASIC_PLUGIN=hello.
    r = run(client_test(impls, client, plugin_cmd(impls, server), *COOKIE))
    doc = result_of(r)
    expect(r, r.returncode == 1 and doc["ok"] is False, "expected the host to fail")
    expect(
        r,
        "This binary is a plugin." in str(doc.get("plugin_stderr_tail")),
        "the plugin must refuse with go-plugin's not-a-plugin message",
    )


def test_plugin_with_custom_cookie_run_by_hand(impls: dict[str, list[str]]) -> None:
    # The default cookie is set, the plugin asks for its own: go-plugin's message.
    argvs = [
        [*plugin_env("BASIC_PLUGIN=hello", "SOUP_TEST_COOKIE=wrong"), *impls[i], "rpc", "server-start", *COOKIE]
        for i in IMPLS
    ]  # fmt: skip
    runs = dict(zip(IMPLS, parallel(run, argvs), strict=True))
    assert_same(runs, lambda r: (r.returncode, r.stdout, r.stderr))
    r = runs["go"]
    expect(
        r, r.returncode == 1 and r.stderr.encode() == NOT_A_PLUGIN, "expected go-plugin's message"
    )


# ---------------------------------------------------------------------------------------
# 7. kv put from stdin (`-`) and from --value-file: values far over the argv limit

BIG_VALUE = bytes(range(256)) * (3 * 1024 * 1024 // 256)  # 3 MiB, every byte value


@pytest.mark.parametrize("pair", PAIRS, ids=pair_id)
def test_kv_put_large_value_from_stdin_and_file(
    pair: tuple[str, str], impls: dict[str, list[str]], tmp_path: Path
) -> None:
    client, server = pair
    server_cmd = plugin_cmd(impls, server, "--kv-dir", str(tmp_path / "kv"))
    value_file = tmp_path / "value"
    value_file.write_bytes(BIG_VALUE[::-1])
    r = run(kv(impls, client, ["put", "from-stdin", "-"], server_cmd), stdin=BIG_VALUE)
    expect(r, r.returncode == 0 and not r.errors, "put from stdin must succeed")
    r = run(kv(impls, client, ["put", "from-file"], server_cmd, "--value-file", str(value_file)))
    expect(r, r.returncode == 0 and not r.errors, "put --value-file must succeed")
    for key, want in {"from-stdin": BIG_VALUE, "from-file": BIG_VALUE[::-1]}.items():
        r = run(kv(impls, client, ["get", key], server_cmd))
        expect(r, r.returncode == 0 and r.stdout == want, f"get {key}: expected the 3 MiB back")


def test_kv_put_value_and_value_file_is_a_usage_error(impls: dict[str, list[str]]) -> None:
    argv = ["rpc", "kv", "put", "k", "v", "--value-file", "f", "--server", "true"]
    runs = dict(zip(IMPLS, parallel(run, [[*impls[i], *argv] for i in IMPLS]), strict=True))
    assert_same(runs, lambda r: (r.returncode, r.stdout))
    for r in runs.values():
        expect(
            r,
            r.returncode == 2 and "--value-file" in r.stderr,
            "expected exit 2 naming --value-file",
        )


# ---------------------------------------------------------------------------------------
# 8. reattach: a debug plugin prints its reattach config; hosts connect, leave it, stop it

DEBUG_AUTO = (
    "--debug cannot use --tls-mode auto: no host sends PLUGIN_CLIENT_CERT to a plugin started "
    "by hand; use --tls-mode manual (TLS with your cert files) or --tls-mode disabled"
)
REATTACH_KEYS = ["Addr", "Pid", "Protocol", "ProtocolVersion", "Test"]
DEBUG_LINE_TIMEOUT_S = 15.0


class DebugPlugin:
    """A plugin started by hand with --debug, in its own process group, always ended."""

    def __init__(self, argv: list[str]) -> None:
        self.proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
        self.line = self._first_line()

    def _first_line(self) -> str:
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], DEBUG_LINE_TIMEOUT_S)
        if not ready:
            self.close()
            pytest.fail(f"no reattach line within {DEBUG_LINE_TIMEOUT_S} s", pytrace=False)
        return self.proc.stdout.readline().decode().strip()

    def close(self) -> str:
        """End the process group: SIGTERM (the plugin removes its files), then SIGKILL
        for whatever is left after a bound; returns stderr."""
        err = b""
        for sig in (signal.SIGTERM, signal.SIGKILL):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)
            try:
                _, err = self.proc.communicate(timeout=DEBUG_LINE_TIMEOUT_S)
                break
            except subprocess.TimeoutExpired:
                continue
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        return err.decode("utf-8", "replace")


@pytest.fixture
def debug_plugins() -> Iterator[Callable[[list[str]], DebugPlugin]]:
    started: list[DebugPlugin] = []

    def start(argv: list[str]) -> DebugPlugin:
        started.append(DebugPlugin(argv))
        return started[-1]

    yield start
    for plugin in started:
        plugin.close()


@pytest.mark.parametrize("mode", ["disabled", "manual"])
@pytest.mark.parametrize("pair", PAIRS, ids=pair_id)
def test_reattach_keep_running_then_stop(
    pair: tuple[str, str],
    mode: str,
    impls: dict[str, list[str]],
    debug_plugins: Callable[[list[str]], DebugPlugin],
    manual_certs: Path,
) -> None:
    first, server = pair
    second = "python" if first == "go" else "go"
    tls_flags = ["--tls-mode", mode]
    if mode == "manual":
        tls_flags += [
            "--cert-file", str(manual_certs / "s.pem"), "--key-file", str(manual_certs / "s.key"),
            "--ca-file", str(manual_certs / "ca.pem"),
        ]  # fmt: skip
    plugin = debug_plugins([*impls[server], "rpc", "server-start", "--debug", *tls_flags])
    config = json.loads(plugin.line)
    want = {"Protocol": "grpc", "ProtocolVersion": 1, "Pid": plugin.proc.pid, "Test": True}
    assert sorted(config) == REATTACH_KEYS, plugin.line
    assert sorted(config["Addr"]) == ["Network", "String"], plugin.line
    assert {k: v for k, v in config.items() if k != "Addr"} == want, plugin.line

    def host(impl: str, *extra: str) -> Run:
        argv = [*impls[impl], "rpc", "client", "test", "--json", *HOST_TIMEOUT]
        return run([*argv, *tls_flags, "--reattach", plugin.line, *extra])

    r = host(first, "--keep-running")
    doc = result_of(r)
    expect(r, r.returncode == 0 and doc["ok"] is True, "reattach with --keep-running must pass")
    # The mutual-TLS probes run while the plugin serves, before the (skipped) shutdown.
    evidence = doc["mutual_tls"]
    assert isinstance(evidence, dict)
    verified = None if mode == "disabled" else True
    expect(
        r,
        evidence["plugin_verified_client"] is verified
        and evidence["host_verified_plugin"] is verified,
        f"reattached over tls {mode}: both sides' verification must be {verified}",
    )
    steps = doc["steps"]
    assert isinstance(steps, list)
    expect(r, str(steps[-1]["detail"]).startswith("skipped"), "the shutdown step must be skipped")
    expect(r, plugin.proc.poll() is None, "--keep-running: the plugin must still run")
    r = host(second)
    expect(r, r.returncode == 0 and result_of(r)["ok"] is True, "a second host must reattach")
    try:
        code = plugin.proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the plugin still runs 5 s after Shutdown\n{r.describe()}", pytrace=False)
    if code != 0:
        pytest.fail(
            f"the debug plugin must exit 0 after Shutdown, not {code}\n"
            f"plugin stderr:\n{plugin.close()}\n{r.describe()}",
            pytrace=False,
        )


def test_debug_refuses_auto_tls(impls: dict[str, list[str]]) -> None:
    argvs = [[*impls[i], "rpc", "server-start", "--debug"] for i in IMPLS]
    runs = dict(zip(IMPLS, parallel(lambda a: run(a, timeout=10), argvs), strict=True))
    assert_same(runs, lambda r: (r.returncode, r.stdout))
    for r in runs.values():
        expect(r, r.returncode == 1 and r.stdout == b"", "expected exit 1 and no reattach line")
        expect(r, DEBUG_AUTO in r.stderr, "expected the contract's message")


# ---------------------------------------------------------------------------------------
# 9. the plugin's unix socket: private under any umask when the host names no directory
# (stock go-plugin hosts send no PLUGIN_UNIX_SOCKET_DIR), nothing left after a shutdown;
# a directory too long for a socket path is named with the limit and the fix


@pytest.fixture
def short_tmpdir() -> Iterator[Path]:
    """A TMPDIR short enough for sockets (pytest's tmp_path is too long: /tmp is used)."""
    path = Path(tempfile.mkdtemp(prefix="soup-t-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.mark.parametrize("server", IMPLS)
def test_socket_is_private_under_umask_000_without_a_host_directory(
    server: str,
    impls: dict[str, list[str]],
    debug_plugins: Callable[[list[str]], DebugPlugin],
    short_tmpdir: Path,
) -> None:
    tmpdir = short_tmpdir
    env = plugin_env("BASIC_PLUGIN=hello", f"TMPDIR={tmpdir}", unset=["PLUGIN_UNIX_SOCKET_DIR"])
    umask_000 = ["sh", "-c", 'umask 000 && exec "$@"', "sh"]
    plugin = debug_plugins(
        [*umask_000, *env, *impls[server], "rpc", "server-start", "--tls-mode", "disabled"]
    )
    fields = plugin.line.split("|")
    assert fields[:3] == ["1", "1", "unix"], plugin.line
    socket_path = Path(fields[3])
    # Before: the Python plugin's socket sat in TMPDIR itself, mode 0777.
    assert socket_path.parent.parent == tmpdir, plugin.line
    parent = socket_path.parent.stat()
    assert (parent.st_mode & 0o777, parent.st_uid) == (0o700, os.geteuid()), oct(parent.st_mode)
    # A graceful shutdown (the host's Controller.Shutdown) leaves nothing in TMPDIR.
    reattach = {
        "Protocol": "grpc", "ProtocolVersion": 1, "Pid": plugin.proc.pid, "Test": True,
        "Addr": {"Network": "unix", "String": str(socket_path)},
    }  # fmt: skip
    argv = [*impls[server], "rpc", "client", "test", "--json", *HOST_TIMEOUT]
    r = run([*argv, "--tls-mode", "disabled", "--reattach", json.dumps(reattach)])
    expect(r, r.returncode == 0 and result_of(r)["ok"] is True, "client test must pass")
    try:
        plugin.proc.wait(timeout=DEBUG_LINE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the plugin did not exit within {DEBUG_LINE_TIMEOUT_S} s of the shutdown")
    assert plugin.proc.returncode == 0, plugin.close()
    assert listing(tmpdir) == [], "left in TMPDIR after a graceful shutdown"


TOO_LONG = re.compile(
    r"unix socket path in (?P<dir>\S+) is too long: (?P<n>\d+) bytes "
    r"\(at most 107 on linux\); set a shorter TMPDIR or PLUGIN_UNIX_SOCKET_DIR"
)


@pytest.mark.skipif(sys.platform != "linux", reason="the limit asserted is Linux's")
def test_a_socket_directory_too_long_is_named_with_the_limit(
    impls: dict[str, list[str]], tmp_path: Path
) -> None:
    long_dir = tmp_path / ("d" * (120 - len(str(tmp_path))))
    long_dir.mkdir()
    env = plugin_env("BASIC_PLUGIN=hello", f"PLUGIN_UNIX_SOCKET_DIR={long_dir}")
    argvs = [[*env, *impls[i], "rpc", "server-start", "--tls-mode", "disabled"] for i in IMPLS]
    runs = dict(zip(IMPLS, parallel(run, argvs), strict=True))
    # Before: soup-go said "bind: invalid argument", the Python plugin nothing at all.
    for r in runs.values():
        messages = [json.loads(line)["@message"] for line in r.stderr.splitlines()]
        found = [m for m in (TOO_LONG.fullmatch(m) for m in messages) if m is not None]
        expect(r, r.returncode == 1 and len(found) == 1, "expected exit 1 and the reason")
        expect(r, found[0]["dir"].startswith(str(long_dir)), "the reason names the directory")
        expect(r, int(found[0]["n"]) > 107, "the reason gives the length")
        expect(r, r.stdout == b"", "no handshake line")
    assert listing(long_dir) == []


@pytest.mark.parametrize("pair", PAIRS, ids=pair_id)
def test_a_long_tmpdir_falls_back_to_tmp(
    pair: tuple[str, str], impls: dict[str, list[str]], tmp_path: Path
) -> None:
    # Host and plugin both make their directories in /tmp when TMPDIR's are too long.
    client, server = pair
    long_tmp = tmp_path / ("t" * (100 - len(str(tmp_path))))
    long_tmp.mkdir()
    argv = kv(impls, client, ["get", "k"], plugin_cmd(impls, server))
    r = run(["env", f"TMPDIR={long_tmp}", *argv])
    # Before: a soup-go host's plugin failed to bind its socket.
    expect(r, r.returncode == 1 and r.errors == ["error: NOT_FOUND: key not found"], "get ran")
    assert listing(long_tmp) == []
