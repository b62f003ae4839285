"""The SDK beside a user's own stubs of go-plugin's examples/grpc (``package proto``).

go-plugin's users compile its kv.proto themselves; protobuf's default pool refuses a
second registration of ``proto.GetRequest``, so the SDK must not register the lab's copy.
Each side runs in its own interpreter, since this test process has loaded the lab.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
from grpc_tools import protoc
from plugin_commands import PYTHON

pytestmark = pytest.mark.slow

_REPO = Path(__file__).resolve().parents[2]

# The plugin imports the user's stubs first, the host imports the SDK first: both orders.
_PLUGIN = """
import sys
import kv_pb2, kv_pb2_grpc
import soup, soup.plugin

class Store(kv_pb2_grpc.KVServicer):
    def __init__(self):
        self.values = {}
    def Put(self, request, context):
        self.values[request.key] = request.value
        return kv_pb2.Empty()
    def Get(self, request, context):
        return kv_pb2.GetResponse(value=self.values[request.key])

def register(plugin):
    kv_pb2_grpc.add_KVServicer_to_server(Store(), plugin.server)

sys.exit(soup.serve(soup.ServeConfig(plugins={1: [register]})))
"""

_HOST = """
import sys
import soup, soup.host
import kv_pb2, kv_pb2_grpc

with soup.Client(soup.ClientConfig(cmd=sys.argv[1], timeout=20.0)) as client:
    kv = kv_pb2_grpc.KVStub(client.channel)
    kv.Put(kv_pb2.PutRequest(key="k", value=b"from the user's stubs"), timeout=10)
    print(kv.Get(kv_pb2.GetRequest(key="k"), timeout=10).value.decode())
"""


def _user_stubs(into: Path) -> None:
    """kv_pb2.py and kv_pb2_grpc.py from a copy of the kv.proto a go-plugin user compiles."""
    shutil.copy(_REPO / "proto" / "kv.proto", into / "kv.proto")
    args = ["protoc", f"-I{into}", f"--python_out={into}", f"--grpc_python_out={into}"]
    assert protoc.main([*args, str(into / "kv.proto")]) == 0


def test_sdk_imports_and_serves_beside_users_package_proto_stubs(tmp_path: Path) -> None:
    _user_stubs(tmp_path)
    (tmp_path / "plugin.py").write_text(_PLUGIN)
    (tmp_path / "host.py").write_text(_HOST)
    plugin = f"{shlex.quote(PYTHON)} {shlex.quote(str(tmp_path / 'plugin.py'))}"
    done = _python(tmp_path, "host.py", plugin)
    assert "duplicate symbol" not in done.stderr
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "from the user's stubs"
    assert "soup._proto.kv_pb2" not in _loaded_by(tmp_path, "import soup.host, soup.plugin")


def _loaded_by(where: Path, code: str) -> str:
    """The modules a fresh interpreter has loaded after ``code``."""
    done = _python(where, "-c", f"{code}\nimport sys\nprint(sorted(sys.modules))")
    assert done.returncode == 0, done.stderr
    return done.stdout


def _python(where: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """A fresh interpreter in ``where`` (so the user's stubs there are importable)."""
    return subprocess.run(
        [PYTHON, *args], cwd=where, capture_output=True, text=True, timeout=60, check=False
    )
