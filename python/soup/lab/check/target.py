"""The plugin under test and how the checker starts it: as a stock go-plugin host would.

Every start gets the cookie, PLUGIN_PROTOCOL_VERSIONS, PLUGIN_MIN/MAX_PORT and (AutoMTLS)
PLUGIN_CLIENT_CERT, no PLUGIN_UNIX_SOCKET_DIR (stock hosts send none), and a private
TMPDIR of its own, so that what the plugin leaves behind is visible and removed.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from soup import certs, handshake
from soup.lab.check import peer

# A stock go-plugin host's own certificate is always P-521 (go-plugin mtls.go).
HOST_KEY_TYPE = "ec-p521"
COOKIE_MESSAGE = "This binary is a plugin"


class TargetError(Exception):
    """The command cannot be checked at all (not found, exits at once, prints nothing)."""


@dataclass(frozen=True)
class PluginTarget:
    """What the user pointed the checker at, and how to start it."""

    command: tuple[str, ...]
    cookie_key: str = "BASIC_PLUGIN"
    cookie_value: str = "hello"
    versions: tuple[int, ...] = (1,)
    transport: str | None = None
    timeout: float = 10.0


@dataclass
class Lab:
    """One checker run: the host's certificates and a scratch directory for every start."""

    target: PluginTarget
    own: certs.CertKey = field(default_factory=lambda: certs.self_signed(HOST_KEY_TYPE))
    foreign: certs.CertKey = field(default_factory=lambda: certs.self_signed(HOST_KEY_TYPE))
    scratch: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="soup-check-")))

    def close(self) -> None:
        shutil.rmtree(self.scratch, ignore_errors=True)

    def env(
        self,
        tmpdir: Path,
        *,
        cookie: bool = True,
        tls: bool = True,
        versions: tuple[int, ...] | None = None,
        extra: Mapping[str, str] | None = None,
    ) -> dict[str, str]:
        """A stock host's environment for the plugin (see the module docstring)."""
        config = handshake.HandshakeConfig(
            cookie_key=self.target.cookie_key,
            cookie_value=self.target.cookie_value,
            app_versions=versions or self.target.versions,
        )
        given: dict[str, str | None] = {
            **handshake.host_env(config, client_cert_pem=self.own.cert_pem if tls else None),
            "TMPDIR": str(tmpdir),
            **(extra or {}),
        }
        if not cookie:
            given[self.target.cookie_key] = None
        return peer.without_go_plugin_vars(given, cookie_key=self.target.cookie_key)

    def tmpdir(self) -> Path:
        return Path(tempfile.mkdtemp(prefix="t-", dir=self.scratch))

    def start(self, *, wrapper: Sequence[str] = (), **env_options: Any) -> peer.Plugin:
        """Start the plugin once (see ``env``), behind ``wrapper`` if given (a command that
        runs the rest); the caller kills it. Raises TargetError."""
        tmpdir = self.tmpdir()
        env = self.env(tmpdir, **env_options)
        argv = [*wrapper, *self.target.command]
        try:
            return peer.start_plugin(argv, env, self.target.timeout, private_dir=tmpdir)
        except OSError as exc:
            shutil.rmtree(tmpdir, ignore_errors=True)
            raise TargetError(f"cannot start {self.target.command[0]!r}: {exc}") from None
        except peer.StartError as exc:
            raise TargetError(
                f"{exc} (the bound is --timeout {self.target.timeout:g}): is this a "
                "go-plugin plugin, and is --cookie right?"
            ) from None

    @contextlib.contextmanager
    def running(self, **env_options: Any) -> Iterator[peer.Plugin]:
        plugin = self.start(**env_options)
        try:
            yield plugin
        finally:
            plugin.kill()


def preflight(lab: Lab) -> None:
    """Start the plugin once as a correct host would; TargetError if it cannot be checked."""
    with lab.running() as plugin:
        if plugin.line:
            return
        code = plugin.wait_exit(2.0)
        said = plugin.stderr_tail() or "nothing"
        hint = (
            " (it printed go-plugin's no-cookie message: pass the right --cookie KEY=VALUE)"
            if COOKIE_MESSAGE in plugin.stderr_text()
            else ""
        )
        status = "exited" if code is None else f"exited with status {code}"
        raise TargetError(
            f"{lab.target.command[0]!r} {status} before printing a handshake line{hint}; "
            f"stderr: {said}"
        )
