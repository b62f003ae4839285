"""Every recorded go-plugin behaviour difference holds for soup-go built on that release.

matrix.toml's [[go_plugin_behaviour]] rows say what each release shows; each test here
runs the row's probe (conformance/releases.py: real soup-go processes) on one release.
Needs soup-go on every release (`nox -s build_releases`; the integration session builds them).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import cells as matrix
import releases
from conftest import release_binary

DATA = matrix.load()
ROWS = [
    (row, str(entry["go_plugin"]))
    for row in DATA["go_plugin_behaviour"]
    for entry in matrix.releases(DATA)
]


def test_every_row_covers_every_release_and_names_a_probe_and_reason() -> None:
    known = {str(r["go_plugin"]) for r in matrix.releases(DATA)}
    for row in DATA["go_plugin_behaviour"]:
        assert row["probe"] in releases.PROBES, row["probe"]
        assert set(row["seen"]) == known, row["probe"]
        assert row["reason"].strip(), row["probe"]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("row", "release"), ROWS, ids=[f"{row['probe']}@{release}" for row, release in ROWS]
)
def test_release_shows_what_the_table_says(
    row: dict[str, Any], release: str, request: pytest.FixtureRequest
) -> None:
    soup_go = release_binary(Path(str(request.config.getoption("--soup-go"))).resolve(), release)
    seen = releases.PROBES[row["probe"]](str(soup_go))
    assert seen == row["seen"][release], (
        f"go-plugin {release}, {row['what']}: the table says {row['seen'][release]!r}, "
        f"a real run shows {seen!r} (update the row and its reason)"
    )
