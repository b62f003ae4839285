"""soup: go-plugin's protocol in Python, plugin side and host side.

A plugin calls ``soup.serve(soup.ServeConfig(...))``; a host uses
``soup.Client(soup.ClientConfig(...))``. The names below are the whole public API
(docs/api.md); every other module is internal, except ``soup.pb`` (generated stubs).
"""

from __future__ import annotations

__version__ = "0.1.0"

# After __version__: soup.result reads it while these imports run.
from soup.broker import BrokerError, GRPCBroker
from soup.errors import HostError, PluginError
from soup.handshake import HandshakeConfig, HandshakeError
from soup.host import Client, ClientConfig, Exit
from soup.plugin import Register, ServeConfig, ServeContext, serve
from soup.reattach import ReattachConfig
from soup.result import TLSEvidence
from soup.settings import TLSSettings

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
    "ServeConfig",
    "ServeContext",
    "TLSEvidence",
    "TLSSettings",
    "__version__",
    "serve",
]
