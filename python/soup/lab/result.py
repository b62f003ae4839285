"""The result of ``rpc client test`` / ``rpc client bench`` (the JSON contract)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from soup import version_string
from soup.tls import TLSEvidence

__all__ = [
    "BenchResult",
    "Identity",
    "RoundTrips",
    "Step",
    "TestResult",
    "version_string",
]


@dataclass
class Identity:
    impl: str | None = None
    version: str | None = None

    @classmethod
    def me(cls) -> Identity:
        return cls(impl="python", version=version_string())


@dataclass
class Step:
    name: str
    ok: bool
    ms: float
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "ok": self.ok, "ms": round(self.ms, 3), "detail": self.detail}


@dataclass
class TestResult:
    __test__ = False  # not a pytest test class

    ok: bool = False
    error: str | None = None
    client: Identity = field(default_factory=Identity.me)
    server: Identity = field(default_factory=Identity)
    tls: TLSEvidence = field(default_factory=TLSEvidence)
    transport: str | None = None
    address: str | None = None
    app_protocol_version: int | None = None
    """The negotiated app protocol version (also under its contract name ``protocol_version``)."""
    steps: list[Step] = field(default_factory=list)
    plugin_stderr_tail: str = ""
    mutual_tls: dict[str, Any] | None = None  # soup.lab.verify: did each side verify the other

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "error": self.error,
            "client": asdict(self.client),
            "server": asdict(self.server),
            "tls": asdict(self.tls),
            "transport": self.transport,
            "address": self.address,
            "app_protocol_version": self.app_protocol_version,
            "protocol_version": self.app_protocol_version,
            "steps": [step.to_dict() for step in self.steps],
            "plugin_stderr_tail": self.plugin_stderr_tail,
            "mutual_tls": self.mutual_tls,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict())


@dataclass
class RoundTrips:
    mean: float = 0.0
    p50: float = 0.0
    p90: float = 0.0
    p99: float = 0.0
    min: float = 0.0
    max: float = 0.0

    @classmethod
    def from_samples(cls, samples_us: list[float]) -> RoundTrips:
        if not samples_us:
            return cls()
        ordered = sorted(samples_us)

        def pct(p: float) -> float:
            index = min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))
            return round(ordered[index], 3)

        return cls(
            mean=round(sum(ordered) / len(ordered), 3),
            p50=pct(50),
            p90=pct(90),
            p99=pct(99),
            min=round(ordered[0], 3),
            max=round(ordered[-1], 3),
        )


@dataclass
class BenchResult:
    ok: bool = False
    error: str | None = None
    count: int = 0
    client: Identity = field(default_factory=Identity.me)
    tls: TLSEvidence = field(default_factory=TLSEvidence)
    round_trip_us: RoundTrips = field(default_factory=RoundTrips)

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "error": self.error,
            "count": self.count,
            "client": asdict(self.client),
            "tls": asdict(self.tls),
            "round_trip_us": asdict(self.round_trip_us),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict())
