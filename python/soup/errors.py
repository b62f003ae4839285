"""soup's errors, by whose side failed: the host (starting, connecting, calling) or the plugin."""

from __future__ import annotations

__all__ = ["HostError", "PluginError"]


class HostError(Exception):
    """Starting, connecting to or calling the plugin failed (the message says why)."""


class PluginError(Exception):
    """The plugin cannot start serving (the message says why); ``serve`` returns 1."""
