"""Officers' decisions: must-link / cannot-link survive every later run; the review
workbook goes out in Chinese and comes back as decisions."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import duckdb
import openpyxl
import pandas as pd
import pytest
from typer.testing import CliRunner

import synth
from cli import app
from flows import Selection, apply_decisions
from settings import load_settings
from tests.e2e_helpers import assert_analyst_file_is_a_fresh_build, sync
from warehouse import store
from warehouse.decisions import link_persons, unlink

pytestmark = pytest.mark.slow
runner = CliRunner()


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("decisions")
    synth.generate(root / "inbox", households=60, seed=21, noise="realistic", days=3)
    wh = root / "w.duckdb"
    sync(root / "inbox", wh)
    return root / "inbox", wh


def person_of(wh: Path, mention_id: str) -> str:
    con = duckdb.connect(str(wh), read_only=True)
    try:
        return con.execute("SELECT person_id FROM core.person_xref WHERE mention_id = ?", [mention_id]).fetchall()[0][0]
    finally:
        con.close()


def two_mentions_of_one_person(wh: Path) -> tuple[str, str]:
    con = duckdb.connect(str(wh), read_only=True)
    try:
        rows = con.execute("SELECT person_id, list(mention_id ORDER BY mention_id) FROM core.person_xref "
                           "GROUP BY 1 HAVING count(*) >= 2 ORDER BY 1 LIMIT 1").fetchall()
    finally:
        con.close()
    return rows[0][1][0], rows[0][1][1]


def two_singletons(wh: Path) -> tuple[str, str]:
    con = duckdb.connect(str(wh), read_only=True)
    try:
        rows = con.execute("SELECT min(mention_id) FROM core.person_xref GROUP BY person_id "
                           "HAVING count(*) = 1 ORDER BY 1 LIMIT 2").fetchall()
    finally:
        con.close()
    return rows[0][0], rows[1][0]


def test_cannot_link_splits_and_holds_on_every_later_run(base, tmp_path):
    inbox, loaded = base
    wh = tmp_path / "w.duckdb"
    shutil.copy2(loaded, wh)
    shutil.copy2(loaded.with_name("w.analyst.duckdb"), wh.with_name("w.analyst.duckdb"))
    a, b = two_mentions_of_one_person(wh)
    settings = load_settings(inbox=inbox, warehouse=wh, env={})
    apply_decisions(settings, lambda con: unlink(con, a, b, decided_by="测试员", reason="不同人"))
    assert person_of(wh, a) != person_of(wh, b)
    # the analyst file follows the split person only, and equals a fresh build
    assert assert_analyst_file_is_a_fresh_build(settings, tmp_path / "analyst") == "incremental"
    # a plain nightly run and a full reload both keep the decision
    sync(inbox, wh)
    assert person_of(wh, a) != person_of(wh, b)
    sync(inbox, wh, Selection(sources=("low_income", "civil_affairs", "floating_population", "family_planning"),
                              force=True))
    assert person_of(wh, a) != person_of(wh, b)
    con = duckdb.connect(str(wh), read_only=True)
    log = con.execute("SELECT event FROM core.person_merge_log").fetchall()
    who = con.execute("SELECT decided_by, reason, decision FROM core.link_decision").fetchall()
    con.close()
    assert ("split",) in log
    assert ("测试员", "不同人", "cannot_link") in who


def test_must_link_merges_keeps_the_older_id_and_holds(base, tmp_path):
    inbox, loaded = base
    wh = tmp_path / "w.duckdb"
    shutil.copy2(loaded, wh)
    shutil.copy2(loaded.with_name("w.analyst.duckdb"), wh.with_name("w.analyst.duckdb"))
    a, b = two_singletons(wh)
    pa, pb = person_of(wh, a), person_of(wh, b)
    settings = load_settings(inbox=inbox, warehouse=wh, env={})
    apply_decisions(settings, lambda con: link_persons(con, pa, pb, decided_by="测试员"))
    assert person_of(wh, a) == person_of(wh, b) == min(pa, pb)
    assert assert_analyst_file_is_a_fresh_build(settings, tmp_path / "analyst") == "incremental"
    sync(inbox, wh, Selection(sources=("low_income",), force=True))
    assert person_of(wh, a) == person_of(wh, b) == min(pa, pb)


def test_linking_two_persons_joins_every_record_of_both_when_the_first_has_no_id(base, tmp_path):
    """`residents link PA PB` of persons with different citizen IDs, PA's first record
    holding no ID (joined to PA by its score): every record of both becomes one person.
    The must-link is recorded on the records that carry the IDs (`decision_mention`); on
    PA's first record it took that record alone to PB and left PA's others behind, kept
    apart by the two IDs (found at 400 households: 611 → 611 persons, 7 + 2 records)."""
    inbox, loaded = base
    wh = tmp_path / "w.duckdb"
    shutil.copy2(loaded, wh)
    shutil.copy2(loaded.with_name("w.analyst.duckdb"), wh.with_name("w.analyst.duckdb"))
    con = duckdb.connect(str(wh), read_only=True)
    try:
        first_without_id = con.execute("""
            SELECT p.person_id FROM core.person p
            JOIN stg.mention m ON m.mention_id = (SELECT min(mention_id) FROM core.person_xref x
                                                  WHERE x.person_id = p.person_id)
            WHERE p.citizen_id IS NOT NULL AND m.citizen_id IS DISTINCT FROM p.citizen_id
            ORDER BY p.person_id LIMIT 1""").fetchall()
        assert first_without_id, "the fixture's district has no person whose first record lacks the ID"
        pa = first_without_id[0][0]
        pb = con.execute("SELECT min(person_id) FROM core.person WHERE citizen_id IS NOT NULL AND person_id <> ? "
                         "AND citizen_id <> (SELECT citizen_id FROM core.person WHERE person_id = ?)",
                         [pa, pa]).fetchall()[0][0]
        records = [r[0] for r in con.execute("SELECT mention_id FROM core.person_xref WHERE person_id IN (?, ?)",
                                             [pa, pb]).fetchall()]
        persons = con.execute("SELECT count(*) FROM core.person").fetchall()[0][0]
    finally:
        con.close()
    settings = load_settings(inbox=inbox, warehouse=wh, env={})
    apply_decisions(settings, lambda c: link_persons(c, pa, pb, decided_by="测试员", reason="同一人"))
    assert {person_of(wh, m) for m in records} == {min(pa, pb)}
    with duckdb.connect(str(wh), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM core.person").fetchall()[0][0] == persons - 1


def test_review_workbook_round_trip(base, tmp_path):
    inbox, loaded = base
    wh = tmp_path / "w.duckdb"
    shutil.copy2(loaded, wh)
    # make sure the queue holds at least one pair, whatever the linkage found in this inbox
    a0, b0 = two_singletons(wh)
    with store.transaction(wh) as con:
        con.execute("INSERT INTO core.match_candidate VALUES (?, ?, NULL, NULL, 0.7, 1.2, 'uncertain', NULL)",
                    [a0, b0])
    out = tmp_path / "review.xlsx"
    r = runner.invoke(app, ["review", "export", "-w", str(wh), "--out", str(out)])
    assert r.exit_code == 0, r.output
    sheet = pd.read_excel(out, sheet_name="待复核", dtype=str, engine="openpyxl")
    assert {"记录A编号", "记录B编号", "匹配概率", "复核原因", "是否同一人（填 是/否）"} <= set(sheet.columns)
    assert not sheet.empty
    # codes as labels, dates as dates
    assert set(sheet["A性别"].dropna()) | set(sheet["B性别"].dropna()) <= {"男", "女", "未知的性别", "未说明的性别"}
    assert set(sheet["A来源"].dropna()) <= {"民政", "低保", "流动人口", "计生"}
    ws = openpyxl.load_workbook(out)["待复核"]
    header = [c.value for c in ws[1]]
    births = [ws.cell(row=i, column=header.index("A出生日期") + 1) for i in range(2, ws.max_row + 1)]
    assert any(c.value is not None for c in births) and all(c.is_date for c in births if c.value is not None)
    sheet.loc[0, "是否同一人（填 是/否）"] = "否"
    sheet.loc[0, "决定人"] = "复核员"
    filled = tmp_path / "filled.xlsx"
    with pd.ExcelWriter(filled) as w:
        sheet.to_excel(w, sheet_name="待复核", index=False)
    r = runner.invoke(app, ["review", "import", str(filled), "-w", str(wh)])
    assert r.exit_code == 0, r.output
    a, b = sheet.loc[0, "记录A编号"], sheet.loc[0, "记录B编号"]
    assert person_of(wh, a) != person_of(wh, b)
    sheet.loc[1 if len(sheet) > 1 else 0, "是否同一人（填 是/否）"] = "也许"
    with pd.ExcelWriter(filled) as w:
        sheet.to_excel(w, sheet_name="待复核", index=False)
    r = runner.invoke(app, ["review", "import", str(filled), "-w", str(wh)])
    assert r.exit_code != 0 and "只能填 是 或 否" in r.output


def test_explain_shows_fields_and_weights(base):
    _inbox, wh = base
    a, _b = two_mentions_of_one_person(wh)
    r = runner.invoke(app, ["explain", person_of(wh, a), "-w", str(wh)])
    assert r.exit_code == 0, r.output
    for zh in ("出生日期", "合计", "先验", "匹配方式", "完全相同"):
        assert zh in r.output, zh
    # level and method codes are shown by their Chinese labels
    assert not re.search(r"\b(exact|region_birth|same_flat|probabilistic|singleton|civil_affairs)\b", r.output)


def decisions_of(wh: Path) -> list[tuple]:
    con = duckdb.connect(str(wh), read_only=True)
    try:
        return con.execute("SELECT decision, is_active, reason FROM core.link_decision ORDER BY decided_at").fetchall()
    finally:
        con.close()


def test_link_contradicting_an_earlier_cannot_link_is_refused_unless_forced_with_a_reason(base, tmp_path):
    inbox, loaded = base
    wh = tmp_path / "w.duckdb"
    shutil.copy2(loaded, wh)
    a, b = two_mentions_of_one_person(wh)
    r = runner.invoke(app, ["unlink", a, b, "--by", "甲", "--reason", "证件不同", "-w", str(wh)])
    assert r.exit_code == 0, r.output
    pa, pb = person_of(wh, a), person_of(wh, b)
    assert pa != pb
    r = runner.invoke(app, ["link", pa, pb, "--by", "乙", "-w", str(wh)])
    assert r.exit_code == 1
    assert "矛盾" in r.output and "甲" in r.output and "--force" in r.output
    assert person_of(wh, a) != person_of(wh, b)          # the earlier decision still holds
    r = runner.invoke(app, ["link", pa, pb, "--by", "乙", "--force", "-w", str(wh)])
    assert r.exit_code == 1 and "--reason" in r.output   # overruling needs a reason
    r = runner.invoke(app, ["link", pa, pb, "--by", "乙", "--force", "--reason", "核实为同一人", "-w", str(wh)])
    assert r.exit_code == 0, r.output
    assert person_of(wh, a) == person_of(wh, b)
    history = decisions_of(wh)
    assert ("cannot_link", False, "证件不同") in history and ("must_link", True, "核实为同一人") in history


def test_unlink_contradicting_a_link_is_refused_unless_forced_and_restores_the_previous_ids(base, tmp_path):
    inbox, loaded = base
    wh = tmp_path / "w.duckdb"
    shutil.copy2(loaded, wh)
    a, b = two_singletons(wh)
    pa, pb = person_of(wh, a), person_of(wh, b)
    r = runner.invoke(app, ["link", pa, pb, "--by", "甲", "--reason", "同一人", "-w", str(wh)])
    assert r.exit_code == 0, r.output
    assert person_of(wh, a) == person_of(wh, b) == min(pa, pb)
    r = runner.invoke(app, ["unlink", a, b, "--by", "乙", "-w", str(wh)])
    assert r.exit_code == 1 and "矛盾" in r.output
    assert person_of(wh, a) == person_of(wh, b)
    r = runner.invoke(app, ["unlink", a, b, "--by", "乙", "--force", "--reason", "核实不是同一人", "-w", str(wh)])
    assert r.exit_code == 0, r.output
    assert (person_of(wh, a), person_of(wh, b)) == (pa, pb)   # each record back under its previous id
    history = decisions_of(wh)
    assert ("must_link", False, "同一人") in history and ("cannot_link", True, "核实不是同一人") in history
    sync(inbox, wh)                                          # and a later run keeps it so
    assert (person_of(wh, a), person_of(wh, b)) == (pa, pb)


def test_the_linkage_index_is_complete_only_with_a_row_for_exactly_the_current_mentions(base, tmp_path):
    from warehouse.linkage_index import is_complete

    _inbox, loaded = base
    wh = tmp_path / "w.duckdb"
    shutil.copy2(loaded, wh)
    a, _b = two_singletons(wh)
    with duckdb.connect(str(wh)) as con:
        assert is_complete(con)
        con.execute("UPDATE stg.linkage_feature SET unique_id = 'x|gone' WHERE unique_id = ?", [a])
        assert not is_complete(con)                       # as many rows, one of them stale
        con.execute("UPDATE stg.linkage_feature SET unique_id = ? WHERE unique_id = 'x|gone'", [a])
        assert is_complete(con)
        con.execute("DELETE FROM stg.mention WHERE mention_id = ?", [a])
        assert not is_complete(con)                       # a mention gone without a resolution


def test_a_decision_on_an_incomplete_linkage_index_fills_it_first(base, tmp_path):
    """A decision stages nothing, so it takes a complete linkage index as current and
    skips refreshing it; an index missing rows (a warehouse just migrated) is refilled
    before the decision is applied."""
    inbox, loaded = base
    wh = tmp_path / "w.duckdb"
    shutil.copy2(loaded, wh)
    a, b = two_singletons(wh)
    with duckdb.connect(str(wh)) as con:
        con.execute("DELETE FROM stg.linkage_feature WHERE unique_id IN (?, ?)", [a, b])
    r = runner.invoke(app, ["link", a, b, "--by", "甲", "--reason", "同一人", "-w", str(wh)])
    assert r.exit_code == 0, r.output
    assert person_of(wh, a) == person_of(wh, b)
    with duckdb.connect(str(wh), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM stg.linkage_feature WHERE unique_id IN (?, ?)", [a, b]
                           ).fetchall()[0][0] == 2
