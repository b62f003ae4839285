"""soup: go-plugin's protocol in Python, plugin side and host side.

A plugin calls ``soup.serve(soup.ServeConfig(...))``; a host uses
``soup.Client(soup.ClientConfig(...))``. The names below are the whole public API
(docs/api.md); every other module is internal, except ``soup.pb`` (generated stubs).

The names load on first use (PEP 562): a plugin imports no host code, a host no
plugin code, and ``import soup`` alone costs nothing.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import os
import re
import sys
from typing import TYPE_CHECKING

__version__ = "0.1.0"

if TYPE_CHECKING:
    from soup.broker import BrokerError, GRPCBroker
    from soup.errors import HostError, PluginError
    from soup.handshake import HandshakeConfig, HandshakeError
    from soup.host import Client, ClientConfig, Exit
    from soup.managed import cleanup_clients, cleanup_clients_on_exit
    from soup.plugin import Register, ServeConfig, ServeContext, serve
    from soup.reattach import ReattachConfig
    from soup.secure import SecureConfig
    from soup.settings import TLSSettings
    from soup.tls import TLSEvidence

_MODULE_OF: dict[str, str] = {
    "BrokerError": "soup.broker",
    "GRPCBroker": "soup.broker",
    "Client": "soup.host",
    "ClientConfig": "soup.host",
    "Exit": "soup.host",
    "HandshakeConfig": "soup.handshake",
    "HandshakeError": "soup.handshake",
    "HostError": "soup.errors",
    "PluginError": "soup.errors",
    "ReattachConfig": "soup.reattach",
    "Register": "soup.plugin",
    "SecureConfig": "soup.secure",
    "ServeConfig": "soup.plugin",
    "ServeContext": "soup.plugin",
    "TLSEvidence": "soup.tls",
    "TLSSettings": "soup.settings",
    "serve": "soup.plugin",
    "cleanup_clients": "soup.managed",
    "cleanup_clients_on_exit": "soup.managed",
}

__all__ = [
    "BrokerError",
    "Client",
    "ClientConfig",
    "Exit",
    "GRPCBroker",
    "HandshakeConfig",
    "HandshakeError",
    "HostError",
    "PluginError",
    "ReattachConfig",
    "Register",
    "SecureConfig",
    "ServeConfig",
    "ServeContext",
    "TLSEvidence",
    "TLSSettings",
    "__version__",
    "cleanup_clients",
    "cleanup_clients_on_exit",
    "serve",
]


def version_string() -> str:
    """E.g. ``soup 0.1.0 (python 3.11.7, grpcio 1.85.3)``; both roles log it first.

    Here, not in ``soup.lab.result``, so that a plugin does not import the host's result
    types for it; ``sys.version``'s first word is ``platform.python_version()``.
    """
    return f"soup {__version__} (python {sys.version.split()[0]}, grpcio {_grpcio_version()})"


def _grpcio_version() -> str:
    """``grpc.__version__``, without importing grpc (some 100 ms) where it is not loaded yet,
    as for ``soup --version``: grpc takes it from ``grpc/_grpcio_metadata.py``, a file of
    one assignment, which is read here without running grpc's package ``__init__``."""
    if "grpc" not in sys.modules:
        spec = importlib.machinery.PathFinder.find_spec("grpc")
        for folder in (spec.submodule_search_locations or ()) if spec is not None else ():
            try:
                with open(os.path.join(folder, "_grpcio_metadata.py"), encoding="utf-8") as f:
                    found = re.fullmatch(r'__version__ = """([^"]+)"""\s*', f.read())
            except OSError:
                continue
            if found:
                return found.group(1)
    import grpc  # noqa: PLC0415 - loaded already, or its file says it otherwise

    return str(grpc.__version__)


def __getattr__(name: str) -> object:
    """Import a public name's module on first access and cache the name here."""
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'soup' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
