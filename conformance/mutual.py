"""The runner's mutual-TLS rule: a TLS cell passes only when both sides verified the other.

The evidence is the ``mutual_tls`` object the host writes into its result (soup.verify,
soup-go's verify.go, or a peer adapter): whether the plugin refused connections without
the host's certificate or with a foreign one, and whether the host's verifier refused a
plugin it was not told to trust. A working RPC alone cannot tell mutual TLS from
server-only TLS, so missing evidence is a problem too.
"""

from __future__ import annotations

from typing import Any

PLUGIN_DID_NOT_VERIFY = "plugin did not verify the host's certificate"
HOST_DID_NOT_VERIFY = "host did not verify the plugin's certificate"


def problems(mode: str, result: dict[str, Any]) -> list[str]:
    """What is missing for both-ways verification in a result (empty: both verified)."""
    if mode == "disabled":
        return []
    evidence = result.get("mutual_tls")
    if not isinstance(evidence, dict):
        return ["no mutual_tls evidence in the result (cannot tell mutual from one-way TLS)"]
    out = []
    if evidence.get("plugin_verified_client") is not True:
        out.append(f"{PLUGIN_DID_NOT_VERIFY}: {evidence.get('plugin_evidence')}")
    if evidence.get("host_verified_plugin") is not True:
        out.append(f"{HOST_DID_NOT_VERIFY}: {evidence.get('host_evidence')}")
    return out
