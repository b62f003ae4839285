"""Unit tests of the matrix data and runner logic (no processes)."""

from __future__ import annotations

from typing import Any

import pytest

import cells as matrix

DATA = matrix.load()


def test_every_cell_id_round_trips() -> None:
    for cell in matrix.all_cells(DATA):
        assert matrix.parse_id(cell.id) == cell


def test_full_matrix_size_and_unsupported_reasons() -> None:
    cells = matrix.all_cells(DATA)
    # 2x2 impls x (36 key pairs x 2 modes + 1 for disabled) x 2 transports
    assert len(cells) == 4 * (36 * 2 + 1) * 2
    unsupported = {c.id: matrix.unsupported_reason(c, DATA) for c in cells}
    assert unsupported["go->go/auto/ec-p521->ec-p521/unix"] is None
    assert "always ec-p521" in str(unsupported["python->go/auto/ec-p256->ec-p256/unix"])
    assert unsupported["python->go/manual/ec-p256->ec-p256/tcp"] is None
    assert unsupported["go->python/auto/ed25519->rsa-4096/tcp"] is None


def test_proof_suite_is_the_four_directions_in_order() -> None:
    ids = [c.id for c in matrix.suite_cells(DATA, "proof")]
    assert [i.split("/")[0] for i in ids] == [
        "go->go",
        "python->python",
        "python->go",
        "go->python",
    ]


def test_unknown_suite_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown suite 'nope'; known: proof"):
        matrix.suite_cells(DATA, "nope")


def test_negative_cells_carry_their_variant_and_args() -> None:
    negative = {c.id: c for c in matrix.negative_cells(DATA)}
    cell = negative["python->go/auto/ec-p256->ec-p521/unix+native"]
    assert cell.client_args == ("--tls-backend", "native")
    assert cell.expect_error


def test_command_nests_the_server_command_and_manual_files(
    tmp_path: pytest.TempPathFactory,
) -> None:
    paths = matrix.Paths("py", "/bin/soup-go", tmp_path, tmp_path)  # type: ignore[arg-type]
    cell = matrix.parse_id("python->go/manual/ed25519->rsa-2048/tcp")
    argv = matrix.command(cell, DATA, paths)
    assert argv[:7] == ["py", "-m", "soup", "rpc", "client", "test", "--json"]
    server = argv[argv.index("--server") + 1]
    assert server.startswith("/bin/soup-go rpc server-start --tls-mode manual --key-type rsa-2048")
    assert "--transport tcp" in server
    assert f"{tmp_path}/client-ed25519.pem" in argv


GOOD: dict[str, Any] = {
    "ok": True,
    "error": None,
    "transport": "unix",
    "server": {"impl": "python", "version": "soup 0.1.0 (python 3.11.7, grpcio 1.85.3)"},
    "tls": {
        "mode": "auto",
        "version": "TLSv1.3",
        "version_source": "live",
        "backend": "go",
        "client_key": "ec-p521",
        "server_key": "ec-p256",
    },
    "steps": [{"name": n, "ok": True, "ms": 1.0, "detail": ""} for n in matrix.STEPS],
    "mutual_tls": {"plugin_verified_client": True, "host_verified_plugin": True},
}
CELL = matrix.parse_id("go->python/auto/ec-p521->ec-p256/unix")


def test_judge_pass_needs_every_step_and_the_promised_tls() -> None:
    assert matrix.judge(CELL, 0, GOOD, None, "") == ("pass", None)
    wrong_key = GOOD | {"tls": GOOD["tls"] | {"server_key": "ec-p521"}}
    outcome, reason = matrix.judge(CELL, 0, wrong_key, None, "")
    assert outcome == "fail"
    assert "tls.server_key is 'ec-p521', expected 'ec-p256'" in str(reason)
    missing_step = GOOD | {"steps": GOOD["steps"][:-1]}
    assert matrix.judge(CELL, 0, missing_step, None, "")[1] == "step shutdown missing"
    tls12 = GOOD | {"tls": GOOD["tls"] | {"version": "TLSv1.2"}}
    assert "tls.version is 'TLSv1.2'" in str(matrix.judge(CELL, 0, tls12, None, "")[1])


def test_judge_known_failure_passing_is_stale_and_wrong_reason_fails() -> None:
    known = {"cell": CELL.id, "reason": "r", "expect_error": "BOOM"}
    assert matrix.judge(CELL, 0, GOOD, known, "")[0] == "stale"
    failed = GOOD | {"ok": False, "error": "something else"}
    outcome, reason = matrix.judge(CELL, 1, failed, known, "")
    assert outcome == "fail"
    assert "not with 'BOOM'" in str(reason)
    assert matrix.judge(CELL, 1, failed | {"error": "x BOOM y"}, known, "")[0] == "xfail"


def test_judge_without_json_reports_exit_code_and_stderr() -> None:
    outcome, reason = matrix.judge(CELL, 2, None, None, "usage: bad flag\n")
    assert outcome == "fail"
    assert "exit 2" in str(reason)
    assert "usage: bad flag" in str(reason)


def test_judge_fails_a_cell_whose_plugin_says_it_is_someone_else_or_nothing() -> None:
    # result.server comes from the plugin's own log line, read by the client; the
    # runner never fills it in, it only checks it against the cell
    go_served = GOOD | {"server": {"impl": "go", "version": "soup-go 0.1.0"}}
    outcome, reason = matrix.judge(CELL, 0, go_served, None, "")
    assert outcome == "fail"
    assert "server.impl is 'go', expected 'python'" in str(reason)
    silent = GOOD | {"server": {"impl": None, "version": None}}
    outcome, reason = matrix.judge(CELL, 0, silent, None, "")
    assert outcome == "fail"
    assert "server.impl is None, expected 'python'" in str(reason)
    assert "server.impl" in str(matrix.judge(CELL, 0, GOOD | {"server": None}, None, "")[1])


def test_judge_checks_the_server_version_when_the_runner_knows_it() -> None:
    version = GOOD["server"]["version"]
    assert matrix.judge(CELL, 0, GOOD, None, "", version) == ("pass", None)
    outcome, reason = matrix.judge(CELL, 0, GOOD, None, "", "soup 0.2.0 (python 3.12.0)")
    assert outcome == "fail"
    assert "server.version is" in str(reason)
    assert "expected 'soup 0.2.0 (python 3.12.0)'" in str(reason)


def test_judge_takes_a_probed_tls_version_only_from_the_native_backend() -> None:
    probed = GOOD | {"tls": GOOD["tls"] | {"version_source": "probe"}}
    outcome, reason = matrix.judge(CELL, 0, probed, None, "")
    assert outcome == "fail"
    assert "tls.version_source is 'probe', expected 'live'" in str(reason)
    native = GOOD | {"tls": probed["tls"] | {"backend": "native"}}
    assert matrix.judge(CELL, 0, native, None, "") == ("pass", None)


OLD = str(matrix.releases(DATA)[-1]["go_plugin"])


def test_the_default_go_plugin_release_is_the_trees_go_mod() -> None:
    go_mod = (matrix.DATA.parent.parent / "go" / "soup-go" / "go.mod").read_text()
    assert f"github.com/hashicorp/go-plugin v{matrix.default_release(DATA)}\n" in go_mod
    assert matrix.release_impl(DATA, matrix.default_release(DATA)) == "go"
    assert matrix.release_impl(DATA, OLD) == f"go@{OLD}"
    assert matrix.impl_release(DATA, f"go@{OLD}") == OLD
    assert matrix.impl_release(DATA, "python") is None


def test_release_cells_pair_a_release_with_python_default_go_and_itself() -> None:
    cells = matrix.all_cells(DATA, [OLD])
    pairs = {c.id.split("/")[0] for c in cells}
    old = f"go@{OLD}"
    assert pairs == {
        f"{old}->python",
        f"python->{old}",
        f"{old}->go",
        f"go->{old}",
        f"{old}->{old}",
    }
    assert {matrix.cell_release(c, DATA) for c in cells} == {OLD}
    every = matrix.all_cells(DATA, [str(r["go_plugin"]) for r in matrix.releases(DATA)])
    # no cell pairs two old releases; the default release's cells are today's matrix
    assert not [c for c in every if c.client != c.server and "@" in c.client and "@" in c.server]
    assert len(every) == len(matrix.all_cells(DATA)) + 5 * 146 * (len(matrix.releases(DATA)) - 1)
    cell = matrix.parse_id(f"{old}->python/auto/ec-p521->ec-p256/unix")
    assert matrix.parse_id(cell.id) == cell
    assert "always ec-p521" in str(
        matrix.unsupported_reason(
            matrix.parse_id(f"python->{old}/auto/ec-p256->ec-p256/unix"), DATA
        )
    )


def test_a_release_cell_runs_that_releases_binary_and_expects_go_in_its_log(
    tmp_path: pytest.TempPathFactory,
) -> None:
    old = f"go@{OLD}"
    paths = matrix.Paths("py", "/b/soup-go", tmp_path, tmp_path, {old: f"/b/soup-go@v{OLD}"})  # type: ignore[arg-type]
    cell = matrix.parse_id(f"go->{old}/manual/ed25519->rsa-2048/tcp")
    argv = matrix.command(cell, DATA, paths)
    assert argv[0] == "/b/soup-go"
    assert argv[argv.index("--server") + 1].startswith(f"/b/soup-go@v{OLD} rpc server-start")
    go_served = GOOD | {
        "server": {"impl": "go", "version": "v"},
        "tls": GOOD["tls"] | {"mode": "manual"},
    }
    go_served["tls"] |= {"client_key": "ed25519", "server_key": "rsa-2048"}
    assert matrix.check_result(cell, go_served | {"transport": "tcp"}) == []


def test_judge_fails_a_tls_cell_verified_one_way_only() -> None:
    one_way = GOOD | {
        "mutual_tls": {
            "plugin_verified_client": False,
            "plugin_evidence": "no_client_cert: served",
            "host_verified_plugin": True,
        }
    }
    outcome, reason = matrix.judge(CELL, 0, one_way, None, "")
    assert outcome == "fail"
    assert reason == "plugin did not verify the host's certificate: no_client_cert: served"
    no_evidence = {k: v for k, v in GOOD.items() if k != "mutual_tls"}
    assert "no mutual_tls evidence" in str(matrix.judge(CELL, 0, no_evidence, None, "")[1])
