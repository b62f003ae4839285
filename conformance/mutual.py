"""The runner's mutual-TLS rule: a TLS cell passes only when both sides verified the other.

The evidence is the ``mutual_tls`` object the host writes into its result (soup.lab.verify,
soup-go's verify.go, or a peer adapter): whether the plugin refused connections without
the host's certificate or with a foreign one, and whether the host's verifier refused a
plugin it was not told to trust. The rule is soup.lab.verify's, the one soup's own
``client test`` applies; a peer's host may not apply it, so the runner does.
"""

from __future__ import annotations

from typing import Any

from soup.lab.verify import HOST_DID_NOT_VERIFY, PLUGIN_DID_NOT_VERIFY
from soup.lab.verify import problems as evidence_problems

__all__ = ["HOST_DID_NOT_VERIFY", "PLUGIN_DID_NOT_VERIFY", "problems"]


def problems(mode: str, result: dict[str, Any]) -> list[str]:
    """What is missing for both-ways verification in a result (empty: both verified)."""
    return evidence_problems(mode, result.get("mutual_tls"))
