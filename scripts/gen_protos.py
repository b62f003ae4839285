"""Generate the protobuf/gRPC stubs for Python and/or Go from proto/.

Python stubs become the top-level package ``soup_proto`` (proto/kv.proto ->
soup_proto/kv_pb2.py, proto/plugin/*.proto -> soup_proto/plugin/*_pb2.py), generated
with the grpcio-tools of the interpreter running this script, because generated code
checks that the grpcio runtime is not older than the generator.

Go stubs (kv.proto and counter.proto: go-plugin brings its own internal services)
become the Go package ``soup-go/kvpb``; protoc-gen-go and protoc-gen-go-grpc are taken from
``--go-plugins`` (installed there at pinned versions by the noxfile).

Fails loudly when a generator is missing or writes nothing.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "proto"
PY_PACKAGE = "soup_proto"
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


def generate_python(out: Path) -> list[Path]:
    pkg = out / PY_PACKAGE
    shutil.rmtree(pkg, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    # Map proto/ to the virtual directory soup_proto/ so generated imports read
    # "from soup_proto.plugin import ...", never a bare top-level "plugin".
    virtual = [f"{PY_PACKAGE}/{p.relative_to(PROTO_DIR).as_posix()}" for p in proto_files()]
    _protoc(
        [
            f"-I{PY_PACKAGE}={PROTO_DIR}",
            f"--python_out={out}",
            f"--pyi_out={out}",
            f"--grpc_python_out={out}",
            *virtual,
        ]
    )
    for d in [pkg, *[p for p in pkg.rglob("*") if p.is_dir()]]:
        (d / "__init__.py").touch()
    (pkg / "py.typed").touch()
    made = sorted(pkg.rglob("*_pb2*.py"))
    if len(made) != 2 * len(virtual):
        sys.exit(f"gen_protos: expected {2 * len(virtual)} Python modules, got {len(made)}")
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
    parser.add_argument("--python-out", type=Path, help="directory to put soup_proto/ in")
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
