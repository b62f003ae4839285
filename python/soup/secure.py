"""go-plugin's ``SecureConfig``: the plugin executable's expected checksum, checked before
the host starts it.

The host hashes the file the command's first word resolves to (``process.find_executable``)
and runs exactly that file; a different digest refuses the start with go-plugin's words
("checksums did not match"), both digests in hex and the path.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from soup.errors import HostError

__all__ = ["SecureConfig", "check_executable"]

_CHUNK = 1 << 20


@dataclass(frozen=True)
class SecureConfig:
    """The digest the plugin executable must have, and the ``hashlib`` hash that made it.

    The checksum must come from somewhere the host trusts (a signed release manifest,
    its own build), not from next to the plugin. As in go-plugin, the file is hashed by
    path and then run by that path: a file swapped in between is not caught, so keep
    plugins where only trusted users can write.
    """

    checksum: bytes
    """The raw digest (``bytes.fromhex(...)`` of a hex string, ``hashlib...digest()``)."""
    hash: str = "sha256"
    """A ``hashlib`` name with a fixed digest size: ``sha256``, ``sha512``, ``sha3_256``..."""

    def __post_init__(self) -> None:
        if not isinstance(self.checksum, bytes):
            raise TypeError(
                f"SecureConfig.checksum must be bytes, got {type(self.checksum).__name__}: "
                "give the raw digest, e.g. bytes.fromhex(hex_text)"
            )
        if not self.checksum:
            raise ValueError("SecureConfig: no checksum provided (checksum is empty)")
        size = _digest_size(self.hash)
        if len(self.checksum) != size:
            raise ValueError(
                f"SecureConfig.checksum is {len(self.checksum)} bytes, but a {self.hash} "
                f"digest is {size}: a hex string must be decoded (bytes.fromhex(text)), "
                "or the checksum was made with another hash"
            )


def _digest_size(name: str) -> int:
    try:
        size = hashlib.new(name).digest_size
    except (ValueError, TypeError):
        raise ValueError(
            f"SecureConfig.hash {name!r}: not a hash this Python's hashlib has "
            f"(e.g. sha256, sha512, sha3_256, blake2b)"
        ) from None
    if size == 0:  # shake_*: the caller picks the length, go-plugin's hash.Hash cannot
        raise ValueError(
            f"SecureConfig.hash {name!r}: its digest has no fixed size; use e.g. sha256"
        )
    return size


def _file_digest(hash_name: str, path: str) -> bytes:
    """The digest of the file at ``path`` (``OSError`` if unreadable)."""
    digest = hashlib.new(hash_name)
    with open(path, "rb") as file:
        while chunk := file.read(_CHUNK):
            digest.update(chunk)
    return digest.digest()


def check_executable(secure: SecureConfig, name: str, path: str | None) -> None:
    """Refuse the plugin ``name`` unless the file ``path`` it resolved to (None: not
    found) has the digest ``secure.checksum``: a ``HostError``, the start fails."""
    if path is None:
        raise HostError(
            f"error verifying checksum: plugin executable {name!r} not found on PATH "
            "(env's PATH when env is given, else the host's): give a path, or check the "
            "command"
        )
    try:
        actual = _file_digest(secure.hash, path)
    except OSError as exc:
        raise HostError(f"error verifying checksum: cannot read {path}: {exc}") from exc
    if not hmac.compare_digest(actual, secure.checksum):
        raise HostError(
            f"checksums did not match: plugin executable {path}: expected {secure.hash} "
            f"{secure.checksum.hex()}, actual {actual.hex()}; it is not the file the "
            "checksum was made for (SecureConfig.checksum): refusing to start it"
        )
