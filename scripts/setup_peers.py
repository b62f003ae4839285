"""Install the peers `nox -s peers` runs, into build/peers (pinned, idempotent).

- build/peers/tofusoup: a venv with TofuSoup and pyvider-rpcplugin at the versions of
  pyproject [tool.soup.peers] (their `soup` command stays inside that venv);
- build/peers/goplugin: the hosts and plugin-go-grpc of go-plugin's examples/grpc (kv,
  kv-go-grpc) and examples/bidirectional (counter, counter-go-grpc), built from the
  go-plugin module at [tool.soup] go-plugin as the Go module proxy serves it, plus a
  copy of plugin-python; build/peers/goplugin-python: its venv with the requirements it pins.
Nothing of theirs is committed: it is all under build/.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "build" / "peers"
TOOLS = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["soup"]


def run(*argv: str, cwd: Path | None = None) -> str:
    print("+", " ".join(argv), flush=True)
    return subprocess.run(argv, check=True, cwd=cwd, capture_output=True, text=True).stdout


def venv(path: Path, *requirements: str) -> None:
    """A venv with exactly these requirements; rebuilt only when they change."""
    stamp = path / "soup-requirements.json"
    if stamp.exists() and json.loads(stamp.read_text()) == list(requirements):
        return
    shutil.rmtree(path, ignore_errors=True)
    run(sys.executable, "-m", "venv", str(path))
    run(str(path / "bin" / "pip"), "install", "-q", *requirements)
    stamp.write_text(json.dumps(list(requirements)))


def goplugin_examples() -> None:
    version = TOOLS["go-plugin"]
    out = OUT / "goplugin"
    stamp = out / "VERSION"
    wanted = f"go-plugin {version} examples/grpc examples/bidirectional"
    if stamp.exists() and stamp.read_text().strip() == wanted:
        return
    info = json.loads(
        run("go", "mod", "download", "-json", f"github.com/hashicorp/go-plugin@{version}")
    )
    examples = Path(info["Dir"]) / "examples"
    example = examples / "grpc"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    for directory, host in ((example, "kv"), (examples / "bidirectional", "counter")):
        # Each example: its host and its Go gRPC plugin (HOST-go-grpc).
        for package, name in ((".", host), ("./plugin-go-grpc", f"{host}-go-grpc")):
            run("go", "build", "-mod=mod", "-o", str(out / name), package, cwd=directory)
    shutil.copytree(example / "plugin-python", out / "plugin-python")
    for path in (out / "plugin-python").rglob("*"):
        path.chmod(0o700 if path.is_dir() else 0o600)
    (out / "plugin-python").chmod(0o700)
    stamp.write_text(wanted + "\n")


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    peers = TOOLS["peers"]
    venv(OUT / "tofusoup", *(f"{name}=={v}" for name, v in peers.items()))
    goplugin_examples()
    requirements = (OUT / "goplugin" / "plugin-python" / "requirements.txt").read_text().split()
    venv(OUT / "goplugin-python", *requirements)
    print(f"peers ready in {OUT}")


if __name__ == "__main__":
    main()
