"""The HTML report renders in a real browser: headless Chromium, offline, with the right counts.

Chromium is required (Debian's `chromium`, installed by the unit session): without it this test
fails, it never skips. The page is opened from a file with networking disabled; the
DOM Chromium built is parsed and every grid cell and legend count checked.
"""

from __future__ import annotations

import os
import shutil
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

import cells as matrix
import render_report

CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
)  # fmt: skip
BROWSER_TIMEOUT_S = 90.0


def verdict(client_key: str, server_key: str, outcome: str, **axes: str) -> dict[str, Any]:
    a = {"client": "python", "server": "go", "mode": "auto", "transport": "unix", "variant": ""}
    a |= {"client_key": client_key, "server_key": server_key} | axes
    cell = f"{a['client']}->{a['server']}/{a['mode']}/{client_key}->{server_key}/{a['transport']}"
    return {
        "cell": cell + (f"+{a['variant']}" if a["variant"] else ""),
        "outcome": outcome,
        "axes": a,
        "reason": f"why {outcome}",
        "command": f"soup rpc client test --json --server 'x {client_key}'",
        "result": {"mutual_tls": {"plugin_verified_client": True, "plugin_evidence": "refused"}},
    }


CELLS = [
    verdict("ec-p256", "ec-p521", "pass"),
    verdict("ec-p521", "ec-p521", "pass"),
    verdict("ec-p256", "ec-p256", "fail"),
    verdict("ec-p521", "ec-p256", "xfail"),
    verdict("ed25519", "ec-p256", "unsupported"),
    verdict("ed25519", "ec-p521", "stale"),
    verdict("none", "none", "pass", mode="disabled", transport="tcp"),
    verdict("ec-p256", "ec-p521", "negative-pass", variant="native"),
]


class _Cells(HTMLParser):
    """Collects grid cells (data-outcome), legend counts and any external reference."""

    def __init__(self) -> None:
        super().__init__()
        self.outcomes: Counter[str] = Counter()
        self.grids: list[tuple[str, str]] = []
        self.counts: dict[str, str] = {}
        self.external: list[str] = []
        self._count: str | None = None
        self.texts: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "td" and a.get("data-outcome"):
            self.outcomes[str(a["data-outcome"])] += 1
        if tag == "table" and a.get("class") == "grid":
            self.grids.append((str(a.get("data-mode")), str(a.get("data-transport"))))
        if tag == "b" and a.get("data-count"):
            self._count = a["data-count"]
        for name in ("src", "href"):
            if a.get(name):
                self.external.append(str(a[name]))
        if tag in ("script", "link", "img", "iframe"):
            self.external.append(tag)

    def handle_data(self, data: str) -> None:
        if self._count is not None:
            self.counts[self._count] = data
            self._count = None
        self.texts.append(data)


def chromium() -> str:
    found = os.environ.get("SOUP_CHROMIUM") or shutil.which("chromium")
    if not found:
        pytest.fail(
            "chromium not found: install Debian's chromium package (`apt-get install chromium`, "
            "as the unit session does) or set SOUP_CHROMIUM; this test never skips",
            pytrace=False,
        )
    return found


def test_html_report_renders_the_grid_with_the_right_counts_in_chromium(tmp_path: Path) -> None:
    written = render_report.write(CELLS, {"python": "3.11"}, tmp_path, "m", proof=False)
    page = next(p for p in written if p.suffix == ".html")
    profile = tmp_path / "chromium-profile"
    argv = [chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--dump-dom", page.as_uri()]
    code, dom, err = matrix.run_bounded(argv, BROWSER_TIMEOUT_S)
    assert code == 0, f"chromium exit {code}: {err[-2000:]}"
    parsed = _Cells()
    parsed.feed(dom)
    assert parsed.external == []  # static: nothing to fetch
    assert parsed.grids == [("auto", "unix"), ("disabled", "tcp")]
    # Six auto cells, one disabled cell, the negative cell in its own table.
    assert parsed.outcomes == Counter(
        {"pass": 4, "fail": 1, "known": 1, "unsupported": 1, "stale": 1}
    )
    assert parsed.counts == {
        "pass": "4", "fail": "1", "stale": "1", "known": "1", "unsupported": "1"
    }  # fmt: skip
    text = "".join(parsed.texts)
    assert "reason: why fail" in text
    assert "reproduce: soup rpc client test --json --server 'x ec-p256'" in text
    assert "python3.11" in text  # the environment table at the top
