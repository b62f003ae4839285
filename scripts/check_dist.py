"""Check a built sdist and wheel: the wheel carries the typed stubs, the sdist their sources.

The wheel must hold soup/py.typed and, for every proto/**/*.proto of the sdist, the
generated ``_pb2``/``_pb2_grpc`` modules with their ``.pyi`` under soup/_proto; the sdist
must hold proto/, the generator (scripts/gen_protos.py), the build hook (setup.py) and
LICENSE. Prints what is missing and exits 1, so `nox -s package` fails on it.
"""

from __future__ import annotations

import argparse
import sys
import tarfile
import zipfile
from pathlib import Path, PurePosixPath

SDIST_FILES = ("setup.py", "scripts/gen_protos.py", "LICENSE", "pyproject.toml")
STUB_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py", "_pb2_grpc.pyi")


def sdist_names(path: Path) -> list[str]:
    """Member names relative to the sdist's top directory (``soup-0.1.0/``)."""
    with tarfile.open(path) as tar:
        names = tar.getnames()
    return [str(PurePosixPath(*PurePosixPath(n).parts[1:])) for n in names if "/" in n]


def wheel_names(path: Path) -> list[str]:
    with zipfile.ZipFile(path) as wheel:
        return wheel.namelist()


def protos_in(sdist: list[str]) -> list[str]:
    """The .proto files in the sdist, relative to proto/."""
    return sorted(
        n.removeprefix("proto/") for n in sdist if n.startswith("proto/") and n.endswith(".proto")
    )


def missing_from_sdist(sdist: list[str]) -> list[str]:
    missing = [f for f in SDIST_FILES if f not in sdist]
    if not protos_in(sdist):
        missing.append("proto/**/*.proto")
    return missing


def expected_stubs(protos: list[str]) -> list[str]:
    """Every generated file the wheel needs for these protos (paths relative to proto/)."""
    stubs = ["soup/py.typed", "soup/_proto/__init__.py"]
    for proto in protos:
        stem = "soup/_proto/" + proto.removesuffix(".proto")
        stubs += [stem + suffix for suffix in STUB_SUFFIXES]
        parent = PurePosixPath(stem).parent
        if str(parent) != "soup/_proto":
            stubs.append(f"{parent}/__init__.py")
    return sorted(set(stubs))


def missing_from_wheel(wheel: list[str], protos: list[str]) -> list[str]:
    return [name for name in expected_stubs(protos) if name not in wheel]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dist", type=Path, help="directory with exactly one sdist and one wheel")
    dist = parser.parse_args().dist
    sdists, wheels = sorted(dist.glob("*.tar.gz")), sorted(dist.glob("*.whl"))
    if len(sdists) != 1 or len(wheels) != 1:
        sys.exit(f"check_dist: want one sdist and one wheel in {dist}, got {sdists + wheels}")
    sdist = sdist_names(sdists[0])
    problems = [f"sdist {sdists[0].name} lacks {name}" for name in missing_from_sdist(sdist)]
    wheel = wheel_names(wheels[0])
    protos = protos_in(sdist)
    problems += [f"wheel {wheels[0].name} lacks {n}" for n in missing_from_wheel(wheel, protos)]
    if problems:
        sys.exit("check_dist: " + "\n  ".join(["incomplete distributions:", *problems]))
    print(
        f"check_dist: {sdists[0].name} has proto/ ({len(protos)} files), the generator and "
        f"LICENSE; {wheels[0].name} has py.typed and {len(expected_stubs(protos)) - 1} stub files"
    )


if __name__ == "__main__":
    main()
