"""docs/check.md is what scripts/gen_check_docs.py renders from the checker's catalogue."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))

import pytest

import gen_check_docs
from soup.lab.check import catalogue


def test_docs_are_current() -> None:
    stale = gen_check_docs.DOC.read_text(encoding="utf-8") != gen_check_docs.render(
        catalogue.load()
    )
    assert not stale, "docs/check.md is stale: run python scripts/gen_check_docs.py"


def test_every_check_has_its_section_and_fix() -> None:
    text = gen_check_docs.render(catalogue.load())
    for check in catalogue.load():
        section = text.split(f"### `{check.id}`\n", 1)[1].split("\n### ", 1)[0]
        assert check.ref in section
        assert f"**Fix.** {check.fix}" in section
        assert all((check.rule, check.failure, check.fix, check.ref)), check.id


def test_catalogue_ids_are_unique_and_roles_known() -> None:
    ids = [check.id for check in catalogue.load()]
    assert len(ids) == len(set(ids))
    assert {check.role for check in catalogue.load()} == set(gen_check_docs.ROLE_TITLES)
    assert {check.level for check in catalogue.load()} <= {catalogue.REQUIRED, catalogue.ADVISORY}


def test_a_stale_page_is_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    page = tmp_path / "check.md"
    page.write_text("old\n", encoding="utf-8")
    monkeypatch.setattr(gen_check_docs, "DOC", page)
    assert gen_check_docs.main(["--check"]) == 1
    assert "is stale: run python scripts/gen_check_docs.py" in capsys.readouterr().err
    assert gen_check_docs.main([]) == 0
    assert gen_check_docs.main(["--check"]) == 0
