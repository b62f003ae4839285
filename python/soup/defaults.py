"""The defaults host and plugin share, as plain constants with no imports.

``soup.handshake`` and ``soup.certs`` use them, and the command line's parser shows them
in its help: ``soup --help`` builds that parser without dataclasses, cryptography or grpc.
"""

from __future__ import annotations

__all__ = ["APP_VERSIONS", "COOKIE_KEY", "COOKIE_VALUE", "KEY_TYPE", "KEY_TYPES"]

COOKIE_KEY = "BASIC_PLUGIN"
"""Environment variable of the magic cookie (go-plugin's examples use it too)."""
COOKIE_VALUE = "hello"
"""Its value."""
APP_VERSIONS: tuple[int, ...] = (1,)
"""App protocol versions a plugin serves and a host asks for."""

KEY_TYPE = "ec-p256"
"""Key type of an AutoMTLS certificate unless configured (go-plugin uses P-256 too)."""
KEY_TYPES: tuple[str, ...] = ("rsa-2048", "rsa-4096", "ec-p256", "ec-p384", "ec-p521", "ed25519")
"""Every key type soup makes (``soup.certs``)."""
