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
from nox.command import CommandFailed

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT / "scripts"))
import ci_shards  # noqa: E402 - the version axes, shared with CI's job matrix

PYPROJECT, MATRIX = ci_shards.read(ROOT)
TOOLS = PYPROJECT["tool"]["soup"]
GRPC_LINES: dict[str, dict[str, object]] = TOOLS["grpc"]
GRPC_LATEST = ci_shards.latest_grpc_line(PYPROJECT)
GRPC_OLDEST = ci_shards.oldest_grpc_line(PYPROJECT)
GO_RELEASES: list[dict[str, object]] = MATRIX["implementations"]["go"]["releases"]
GO_DEFAULT = ci_shards.go_plugin_releases(MATRIX)[0]
BROKER = tomllib.loads((ROOT / "conformance" / "broker.toml").read_text())
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
# A session whose Python is missing fails (locally and in CI): it must never pass by skipping.
nox.options.error_on_missing_interpreters = True
nox.options.sessions = [
    "lint",
    "unit",
    "integration",
    "hostile",
    "proof",
    "matrix_quick",
    "package",
]


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
    supported = tuple(f"{v}." for v in ci_shards.supported_pythons(PYPROJECT))
    wanted = [v for v in names.stdout.split() if v.startswith(supported)]
    os.environ["PYENV_VERSION"] = ":".join(dict.fromkeys([*current.split(":"), *wanted]))


_expose_pyenv_versions()
DEFAULT_PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"
PYTHON_GRPC = ci_shards.python_grpc_pairs(PYPROJECT)


# ---------------------------------------------------------------------------------------
# shared helpers


def header(session: nox.Session) -> None:
    """Print the versions this session runs with (first thing every session does)."""
    session.run("python", str(ROOT / "scripts" / "envinfo.py"), f"--go-mod={GO_DIR / 'go.mod'}")


def grpc_packages(line: str) -> dict[str, str]:
    packages = GRPC_LINES[line]["packages"]
    assert isinstance(packages, dict)
    return packages


def install_soup(session: nox.Session, grpc_line: str = GRPC_LATEST, extras: str = "test") -> None:
    """Install soup editable with the pinned grpcio line.

    The editable build writes the typed stubs to python/soup/_proto (setup.py), generated
    with the oldest generator, so they work on every grpcio line (see [build-system]).
    """
    session.install(
        *(f"{name}=={version}" for name, version in grpc_packages(grpc_line).items()),
        "-e",
        f".[{extras}]",
    )
    # run_install: also under --install-only; None when --no-install reuses the venv as is.
    site = session.run_install(
        "python", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", silent=True
    )
    if site is not None:
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


_GO_STUBS_WRITTEN: set[str] = set()  # sessions that wrote them (once per session)


def gen_go(session: nox.Session) -> None:
    """Write soup-go's Go stubs (go/soup-go/kvpb, not committed) with the pinned generators
    and this venv's protoc, before anything builds, vets or tests soup-go."""
    if session.name in _GO_STUBS_WRITTEN:
        return
    _GO_STUBS_WRITTEN.add(session.name)
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
    """Build soup-go (optionally instrumented for coverage), its Go stubs generated first."""
    gen_go(session)
    out = SOUP_GO_COVER if cover else SOUP_GO
    args = ["go", "build", *(["-cover"] if cover else []), "-o", str(out), "."]
    with session.chdir(GO_DIR):
        session.run(*args, external=True)
    return out


def build_soup_go_release(session: nox.Session, go_plugin: str) -> Path:
    """Build soup-go on an older go-plugin release: the tree's sources with a copy of go.mod
    (in build/go-plugin/v<release>/) requiring that release and its gRPC-Go, plus the
    release's build tags for API differences. The default release is build_soup_go's."""
    if go_plugin == GO_DEFAULT:
        return build_soup_go(session)
    gen_go(session)
    release = next(r for r in GO_RELEASES if r["go_plugin"] == go_plugin)
    mod_dir = BUILD / "go-plugin" / f"v{go_plugin}"
    mod_dir.mkdir(parents=True, exist_ok=True)
    modfile = mod_dir / "go.mod"
    shutil.copyfile(GO_DIR / "go.mod", modfile)
    if not (mod_dir / "go.sum").exists():  # kept across runs: tidy then checks no new sums
        shutil.copyfile(GO_DIR / "go.sum", mod_dir / "go.sum")
    out = SOUP_GO.with_name(f"{SOUP_GO.name}@v{go_plugin}")
    tags = ",".join(map(str, release.get("tags", [])))  # type: ignore[call-overload]
    with session.chdir(GO_DIR):
        session.run(
            "go", "mod", "edit",
            f"-require=github.com/hashicorp/go-plugin@v{go_plugin}",
            f"-require=google.golang.org/grpc@v{release['grpc_go']}",
            str(modfile), external=True,
        )  # fmt: skip
        session.run("go", "mod", "tidy", f"-modfile={modfile}", external=True)
        session.run(
            "go", "build", f"-modfile={modfile}", f"-tags={tags}", "-o", str(out), ".",
            external=True,
        )  # fmt: skip
        session.run("go", "vet", f"-modfile={modfile}", f"-tags={tags}", ".", external=True)
    built = session.run("go", "version", "-m", str(out), external=True, silent=True)
    for module, version in (
        ("github.com/hashicorp/go-plugin", go_plugin),
        ("google.golang.org/grpc", release["grpc_go"]),
    ):
        if f"{module}\tv{version}\t" not in str(built):
            session.error(f"{out} is not built on {module} v{version}:\n{built}")
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
    gen_go(session)  # go vet needs them
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
def build_releases(session: nox.Session) -> None:
    """Build soup-go on every go-plugin release of matrix.toml (build/bin/soup-go@v<release>)."""
    install_soup(session, extras="test")
    for release in GO_RELEASES:
        session.log(f"built {build_soup_go_release(session, str(release['go_plugin']))}")


@nox.session(python=DEFAULT_PYTHON)
def unit(session: nox.Session) -> None:
    """Unit tests: the Python package (pytest) and soup-go (go test)."""
    run_unit(session, GRPC_LATEST)


@nox.session
@nox.parametrize(["python", "grpc"], PYTHON_GRPC)
def unit_versions(session: nox.Session, grpc: str) -> None:
    """unit on one supported Python x grpcio line."""
    run_unit(session, grpc)


def ensure_debian_package(session: nox.Session, program: str, package: str, why: str) -> None:
    """Install Debian's ``package`` when ``program`` is not on PATH (we may run as root on a
    fresh machine); a clear error naming the package when that cannot be done."""
    if shutil.which(program):
        return
    fix = f"install Debian's `{package}` package (apt-get install {package})"
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        session.error(f"{why} needs {program}: {fix}")
    try:
        session.run("apt-get", "update", "-q", external=True)
        session.run(
            "apt-get", "install", "-y", "-q", "--no-install-recommends", package, external=True
        )
    except CommandFailed:
        session.error(f"{why} needs {program} and `apt-get install {package}` failed: {fix}")
    if not shutil.which(program):
        session.error(f"{why} needs {program}: package {package} installed no {program} on PATH")


def ensure_chromium(session: nox.Session) -> None:
    """The HTML report test opens the report in Chromium: install Debian's if it is missing."""
    if os.environ.get("SOUP_CHROMIUM"):
        return
    why = "the HTML report test (or set SOUP_CHROMIUM to a Chromium binary)"
    ensure_debian_package(session, "chromium", "chromium", why)


def run_unit(session: nox.Session, grpc: str) -> None:
    install_soup(session, grpc_line=grpc)
    ensure_chromium(session)
    session.run(
        "pytest", "python/tests", "conformance/test_cells.py", "conformance/test_report.py",
        "conformance/test_report_html.py",
        "conformance/test_dist.py", "conformance/test_broker_cells.py",
        "conformance/test_merge.py", "conformance/test_ci.py", "conformance/test_check_targets.py",
        f"--deselect={MERGE_REAL_SHARDS}",  # the releases session runs it: it needs soup-go builds
        "-n", "2", "-p", "no:cacheprovider",
        *session.posargs,
        env={"SOUP_NOX_PYTHON": sys.executable},  # test_ci lists the sessions with this nox
    )  # fmt: skip
    gen_go(session)
    with session.chdir(GO_DIR):
        session.run("go", "test", "-count=1", "./...", external=True)


@nox.session(python=DEFAULT_PYTHON)
def integration(session: nox.Session) -> None:
    """Cross-language cells (Go<->Python, every Python key type, unix+tcp), behaviour, broker."""
    run_integration(session, GRPC_LATEST, "integration")


@nox.session
@nox.parametrize(["python", "grpc"], PYTHON_GRPC)
def integration_versions(session: nox.Session, grpc: str) -> None:
    """integration on one supported Python x grpcio line."""
    run_integration(session, grpc, f"integration-{run_name(session, grpc)}")


def run_name(session: nox.Session, grpc: str, go_plugin: str = GO_DEFAULT) -> str:
    """A report's name: the versions it ran on, e.g. py3.12-grpcio1.66.2-goplugin1.8.0."""
    grpcio = grpc_packages(grpc)["grpcio"]
    return f"py{session.python}-grpcio{grpcio}-goplugin{go_plugin}"


MERGE_REAL_SHARDS = "conformance/test_merge.py::test_merge_of_two_real_shards"


def run_integration(session: nox.Session, grpc: str, name: str) -> None:
    install_soup(session, grpc_line=grpc)
    build_soup_go(session)
    pytest_conformance(session, "integration", "-n", "2", name=name)
    session.run(
        "pytest", "conformance/test_behaviour.py", "conformance/test_examples.py",
        "conformance/test_mutual_tls.py", "-n", "2", "-p", "no:cacheprovider",
        f"--soup-go={SOUP_GO}",
    )  # fmt: skip
    # The broker suite: GRPCBroker callbacks both ways, four directions (conformance/broker.toml).
    session.run(
        "pytest", "conformance/test_broker.py", "-n", "2", "-p", "no:cacheprovider",
        f"--soup-go={SOUP_GO}", "--report-name=broker", f"--junitxml={REPORTS / 'broker.xml'}",
    )  # fmt: skip


@nox.session(python=DEFAULT_PYTHON)
def releases(session: nox.Session) -> None:
    """soup-go on every go-plugin release: recorded behaviour differences, a merge of real shards."""
    install_soup(session)
    build_soup_go(session)
    for release in ci_shards.go_plugin_releases(MATRIX)[1:]:
        build_soup_go_release(session, release)
    # Every recorded go-plugin behaviour difference, probed on soup-go built on each release.
    session.run(
        "pytest", "conformance/test_releases.py", "-n", "2", "-p", "no:cacheprovider",
        f"--soup-go={SOUP_GO}",
    )  # fmt: skip
    # Broker multiplexing on the older releases that have it (broker.toml's [multiplex]).
    older = [r for r in BROKER["multiplex"]["releases"] if r != GO_DEFAULT]
    session.run(
        "pytest", "conformance/test_broker.py", "-n", "2", "-p", "no:cacheprovider",
        f"--soup-go={SOUP_GO}", f"--go-plugin={','.join(older)}",
        "--report-name=broker-releases", f"--junitxml={REPORTS / 'broker-releases.xml'}",
    )  # fmt: skip
    # Two small matrix shards (default and oldest go-plugin release), merged as CI merges.
    session.run(
        "pytest", MERGE_REAL_SHARDS, "-p", "no:cacheprovider", env={"SOUP_GO": str(SOUP_GO)}
    )


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
    run_proof(session, GRPC_LATEST, "proof")


@nox.session
@nox.parametrize(["python", "grpc"], PYTHON_GRPC)
def proof_versions(session: nox.Session, grpc: str) -> None:
    """proof on one supported Python x grpcio line (build/reports/proof-py*-grpcio*.*)."""
    run_proof(session, grpc, f"proof-{run_name(session, grpc)}")


def run_proof(session: nox.Session, grpc: str, name: str) -> None:
    install_soup(session, grpc_line=grpc)
    build_soup_go(session)
    pytest_conformance(session, "proof", name=name)


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
    pythons = ci_shards.supported_pythons(PYPROJECT)
    for version in sorted(pythons, key=ci_shards.version_key, reverse=True):
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
    session.install(f"grpcio-tools=={grpc_packages(GRPC_LATEST)['grpcio-tools']}")  # Go stubs
    shutil.rmtree(PACKAGE_DIR, ignore_errors=True)
    dist = PACKAGE_DIR / "dist"
    # uv builds the sdist, then the wheel from that sdist.
    session.run(sys.executable, "-m", "uv", "build", "-q", "--no-python-downloads",
                "--python", DEFAULT_PYTHON, "--out-dir", str(dist), external=True)  # fmt: skip
    session.run("python", "scripts/check_dist.py", str(dist))
    (wheel,) = dist.glob("soup-*.whl")
    (sdist,) = dist.glob("soup-*.tar.gz")
    build_soup_go(session)
    for label, line in (("oldest", GRPC_OLDEST), ("latest", GRPC_LATEST)):
        python = _newest_python(str(GRPC_LINES[line].get("max-python", "3.99")))
        pins = [f"{name}=={version}" for name, version in grpc_packages(line).items()]
        bin_dir = _fresh_venv(session, f"wheel-{label}", python, f"soup[test] @ {wheel.as_uri()}",
                              *pins)  # fmt: skip
        _check_installed(session, bin_dir)
        env = {
            "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
            "VIRTUAL_ENV": str(bin_dir.parent),
        }
        pytest_conformance(session, "proof", name=f"package-{label}", env=env,
                           pytest=str(bin_dir / "pytest"))  # fmt: skip
        # The README's examples, written only against the public API, on the installed wheel:
        # a plugin under its own cookie to soup-go's host, a host calling soup-go's plugin.
        session.run(str(bin_dir / "pytest"), "conformance/test_examples.py", "-p",
                    "no:cacheprovider", f"--soup-go={SOUP_GO}", env=env,
                    external=True)  # fmt: skip
    bin_dir = _fresh_venv(session, "sdist", _newest_python(), str(sdist),
                          f"grpcio=={grpc_packages(GRPC_LATEST)['grpcio']}")  # fmt: skip
    _check_installed(session, bin_dir)
    for venv in ("wheel-oldest", "wheel-latest", "sdist"):
        shutil.rmtree(PACKAGE_DIR / venv)


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


@nox.session(python=DEFAULT_PYTHON)
def check(session: nox.Session) -> None:
    """`soup check` on every real target (check_targets.toml, the README's table) and its fakes."""
    install_soup(session)
    REPORTS.mkdir(parents=True, exist_ok=True)
    session.run(
        "pytest", "conformance/test_check_fakes.py", "-n", "2", "-p", "no:cacheprovider",
        f"--junitxml={REPORTS / 'check-fakes.xml'}", *session.posargs,
    )  # fmt: skip
    for release in GO_RELEASES:
        build_soup_go_release(session, str(release["go_plugin"]))
    session.run("python", "scripts/setup_peers.py")
    provider = BUILD / "bin" / "terraform-provider-soupexample"
    with session.chdir(ROOT / "go" / "tfprovider"):
        session.run("go", "build", "-o", str(provider), ".", external=True)
    session.run("python", "scripts/check_targets.py", f"--readme={ROOT / 'README.md'}")


@nox.session
@nox.parametrize(["python", "grpc", "go_plugin"], ci_shards.matrix_shards(PYPROJECT, MATRIX))
def matrix(session: nox.Session, grpc: str, go_plugin: str) -> None:
    """The full matrix's cells of one go-plugin release, on one Python x grpcio line."""
    install_soup(session, grpc_line=grpc)
    build_soup_go(session)
    build_soup_go_release(session, go_plugin)
    name = f"matrix-{run_name(session, grpc, go_plugin)}"
    pytest_conformance(session, "full", "-n", "4", f"--go-plugin={go_plugin}", name=name)


@nox.session(python=DEFAULT_PYTHON)
def report(session: nox.Session) -> None:
    """Merge matrix JSON reports (e.g. CI shards): `nox -s report -- FILES` -> build/reports/merged.md."""
    if not session.posargs:
        session.error("usage: nox -s report -- REPORT.json [REPORT.json ...]")
    session.run("python", "scripts/merge_reports.py", "--out", str(REPORTS), *session.posargs)


@nox.session(python=DEFAULT_PYTHON)
def bench(session: nox.Session) -> None:
    """Benchmarks as ratios against Go->Go in the same run; writes build/reports/bench.*."""
    install_soup(session, extras="bench")
    build_soup_go(session)
    # Lifecycles are timed from outside, as whole processes, by hyperfine.
    ensure_debian_package(session, "hyperfine", "hyperfine", "the bench's lifecycle section")
    readme = f"--readme={ROOT / 'README.md'}"  # not rewritten by --quick or a refused run
    session.run("python", "scripts/bench.py", "--soup-go", str(SOUP_GO), readme, *session.posargs)


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
