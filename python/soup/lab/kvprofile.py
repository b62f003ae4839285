"""KV profiles for ``rpc client test``: how strictly the KV steps judge a plugin's answers.

``strict`` (default) is soup's own contract: Get returns exactly the bytes Put stored, and
a missing key is NOT_FOUND. ``lenient`` is for peers whose KV semantics differ on purpose
(go-plugin's example plugins append text to every value and answer a missing key with
another error): Get must still return the stored bytes *as a prefix*, and a missing key
must still be an error, while the difference is reported in the step's detail. Handshake,
TLS, Put, health and shutdown are judged the same in both. Pure functions; the wording is
the same in soup-go (kvprofile.go).
"""

from __future__ import annotations

__all__ = ["PROFILES", "check_get", "check_missing"]

PROFILES = ("strict", "lenient")


def check_get(profile: str, key: str, put: bytes, got: bytes) -> str:
    """The get step's detail; ValueError if ``got`` does not pass under ``profile``."""
    if got == put:
        return f"key={key} bytes={len(got)} same bytes"
    if profile == "lenient" and got.startswith(put):
        extra = got[len(put) :]
        return f"key={key} lenient: stored bytes plus {len(extra)} appended by the plugin: {extra[:64]!r}"
    raise ValueError(f"get returned other bytes: expected {put!r}, got {got[:64]!r}")


def check_missing(profile: str, key: str, code: str | None, message: str) -> str:
    """The get_missing step's detail for an error ``code`` (None: the Get succeeded)."""
    if code == "NOT_FOUND":
        return f"key={key} -> NOT_FOUND: {message}"
    if code is None:
        raise ValueError(f"expected NOT_FOUND, got a value ({message})")
    if profile == "lenient":
        return f"key={key} lenient: {code} instead of NOT_FOUND: {message}"
    raise ValueError(f"expected NOT_FOUND, got {code}: {message}")
