"""Generate the protobuf/gRPC stubs for Python and/or Go from proto/.

Python stubs become the subpackage ``soup._proto`` (proto/kv.proto ->
soup/_proto/kv_pb2.py, proto/plugin/*.proto -> soup/_proto/plugin/*_pb2.py), typed:
protoc's ``.pyi`` for the messages and mypy-protobuf's for the gRPC stubs. The package
build runs this (setup.py) with the generators pinned in pyproject's build requirements:
the oldest grpcio-tools with wheels for the build Python, because generated code may
refuse a runtime older than its generator but works on newer ones. ``GENERATED.json``
next to the stubs records the generator and a hash of the sources.

Go stubs (kv.proto and counter.proto: go-plugin brings its own internal services)
become the Go package ``soup-go/kvpb``; protoc-gen-go and protoc-gen-go-grpc are taken from
``--go-plugins`` (installed there at pinned versions by the noxfile). They are not
committed: every nox session that builds, vets or tests soup-go writes them first (with its
venv's protoc), as the package build writes the Python ones.

Fails loudly when a generator is missing or writes nothing.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "proto"
PY_PACKAGE = "soup/_proto"
STAMP = "GENERATED.json"
MYPY_GRPC_PLUGIN = "protoc-gen-mypy_grpc"
GO_PACKAGE = "soup-go/kvpb"
GO_PROTOS = ("kv.proto", "counter.proto")


def _protoc(args: list[str]) -> None:
    try:
        from grpc_tools import protoc  # noqa: PLC0415 - only needed when generating
    except ImportError as exc:
        sys.exit(f"gen_protos: grpcio-tools is not installed in {sys.executable}: {exc}")
    include = str(Path(protoc.__file__).parent / "_proto")
    code = protoc.main(["protoc", f"-I{include}", *args])
    if code != 0:
        sys.exit(f"gen_protos: protoc failed (exit {code}) for: {' '.join(args)}")


def proto_files() -> list[Path]:
    files = sorted(PROTO_DIR.rglob("*.proto"))
    if not files:
        sys.exit(f"gen_protos: no .proto files under {PROTO_DIR}")
    return files


def _mypy_grpc_plugin() -> Path:
    """mypy-protobuf's gRPC stub generator, from the installation this interpreter imports."""
    try:
        dist = importlib.metadata.distribution("mypy-protobuf")
    except importlib.metadata.PackageNotFoundError as exc:
        sys.exit(f"gen_protos: mypy-protobuf is not installed in {sys.executable}: {exc}")
    for file in dist.files or []:
        if file.name == MYPY_GRPC_PLUGIN:
            return Path(str(dist.locate_file(file))).resolve()
    sys.exit(f"gen_protos: mypy-protobuf {dist.version} has no {MYPY_GRPC_PLUGIN} script")


def stamp_for(files: list[Path]) -> dict[str, str]:
    """What the Python stubs are made from: generator versions and a hash of the sources."""
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.relative_to(PROTO_DIR).as_posix().encode() + b"\0")
        digest.update(path.read_bytes())
    return {
        "grpcio-tools": importlib.metadata.version("grpcio-tools"),
        "mypy-protobuf": importlib.metadata.version("mypy-protobuf"),
        "protos-sha256": digest.hexdigest(),
    }


def _release(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split(".")[:3] if part.isdigit())


def stubs_current(pkg: Path, wanted: dict[str, str]) -> bool:
    """True when ``pkg`` holds stubs of the same sources from a generator no newer than ours.

    Only editable installs ask: their stubs sit in the source tree, shared by every dev
    venv. Older gencode works on newer runtimes, so the tree keeps the oldest generator's
    output instead of flipping between the generators of different Pythons.
    """
    try:
        have = json.loads((pkg / STAMP).read_text())
    except (OSError, ValueError):
        return False
    return (
        isinstance(have, dict)
        and have.get("protos-sha256") == wanted["protos-sha256"]
        and have.get("mypy-protobuf") == wanted["mypy-protobuf"]
        and _release(str(have.get("grpcio-tools", "99"))) <= _release(wanted["grpcio-tools"])
    )


def generate_python(out: Path, *, keep_current: bool = False) -> list[Path]:
    """Write ``soup/_proto`` under ``out``; with ``keep_current``, reuse stubs that fit."""
    pkg = out / PY_PACKAGE
    sources = proto_files()
    stamp = stamp_for(sources)
    if keep_current and stubs_current(pkg, stamp):
        return sorted(pkg.rglob("*_pb2*.py"))
    shutil.rmtree(pkg, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    # Map proto/ to the virtual directory soup/_proto/ so generated imports read
    # "from soup._proto.plugin import ...", never a bare top-level "plugin".
    virtual = [f"{PY_PACKAGE}/{p.relative_to(PROTO_DIR).as_posix()}" for p in sources]
    _protoc(
        [
            f"-I{PY_PACKAGE}={PROTO_DIR}",
            f"--python_out={out}",
            f"--pyi_out={out}",
            f"--grpc_python_out={out}",
            f"--plugin={MYPY_GRPC_PLUGIN}={_mypy_grpc_plugin()}",
            f"--mypy_grpc_out=quiet:{out}",
            *virtual,
        ]
    )
    for d in [pkg, *[p for p in pkg.rglob("*") if p.is_dir()]]:
        (d / "__init__.py").touch()
    made = sorted(pkg.rglob("*_pb2*.py"))
    stubs = sorted(pkg.rglob("*_pb2*.pyi"))
    if len(made) != 2 * len(virtual) or len(stubs) != len(made):
        sys.exit(
            f"gen_protos: expected {2 * len(virtual)} Python modules, each with a .pyi; "
            f"got {len(made)} modules and {len(stubs)} stubs"
        )
    (pkg / STAMP).write_text(json.dumps(stamp, indent=1, sort_keys=True) + "\n")
    return made


def generate_go(out: Path, plugins: Path) -> list[Path]:
    exe = {name: plugins / name for name in ("protoc-gen-go", "protoc-gen-go-grpc")}
    for name, path in exe.items():
        if not path.is_file():
            sys.exit(f"gen_protos: {name} not found at {path} (run: nox -s protos)")
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    mapping = ",".join(f"M{name}={GO_PACKAGE}" for name in GO_PROTOS)
    _protoc(
        [
            f"-I{PROTO_DIR}",
            f"--plugin=protoc-gen-go={exe['protoc-gen-go']}",
            f"--plugin=protoc-gen-go-grpc={exe['protoc-gen-go-grpc']}",
            f"--go_out={out}",
            f"--go_opt=paths=source_relative,{mapping}",
            f"--go-grpc_out={out}",
            f"--go-grpc_opt=paths=source_relative,{mapping}",
            *GO_PROTOS,
        ]
    )
    made = sorted(out.glob("*.go"))
    if len(made) != 2 * len(GO_PROTOS):
        sys.exit(
            f"gen_protos: expected *.pb.go and *_grpc.pb.go of {GO_PROTOS} in {out}, got {made}"
        )
    return made


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python-out", type=Path, help="directory to put soup/_proto/ in")
    parser.add_argument("--go-out", type=Path, help="directory for the kvpb Go package")
    parser.add_argument("--go-plugins", type=Path, help="directory with protoc-gen-go*")
    args = parser.parse_args()
    if not args.python_out and not args.go_out:
        parser.error("nothing to do: give --python-out and/or --go-out")
    if args.python_out:
        for path in generate_python(args.python_out):
            print(f"generated {path}")
    if args.go_out:
        if not args.go_plugins:
            parser.error("--go-out needs --go-plugins")
        for path in generate_go(args.go_out, args.go_plugins):
            print(f"generated {path}")


if __name__ == "__main__":
    main()
