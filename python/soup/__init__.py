"""soup: the go-plugin protocol in Python (plugin side, host side, CLI).

A plugin serves gRPC behind go-plugin's handshake (magic cookie, version
negotiation, handshake line on stdout, AutoMTLS); a host starts such a plugin
(Python or Go), connects and calls it. See ``python -m soup --help``.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
