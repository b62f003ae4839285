"""soup: every entry point. `nox -l` lists the sessions; `nox` runs the default ones."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import nox

ROOT = Path(__file__).resolve().parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
TOOLS = PYPROJECT["tool"]["soup"]
GRPC_LINES: dict[str, dict[str, object]] = TOOLS["grpc"]
BUILD = ROOT / "build"
REPORTS = BUILD / "reports"
TOOL_BIN = BUILD / "tools"
GO_DIR = ROOT / "go" / "soup-go"
SOUP_GO = BUILD / "bin" / "soup-go"
SOUP_GO_COVER = BUILD / "bin" / "soup-go-cover"
COVER_DIR = BUILD / "coverage"

nox.needs_version = ">=2024.3.2"
nox.options.default_venv_backend = "uv|virtualenv"
nox.options.reuse_venv = "yes"
nox.options.error_on_missing_interpreters = False
nox.options.sessions = ["lint", "unit", "integration", "proof", "matrix_quick"]


def _supported_pythons() -> list[str]:
    prefix = "Programming Language :: Python :: 3."
    minors = [c.removeprefix(prefix) for c in PYPROJECT["project"]["classifiers"]]
    return [f"3.{m}" for m in minors if m.isdigit()]


def _expose_pyenv_versions() -> None:
    """Let pyenv's `python3.X` shims resolve every installed version, not just the current one.

    Without this, nox finds only the current interpreter on a pyenv machine and skips the
    others; with it, the matrix runs on every supported Python that is installed here.
    The current version stays first (pyenv's own `exec` sets PYENV_VERSION to it).
    """
    pyenv = shutil.which("pyenv")
    if not pyenv:
        return
    run = subprocess.run
    names = run([pyenv, "versions", "--bare"], capture_output=True, text=True, check=False)
    current = (
        os.environ.get("PYENV_VERSION")
        or run([pyenv, "version-name"], capture_output=True, text=True, check=False).stdout.strip()
    )
    supported = tuple(f"{v}." for v in _supported_pythons())
    wanted = [v for v in names.stdout.split() if v.startswith(supported)]
    os.environ["PYENV_VERSION"] = ":".join(dict.fromkeys([*current.split(":"), *wanted]))


_expose_pyenv_versions()
PYTHONS = _supported_pythons()
DEFAULT_PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"


# ---------------------------------------------------------------------------------------
# shared helpers


def header(session: nox.Session) -> None:
    """Print the versions this session runs with (first thing every session does)."""
    session.run("python", str(ROOT / "scripts" / "envinfo.py"), f"--go-mod={GO_DIR / 'go.mod'}")


def grpc_packages(line: str) -> dict[str, str]:
    packages = GRPC_LINES[line]["packages"]
    assert isinstance(packages, dict)
    return packages


def install_soup(session: nox.Session, grpc_line: str = "latest", extras: str = "test") -> None:
    """Install soup with the pinned grpcio line and generate stubs for this venv's grpcio."""
    session.install(
        *(f"{name}=={version}" for name, version in grpc_packages(grpc_line).items()),
        "-e",
        f".[{extras}]",
    )
    gen = BUILD / "gen" / "python" / Path(session.virtualenv.location).name
    session.run("python", "scripts/gen_protos.py", "--python-out", str(gen), silent=True)
    site = session.run(
        "python", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", silent=True
    )
    site_dir = Path(str(site).strip().splitlines()[-1])
    (site_dir / "soup_proto.pth").write_text(f"{gen}\n")
    # Subprocess coverage: active only when COVERAGE_PROCESS_START is set (nox -s cover).
    (site_dir / "soup_coverage.pth").write_text(
        "import os; os.environ.get('COVERAGE_PROCESS_START') and "
        "__import__('coverage').process_startup()\n"
    )
    header(session)


def go_tools(session: nox.Session) -> None:
    """Install the pinned protoc plugins and actionlint into build/tools (once per version)."""
    wanted = {
        "google.golang.org/protobuf/cmd/protoc-gen-go": TOOLS["protoc-gen-go"],
        "google.golang.org/grpc/cmd/protoc-gen-go-grpc": TOOLS["protoc-gen-go-grpc"],
        "github.com/rhysd/actionlint/cmd/actionlint": TOOLS["actionlint"],
    }
    stamp = TOOL_BIN / "versions.json"
    if stamp.exists() and json.loads(stamp.read_text()) == wanted:
        return
    TOOL_BIN.mkdir(parents=True, exist_ok=True)
    for module, version in wanted.items():
        session.run(
            "go", "install", f"{module}@{version}", external=True, env={"GOBIN": str(TOOL_BIN)}
        )
    stamp.write_text(json.dumps(wanted, indent=1))


def gen_go(session: nox.Session) -> None:
    go_tools(session)
    session.run(
        "python",
        "scripts/gen_protos.py",
        "--go-out",
        str(GO_DIR / "kvpb"),
        "--go-plugins",
        str(TOOL_BIN),
        silent=True,
    )


def build_soup_go(session: nox.Session, *, cover: bool = False) -> Path:
    """Generate the Go stubs and build soup-go (optionally instrumented for coverage)."""
    gen_go(session)
    out = SOUP_GO_COVER if cover else SOUP_GO
    args = ["go", "build", *(["-cover"] if cover else []), "-o", str(out), "."]
    with session.chdir(GO_DIR):
        session.run(*args, external=True)
    return out


def pytest_conformance(
    session: nox.Session,
    suite: str,
    *extra: str,
    name: str | None = None,
    env: dict[str, str] | None = None,
) -> None:
    """Run the conformance runner on one suite of cells; it writes build/reports/<name>.*."""
    name = name or suite
    env = env or {}
    REPORTS.mkdir(parents=True, exist_ok=True)
    session.run(
        "pytest",
        "conformance/test_matrix.py",
        f"--suite={suite}",
        f"--report-name={name}",
        f"--soup-go={env.get('SOUP_GO', SOUP_GO)}",
        f"--junitxml={REPORTS / (name + '.xml')}",
        "-p",
        "no:cacheprovider",
        *extra,
        *session.posargs,
        env=env,
    )


# ---------------------------------------------------------------------------------------
# sessions


@nox.session(python=DEFAULT_PYTHON)
def protos(session: nox.Session) -> None:
    """Generate Go and Python stubs from proto/ with pinned generators."""
    install_soup(session, extras="test")
    gen_go(session)
    session.log(f"Go stubs in {GO_DIR / 'kvpb'}; Python stubs in {BUILD / 'gen' / 'python'}")


@nox.session(python=DEFAULT_PYTHON)
def build(session: nox.Session) -> None:
    """Build build/bin/soup-go on the pinned hashicorp/go-plugin."""
    install_soup(session, extras="test")
    session.log(f"built {build_soup_go(session)}")


@nox.session(python=DEFAULT_PYTHON)
def lint(session: nox.Session) -> None:
    """ruff, mypy --strict, actionlint on the workflows, gofmt and go vet."""
    install_soup(session, extras="test,lint")
    gen_go(session)
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("mypy")
    workflows = sorted(str(p) for p in (ROOT / ".github" / "workflows").glob("*.yml"))
    session.run(str(TOOL_BIN / "actionlint"), *workflows, external=True)
    with session.chdir(GO_DIR):
        unformatted = session.run("gofmt", "-l", ".", external=True, silent=True)
        if str(unformatted).strip():
            session.error(f"gofmt would change: {unformatted}")
        session.run("go", "vet", "./...", external=True)


@nox.session(python=DEFAULT_PYTHON)
def unit(session: nox.Session) -> None:
    """Unit tests: the Python package (pytest) and soup-go (go test)."""
    install_soup(session)
    gen_go(session)
    session.run(
        "pytest", "python/tests", "conformance/test_cells.py", "conformance/test_report.py",
        "conformance/test_report_html.py", "-n", "2", "-p", "no:cacheprovider",
        *session.posargs,
    )  # fmt: skip
    with session.chdir(GO_DIR):
        session.run("go", "test", "-count=1", "./...", external=True)


@nox.session(python=DEFAULT_PYTHON)
def integration(session: nox.Session) -> None:
    """Cross-language cells (Go<->Python, every Python key type, unix+tcp), same-input behaviour."""
    install_soup(session)
    build_soup_go(session)
    pytest_conformance(session, "integration", "-n", "2")
    session.run(
        "pytest", "conformance/test_behaviour.py", "conformance/test_mutual_tls.py",
        "-n", "2", "-p", "no:cacheprovider",
        f"--soup-go={SOUP_GO}",
    )  # fmt: skip


@nox.session(python=DEFAULT_PYTHON)
def proof(session: nox.Session) -> None:
    """The four directions over AutoMTLS; writes build/reports/proof.{md,json,xml}."""
    install_soup(session)
    build_soup_go(session)
    pytest_conformance(session, "proof")


@nox.session(python=DEFAULT_PYTHON)
def matrix_quick(session: nox.Session) -> None:
    """A representative slice of the matrix (runs by default; the full one is `matrix`)."""
    install_soup(session)
    build_soup_go(session)
    pytest_conformance(session, "quick", "-n", "4")


@nox.session(python=DEFAULT_PYTHON)
def peers(session: nox.Session) -> None:
    """Peer rows (TofuSoup, go-plugin examples) against both soup implementations in both roles."""
    install_soup(session)
    build_soup_go(session)
    session.run("python", "scripts/setup_peers.py")
    # Serial: go-plugin's plugin-python example always listens on 127.0.0.1:1234.
    pytest_conformance(session, "peers")
    session.run("python", "scripts/peers_table.py", str(REPORTS / "peers.json"))


@nox.session(python=PYTHONS)
@nox.parametrize("grpc", list(GRPC_LINES))
def matrix(session: nox.Session, grpc: str) -> None:
    """The full conformance matrix, per Python version and grpcio line."""
    grpcio = grpc_packages(grpc)["grpcio"]
    max_python = str(GRPC_LINES[grpc].get("max-python", "3.99"))
    if tuple(map(int, str(session.python).split("."))) > tuple(map(int, max_python.split("."))):
        session.skip(f"grpcio {grpcio} is not tested on Python {session.python} (max {max_python})")
    install_soup(session, grpc_line=grpc)
    build_soup_go(session)
    name = f"matrix-py{session.python}-grpcio{grpcio}"
    pytest_conformance(session, "full", "-n", "4", name=name)


@nox.session(python=DEFAULT_PYTHON)
def bench(session: nox.Session) -> None:
    """Benchmarks as ratios against Go->Go in the same run; writes build/reports/bench.*."""
    install_soup(session)
    build_soup_go(session)
    session.run("python", "scripts/bench.py", "--soup-go", str(SOUP_GO), *session.posargs)


@nox.session(python=DEFAULT_PYTHON)
def cover(session: nox.Session) -> None:
    """Coverage across processes (Python subprocesses and soup-go -cover); fails under 85%."""
    install_soup(session)
    soup_go = build_soup_go(session, cover=True)
    shutil.rmtree(COVER_DIR, ignore_errors=True)
    go_cover = COVER_DIR / "go"
    go_cover.mkdir(parents=True)
    # Every Python process measures itself through soup_coverage.pth (see install_soup):
    # this pytest, its xdist workers, and the plugins and hosts started by it or by
    # soup-go. They exit normally or on SIGTERM (`sigterm = true`), so each writes its
    # data file next to COVERAGE_FILE. soup-go-cover writes into GOCOVERDIR on exit.
    env = {
        "COVERAGE_PROCESS_START": str(ROOT / "pyproject.toml"),
        "COVERAGE_FILE": str(COVER_DIR / ".coverage"),
        "GOCOVERDIR": str(go_cover),
        "SOUP_GO": str(soup_go),
    }
    session.run("pytest", "python/tests", "-n", "2", "-p", "no:cacheprovider", env=env)
    # Own report names: the integration and proof sessions' reports and certs stay theirs.
    pytest_conformance(session, "integration", "-n", "2", name="cover-integration", env=env)
    pytest_conformance(session, "proof", name="cover-proof", env=env)
    with session.chdir(GO_DIR):
        session.run(
            "go", "test", "-count=1", "-cover", "./...", "-args", f"-test.gocoverdir={go_cover}",
            external=True, env=env,
        )  # fmt: skip
    session.run("coverage", "combine", "--quiet", env=env)
    _cover_summary(session, env, go_cover)
    # The bar: exits non-zero (after the summary is printed and written) under 85%.
    totals = COVER_DIR / "python.json"
    session.run("coverage", "json", "-q", "--fail-under=85", "-o", str(totals), env=env)
    percent = json.loads(totals.read_text())["totals"]["percent_covered_display"]
    session.log(f"Python coverage {percent}% (bar: 85%)")


def _cover_summary(session: nox.Session, env: dict[str, str], go_cover: Path) -> None:
    """Print both languages' coverage and write it to build/reports/coverage.txt."""
    python = session.run("coverage", "report", env=env, silent=True, success_codes=[0, 2])
    go_text = COVER_DIR / "go.txt"
    session.run(
        "go", "tool", "covdata", "textfmt", f"-i={go_cover}", f"-o={go_text}",
        external=True, silent=True,
    )  # fmt: skip
    go = session.run(
        "go", "tool", "covdata", "percent", f"-i={go_cover}", external=True, silent=True
    )
    summary = (
        f"Python (soup; unit tests, integration and proof suites, all subprocesses)\n{python}\n"
        f"Go (soup-go built with -cover; go test and every soup-go process of the suites)\n{go}"
        f"Go profile: {go_text}\n"
    )
    REPORTS.mkdir(parents=True, exist_ok=True)
    (REPORTS / "coverage.txt").write_text(summary)
    print(summary, flush=True)
    session.log(f"coverage summary: {REPORTS / 'coverage.txt'}")
