"""Marts an analyst can use cold (README "Example queries", docs/WAREHOUSE.md): on the
demo warehouse (`residents demo`'s district, seed and size), every SQL example of the
README and docs/ returns rows, every column of every table and view has a Chinese
comment, and the community, grid and address-resident views have one row per real
community, grid position and person–flat."""

from __future__ import annotations

import re
from pathlib import Path

import duckdb
import pytest

import synth
from settings import load_settings

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    """The warehouse `residents demo` builds (same size, seed and noise)."""
    from flows import sync

    out = tmp_path_factory.mktemp("demo")
    synth.generate(out / "inbox", households=300, seed=20261121, noise="realistic")
    wh = out / "warehouse.duckdb"
    summary = sync(load_settings(inbox=out / "inbox", warehouse=wh), flow_name="demo")
    assert summary.status == "succeeded"
    return wh


def sql_examples() -> list[tuple[str, str]]:
    """(where, statement) for every statement of every ```sql block in the docs."""
    out = []
    for doc in DOCS:
        text = doc.read_text(encoding="utf-8")
        for block in re.findall(r"```sql\n(.*?)```", text, flags=re.S):
            body = "\n".join(line for line in block.splitlines() if not line.strip().startswith("--"))
            for stmt in body.split(";"):
                if stmt.strip():
                    out.append((f"{doc.name}: {stmt.strip().splitlines()[0][:60]}", stmt.strip()))
    return out


def test_the_docs_have_examples():
    where = {w.split(":")[0] for w, _ in sql_examples()}
    assert {"README.md", "WAREHOUSE.md"} <= where


@pytest.mark.parametrize("where,stmt", sql_examples(), ids=[w for w, _ in sql_examples()])
def test_every_documented_example_returns_rows(demo, where, stmt):
    with duckdb.connect(str(demo), read_only=True) as con:
        rows = con.execute(stmt).fetchall()
    assert rows, f"{where}: no rows on the demo warehouse"


def test_every_column_of_every_table_and_view_has_a_comment(demo):
    with duckdb.connect(str(demo), read_only=True) as con:
        missing = con.execute(
            "SELECT schema_name || '.' || table_name || '.' || column_name FROM duckdb_columns() "
            "WHERE database_name = current_database() AND schema_name IN ('stg', 'core', 'quality', 'mart') "
            "AND (comment IS NULL OR comment = '')").fetchall()
        views = con.execute("SELECT count(*) FROM duckdb_views() WHERE schema_name = 'mart' "
                            "AND database_name = current_database() AND comment IS NOT NULL").fetchone()[0]
    assert missing == []
    assert views >= 11


def test_one_row_per_community_unique_grid_positions_one_row_per_person_and_flat(demo):
    with duckdb.connect(str(demo), read_only=True) as con:
        q = lambda sql: con.execute(sql).fetchall()  # noqa: E731
        # a community is one row, whatever some addresses leave out (its street)
        assert q("SELECT county, community, count(*) FROM mart.community_summary WHERE community IS NOT NULL "
                 "GROUP BY ALL HAVING count(*) > 1") == []
        # the rows add up to every household lived in now, each counted once
        total, = q("SELECT sum(households) FROM mart.community_summary")[0]
        lived_in, = q("SELECT count(DISTINCT address_id) FROM mart.address_residents WHERE is_current")[0]
        assert total == lived_in
        # a grid position is one household, a grid number is within its community
        assert q("SELECT community, seq, count(*) FROM mart.grid GROUP BY ALL HAVING count(*) > 1") == []
        assert q("SELECT community, count(DISTINCT county || coalesce(town, '')) FROM mart.grid "
                 "GROUP BY community HAVING count(DISTINCT county || coalesce(town, '')) > 1") == []
        # one row per person and flat, with every department that says so
        assert q("SELECT person_id, address_id, count(*) FROM mart.address_residents GROUP BY ALL "
                 "HAVING count(*) > 1") == []
        pairs, = q("SELECT count(DISTINCT (person_id, address_id)) FROM core.person_address")[0]
        assert q("SELECT count(*) FROM mart.address_residents")[0][0] == pairs
        multi, = q("SELECT count(*) FROM mart.address_residents WHERE len(source_systems) > 1")[0]
        assert multi > 0


def test_addresses_say_whether_they_lie_in_the_district_in_force(demo):
    with duckdb.connect(str(demo), read_only=True) as con:
        q = lambda sql, *p: con.execute(sql, list(p)).fetchall()  # noqa: E731
        (district,), = q("SELECT county_code FROM quality.district ORDER BY decided_at DESC LIMIT 1")
        inside, outside = q("SELECT count(*) FILTER (WHERE in_district), count(*) FILTER (WHERE NOT in_district) "
                            "FROM mart.address")[0]
        assert inside > 0 and outside > 0        # the demo has hukou addresses elsewhere
        assert q("SELECT count(*) FROM mart.address WHERE in_district IS DISTINCT FROM (county_code = ?)",
                 district) == [(0,)]
        assert q("SELECT count(*) FROM mart.address_residents r JOIN mart.address a USING (address_id) "
                 "WHERE r.in_district IS DISTINCT FROM a.in_district") == [(0,)]
