"""go-plugin's handshake as pure functions (sans-IO, in the style of h11).

Nothing here touches sockets, files, ``os.environ`` or standard streams: the
plugin and host modules read the environment and the plugin's stdout and hand
the data to these functions.

The handshake line a plugin prints as its first stdout line::

    CORE|APP|NETWORK|ADDRESS|PROTOCOL|SERVER_CERT[|MUX]

``parse_line`` applies the rules a Go host (go-plugin's ``Client``) applies,
with messages that say what was wrong and what was expected.

Long because it is the whole handshake contract in one place: the line's seven fields, the
environment both sides set, version negotiation, and every error text Go's host uses.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import NamedTuple

from soup import defaults

__all__ = [
    "CORE_PROTOCOL_VERSION",
    "DEFAULT_KEY_TYPE",
    "DEFAULT_MAX_PORT",
    "DEFAULT_MIN_PORT",
    "ENV_CLIENT_CERT",
    "ENV_LOG_LEVEL",
    "ENV_MAX_PORT",
    "ENV_MIN_PORT",
    "ENV_MULTIPLEX_GRPC",
    "ENV_PROTOCOL_VERSIONS",
    "ENV_UNIX_SOCKET_DIR",
    "ENV_UNIX_SOCKET_GROUP",
    "HOST_SOCKET_DIR_PREFIX",
    "HOST_SOCKET_DIR_PREFIXES",
    "NETWORKS",
    "NOT_A_PLUGIN_MESSAGE",
    "CookieError",
    "Handshake",
    "HandshakeConfig",
    "HandshakeError",
    "HandshakeLineError",
    "VersionNegotiationError",
    "check_cookie",
    "format_line",
    "host_env",
    "multiplex_requested",
    "negotiate_version",
    "parse_line",
    "parse_versions",
]

CORE_PROTOCOL_VERSION: int = 1
"""go-plugin's core protocol version (field 1 of the handshake line)."""

# Line breaks as go-plugin prints them, so both implementations say it byte for byte.
NOT_A_PLUGIN_MESSAGE: str = (
    "This binary is a plugin. These are not meant to be executed directly.\n"
    "Please execute the program that consumes these plugins, which will\n"
    "load any plugins automatically"
)
"""What a plugin prints to stderr (plus a newline) when the magic cookie is missing or wrong."""

# go-plugin's environment variables: the only place their names are spelled.
ENV_PROTOCOL_VERSIONS = "PLUGIN_PROTOCOL_VERSIONS"
ENV_MIN_PORT = "PLUGIN_MIN_PORT"
ENV_MAX_PORT = "PLUGIN_MAX_PORT"
ENV_CLIENT_CERT = "PLUGIN_CLIENT_CERT"
ENV_UNIX_SOCKET_DIR = "PLUGIN_UNIX_SOCKET_DIR"
ENV_UNIX_SOCKET_GROUP = "PLUGIN_UNIX_SOCKET_GROUP"
ENV_MULTIPLEX_GRPC = "PLUGIN_MULTIPLEX_GRPC"
DEFAULT_MIN_PORT = 10000
DEFAULT_MAX_PORT = 25000

HOST_SOCKET_DIR_PREFIX = "soup-plugin-"
"""The private PLUGIN_UNIX_SOCKET_DIR a Python host makes for each plugin."""
HOST_SOCKET_DIR_PREFIXES = (HOST_SOCKET_DIR_PREFIX, "soup-go-h-")
"""Every soup host's (soup-go: hostSocketPattern): a plugin whose host died removes it."""

ENV_LOG_LEVEL = "SOUP_LOG_LEVEL"
"""soup's own log-level variable, the same in both implementations (trace..error)."""

DEFAULT_KEY_TYPE = defaults.KEY_TYPE
"""Key type of an AutoMTLS certificate unless configured (go-plugin uses P-256 too)."""

NETWORKS: tuple[str, ...] = ("unix", "tcp")

LINE_FORMAT = "CORE|APP|NETWORK|ADDRESS|PROTOCOL[|SERVER_CERT[|MUX]]"

# A Go host only looks at field 6 when it is longer than this (older plugins put
# other short data there).
_CERT_FIELD_MIN_LEN = 50
# Longest line quoted verbatim in an error message.
_QUOTE_LIMIT = 512
# Go's strconv.Atoi: optional sign, ASCII digits only (no spaces, no underscores).
_GO_INT = re.compile(r"[+-]?[0-9]+")
# Go's strings.TrimSpace (unicode.IsSpace); Python's str.strip() also strips \x1c-\x1f.
_GO_SPACE = (
    "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006"
    "\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)
_FORBIDDEN_IN_FIELD = re.compile(r"[|\r\n]")
# Longer entries are no version anyone uses (and int() refuses 4300+ digits).
_MAX_VERSION_DIGITS = 18
# Go's int on 64-bit platforms: Atoi reports "value out of range" outside it.
_INT64_DIGITS = 19
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


class HandshakeError(Exception):
    """Base class of every handshake failure."""


class CookieError(HandshakeError):
    """The magic cookie is missing or wrong: the process was not started by a host."""

    def __init__(self, message: str = NOT_A_PLUGIN_MESSAGE) -> None:
        super().__init__(message)


class VersionNegotiationError(HandshakeError):
    """No app protocol version can be chosen."""


class HandshakeLineError(HandshakeError):
    """The handshake line is malformed or names something this host does not support."""


class IncompatibleVersionError(HandshakeLineError):
    """A well-formed line whose core or app protocol version this host does not speak."""


@dataclass(frozen=True)
class HandshakeConfig:
    """What host and plugin must agree on before anything else (go-plugin ``HandshakeConfig``)."""

    cookie_key: str = defaults.COOKIE_KEY
    cookie_value: str = defaults.COOKIE_VALUE
    app_versions: tuple[int, ...] = defaults.APP_VERSIONS


class Handshake(NamedTuple):
    """The content of one handshake line."""

    core_version: int
    app_version: int
    network: str
    address: str
    protocol: str
    server_cert_der: bytes | None = None
    multiplex: bool | None = None


# -- helpers


def _go_atoi(text: str) -> int | None:
    """``strconv.Atoi`` semantics: ``None`` where Go reports an error (out of int64 range too).

    The length check comes first: ``int()`` refuses strings of 4300+ digits.
    """
    if _GO_INT.fullmatch(text) is None or len(text.lstrip("+-")) > _INT64_DIGITS:
        return None
    value = int(text)
    return value if _INT64_MIN <= value <= _INT64_MAX else None


def _quote(text: str) -> str:
    if len(text) <= _QUOTE_LIMIT:
        return text
    return f"{text[:_QUOTE_LIMIT]}... ({len(text)} characters in all)"


def _go_list(values: Collection[object]) -> str:
    """A list the way Go's ``%v`` prints a slice: ``[1 5]``."""
    return "[" + " ".join(str(v) for v in values) + "]"


def _sorted_versions(values: Collection[int]) -> list[int]:
    return sorted(set(values))


def _b64_encode_raw(data: bytes) -> str:
    """Standard alphabet without ``=`` padding (Go ``base64.RawStdEncoding``)."""
    return base64.b64encode(data).decode("ascii").rstrip("=")


def _b64_decode_raw(text: str) -> bytes:
    """Standard alphabet without padding, as a Go host decodes field 6 (``RawStdEncoding``).

    Raises ``ValueError`` with the reason; ``=`` is refused like Go refuses it.
    """
    body = text
    if "=" in body:
        raise ValueError(f"illegal base64 data at input byte {body.index('=')}")
    if len(body) % 4 == 1:
        raise ValueError(f"truncated data ({len(body)} base64 characters)")
    try:
        return base64.b64decode(body + "=" * (-len(body) % 4), validate=True)
    except (binascii.Error, ValueError) as exc:
        bad = sorted({c for c in body if not (c.isascii() and (c.isalnum() or c in "+/"))})
        if bad:
            shown = "".join(bad[:10])
            raise ValueError(f"characters outside the base64 alphabet: {shown!r}") from exc
        raise ValueError(str(exc)) from exc


# -- public API


def format_line(h: Handshake) -> bytes:
    """The handshake line (with its ``\\n``) a plugin prints for ``h``.

    Field 6 carries the certificate as base64 without padding (a Go host rejects
    padding); it is empty without a certificate. Field 7 appears only when
    ``h.multiplex`` is True. Raises ``ValueError`` for a value that cannot be
    represented on one line.
    """
    for name in ("network", "address", "protocol"):
        value = getattr(h, name)
        if _FORBIDDEN_IN_FIELD.search(value):
            raise ValueError(f"handshake {name} must not contain '|', CR or LF: {value!r}")
    if h.server_cert_der is not None:
        cert = _b64_encode_raw(h.server_cert_der)
        if len(cert) <= _CERT_FIELD_MIN_LEN:
            raise ValueError(
                f"server certificate of {len(h.server_cert_der)} bytes is too short: a host "
                f"ignores field 6 unless it is longer than {_CERT_FIELD_MIN_LEN} characters"
            )
    else:
        cert = ""
    fields = [
        str(h.core_version),
        str(h.app_version),
        h.network,
        h.address,
        h.protocol,
        cert,
    ]
    if h.multiplex:
        fields.append("true")
    return ("|".join(fields) + "\n").encode("utf-8")


def _decode(line: bytes | str) -> str:
    if isinstance(line, str):
        return line
    try:
        return line.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise HandshakeLineError(
            f"Unrecognized remote plugin message: {_quote(repr(line))} "
            f"(not valid UTF-8 at byte {exc.start}; expected {LINE_FORMAT})"
        ) from None


def _parse_core(field: str) -> int:
    core = _go_atoi(field)
    if core is None:
        raise HandshakeLineError(
            f"error parsing core protocol version: field 1 is {_quote(field)!r}, "
            f"expected the integer {CORE_PROTOCOL_VERSION}"
        )
    if core != CORE_PROTOCOL_VERSION:
        raise IncompatibleVersionError(
            f"incompatible core API version with plugin. Plugin version: {field}, "
            f"Core version: {CORE_PROTOCOL_VERSION} (field 1 must be {CORE_PROTOCOL_VERSION})"
        )
    return core


def _parse_app(field: str, app_versions: Collection[int]) -> int:
    host_versions = _sorted_versions(app_versions)
    app = _go_atoi(field)
    if app is None:
        raise HandshakeLineError(
            f"error parsing protocol version: field 2 is {_quote(field)!r}, "
            f"expected an integer, one of {_go_list(host_versions)}"
        )
    if app not in host_versions:
        raise IncompatibleVersionError(
            f"incompatible API version with plugin. Plugin version: {app}, "
            f"Client versions: {_go_list(host_versions)}"
        )
    return app


def _check_address(network: str, address: str) -> None:
    if network not in NETWORKS:
        raise HandshakeLineError(
            f"unknown network type {_quote(network)!r} in field 3 for address "
            f"{_quote(address)!r} (expected one of: {', '.join(NETWORKS)})"
        )
    if not address:
        raise HandshakeLineError(
            f"empty address in field 4 (expected a socket path or host:port for {network})"
        )


def _parse_cert(parts: list[str]) -> bytes | None:
    if len(parts) < 6 or len(parts[5].encode("utf-8", "surrogatepass")) <= _CERT_FIELD_MIN_LEN:
        return None
    try:
        cert_der = _b64_decode_raw(parts[5])
    except ValueError as exc:
        raise HandshakeLineError(
            f"error parsing server cert: field 6 is not valid base64 ({exc}); expected "
            "the plugin's DER certificate in standard base64"
        ) from None
    if cert_der[:1] != b"\x30":
        raise HandshakeLineError(
            "error parsing server cert: field 6 does not decode to a DER certificate "
            f"(first byte 0x{cert_der[0]:02x}, expected 0x30 for an ASN.1 SEQUENCE)"
        )
    return cert_der


_GO_TRUE = ("1", "t", "T", "TRUE", "true", "True")


def multiplex_requested(env: Mapping[str, str]) -> bool:
    """Whether the host asked for broker multiplexing: ``PLUGIN_MULTIPLEX_GRPC`` read as
    Go's strconv.ParseBool reads it (go-plugin's plugin side; anything else is no)."""
    return env.get(ENV_MULTIPLEX_GRPC, "") in _GO_TRUE


def _parse_multiplex(parts: list[str]) -> bool | None:
    """Field 7 as the plugin advertised it; None if absent or not "true"/"false".

    Never an error here: go-plugin's host reads field 7 only when it asked for broker
    multiplexing (a soup host then refuses anything but True: soup.host).
    """
    if len(parts) < 7 or parts[6] not in ("true", "false"):
        return None
    return parts[6] == "true"


def parse_line(
    line: bytes | str,
    *,
    app_versions: Collection[int],
    protocols: Collection[str] = ("grpc",),
) -> Handshake:
    """Parse a plugin's handshake line the way a Go host does.

    The caller passes the first stdout line only. Surrounding whitespace
    (including CRLF) is ignored. Raises ``HandshakeLineError``.
    """
    text = _decode(line).strip(_GO_SPACE)
    parts = text.split("|")
    if len(parts) < 4:
        raise HandshakeLineError(
            f"Unrecognized remote plugin message: {_quote(text)} "
            f"(expected {LINE_FORMAT}; got {len(parts)} field{'s' if len(parts) != 1 else ''})"
        )
    core = _parse_core(parts[0])
    app = _parse_app(parts[1], app_versions)
    network, address = parts[2], parts[3]
    _check_address(network, address)
    # Like go-plugin: a line without field 5 means the legacy net/rpc protocol.
    protocol = parts[4] if len(parts) >= 5 else "netrpc"
    allowed = list(protocols)
    if protocol not in allowed:
        raise HandshakeLineError(
            f'unsupported plugin protocol "{_quote(protocol)}". Supported: {_go_list(allowed)}'
        )
    return Handshake(
        core_version=core,
        app_version=app,
        network=network,
        address=address,
        protocol=protocol,
        server_cert_der=_parse_cert(parts),
        multiplex=_parse_multiplex(parts),
    )


def negotiate_version(env_value: str | None, supported: Collection[int]) -> int:
    """The app protocol version a plugin advertises (go-plugin's rule).

    ``env_value`` is ``PLUGIN_PROTOCOL_VERSIONS`` (comma list; entries that are not
    integers are skipped). Returns the highest supported version the host listed;
    when none matches (or the host listed nothing), the lowest supported version,
    so that the host fails with a clear message. Raises
    ``VersionNegotiationError`` only when ``supported`` is empty.
    """
    own = _sorted_versions(supported)
    if not own:
        raise VersionNegotiationError("the plugin supports no app protocol version")
    host: set[int] = set()
    if env_value:
        for entry in env_value.split(","):
            value = _go_atoi(entry)
            if value is not None:
                host.add(value)
    for version in reversed(own):
        if version in host:
            return version
    return own[0]


def parse_versions(text: str) -> tuple[int, ...]:
    """A ``--protocol-versions`` list (``"5,6"``): positive integers, ``ValueError`` otherwise."""
    versions: list[int] = []
    for entry in text.split(","):
        value = _go_atoi(entry.strip()) if len(entry) <= _MAX_VERSION_DIGITS else None
        if value is None or value <= 0 or entry.strip().startswith(("+", "-")):
            raise ValueError(f"{entry.strip()!r} is not a positive integer (in {text!r})")
        versions.append(value)
    return tuple(versions)


def check_cookie(env: Mapping[str, str], config: HandshakeConfig) -> None:
    """Raise ``CookieError`` unless ``env`` carries the magic cookie of ``config``."""
    if not config.cookie_key or not config.cookie_value:
        raise ValueError("misconfigured handshake: the magic cookie key and value must be set")
    if env.get(config.cookie_key) != config.cookie_value:
        raise CookieError()


def host_env(
    config: HandshakeConfig,
    *,
    client_cert_pem: bytes | None,
    unix_socket_dir: str | None = None,
    unix_socket_group: str | None = None,
) -> dict[str, str]:
    """The variables a host adds to the plugin's environment.

    ``client_cert_pem`` (AutoMTLS only) is the host's certificate, without key.
    """
    env = {
        config.cookie_key: config.cookie_value,
        ENV_PROTOCOL_VERSIONS: ",".join(str(v) for v in config.app_versions),
        ENV_MIN_PORT: str(DEFAULT_MIN_PORT),
        ENV_MAX_PORT: str(DEFAULT_MAX_PORT),
    }
    if client_cert_pem is not None:
        env[ENV_CLIENT_CERT] = client_cert_pem.decode("ascii")
    if unix_socket_dir is not None:
        env[ENV_UNIX_SOCKET_DIR] = unix_socket_dir
    if unix_socket_group is not None:
        env[ENV_UNIX_SOCKET_GROUP] = unix_socket_group
    return env
