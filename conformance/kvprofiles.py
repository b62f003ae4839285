"""KV profiles as data (matrix.toml [kv_profiles]): which host flags a cell adds, which steps
a profile lets a host skip, and the difference a passing lenient cell reports.

An implementation with ``kv_profile = "lenient"`` (in either role) makes its cells run the
host with that profile's ``client_args`` (soup's `--kv-profile lenient`): Get may return
the stored bytes with text appended, a missing key may be any error. Handshake, TLS, Put,
Get of the stored prefix and shutdown are still checked; what differed is reported.
"""

from __future__ import annotations

from typing import Any


def _profile(cell: Any, data: dict[str, Any]) -> dict[str, Any]:
    impls = data["implementations"]
    for impl in (cell.server, cell.client):
        name = impls[impl].get("kv_profile")
        if name:
            profile: dict[str, Any] = data["kv_profiles"][name]
            return profile
    return {}


def client_args(cell: Any, data: dict[str, Any]) -> list[str]:
    return list(_profile(cell, data).get("client_args", []))


def skippable(cell: Any, data: dict[str, Any], step: dict[str, Any]) -> bool:
    """A step the profile lets a host skip, reported by the host as 'skipped: why'."""
    return step.get("name") in _profile(cell, data).get("optional_steps", []) and str(
        step.get("detail", "")
    ).startswith("skipped:")


def difference(cell: Any, data: dict[str, Any], result: dict[str, Any] | None) -> str | None:
    """For a passing cell under a profile: what its steps reported as lenient or skipped."""
    if not _profile(cell, data) or not result:
        return None
    notes = [
        f"{s['name']}: {s['detail']}"
        for s in result.get("steps", [])
        if "lenient:" in str(s.get("detail")) or str(s.get("detail")).startswith("skipped:")
    ]
    return "lenient KV profile: " + ("; ".join(notes) or "no difference seen")
