"""What a plugin removes after its host died; when a native TLS failure blames TLS."""

from __future__ import annotations

from pathlib import Path

import pytest

from soup.connect import _tls_failed
from soup.handshake import ENV_UNIX_SOCKET_DIR, HOST_SOCKET_DIR_PREFIXES
from soup.listen import remove_orphaned_host_dir


@pytest.mark.parametrize("prefix", HOST_SOCKET_DIR_PREFIXES)
def test_empty_host_dir_of_a_soup_host_is_removed(tmp_path: Path, prefix: str) -> None:
    given = tmp_path / f"{prefix}abc"
    given.mkdir()
    remove_orphaned_host_dir({ENV_UNIX_SOCKET_DIR: str(given)})
    assert not given.exists()


def test_non_empty_host_dir_is_left(tmp_path: Path) -> None:
    given = tmp_path / f"{HOST_SOCKET_DIR_PREFIXES[0]}abc"
    given.mkdir()
    (given / "another-plugin.sock").write_bytes(b"")
    remove_orphaned_host_dir({ENV_UNIX_SOCKET_DIR: str(given)})
    assert given.is_dir()


def test_a_directory_the_user_named_is_left(tmp_path: Path) -> None:
    given = tmp_path / "my-sockets"
    given.mkdir()
    remove_orphaned_host_dir({ENV_UNIX_SOCKET_DIR: str(given)})
    assert given.is_dir()
    remove_orphaned_host_dir({})  # no directory given: nothing to do


@pytest.mark.parametrize(
    ("detail", "tls"),
    [
        ("UNAVAILABLE: Ssl handshake failed: SSL_ERROR_SSL: CERTIFICATE_VERIFY_FAILED", True),
        ("UNAVAILABLE: failed to connect to all addresses; last error: UNKNOWN: "
         "unix:/tmp/soup-tls-x/p.sock: No such file or directory", False),
        ("UNAVAILABLE: failed to connect to all addresses; last error: UNKNOWN: "
         "unix:/tmp/soup-tls-x/p.sock: Connection refused", False),
    ],
)  # fmt: skip
def test_tls_blamed_only_when_tls_failed(detail: str, tls: bool) -> None:
    assert _tls_failed(detail, "/tmp/soup-tls-x/p.sock") is tls
