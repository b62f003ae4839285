"""CI's job matrix is the data: every job comes from pyproject.toml and matrix.toml."""

from __future__ import annotations

import re
from pathlib import Path

import ci_shards

ROOT = Path(__file__).resolve().parent.parent
WORKFLOW = (ROOT / ".github" / "workflows" / "ci.yml").read_text()
README = (ROOT / "README.md").read_text()
PYPROJECT, MATRIX = ci_shards.read(ROOT)
JOBS = ci_shards.ci_jobs(ROOT)


def test_every_python_meets_every_grpc_line_it_has_wheels_for() -> None:
    pythons = ci_shards.supported_pythons(PYPROJECT)
    lines = ci_shards.grpc_lines(PYPROJECT)
    assert len(lines) >= 4, "oldest, two in between, latest"
    pairs = {(j["python"], j["grpc"]) for j in JOBS["versions"]}
    for python in pythons:
        for line, spec in lines.items():
            bound = spec.get("max-python")
            has_wheels = bound is None or ci_shards.version_key(python) <= ci_shards.version_key(
                bound
            )
            assert ((python, line) in pairs) == has_wheels, (python, line)
    assert ("3.13", "1.60") not in pairs  # grpcio 1.60 has no 3.13 wheels


def test_shards_are_every_version_pair_times_every_go_plugin_release() -> None:
    releases = ci_shards.go_plugin_releases(MATRIX)
    assert len(releases) >= 4
    assert len(JOBS["shards"]) == len(JOBS["versions"]) * len(releases)
    first = JOBS["shards"][0]
    assert first["session"] == (
        f"matrix(python='{first['python']}', grpc='{first['grpc']}', "
        f"go_plugin='{first['go_plugin']}')"
    )


def test_the_workflow_takes_its_matrices_from_the_plan_job() -> None:
    assert 'python scripts/ci_shards.py >> "$GITHUB_OUTPUT"' in WORKFLOW
    assert "matrix: ${{ fromJSON(needs.plan.outputs.versions) }}" in WORKFLOW
    assert "matrix: ${{ fromJSON(needs.plan.outputs.shards) }}" in WORKFLOW
    # the merge fails when a shard's report is missing
    assert '--expect-shards "$SHARD_COUNT" shards/*.json' in WORKFLOW
    for job, keys in (("versions", JOBS["versions"][0]), ("matrix", JOBS["shards"][0])):
        section = WORKFLOW.split(f"\n  {job}:\n", 1)[1].split("\n  report:\n", 1)[0]
        used = set(re.findall(r"\$\{\{ matrix\.(\w+) \}\}", section.split("\n  matrix:\n")[0]))
        assert used <= keys.keys(), f"{job} uses matrix keys the plan does not give: {used}"


def test_every_action_is_pinned_by_commit_sha() -> None:
    uses = re.findall(r"uses: (\S+)", WORKFLOW)
    assert uses
    for ref in uses:
        assert re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{40}", ref), ref


def test_the_planned_sessions_are_exactly_the_ones_nox_lists() -> None:
    kinds = ("unit", "integration", "proof")
    listing = ci_shards.nox_sessions([*(f"{k}_versions" for k in kinds), "matrix"], ROOT)
    planned = [j[k] for j in JOBS["versions"] for k in kinds] + [
        j["session"] for j in JOBS["shards"]
    ]
    assert sorted(planned) == sorted(listing)


def test_readme_states_the_go_minimum_of_every_go_mod() -> None:
    heading = re.search(r"^## Set up and run \(fresh machine: .*?Go (\d+\.\d+)\+", README, re.M)
    assert heading is not None, "the set-up heading states no Go minimum"
    for go_mod in sorted((ROOT / "go").glob("*/go.mod")):
        wanted = re.search(r"^go (\d+\.\d+)", go_mod.read_text(), re.M)
        assert wanted is not None, go_mod
        assert heading[1] == wanted[1], f"README says Go {heading[1]}+, {go_mod} needs {wanted[1]}"
