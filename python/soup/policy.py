"""Plugin side: whether and how to serve TLS, from the settings and the host's environment.

Like go-plugin's ``plugin.Serve``: mutual TLS when the host sent ``PLUGIN_CLIENT_CERT``
(its certificate, pinned as the only trusted root; ours goes into the handshake line),
plaintext only when the host did not ask for TLS, with a warning, unless
``ServeConfig.require_tls`` refuses it. Never plaintext to a host that asked for TLS.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING

from soup import tls
from soup.errors import PluginError
from soup.handshake import ENV_CLIENT_CERT, multiplex_requested
from soup.listen import ServerTLS
from soup.settings import own_material

if TYPE_CHECKING:
    from soup.plugin import ServeConfig

__all__ = [
    "AUTO_WITHOUT_CLIENT_CERT",
    "DEBUG_WITH_AUTO",
    "DISABLED_WITH_CLIENT_CERT",
    "server_tls",
]

AUTO_WITHOUT_CLIENT_CERT = (
    "tls-mode auto: the host sent no PLUGIN_CLIENT_CERT; refusing to serve plaintext "
    "(start the host with AutoMTLS, or pass --tls-mode disabled explicitly)"
)
DISABLED_WITH_CLIENT_CERT = "tls-mode disabled but the host asked for TLS (PLUGIN_CLIENT_CERT set)"
DEBUG_WITH_AUTO = (
    "--debug cannot use --tls-mode auto: no host sends PLUGIN_CLIENT_CERT to a plugin "
    "started by hand; use --tls-mode manual (TLS with your cert files) or --tls-mode disabled"
)


def bridge_process_wanted(config: ServeConfig, env: Mapping[str, str]) -> bool:
    """Whether the plugin will likely serve through the bridge process, told before
    :func:`server_tls` (which needs cryptography to read the host's certificate): TLS on,
    the backend not forced native, no multiplexing (its yamux streams are relayed in
    process). A stock go-plugin host (P-521) gets the bridge; a host whose key grpcio
    verifies gets the native backend, and the process made for nothing is discarded."""
    settings = config.tls
    if settings.mode == "disabled" or settings.backend == "native":
        return False
    if multiplex_requested(env):
        return False
    return settings.mode == "manual" or bool(env.get(ENV_CLIENT_CERT))


def server_tls(
    config: ServeConfig, env: Mapping[str, str], log: logging.Logger
) -> ServerTLS | None:
    """The plugin's TLS material and backend, or None for plaintext; PluginError says why not."""
    settings = config.tls
    client_cert = env.get(ENV_CLIENT_CERT, "")
    if settings.mode == "disabled":
        if client_cert:
            raise PluginError(DISABLED_WITH_CLIENT_CERT)
        return None
    peer_key_type: str | None = None
    refusal: str | None = None  # why TLS must refuse the pinned host cert
    if settings.mode == "auto":
        if config.debug:
            raise PluginError(DEBUG_WITH_AUTO)
        if not client_cert:
            if config.require_tls:
                raise PluginError(AUTO_WITHOUT_CLIENT_CERT)
            log.warning(
                "the host sent no PLUGIN_CLIENT_CERT: serving plaintext, as go-plugin does "
                "(ServeConfig(require_tls=True) refuses instead)"
            )
            return None
        from soup import certs  # noqa: PLC0415 - cryptography only where TLS is on

        try:
            host_cert = certs.load_cert_pem(client_cert.encode())
        except Exception as exc:
            raise PluginError(f"{ENV_CLIENT_CERT} is not a PEM certificate: {exc}") from exc
        peer_key_type = certs.key_type_of(host_cert)
        refusal = certs.pinned_peer_problem(host_cert, "client")
    try:
        own, trusted = own_material(settings)
        backend = tls.choose_backend(settings.backend, peer_key_type, refusal)
    except ValueError as exc:
        raise PluginError(str(exc)) from exc
    if multiplex_requested(env) and settings.backend != "native":
        backend = "openssl"  # the bridge carries the yamux streams (same certificate policy)
    assert own is not None
    trusted_pem = client_cert.encode() if settings.mode == "auto" else trusted
    assert trusted_pem is not None
    log.debug(
        "configured plugin TLS",
        extra={
            "tls_mode": settings.mode,
            "backend": backend,
            "key_type": own.key_type,
            "peer_key_type": peer_key_type or "unknown",
        },
    )
    return ServerTLS(own, trusted_pem, backend, advertise=settings.mode == "auto")
