"""Build hook: generate the typed protobuf/gRPC stubs (``soup._proto``) from proto/.

Everything else about the package is in pyproject.toml. The stubs are never committed:
a wheel gets them in its build directory, an editable install in the source tree
(python/soup/_proto, gitignored), both from scripts/gen_protos.py with the generators
pinned in pyproject's ``[build-system] requires``.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_protos", ROOT / "scripts" / "gen_protos.py")
    if spec is None or spec.loader is None:
        raise RuntimeError(f"cannot load the stub generator {ROOT / 'scripts' / 'gen_protos.py'}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class BuildPyWithStubs(build_py):
    """build_py that also writes soup/_proto (in place for editable installs)."""

    def run(self) -> None:
        super().run()
        if self.editable_mode:
            _generator().generate_python(ROOT / "python", keep_current=True)
        else:
            _generator().generate_python(Path(self.build_lib))


setup(cmdclass={"build_py": BuildPyWithStubs})
