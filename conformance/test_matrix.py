"""One test per matrix cell: two real processes, the client's `rpc client test --json`."""

from __future__ import annotations

from typing import Any

import pytest

import cells as matrix


def failure_text(verdict: matrix.Verdict) -> str:
    result = verdict.result or {}
    return "\n".join(
        [
            f"cell {verdict.cell}: {verdict.outcome}: {verdict.reason}",
            f"reproduce: {verdict.command}",
            "--- client stderr (tail) ---",
            verdict.client_stderr[-4000:],
            "--- plugin stderr (tail, as captured by the client) ---",
            str(result.get("plugin_stderr_tail") or ""),
        ]
    )


def test_cell(
    cell: matrix.Cell,
    data: dict[str, Any],
    paths: matrix.Paths,
    impl_version: Any,
    record: Any,
    request: pytest.FixtureRequest,
) -> None:
    verdict = matrix.run_cell(cell, data, paths, impl_version(cell.server))
    record(verdict, order=int(request.node.callspec.indices["cell"]))
    if verdict.outcome == "unsupported":
        pytest.skip(f"unsupported (not a pass): {verdict.reason}")
    if verdict.outcome == "xfail":
        pytest.xfail(f"known failure: {verdict.reason}")
    if verdict.outcome not in ("pass", "negative-pass"):
        pytest.fail(failure_text(verdict), pytrace=False)
