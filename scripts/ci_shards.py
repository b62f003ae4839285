"""The version axes as data: supported Pythons, grpcio lines, go-plugin releases, CI shards.

One source for the noxfile's parametrized sessions and for CI's job matrix (the `plan` job
prints `python scripts/ci_shards.py` into $GITHUB_OUTPUT), so the two cannot drift:
- pyproject.toml: the Python classifiers and [tool.soup.grpc] (lines, max-python);
- conformance/matrix.toml: [implementations.go] releases (go-plugin, newest first).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CLASSIFIER = "Programming Language :: Python :: 3."


def version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.removeprefix("v").split("."))


def read(root: Path = ROOT) -> tuple[dict[str, Any], dict[str, Any]]:
    """(pyproject, matrix) as parsed TOML."""
    pyproject = tomllib.loads((root / "pyproject.toml").read_text())
    matrix = tomllib.loads((root / "conformance" / "matrix.toml").read_text())
    return pyproject, matrix


def supported_pythons(pyproject: dict[str, Any]) -> list[str]:
    minors = [c.removeprefix(CLASSIFIER) for c in pyproject["project"]["classifiers"]]
    return [f"3.{m}" for m in minors if m.isdigit()]


def grpc_lines(pyproject: dict[str, Any]) -> dict[str, dict[str, Any]]:
    lines: dict[str, dict[str, Any]] = pyproject["tool"]["soup"]["grpc"]
    return lines


def latest_grpc_line(pyproject: dict[str, Any]) -> str:
    return max(grpc_lines(pyproject), key=version_key)


def oldest_grpc_line(pyproject: dict[str, Any]) -> str:
    return min(grpc_lines(pyproject), key=version_key)


def go_plugin_releases(matrix: dict[str, Any]) -> list[str]:
    """go-plugin releases soup-go is built on, the default (the tree's go.mod) first."""
    return [str(r["go_plugin"]) for r in matrix["implementations"]["go"]["releases"]]


def python_grpc_pairs(pyproject: dict[str, Any]) -> list[tuple[str, str]]:
    """Every (Python, grpcio line) with wheels: a line's max-python bounds it."""
    return [
        (python, line)
        for python in supported_pythons(pyproject)
        for line, spec in grpc_lines(pyproject).items()
        if version_key(python) <= version_key(str(spec.get("max-python", python)))
    ]


def matrix_shards(pyproject: dict[str, Any], matrix: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(Python, grpcio line, go-plugin release): one `matrix` session and one CI shard each."""
    return [
        (python, line, release)
        for python, line in python_grpc_pairs(pyproject)
        for release in go_plugin_releases(matrix)
    ]


def session(name: str, **params: str) -> str:
    """A parametrized nox session's signature, e.g. unit_versions(python='3.12', grpc='1.66')."""
    return f"{name}(" + ", ".join(f"{k}={v!r}" for k, v in params.items()) + ")"


def ci_jobs(root: Path = ROOT) -> dict[str, list[dict[str, str]]]:
    """The CI job matrices: `versions` (unit, integration, proof per Python x grpcio line)
    and `shards` (the full matrix per Python x grpcio line x go-plugin release)."""
    pyproject, matrix = read(root)
    versions = [
        {"python": python, "grpc": line}
        | {
            kind: session(f"{kind}_versions", python=python, grpc=line)
            for kind in ("unit", "integration", "proof")
        }
        for python, line in python_grpc_pairs(pyproject)
    ]
    shards = [
        {
            "python": python,
            "grpc": line,
            "go_plugin": release,
            "session": session("matrix", python=python, grpc=line, go_plugin=release),
        }
        for python, line, release in matrix_shards(pyproject, matrix)
    ]
    return {"versions": versions, "shards": shards}


def nox_sessions(names: list[str], root: Path = ROOT) -> list[str]:
    """The signatures `nox -l --json -s NAMES` lists, run by the Python that has nox
    (SOUP_NOX_PYTHON, which the unit session sets; else this one)."""
    python = os.environ.get("SOUP_NOX_PYTHON", sys.executable)
    out = subprocess.run(
        [python, "-m", "nox", "-l", "--json", "-f", str(root / "noxfile.py"), "-s", *names],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    return [str(s["session"]) for s in json.loads(out.stdout)]


def main() -> None:
    """GitHub output lines: versions=..., shards=... (job matrices) and shard_count=N."""
    jobs = ci_jobs()
    for key, entries in jobs.items():
        print(f"{key}={json.dumps({'include': entries}, separators=(',', ':'))}")
    print(f"shard_count={len(jobs['shards'])}")


if __name__ == "__main__":
    main()
