"""The committed warehouse reference matches the declared tables (regenerate with
`python -m warehouse.docs > docs/WAREHOUSE.md`)."""

from pathlib import Path

from warehouse.docs import render


def test_committed_reference_is_up_to_date():
    committed = (Path(__file__).resolve().parents[1] / "docs" / "WAREHOUSE.md").read_text(encoding="utf-8")
    assert committed == render(), "docs/WAREHOUSE.md is stale: run `python -m warehouse.docs > docs/WAREHOUSE.md`"
