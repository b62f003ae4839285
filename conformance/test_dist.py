"""Tests of the packaging checks and of the generator pins (`nox -s package` builds for real)."""

from __future__ import annotations

import io
import tarfile
import tomllib
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

import check_dist

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PROTOS = ["kv.proto", "plugin/grpc_stdio.proto"]


def make_sdist(path: Path, names: list[str]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name in names:
            info = tarfile.TarInfo(f"soup-0.1.0/{name}")
            tar.addfile(info, io.BytesIO(b""))
    return path


def make_wheel(path: Path, names: list[str]) -> Path:
    with zipfile.ZipFile(path, "w") as wheel:
        for name in names:
            wheel.writestr(name, "")
    return path


def complete_sdist() -> list[str]:
    return [*check_dist.SDIST_FILES, *(f"proto/{p}" for p in PROTOS), "python/soup/pb.py"]


def test_complete_distributions_pass(tmp_path: Path) -> None:
    sdist = check_dist.sdist_names(make_sdist(tmp_path / "s.tar.gz", complete_sdist()))
    wheel_files = [*check_dist.expected_stubs(PROTOS), "soup/pb.py"]
    wheel = check_dist.wheel_names(make_wheel(tmp_path / "w.whl", wheel_files))
    assert check_dist.protos_in(sdist) == sorted(PROTOS)
    assert check_dist.missing_from_sdist(sdist) == []
    assert check_dist.missing_from_wheel(wheel, PROTOS) == []


def test_expected_stubs_cover_every_module_and_its_types() -> None:
    stubs = check_dist.expected_stubs(["plugin/grpc_stdio.proto"])
    assert "soup/py.typed" in stubs
    assert "soup/_proto/plugin/__init__.py" in stubs
    assert "soup/_proto/plugin/grpc_stdio_pb2.pyi" in stubs
    assert "soup/_proto/plugin/grpc_stdio_pb2_grpc.pyi" in stubs


def test_wheel_without_typed_grpc_stubs_is_reported(tmp_path: Path) -> None:
    present = [n for n in check_dist.expected_stubs(PROTOS) if not n.endswith("_grpc.pyi")]
    wheel = check_dist.wheel_names(make_wheel(tmp_path / "w.whl", present))
    assert check_dist.missing_from_wheel(wheel, PROTOS) == [
        "soup/_proto/kv_pb2_grpc.pyi",
        "soup/_proto/plugin/grpc_stdio_pb2_grpc.pyi",
    ]


def test_sdist_without_generator_or_protos_is_reported(tmp_path: Path) -> None:
    names = [n for n in complete_sdist() if n != "scripts/gen_protos.py" and "proto/" not in n]
    sdist = check_dist.sdist_names(make_sdist(tmp_path / "s.tar.gz", names))
    assert check_dist.missing_from_sdist(sdist) == ["scripts/gen_protos.py", "proto/**/*.proto"]


def build_generator_for(python: str) -> Version:
    """The grpcio-tools the package build uses on ``python`` ([build-system] requires)."""
    reqs = [Requirement(r) for r in PYPROJECT["build-system"]["requires"]]
    env = {"python_version": python, "python_full_version": f"{python}.0"}
    pins = [
        r for r in reqs if r.name == "grpcio-tools" and (not r.marker or r.marker.evaluate(env))
    ]
    assert len(pins) == 1, f"want one grpcio-tools build pin for Python {python}, got {pins}"
    (spec,) = pins[0].specifier
    assert spec.operator == "==", f"the generator must be pinned exactly: {pins[0]}"
    return Version(spec.version)


def supported_pythons() -> list[str]:
    prefix = "Programming Language :: Python :: "
    names = [c.removeprefix(prefix) for c in PYPROJECT["project"]["classifiers"]]
    return [n for n in names if n.startswith("3.")]


@pytest.mark.parametrize("line", sorted(PYPROJECT["tool"]["soup"]["grpc"]))
def test_stubs_generator_is_no_newer_than_any_grpc_line(line: str) -> None:
    """Generated code refuses runtimes older than its generator: the build must use the oldest."""
    spec = PYPROJECT["tool"]["soup"]["grpc"][line]
    grpcio = Version(spec["packages"]["grpcio"])
    max_python = Version(spec.get("max-python", "3.99"))
    pythons = [p for p in supported_pythons() if Version(p) <= max_python]
    assert pythons, f"grpc line {line} runs on no supported Python"
    for python in pythons:
        generator = build_generator_for(python)
        assert generator <= grpcio, (
            f"on Python {python} the build generates with grpcio-tools {generator}, "
            f"newer than grpc line {line} (grpcio {grpcio})"
        )
