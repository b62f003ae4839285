"""pytest wiring for the matrix: options, cells as parameters, per-run certificates, reports."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(HERE), str(ROOT / "scripts")]

import broker_cells  # noqa: E402
import cells as matrix  # noqa: E402
import envinfo  # noqa: E402
import hygiene  # noqa: E402
import render_report  # noqa: E402

RUN_ENV = "SOUP_MATRIX_RUN"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("soup", "soup conformance matrix")
    group.addoption("--suite", default="quick", help="cells to run: a [suites.X] of matrix.toml")
    group.addoption(
        "--soup-go",
        default=os.environ.get("SOUP_GO", str(ROOT / "build" / "bin" / "soup-go")),
        help="the soup-go binary under test (nox -s build makes build/bin/soup-go)",
    )
    group.addoption(
        "--go-plugin",
        default=None,
        help="go-plugin releases whose cells run: comma list or 'all' (default: the default "
        "release, the tree's go.mod); soup-go on release R is <--soup-go>@vR",
    )
    group.addoption("--report-name", default=None, help="report file stem (default: the suite)")
    group.addoption("--reports", default=str(ROOT / "build" / "reports"), help="report directory")


def _report_name(config: pytest.Config) -> str:
    return str(config.getoption("--report-name") or config.getoption("--suite"))


_STARTED_KEY = pytest.StashKey[float]()
_TMPDIR_KEY = pytest.StashKey[Path]()


def pytest_configure(config: pytest.Config) -> None:
    # Set before xdist starts its workers, so that all of them write into the same run.
    os.environ.setdefault(RUN_ENV, uuid.uuid4().hex[:12])
    config.stash[_STARTED_KEY] = time.monotonic()
    config.stash[_TMPDIR_KEY] = hygiene.private_tmpdir()


def pytest_unconfigure(config: pytest.Config) -> None:
    if _TMPDIR_KEY in config.stash:
        hygiene.remove_tmpdir(config.stash[_TMPDIR_KEY])


@pytest.fixture(autouse=True)
def _hygiene(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail a test that leaves a process, socket or temporary file behind."""
    yield from hygiene.check_test(request)


def _cells_dir(config: pytest.Config) -> Path:
    return Path(config.getoption("--reports")) / f".cells-{os.environ[RUN_ENV]}"


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "cell" in metafunc.fixturenames:
        suite = str(metafunc.config.getoption("--suite"))
        try:
            chosen = matrix.suite_cells(matrix.load(), suite, _go_plugin(metafunc.config))
        except ValueError as exc:
            raise pytest.UsageError(str(exc)) from exc
        metafunc.parametrize("cell", chosen, ids=[c.id for c in chosen])
    if "broker_cell" in metafunc.fixturenames:
        chosen = broker_cells.suite_cells(
            broker_cells.load(), matrix.load(), _go_plugin(metafunc.config)
        )
        metafunc.parametrize("broker_cell", chosen, ids=[c.id for c in chosen])


def _go_plugin(config: pytest.Config) -> list[str]:
    """The go-plugin releases this run tests (--go-plugin), checked against the data."""
    data = matrix.load()
    known = [str(r["go_plugin"]) for r in matrix.releases(data)]
    option = config.getoption("--go-plugin")
    if not option:
        return known[:1]
    wanted = known if option == "all" else str(option).split(",")
    unknown = sorted(set(wanted) - set(known))
    if unknown:
        raise pytest.UsageError(f"unknown go-plugin release {unknown}; known: {', '.join(known)}")
    return wanted


def release_binary(soup_go: Path, release: str) -> Path:
    """soup-go on a go-plugin release: --soup-go itself for the default, else soup-go@v<R>
    next to it (`nox -s build_releases`); a missing one ends the run naming the fix."""
    if matrix.release_impl(matrix.load(), release) == matrix.GO:
        return soup_go
    binary = soup_go.with_name(f"{soup_go.name}@v{release}")
    if not binary.is_file():
        pytest.exit(f"{binary} not found: build it with `nox -s build_releases`", returncode=4)
    return binary


def _release_binaries(config: pytest.Config, soup_go: Path) -> dict[str, str]:
    """Implementation name (go@1.4.8) -> binary, for each non-default release under test."""
    data = matrix.load()
    return {
        matrix.release_impl(data, release): str(release_binary(soup_go, release))
        for release in _go_plugin(config)
        if matrix.release_impl(data, release) != matrix.GO
    }


@pytest.fixture(scope="session")
def data() -> dict[str, Any]:
    return matrix.load()


def _issue_certs(directory: Path, key_types: list[str]) -> None:
    from soup import certs  # noqa: PLC0415 - the package under test, imported once needed

    ca = certs.issue_ca()
    (directory / "ca.pem").write_bytes(ca.cert_pem)
    for role in ("client", "server"):
        for key_type in key_types:
            pair = certs.issue_leaf(ca, key_type)
            certs.write_pair(
                pair, directory / f"{role}-{key_type}.pem", directory / f"{role}-{key_type}.key"
            )


@pytest.fixture(scope="session")
def paths(request: pytest.FixtureRequest, data: dict[str, Any]) -> matrix.Paths:
    """Interpreter, soup-go and this run's manual-mode CA and leaf certificates."""
    config = request.config
    soup_go = Path(str(config.getoption("--soup-go"))).resolve()
    if not soup_go.is_file():
        pytest.exit(f"soup-go not found at {soup_go}: build it with `nox -s build`", returncode=4)
    run_dir = ROOT / "build" / "matrix" / _report_name(config)
    certs_dir = run_dir / "certs"
    certs_dir.mkdir(parents=True, exist_ok=True)
    # One worker issues the run's certificates; the others wait on the lock, then reuse them.
    with (certs_dir / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        stamp = certs_dir / ".run"
        if not stamp.exists() or stamp.read_text() != os.environ[RUN_ENV]:
            _issue_certs(certs_dir, list(data["key_types"]))
            stamp.write_text(os.environ[RUN_ENV])
    return matrix.Paths(
        python=sys.executable,
        soup_go=str(soup_go),
        certs=certs_dir,
        kv_root=run_dir / "kv",
        releases=_release_binaries(config, soup_go),
    )


@cache
def _impl_version(impl: str, python: str, soup_go: str) -> str:
    data = matrix.load()
    probe = matrix.impl_command(
        impl, data, matrix.Paths(python, soup_go, Path(), Path(), {impl: soup_go}), "version_probe"
    )
    out = subprocess.run(probe, capture_output=True, text=True, timeout=30, check=False)
    return (
        out.stdout.strip()
        or f"unknown (version probe exited {out.returncode}: {out.stderr.strip()[-200:]})"
    )


@pytest.fixture(scope="session")
def impl_version(paths: matrix.Paths, data: dict[str, Any]) -> Any:
    """What an implementation's `version` prints; soup-go's must name its go-plugin release."""

    def version(impl: str) -> str:
        found = _impl_version(impl, paths.python, paths.releases.get(impl, paths.soup_go))
        release = matrix.impl_release(data, impl)
        if release is not None and f"go-plugin v{release}" not in found:
            pytest.fail(f"{impl} is not built on go-plugin v{release}: `version` says {found!r}")
        return found

    return version


@pytest.fixture
def record(request: pytest.FixtureRequest) -> Any:
    """Store a verdict where the controller collects it at the end of the run."""

    def _record(verdict: matrix.Verdict, order: int) -> None:
        out = _cells_dir(request.config)
        out.mkdir(parents=True, exist_ok=True)
        doc = verdict.to_json() | {"order": order}
        (out / f"{uuid.uuid4().hex}.json").write_text(json.dumps(doc))

    return _record


def _is_controller(config: pytest.Config) -> bool:
    return not hasattr(config, "workerinput")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    config = session.config
    if not _is_controller(config) or config.option.collectonly:
        return
    cells_dir = _cells_dir(config)
    verdicts = (
        [json.loads(p.read_text()) for p in sorted(cells_dir.glob("*.json"))]
        if cells_dir.exists()
        else []
    )
    for p in cells_dir.glob("*.json") if cells_dir.exists() else []:
        p.unlink()
    if cells_dir.exists():
        cells_dir.rmdir()
    if not verdicts:
        return
    env = envinfo.collect(ROOT / "go" / "soup-go" / "go.mod")
    env["soup-go"] = str(config.getoption("--soup-go"))
    soup_go = Path(str(config.getoption("--soup-go")))
    for release in _go_plugin(config):
        binary = release_binary(soup_go, release)
        env[f"soup-go on go-plugin {release}"] = envinfo.binary_modules(binary)
    name = _report_name(config)
    proof = config.getoption("--suite") == "proof"
    wall = time.monotonic() - config.stash[_STARTED_KEY]
    reports = Path(config.getoption("--reports"))
    written = render_report.write(verdicts, env, reports, name, proof=proof, wall_seconds=wall)
    config.stash[_REPORT_KEY] = (verdicts, written, proof)


_REPORT_KEY = pytest.StashKey[tuple[list[dict[str, Any]], list[Path], bool]]()


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    if _REPORT_KEY not in config.stash:
        return
    verdicts, written, proof = config.stash[_REPORT_KEY]
    ordered = sorted(verdicts, key=lambda v: v.get("order", 0))
    terminalreporter.section("soup proof" if proof else "soup matrix")
    terminalreporter.line(
        render_report.proof_terminal(ordered) if proof else render_report.terminal(ordered)
    )
    for path in written:
        terminalreporter.line(f"report: {path}")
