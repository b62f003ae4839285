"""soup's errors, by whose side failed: the host (starting, connecting, calling) or the plugin."""

from __future__ import annotations

from soup.handshake import HandshakeError

__all__ = ["HostError", "HostHandshakeError", "PluginError"]


class HostError(Exception):
    """Starting, connecting to or calling the plugin failed (the message says why)."""


class HostHandshakeError(HostError, HandshakeError):
    """The plugin's handshake line was refused (malformed, or versions this host lacks).

    Both a ``HostError`` (starting the plugin failed) and a ``HandshakeError`` (why).
    """


class PluginError(Exception):
    """The plugin cannot start serving (the message says why); ``serve`` returns 1."""
