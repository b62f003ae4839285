"""Plugin side: the advertised listener (unix socket or 127.0.0.1 in go-plugin's port
range), and the OpenSSL bridge in front of grpcio when the backend is ``openssl``.

Backends: *native* is grpcio's own TLS on the advertised address; *openssl* is a
:class:`soup.bridge.TLSListenerBridge` on the advertised address in front of plaintext
grpcio on a unix socket in a private 0700 directory; no TLS is plaintext grpcio.

Long because go-plugin's listener rules (the port range, the socket directory, group and
path length) are each checked here, where the listener they shape is made.
"""

from __future__ import annotations

import contextlib
import grp
import logging
import os
import re
import shutil
import socket
import sys
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple, Protocol

import grpc

from soup import bridge, tls
from soup.bridgeproc import BridgeProcess
from soup.errors import PluginError
from soup.handshake import (
    ENV_MAX_PORT,
    ENV_MIN_PORT,
    ENV_UNIX_SOCKET_DIR,
    ENV_UNIX_SOCKET_GROUP,
    HOST_SOCKET_DIR_PREFIXES,
)

if TYPE_CHECKING:  # soup.certs loads cryptography, which plaintext goes without
    from soup.certs import CertKey
    from soup.grpcmux import ServerMuxer

__all__ = [
    "Listening",
    "ServerTLS",
    "add_port",
    "listen",
    "listen_tcp_range",
    "private_dir",
    "remove_orphaned_host_dir",
    "remove_paths",
    "unix_path_too_long",
]

# sun_path holds 108 bytes on Linux and 104 on macOS, the NUL included.
_MAX_UNIX_PATH = 103 if sys.platform == "darwin" else 107


class _Ports(Protocol):
    """What grpc.Server and grpc.aio.Server have in common for binding."""

    def add_insecure_port(self, address: str) -> int: ...
    def add_secure_port(self, address: str, server_credentials: grpc.ServerCredentials) -> int: ...


class ServerTLS(NamedTuple):
    """The plugin's TLS material: own certificate, the trusted PEM, and the backend."""

    own: CertKey
    trusted_pem: bytes
    backend: str
    advertise: bool
    """AutoMTLS: the certificate goes into the handshake line (field 6)."""

    def cert_field(self) -> bytes | None:
        return self.own.cert_der if self.advertise else None

    def credentials(self) -> grpc.ServerCredentials:
        return grpc.ssl_server_credentials(
            [(self.own.key_pem, self.own.cert_pem)],
            root_certificates=self.trusted_pem,
            require_client_auth=True,
        )


class Listening:
    """Where the plugin listens, and what to close and remove when it stops."""

    def __init__(self, network: str) -> None:
        self.network = network
        self.address = ""
        self.cleanup: list[Path] = []
        self.bridge: bridge.TLSListenerBridge | BridgeProcess | None = None
        self.bridge_socket: socket.socket | None = None
        self.mux: ServerMuxer | None = None
        """PLUGIN_MULTIPLEX_GRPC: the host's yamux session; its streams go to the bridge."""

    def start(self) -> None:
        if self.bridge is not None:
            self.bridge.start()
        if self.mux is not None:
            self.mux.start()

    def close(self, log: logging.Logger) -> None:
        if self.mux is not None:
            self.mux.close()
            self.mux = None
        if self.bridge is not None:
            if self.bridge.last_error:
                log.debug("last TLS bridge error", extra={"error": self.bridge.last_error})
            self.bridge.close()
            self.bridge = None
        if self.bridge_socket is not None:
            self.bridge_socket.close()
            self.bridge_socket = None
        remove_paths(self.cleanup)


def remove_paths(paths: list[Path]) -> None:
    """Remove files and directory trees, newest first; empties ``paths``."""
    for path in reversed(paths):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                path.unlink()
    paths.clear()


def remove_orphaned_host_dir(env: Mapping[str, str]) -> None:
    """After the host died: remove the socket directory it made for us, if empty.

    A soup host makes one private directory per plugin (named by a prefix in
    ``HOST_SOCKET_DIR_PREFIXES``) and removes it when it stops; a SIGKILLed host
    cannot, and this plugin, its only user, is the last one who can. Any other
    directory (one the user named) is left alone, and so is a non-empty one.
    """
    given = env.get(ENV_UNIX_SOCKET_DIR)
    if given and os.path.basename(given.rstrip("/")).startswith(HOST_SOCKET_DIR_PREFIXES):
        with contextlib.suppress(OSError):
            os.rmdir(given)


def private_dir(env: Mapping[str, str], prefix: str) -> Path:
    """A 0700 directory; inside the host's socket directory when it gave one
    (a host that removes that directory then removes ours too)."""
    parent = env.get(ENV_UNIX_SOCKET_DIR) or None
    if parent is None:
        return bridge.private_socket_dir(prefix)
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    path.chmod(0o700)
    return path


_PORT_TEXT = re.compile(r"[+-]?[0-9]{1,10}")
_INT32_MIN, _INT32_MAX = -(2**31), 2**31 - 1


def _port_range(env: Mapping[str, str]) -> tuple[int, int]:
    values = []
    for name in (ENV_MIN_PORT, ENV_MAX_PORT):
        text = env.get(name, "")
        if not text:
            values.append(0)
            continue
        # Go's strconv.ParseInt(text, 10, 32), as go-plugin reads it: int() would
        # also take spaces, underscores and non-ASCII digits.
        if _PORT_TEXT.fullmatch(text) is None or not _INT32_MIN <= int(text) <= _INT32_MAX:
            raise PluginError(f"couldn't get value from {name}: {text!r} is not an integer")
        values.append(int(text))
    low, high = values
    if low > high:
        raise PluginError(
            f"{ENV_MIN_PORT} value of {low} is greater than {ENV_MAX_PORT} value of {high}"
        )
    if low < 0 or high > 65535:
        raise PluginError(f"port range {low}..{high} is outside 0..65535")
    return low, high


def unix_path_too_long(directory: str, path_bytes: int) -> str | None:
    """Why a socket path of ``path_bytes`` bytes in ``directory`` cannot be bound, or None.

    bind() only says EINVAL; soup-go words this the same."""
    if path_bytes <= _MAX_UNIX_PATH:
        return None
    return (
        f"unix socket path in {directory} is too long: {path_bytes} bytes (at most "
        f"{_MAX_UNIX_PATH} on {sys.platform}); set a shorter TMPDIR or {ENV_UNIX_SOCKET_DIR}"
    )


def _check_unix_path(path: str) -> None:
    reason = unix_path_too_long(os.path.dirname(path), len(os.fsencode(path)))
    if reason is not None:
        raise PluginError(reason)


def _unix_socket_path(env: Mapping[str, str], listening: Listening, gid: int | None) -> str:
    """A fresh socket path: in the host's PLUGIN_UNIX_SOCKET_DIR as go-plugin's, else in a
    0700 directory of our own (go-plugin's would sit in TMPDIR itself, reachable by anyone
    the umask lets in), removed with the socket."""
    directory = env.get(ENV_UNIX_SOCKET_DIR) or None
    if directory is None:
        private = bridge.private_socket_dir("soup-plugin-")
        listening.cleanup.append(private)
        directory = str(private)
        if gid is not None:  # the group may reach the socket, not list the directory
            _socket_permissions(env, gid, directory, 0o710)
    try:
        fd, path = tempfile.mkstemp(prefix="plugin", dir=directory)
    except OSError as exc:
        raise PluginError(f"cannot create the plugin's unix socket path: {exc}") from exc
    os.close(fd)
    os.unlink(path)
    _check_unix_path(path)
    return path


def group_id(group: str) -> int:
    """The gid of ``group``, a number or a group name (go-plugin's rule); KeyError if none.

    A negative number is none: chown would leave the group as it is (-1) while the
    sockets still became group-writable."""
    try:
        gid = int(group, 10)
    except ValueError:
        return grp.getgrnam(group).gr_gid
    if gid < 0:
        raise KeyError(group)
    return gid


def socket_group(env: Mapping[str, str]) -> int | None:
    """The gid of ``PLUGIN_UNIX_SOCKET_GROUP`` (a number or a group name), None if unset."""
    group = env.get(ENV_UNIX_SOCKET_GROUP, "")
    if not group:
        return None
    try:
        return group_id(group)
    except KeyError:
        raise PluginError(f"{ENV_UNIX_SOCKET_GROUP}: failed to find gid from {group!r}") from None


def share_with_group(path: str | Path, gid: int, mode: int = 0o660) -> None:
    """Give ``path`` to group ``gid`` with ``mode`` (go-plugin: sockets 0660), or OSError."""
    os.chown(path, -1, gid)
    os.chmod(path, mode)


def _socket_permissions(
    env: Mapping[str, str], gid: int | None, path: str, mode: int = 0o660
) -> None:
    if gid is None:
        return
    try:
        share_with_group(path, gid, mode)
    except OSError as exc:
        raise PluginError(f"{ENV_UNIX_SOCKET_GROUP}={env[ENV_UNIX_SOCKET_GROUP]!r}: {exc}") from exc


def _listen_tcp_socket(port: int, backlog: int = 64) -> socket.socket:
    """A socket listening on 127.0.0.1:port (0: any free port); OSError if it cannot.

    Bind and listen happen together: with SO_REUSEADDR, Linux lets two sockets bind the
    same port while neither listens, so a port is only ours once listen() succeeded
    (a parallel plugin that bound it too then fails its listen() and moves on).
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        # Like Go's net.Listen: reuse a port whose old connections are in TIME_WAIT.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        sock.listen(backlog)
    except OSError:
        sock.close()
        raise
    return sock


def listen_tcp_range(env: Mapping[str, str]) -> socket.socket:
    """Like go-plugin's TCP listener: the first port of PLUGIN_MIN_PORT..PLUGIN_MAX_PORT
    that can be listened on (EADDRINUSE at bind or at listen: try the next one)."""
    low, high = _port_range(env)
    last = "no port tried"
    for port in range(low, high + 1):
        try:
            return _listen_tcp_socket(port)
        except OSError as exc:
            last = str(exc)
    raise PluginError(f"couldn't bind plugin TCP listener on 127.0.0.1:{low}..{high}: {last}")


def add_port(server: _Ports, address: str, creds: grpc.ServerCredentials | None) -> int:
    """grpcio's add_*_port; 0 on failure (old grpcio returns 0, new raises RuntimeError)."""
    try:
        if creds is None:
            return server.add_insecure_port(address)
        return server.add_secure_port(address, creds)
    except RuntimeError:
        return 0


def listen(
    server: _Ports,
    network: str,
    env: Mapping[str, str],
    server_tls: ServerTLS | None,
    socket_gid: int | None = None,
    *,
    multiplex: bool = False,
    bridge_process: BridgeProcess | None = None,
    on_bridge_exit: Callable[[str], None] | None = None,
) -> Listening:
    """Bind the advertised address (and the private backend socket for openssl); a unix
    socket is given to ``socket_gid`` (``socket_group(env)``: PLUGIN_UNIX_SOCKET_GROUP).
    ``multiplex`` (the openssl backend only): the address takes one yamux session.
    ``bridge_process`` (made early, see soup.bridgeproc) serves the openssl backend's
    listener unless multiplexed; else the bridge runs in this process and it is
    discarded. ``on_bridge_exit``: called if that process ends on its own."""
    listening = Listening(network)
    try:
        if server_tls is not None and server_tls.backend == "openssl":
            _listen_bridged(
                server,
                listening,
                env,
                server_tls,
                socket_gid,
                multiplex=multiplex,
                bridge_process=bridge_process,
                on_bridge_exit=on_bridge_exit,
            )
        else:
            creds = server_tls.credentials() if server_tls is not None else None
            _listen_grpc(server, listening, env, creds, socket_gid)
    except BaseException:
        listening.close(logging.getLogger("soup.plugin"))
        raise
    if bridge_process is not None and listening.bridge is not bridge_process:
        bridge_process.discard()
    return listening


def _listen_grpc(
    server: _Ports,
    listening: Listening,
    env: Mapping[str, str],
    creds: grpc.ServerCredentials | None,
    socket_gid: int | None,
) -> None:
    if listening.network == "unix":
        path = _unix_socket_path(env, listening, socket_gid)
        listening.cleanup.append(Path(path))
        if not add_port(server, "unix:" + path, creds):
            raise PluginError(f"couldn't bind plugin unix listener at {path}")
        _socket_permissions(env, socket_gid, path)
        listening.address = path
        return
    low, high = _port_range(env)
    last = "no port tried"
    for port in range(low, high + 1):
        if port:
            # Cheap pre-check so a busy port costs no grpcio call. grpcio's add_*_port
            # binds and listens at once, so a port taken meanwhile fails there (0) and
            # the loop moves on.
            try:
                _listen_tcp_socket(port, backlog=1).close()
            except OSError as exc:
                last = str(exc)
                continue
        bound = add_port(server, f"127.0.0.1:{port}", creds)
        if bound:
            listening.address = f"127.0.0.1:{bound}"
            return
        last = f"grpcio could not bind 127.0.0.1:{port}"
    raise PluginError(f"couldn't bind plugin TCP listener on 127.0.0.1:{low}..{high}: {last}")


def _listen_bridged(
    server: _Ports,
    listening: Listening,
    env: Mapping[str, str],
    server_tls: ServerTLS,
    socket_gid: int | None,
    *,
    multiplex: bool,
    bridge_process: BridgeProcess | None,
    on_bridge_exit: Callable[[str], None] | None,
) -> None:
    private = private_dir(env, "soup-")
    listening.cleanup.append(private)
    backend_path = str(private / "grpc.sock")
    _check_unix_path(backend_path)
    if not add_port(server, "unix:" + backend_path, None):
        raise PluginError(f"couldn't bind the private grpc socket {backend_path}")
    if listening.network == "unix":
        path = _unix_socket_path(env, listening, socket_gid)
        listen_sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            listen_sock.bind(path)
        except OSError as exc:
            listen_sock.close()
            raise PluginError(f"couldn't bind plugin unix listener at {path}: {exc}") from exc
        listening.cleanup.append(Path(path))
        listening.bridge_socket = listen_sock
        _socket_permissions(env, socket_gid, path)
        listening.address = path
        listen_sock.listen(64)
    else:
        listen_sock = listen_tcp_range(env)  # already listening
        listening.bridge_socket = listen_sock
        host, port = listen_sock.getsockname()[:2]
        listening.address = f"{host}:{port}"
    if bridge_process is not None and not multiplex:
        # Its own process: grpcio's threads and the relay no longer share one GIL.
        listening.bridge = bridge_process
        bridge_process.serve(
            listen_sock,
            (server_tls.own.cert_pem, server_tls.own.key_pem),
            server_tls.trusted_pem,
            backend_path,
            on_exit=on_bridge_exit,
        )
        listening.bridge_socket = None  # the child's now: it alone accepts
        listen_sock.close()
        return
    context = tls.server_ssl_context(server_tls.own, server_tls.trusted_pem)
    listening.bridge = bridge.TLSListenerBridge(
        None if multiplex else listen_sock,
        context,
        backend_path,
        logger=logging.getLogger("soup.bridge"),
    )
    if multiplex:
        from soup.grpcmux import ServerMuxer  # noqa: PLC0415 - yamux only for a host that asks

        listening.mux = ServerMuxer(listen_sock, listening.bridge.adopt)
