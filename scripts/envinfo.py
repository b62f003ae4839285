"""Print the environment header every nox session starts with: the versions that matter."""

from __future__ import annotations

import argparse
import importlib.metadata
import platform
import shutil
import ssl
import subprocess
from pathlib import Path


def package_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def go_version() -> str:
    go = shutil.which("go")
    if not go:
        return "not found on PATH"
    out = subprocess.run([go, "env", "GOVERSION"], capture_output=True, text=True, check=False)
    return out.stdout.strip() or out.stderr.strip()


def required_module(go_mod: Path, module: str) -> str:
    if not go_mod.exists():
        return f"unknown ({go_mod} missing)"
    for line in go_mod.read_text().splitlines():
        parts = line.split()
        if module in parts:
            return parts[parts.index(module) + 1]
    return f"not required in {go_mod}"


def binary_modules(binary: Path) -> str:
    """go-plugin and gRPC-Go as built into a Go binary (`go version -m`), not as typed in."""
    go = shutil.which("go")
    if not go or not binary.is_file():
        return f"unknown ({binary} or go missing)"
    out = subprocess.run(
        [go, "version", "-m", str(binary)], capture_output=True, text=True, check=False
    )
    wanted = ("github.com/hashicorp/go-plugin", "google.golang.org/grpc")
    found = [
        " ".join(p[1:3])
        for p in map(str.split, out.stdout.splitlines())
        if p[1:2] and p[1] in wanted and p[0] == "dep"
    ]
    return ", ".join(found) or f"unknown (go version -m: {out.stderr.strip()[-200:]})"


def collect(go_mod: Path) -> dict[str, str]:
    return {
        "python": f"{platform.python_version()} ({platform.python_implementation()})",
        "grpcio": package_version("grpcio"),
        "grpcio-tools": package_version("grpcio-tools"),
        "protobuf": package_version("protobuf"),
        "cryptography": package_version("cryptography"),
        "openssl (python ssl)": ssl.OPENSSL_VERSION,
        "go": go_version(),
        "hashicorp/go-plugin": required_module(go_mod, "github.com/hashicorp/go-plugin"),
        "platform": f"{platform.system()} {platform.machine()}",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--go-mod", type=Path, default=Path("go/soup-go/go.mod"))
    info = collect(parser.parse_args().go_mod)
    width = max(map(len, info))
    print("soup environment")
    for key, value in info.items():
        print(f"  {key:<{width}}  {value}")


if __name__ == "__main__":
    main()
