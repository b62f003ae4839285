"""The SDK and the lab (README "Layout"): the SDK never imports the lab, the handshake and
certificates load without grpc, every module is in the README's table, and a module over
400 lines says why at its top."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "soup"
README = PACKAGE.parents[1] / "README.md"
LONG = 400


def _modules(root: Path) -> list[str]:
    """Dotted names of the .py modules under ``root`` (generated stubs left out)."""
    found = []
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if "_proto" in parts:
            continue
        found.append(".".join(parts).removesuffix(".__init__"))
    return found


SDK = [m for m in _modules(PACKAGE) if not m.startswith("soup.lab") and m != "soup.__main__"]


def _loaded_after_import(module: str) -> list[str]:
    """The soup and grpc modules a fresh interpreter has loaded after importing ``module``."""
    code = (
        "import importlib, json, sys\n"
        f"importlib.import_module({module!r})\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith(('soup', 'grpc')))))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    loaded: list[str] = json.loads(done.stdout)
    return loaded


@pytest.mark.parametrize("module", SDK)
def test_the_sdk_never_imports_the_lab(module: str) -> None:
    lab = [m for m in _loaded_after_import(module) if m.startswith("soup.lab")]
    assert lab == [], f"{module} loads the lab: {lab}"


@pytest.mark.parametrize("module", ["soup.handshake", "soup.certs", "soup.reattach"])
def test_handshake_and_certificates_load_without_grpc(module: str) -> None:
    grpc = [m for m in _loaded_after_import(module) if m == "grpc" or m.startswith("grpc.")]
    assert grpc == [], f"{module} loads grpc: {grpc[:5]}"


def test_the_readme_table_names_every_module() -> None:
    text = README.read_text()
    table = text[text.index("## Layout: the SDK and the lab") :]
    missing = []
    for module in _modules(PACKAGE):
        relative = module.removeprefix("soup.").replace(".", "/")
        if module == "soup":
            relative = "__init__"
        name = f"`{relative}.py`"
        if module.startswith("soup.lab.check"):
            name = "`lab/check/`"
        elif module == "soup.lab":
            continue  # the package itself: its modules are the rows
        if name not in table:
            missing.append(name)
    assert missing == [], f"README's layout table does not name {missing}"


def test_a_long_module_says_why_at_its_top() -> None:
    silent = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if "_proto" in path.parts:
            continue
        lines = len(path.read_text().splitlines())
        doc = ast.get_docstring(ast.parse(path.read_text())) or ""
        if lines > LONG and "Long because" not in doc:
            silent.append(f"{path.relative_to(PACKAGE)} ({lines} lines)")
    assert silent == [], f"over {LONG} lines without a reason in the docstring: {silent}"


def _top_level_imports(path: Path, known: set[str]) -> set[str]:
    """The soup modules ``path`` imports when it is loaded (not under TYPE_CHECKING, not
    inside functions): the edges an import cycle would be made of."""
    found: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.dump(node.test):
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("soup"):
            names = [f"{node.module}.{alias.name}" for alias in node.names]
            found |= {n for n in names if n in known} or {node.module}
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name in known}
    return found & known


def test_no_import_cycle() -> None:
    modules = set(_modules(PACKAGE))
    paths = {m: PACKAGE.parent / (m.replace(".", "/") + ".py") for m in modules}
    for module in modules:
        if not paths[module].exists():  # a package: its __init__
            paths[module] = PACKAGE.parent / module.replace(".", "/") / "__init__.py"
    edges = {m: _top_level_imports(paths[m], modules) - {m, "soup"} for m in modules}
    state: dict[str, str] = {}
    cycles: list[list[str]] = []

    def visit(module: str, stack: list[str]) -> None:
        state[module] = "open"
        for dep in sorted(edges[module]):
            if state.get(dep) == "open":
                cycles.append([*stack[stack.index(dep) :], dep])
            elif dep not in state:
                visit(dep, [*stack, dep])
        state[module] = "done"

    for module in sorted(modules):
        if module not in state:
            visit(module, [module])
    assert cycles == [], f"import cycles: {[' -> '.join(c) for c in cycles]}"
