"""The public API: its reference page, the README examples, and the examples running."""

from __future__ import annotations

import ast
import inspect
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import soup

ROOT = Path(__file__).resolve().parents[2]
API_DOC = ROOT / "docs" / "api.md"
EXAMPLES = ROOT / "python" / "examples"
_HEADING = re.compile(r"^### `soup\.([A-Za-z_]+)`$", re.MULTILINE)
_EXAMPLE = re.compile(r"<!-- example: (\S+) -->\n```python\n(.*?)```", re.DOTALL)


def _sections() -> dict[str, str]:
    text = API_DOC.read_text()
    marks = list(_HEADING.finditer(text))
    ends = [m.start() for m in marks[1:]] + [len(text)]
    return {m.group(1): text[m.end() : end] for m, end in zip(marks, ends, strict=True)}


def test_api_reference_lists_exactly_the_public_names() -> None:
    assert sorted(_sections()) == sorted(soup.__all__)


def test_every_public_name_exists() -> None:
    for name in soup.__all__:
        assert hasattr(soup, name), name


_CLASSES = sorted(n for n in soup.__all__ if inspect.isclass(getattr(soup, n)))


def _public_attributes(cls: type) -> set[str]:
    """Every public name a user of ``cls`` can reach: the class attributes and methods,
    the annotated fields (dataclass fields without a default are in no ``vars``) and the
    ``self.NAME`` every method assigns (instance attributes), of ``cls`` and its bases in
    soup; names from builtins and other libraries (``Exception.args``) are not ours."""
    names: set[str] = set()
    for klass in cls.__mro__:
        if klass.__module__.split(".")[0] != "soup":
            continue
        names |= set(vars(klass)) | set(inspect.get_annotations(klass))
        tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        names |= {
            node.attr
            for node in ast.walk(tree)
            if isinstance(node, ast.Attribute)
            and isinstance(node.ctx, ast.Store)
            and isinstance(node.value, ast.Name)
            and node.value.id == "self"
        }
    return {name for name in names if not name.startswith("_")}


def _documented(section: str, cls: str, name: str) -> bool:
    """``name`` in backticks in its class's section: `name`, `name(...)`, `Cls.name(...)`."""
    return re.search(rf"`(?:{cls}\.)?{name}[`(]", section) is not None


def test_public_attributes_are_found_wherever_they_are_made() -> None:
    # set in __init__ only, a property, a method, a dataclass field without a default
    assert {"stdio", "server_impl", "channel", "kill"} <= _public_attributes(soup.Client)
    assert {"cmd", "unix_socket_group"} <= _public_attributes(soup.ClientConfig)
    assert {"next_id", "dial"} <= _public_attributes(soup.GRPCBroker)
    assert _public_attributes(soup.HostError) == set()  # nothing from Exception
    assert not any(name.startswith("_") for name in _public_attributes(soup.Client))


@pytest.mark.parametrize("name", _CLASSES)
def test_api_reference_documents_every_public_attribute(name: str) -> None:
    section = _sections()[name]
    missing = sorted(
        attr for attr in _public_attributes(getattr(soup, name))
        if not _documented(section, name, attr)
    )  # fmt: skip
    assert not missing, (
        f"soup.{name} has public names docs/api.md does not list in its section: {missing}; "
        "document them there or give them a leading underscore"
    )


def test_readme_examples_are_the_example_files() -> None:
    blocks = _EXAMPLE.findall((ROOT / "README.md").read_text())
    assert {path for path, _ in blocks} == {
        "python/examples/greeter_plugin.py",
        "python/examples/greeter_host.py",
        "python/examples/kv_host.py",
    }
    for path, code in blocks:
        assert code == (ROOT / path).read_text(), f"README's copy of {path} differs from the file"


@pytest.mark.slow
def test_greeter_example_runs_as_written() -> None:
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / "greeter_host.py")],
        capture_output=True, text=True, timeout=60, check=False, cwd=ROOT,
        env={k: v for k, v in os.environ.items() if k != "GREETER_PLUGIN"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "v2: Hello again, Gopher!\n"
    # the plugin's app logger line, re-logged by the host at its level
    assert "INFO:soup.host.plugin:greeting" in proc.stderr.splitlines()


def test_greeter_plugin_started_by_hand_says_it_is_a_plugin() -> None:
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / "greeter_plugin.py")],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 1
    assert proc.stderr.startswith("This binary is a plugin.")
    assert proc.stdout == ""


@pytest.mark.slow
def test_own_kv_plugin_under_its_own_cookie() -> None:
    server = f"{sys.executable} {EXAMPLES / 'kv_plugin.py'}"
    proc = subprocess.run(
        [sys.executable, "-m", "soup", "rpc", "client", "test", "--json",
         "--magic-cookie-key", "KV_PLUGIN", "--magic-cookie-value", "python", "--server", server],
        capture_output=True, text=True, timeout=90, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout
    result = json.loads(proc.stdout)
    assert result["ok"] is True
    assert result["server"]["impl"] == "python"
    assert result["tls"]["backend"] == "native"
