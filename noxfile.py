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
PACKAGE_DIR = BUILD / "package"

nox.needs_version = ">=2024.3.2"
nox.options.default_venv_backend = "uv|virtualenv"
nox.options.reuse_venv = "yes"
nox.options.error_on_missing_interpreters = False
nox.options.sessions = [
    "lint",
    "unit",
    "integration",
    "hostile",
    "proof",
    "matrix_quick",
    "package",
]


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
    """Install soup editable with the pinned grpcio line.

    The editable build writes the typed stubs to python/soup/_proto (setup.py), generated
    with the oldest generator, so they work on every grpcio line (see [build-system]).
    """
    session.install(
        *(f"{name}=={version}" for name, version in grpc_packages(grpc_line).items()),
        "-e",
        f".[{extras}]",
    )
    site = session.run(
        "python", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", silent=True
    )
    site_dir = Path(str(site).strip().splitlines()[-1])
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
    pytest: str = "pytest",
) -> None:
    """Run the conformance runner on one suite of cells; it writes build/reports/<name>.*."""
    name = name or suite
    env = env or {}
    REPORTS.mkdir(parents=True, exist_ok=True)
    session.run(
        pytest,
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
        external=pytest != "pytest",  # another venv's pytest (nox -s package)
    )


# ---------------------------------------------------------------------------------------
# sessions


@nox.session(python=DEFAULT_PYTHON)
def protos(session: nox.Session) -> None:
    """Generate Go and Python stubs from proto/ with pinned generators."""
    install_soup(session, extras="test")
    gen_go(session)
    session.log(f"Go stubs in {GO_DIR / 'kvpb'}; Python stubs in {ROOT / 'python/soup/_proto'}")


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
        "conformance/test_dist.py", "conformance/test_broker_cells.py",
        "-n", "2", "-p", "no:cacheprovider",
        *session.posargs,
    )  # fmt: skip
    with session.chdir(GO_DIR):
        session.run("go", "test", "-count=1", "./...", external=True)


@nox.session(python=DEFAULT_PYTHON)
def integration(session: nox.Session) -> None:
    """Cross-language cells (Go<->Python, every Python key type, unix+tcp), behaviour, broker."""
    install_soup(session)
    build_soup_go(session)
    pytest_conformance(session, "integration", "-n", "2")
    session.run(
        "pytest", "conformance/test_behaviour.py", "conformance/test_examples.py", "-n", "2", "-p", "no:cacheprovider",
        f"--soup-go={SOUP_GO}",
    )  # fmt: skip
    # The broker suite: GRPCBroker callbacks both ways, four directions (conformance/broker.toml).
    session.run(
        "pytest", "conformance/test_broker.py", "-n", "2", "-p", "no:cacheprovider",
        f"--soup-go={SOUP_GO}", "--report-name=broker", f"--junitxml={REPORTS / 'broker.xml'}",
    )  # fmt: skip


@nox.session(python=DEFAULT_PYTHON)
def hostile(session: nox.Session) -> None:
    """Broken and malicious peers against both implementations (conformance/hostile.toml)."""
    install_soup(session)
    build_soup_go(session)
    REPORTS.mkdir(parents=True, exist_ok=True)
    session.run(
        "pytest", "conformance/test_hostile.py", "-n", "2", "-p", "no:cacheprovider", "-rx",
        f"--soup-go={SOUP_GO}", f"--junitxml={REPORTS / 'hostile.xml'}", *session.posargs,
    )  # fmt: skip


@nox.session(python=DEFAULT_PYTHON)
def proof(session: nox.Session) -> None:
    """The four directions over AutoMTLS; writes build/reports/proof.{md,json,xml}."""
    install_soup(session)
    build_soup_go(session)
    pytest_conformance(session, "proof")


def _interpreter(version: str) -> str | None:
    """The real path of Python ``version`` here (a venv must not link to a pyenv shim)."""
    launcher = shutil.which(f"python{version}")
    if not launcher:
        return None
    found = subprocess.run(
        [launcher, "-c", "import sys; print(sys.executable)"],
        capture_output=True, text=True, check=False, timeout=30,
    )  # fmt: skip
    return found.stdout.strip() if found.returncode == 0 and found.stdout.strip() else None


def _newest_python(max_python: str = "3.99") -> str:
    """The real path of the newest supported Python installed here, up to ``max_python``."""
    limit = tuple(map(int, max_python.split(".")))
    for version in sorted(PYTHONS, key=lambda v: tuple(map(int, v.split("."))), reverse=True):
        path = _interpreter(version)
        if path and tuple(map(int, version.split("."))) <= limit:
            return path
    return sys.executable


def _fresh_venv(session: nox.Session, name: str, python: str, *requirements: str) -> Path:
    """A new uv venv build/package/<name> with only ``requirements``; returns its bin/."""
    venv = PACKAGE_DIR / name
    uv = (sys.executable, "-m", "uv")
    session.run(*uv, "venv", "-q", "--no-python-downloads", "--python", python, str(venv),
                external=True)  # fmt: skip
    session.run(*uv, "pip", "install", "-q", "--python", str(venv / "bin" / "python"),
                *requirements, external=True)  # fmt: skip
    session.run(str(venv / "bin" / "python"), "scripts/envinfo.py", external=True)
    return venv / "bin"


def _check_installed(session: nox.Session, bin_dir: Path) -> None:
    """The installed (not the checkout's) soup imports and answers its CLI basics."""
    where = str(session.run(str(bin_dir / "python"), "-c", "import soup.pb; print(soup.__file__)",
                            external=True, silent=True)).strip()  # fmt: skip
    if not where.startswith(f"{bin_dir.parent}/"):
        session.error(f"soup imported from {where}, not from {bin_dir.parent}")
    soup = str(bin_dir / "soup")
    version = session.run(soup, "--version", external=True, silent=True)
    if version != session.run(soup, "version", external=True, silent=True):
        session.error(f"`soup --version` and `soup version` differ: {version!r}")
    no_cookie = {k: "" for k in ("BASIC_PLUGIN", "PLUGIN_PROTOCOL_VERSIONS", "PLUGIN_CLIENT_CERT")}
    not_plugin = session.run(soup, "rpc", "server-start", env=no_cookie, success_codes=[1],
                             external=True, silent=True)  # fmt: skip
    if "This binary is a plugin" not in str(not_plugin):
        session.error(f"`soup rpc server-start` without a cookie printed: {not_plugin!r}")
    session.log(f"installed soup works: {str(version).strip()} from {where}")


@nox.session(python=DEFAULT_PYTHON)
def package(session: nox.Session) -> None:
    """Build sdist + wheel, install the wheel into fresh venvs on the oldest and latest grpcio
    line, run the proof cells with the installed package; check an install from the sdist."""
    session.install(f"grpcio-tools=={grpc_packages('latest')['grpcio-tools']}")  # Go stubs
    shutil.rmtree(PACKAGE_DIR, ignore_errors=True)
    dist = PACKAGE_DIR / "dist"
    # uv builds the sdist, then the wheel from that sdist.
    session.run(sys.executable, "-m", "uv", "build", "-q", "--no-python-downloads",
                "--python", DEFAULT_PYTHON, "--out-dir", str(dist), external=True)  # fmt: skip
    session.run("python", "scripts/check_dist.py", str(dist))
    (wheel,) = dist.glob("soup-*.whl")
    (sdist,) = dist.glob("soup-*.tar.gz")
    build_soup_go(session)
    for line in ("oldest", "latest"):
        python = _newest_python(str(GRPC_LINES[line].get("max-python", "3.99")))
        pins = [f"{name}=={version}" for name, version in grpc_packages(line).items()]
        bin_dir = _fresh_venv(session, f"wheel-{line}", python, f"soup[test] @ {wheel.as_uri()}",
                              *pins)  # fmt: skip
        _check_installed(session, bin_dir)
        env = {
            "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
            "VIRTUAL_ENV": str(bin_dir.parent),
        }
        pytest_conformance(session, "proof", name=f"package-{line}", env=env,
                           pytest=str(bin_dir / "pytest"))  # fmt: skip
    bin_dir = _fresh_venv(session, "sdist", _newest_python(), str(sdist),
                          f"grpcio=={grpc_packages('latest')['grpcio']}")  # fmt: skip
    _check_installed(session, bin_dir)
    for venv in ("wheel-oldest", "wheel-latest", "sdist"):
        shutil.rmtree(PACKAGE_DIR / venv)


@nox.session(python=DEFAULT_PYTHON)
def matrix_quick(session: nox.Session) -> None:
    """A representative slice of the matrix (runs by default; the full one is `matrix`)."""
    install_soup(session)
    build_soup_go(session)
    pytest_conformance(session, "quick", "-n", "4")


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
    install_soup(session, extras="bench")
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
