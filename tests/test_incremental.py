"""The work of a sync follows what changed (issue "Cost follows the change").

A run of nightly increments, each re-clustering only the new mentions and the persons
they touch (`resolution.resolve_locally`), gives the same warehouse as one full rebuild of
the same exports, up to the arrival order of person ids (tests/e2e_helpers.snapshot
with canonical ids). Officers' decisions are applied to the persons they name.
"""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import duckdb
import pytest

import synth
from flows import Selection, apply_decisions, run_sync
from settings import load_settings
from tests.e2e_helpers import (COMPARED_TABLES, assert_analyst_file_is_a_fresh_build, assert_same, copy_inbox_until,
                               export_days, snapshot)

#: the core tables, and the findings a scoped run refreshes for the persons it touched
TABLES = [*COMPARED_TABLES, "quality.finding"]

pytestmark = pytest.mark.slow


def _settings(inbox: Path, wh: Path):
    # incremental at any size (the default keeps small warehouses on exact full runs)
    return load_settings(inbox=inbox, warehouse=wh, lock_timeout_s=30, incremental_min_mentions=0,
                         incremental_max_growth=100.0)


@pytest.fixture(scope="module")
def inbox(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("inc") / "inbox"
    synth.generate(out, households=300, seed=23, noise="realistic")
    return out


@pytest.fixture(scope="module")
def full(inbox, tmp_path_factory) -> Path:
    wh = tmp_path_factory.mktemp("full") / "w.duckdb"
    summary = run_sync(_settings(inbox, wh), selection=Selection(full=True))
    assert summary.resolution_mode == "full"
    return wh


def test_nightly_increments_equal_a_full_rebuild(inbox, full, tmp_path):
    daily, wh = tmp_path / "daily", tmp_path / "w.duckdb"
    days = export_days(inbox)
    half = days[len(days) // 2]
    copy_inbox_until(inbox, daily, half)
    assert run_sync(_settings(daily, wh)).resolution_mode == "full"   # the first load
    modes, analyst_modes = [], []
    for day in [d for d in days if d > half]:
        copy_inbox_until(inbox, daily, day)
        summary = run_sync(_settings(daily, wh))
        if summary.status != "unchanged":
            modes.append(summary.resolution_mode)
            # the analyst file, updated for the persons the night touched, equals a fresh build
            analyst_modes.append(assert_analyst_file_is_a_fresh_build(_settings(daily, wh), tmp_path / str(day)))
    assert len(modes) >= 2 and set(modes) == {"incremental"}, modes
    assert set(analyst_modes) == {"incremental"}, analyst_modes
    a, b = snapshot(full, TABLES, canonical_ids=True), snapshot(wh, TABLES, canonical_ids=True)
    # the documented difference: increments score with the stored model (trained on the
    # first load), a rebuild with one trained on everything; probabilities of the same
    # links differ in far decimals, the links do not
    pa, pb = (x["core.person_xref"].pop("match_probability").astype(float) for x in (a, b))
    assert_same(a, b)
    assert ((pa - pb).abs().fillna(0) < 1e-3).all() and (pa.isna() == pb.isna()).all()


def _change_family_planning(inbox: Path) -> None:
    """A night's family-planning changes: corrected names and phones, a spouse's ID
    removed, retractions (SCBZ = 1), each with a newer GXSJ."""
    db = next((inbox / "family_planning").glob("*.sqlite"))
    con = sqlite3.connect(db)
    try:
        later = "2099-01-01 08:00:00"
        con.execute("UPDATE T_YLFN SET XM = XM || '娟', GXSJ = ? WHERE YLFN_ID IN "
                    "(SELECT YLFN_ID FROM T_YLFN WHERE SCBZ = 0 ORDER BY YLFN_ID LIMIT 3)", [later])
        con.execute("UPDATE T_YLFN SET LXDH = '13800000000', POSFZH = NULL, GXSJ = ? WHERE YLFN_ID IN "
                    "(SELECT YLFN_ID FROM T_YLFN WHERE SCBZ = 0 ORDER BY YLFN_ID LIMIT 3 OFFSET 10)", [later])
        con.execute("UPDATE T_YLFN SET SCBZ = 1, GXSJ = ? WHERE YLFN_ID IN "
                    "(SELECT YLFN_ID FROM T_YLFN WHERE SCBZ = 0 ORDER BY YLFN_ID DESC LIMIT 2)", [later])
        con.execute("UPDATE T_ZN SET SCBZ = 1, GXSJ = ? WHERE ZN_ID IN "
                    "(SELECT ZN_ID FROM T_ZN WHERE SCBZ = 0 ORDER BY ZN_ID LIMIT 2)", [later])
        con.commit()
    finally:
        con.close()


def test_database_changes_applied_incrementally_equal_a_rebuild(inbox, tmp_path):
    """Upserted and retracted family-planning records (changed mentions) re-cluster
    their persons; `sync --full` of the same staged exports gives the same warehouse."""
    work, wh, rebuilt = tmp_path / "inbox", tmp_path / "w.duckdb", tmp_path / "rebuilt.duckdb"
    shutil.copytree(inbox, work)
    run_sync(_settings(work, wh))
    _change_family_planning(work)
    summary = run_sync(_settings(work, wh))
    assert summary.resolution_mode == "incremental"
    assert {e.source_object for e in summary.loaded} == {"T_YLFN", "T_ZN"}
    # retracted and corrected records: the analyst file follows the persons they touched
    assert assert_analyst_file_is_a_fresh_build(_settings(work, wh), tmp_path / "analyst") == "incremental"
    _assert_a_rebuild_gives_the_same(work, wh, rebuilt)


def _assert_a_rebuild_gives_the_same(inbox: Path, wh: Path, rebuilt: Path) -> None:
    """`sync --full` of a copy of `wh` (the same staged exports and decisions) gives the
    same warehouse, up to id renaming and the match probabilities' far decimals."""
    shutil.copy2(wh, rebuilt)
    assert run_sync(_settings(inbox, rebuilt), selection=Selection(full=True)).resolution_mode == "full"
    a, b = snapshot(rebuilt, TABLES, canonical_ids=True), snapshot(wh, TABLES, canonical_ids=True)
    for x in (a, b):
        x["core.person_xref"].pop("match_probability")
    assert_same(a, b)


def test_a_rebuild_of_a_full_load_changes_nothing(inbox, full, tmp_path):
    """`--full` on a warehouse built by a full load: the same persons, the same ids."""
    wh = tmp_path / "w.duckdb"
    shutil.copy2(full, wh)
    summary = run_sync(_settings(inbox, wh), selection=Selection(full=True))
    assert summary.resolution_mode == "full" and summary.persons_created == 0
    assert_same(snapshot(full), snapshot(wh))


def test_linkage_index_holds_exactly_the_current_mentions(full):
    con = duckdb.connect(str(full), read_only=True)
    try:
        missing, extra, stale = con.execute("""
            SELECT (SELECT count(*) FROM stg.mention m ANTI JOIN stg.linkage_feature f ON f.unique_id = m.mention_id),
                   (SELECT count(*) FROM stg.linkage_feature f ANTI JOIN stg.mention m ON f.unique_id = m.mention_id),
                   (SELECT count(*) FROM stg.mention m JOIN stg.linkage_feature f ON f.unique_id = m.mention_id
                    WHERE f.export_id <> m.export_id)""").fetchall()[0]
    finally:
        con.close()
    assert (missing, extra, stale) == (0, 0, 0)


def _older_warehouse(full: Path, wh: Path, version: int, *undo: str) -> None:
    """`full` copied to `wh` as a warehouse of schema `version`: `undo` reverts what the
    later migrations changed."""
    shutil.copy2(full, wh)
    con = duckdb.connect(str(wh))
    try:
        for stmt in undo:
            con.execute(stmt)
        con.execute("DELETE FROM quality.schema_version WHERE version > ?", [version])
    finally:
        con.close()


def _sync_changes_no_person(inbox: Path, full: Path, wh: Path) -> None:
    summary = run_sync(_settings(inbox, wh))
    assert summary.status == "succeeded" and summary.persons_created == 0
    test_linkage_index_holds_exactly_the_current_mentions(wh)
    assert_same(snapshot(full), snapshot(wh))


def test_a_warehouse_from_before_the_index_gets_it_on_the_next_sync(inbox, full, tmp_path):
    """Schema v1 had no linkage index: the next sync, with nothing new, migrates the
    warehouse and fills the index without changing a person."""
    wh = tmp_path / "w.duckdb"
    _older_warehouse(full, wh, 1, "DROP TABLE stg.linkage_feature")
    _sync_changes_no_person(inbox, full, wh)
    assert run_sync(_settings(inbox, wh)).status == "unchanged"


def test_a_warehouse_from_before_sole_in_household_gets_its_index_refilled(inbox, full, tmp_path):
    """Schema v6 added `stg.linkage_feature.sole_in_household`: a v5 warehouse has its
    index emptied by the migration and refilled by the next sync (with nothing new),
    every person unchanged and the feature as a fresh build computes it."""
    wh = tmp_path / "w.duckdb"
    query = "SELECT unique_id, sole_in_household FROM stg.linkage_feature ORDER BY 1"
    with duckdb.connect(str(full), read_only=True) as con:
        expected = con.execute(query).fetchall()
    assert any(v is True for _, v in expected) and any(v is None for _, v in expected)
    _older_warehouse(full, wh, 5, "ALTER TABLE stg.linkage_feature DROP COLUMN sole_in_household")
    _sync_changes_no_person(inbox, full, wh)
    with duckdb.connect(str(wh), read_only=True) as con:
        assert con.execute(query).fetchall() == expected


def _copy_of_full(inbox: Path, full: Path, tmp_path: Path):
    """A copy of the full load (warehouse and analyst file) to apply decisions to, the path
    its rebuild goes to, and its settings."""
    wh, rebuilt = tmp_path / "w.duckdb", tmp_path / "rebuilt.duckdb"
    shutil.copy2(full, wh)
    shutil.copy2(full.with_name("w.analyst.duckdb"), wh.with_name("w.analyst.duckdb"))
    return wh, rebuilt, _settings(inbox, wh)


def test_decisions_applied_to_the_persons_they_name_equal_a_rebuild(inbox, full, tmp_path):
    """An officer's link and unlink stage nothing: the scoped build skips the searches for
    records gone from staging and derives again only the persons named (and what follows
    from them); `sync --full` with the same decisions gives the same warehouse."""
    from warehouse.decisions import link_persons, unlink

    wh, rebuilt, settings = _copy_of_full(inbox, full, tmp_path)
    con = duckdb.connect(str(wh), read_only=True)
    try:
        # two persons with family-planning, roster or floating records and addresses, and
        # a person of two mentions to split
        # (a must-link between two valid IDs would be refused by the ID constraint)
        pa = con.execute("SELECT min(person_id) FROM core.fp_woman WHERE person_id IN "
                         "(SELECT person_id FROM core.person_address)").fetchall()[0][0]
        pb = con.execute("SELECT min(person_id) FROM core.person WHERE citizen_id IS NULL AND person_id <> ? "
                         "AND person_id IN (SELECT person_id FROM core.person_address)", [pa]).fetchall()[0][0]
        a, b = con.execute("SELECT list(mention_id ORDER BY mention_id) FROM core.person_xref x "
                           "WHERE person_id NOT IN (?, ?) AND EXISTS (SELECT 1 FROM core.person_address pa "
                           "WHERE pa.person_id = x.person_id) "
                           "GROUP BY person_id HAVING count(*) = 2 ORDER BY person_id LIMIT 1",
                           [pa, pb]).fetchall()[0][0]
    finally:
        con.close()
    # a queued pair naming pb's record, its person ids stale: the decisions refresh them
    con = duckdb.connect(str(wh))
    try:
        con.execute("INSERT INTO core.match_candidate SELECT min(x.mention_id), ?, 'P9999999998', 'P9999999999', "
                    "0.7, 1.2, 'uncertain', NULL FROM core.person_xref x WHERE x.person_id = ?", [a, pb])
    finally:
        con.close()
    first = apply_decisions(settings, lambda c: link_persons(c, pa, pb, decided_by="测试员"))
    second = apply_decisions(settings, lambda c: unlink(c, a, b, decided_by="测试员", reason="不同人"))
    assert first.resolution_mode == second.resolution_mode == "incremental"
    assert first.persons_after == first.persons_before - 1 and second.persons_after == second.persons_before + 1
    assert assert_analyst_file_is_a_fresh_build(settings, tmp_path / "analyst") == "incremental"
    con = duckdb.connect(str(wh), read_only=True)
    try:
        stale = con.execute("""
            SELECT count(*) FROM core.match_candidate c
            JOIN core.person_xref xa ON xa.mention_id = c.mention_id_a
            JOIN core.person_xref xb ON xb.mention_id = c.mention_id_b
            WHERE c.person_id_a IS DISTINCT FROM xa.person_id OR c.person_id_b IS DISTINCT FROM xb.person_id""").fetchall()
        queued = con.execute("SELECT person_id_a FROM core.match_candidate WHERE mention_id_b = ?", [a]).fetchall()
    finally:
        con.close()
    assert stale == [(0,)] and queued and queued[0][0] == min(pa, pb)  # pb's record is in the merged person
    _assert_a_rebuild_gives_the_same(inbox, wh, rebuilt)


def test_an_unlink_moves_the_roster_lines_of_earlier_months_to_the_split_off_person(inbox, full, tmp_path):
    """Roster lines are derived from staged rows and the persons their mentions belong to.
    An officer's unlink splits a roster head listed in several months: nothing is staged,
    yet the lines of the months that go to the new person (and the households they head)
    must name it — the scoped build re-derives the households of the records whose xref
    the resolution rewrote, not only of the records staged this run."""
    from warehouse.decisions import unlink

    wh, rebuilt, settings = _copy_of_full(inbox, full, tmp_path)
    con = duckdb.connect(str(wh), read_only=True)
    try:
        head, first, last = con.execute("""
            SELECT x.person_id, arg_min(x.mention_id, l.month_start), arg_max(x.mention_id, l.month_start)
            FROM core.low_income_roster_line l
            JOIN core.person_xref x ON x.source_object = l.source_object AND x.source_locator = l.source_locator
                 AND x.role = l.role AND x.person_id = l.person_id
            WHERE l.role = 'head' GROUP BY x.person_id HAVING count(DISTINCT l.month_start) >= 2
            ORDER BY x.person_id LIMIT 1""").fetchall()[0]
    finally:
        con.close()
    summary = apply_decisions(settings, lambda c: unlink(c, first, last, decided_by="测试员", reason="不同人"))
    assert summary.resolution_mode == "incremental" and summary.persons_after > summary.persons_before
    con = duckdb.connect(str(wh), read_only=True)
    try:
        # every line names the person its mention is in now, and its household's head
        stale = con.execute("""
            SELECT count(*) FROM core.low_income_roster_line l
            JOIN core.person_xref x ON x.source_object = l.source_object AND x.source_locator = l.source_locator
                 AND x.role = l.role
            WHERE x.person_id IS DISTINCT FROM l.person_id""").fetchall()[0][0]
        split = con.execute("SELECT count(DISTINCT person_id) FROM core.person_xref WHERE mention_id IN (?, ?)",
                            [first, last]).fetchall()[0][0]
    finally:
        con.close()
    assert split == 2 and stale == 0
    _assert_a_rebuild_gives_the_same(inbox, wh, rebuilt)


def _households(wh: Path, community: str) -> int:
    """The current households of `community` in the analyst file published beside `wh`."""
    c = duckdb.connect(str(wh.with_name("w.analyst.duckdb")), read_only=True)
    try:
        return c.execute("SELECT coalesce(sum(households), 0) FROM community_summary WHERE community = ?",
                         [community]).fetchall()[0][0]
    finally:
        c.close()


def test_the_analyst_aggregates_follow_a_household_that_moved_to_another_community(inbox, tmp_path):
    """A family-planning woman who was the only resident of her flat moves to another
    community: her old community loses a household. Nothing in the warehouse after the sync
    points to that community any more (her record was replaced); only the analyst file
    being updated still does, and the update must derive that community again."""
    work, wh = tmp_path / "inbox", tmp_path / "w.duckdb"
    shutil.copytree(inbox, work)
    run_sync(_settings(work, wh))
    con = duckdb.connect(str(wh), read_only=True)
    try:
        # a woman alone in her flat (by every source), and a flat in another community
        ylfn_id, old_community = con.execute("""
            WITH alone AS (SELECT address_id FROM core.person_address WHERE kind IN ('residence', 'household')
                           GROUP BY address_id HAVING count(DISTINCT person_id) = 1)
            SELECT w.ylfn_id, a.community FROM core.fp_woman w
            JOIN core.person_address pa ON pa.person_id = w.person_id AND pa.kind = 'residence'
            JOIN alone USING (address_id) JOIN core.address a USING (address_id)
            WHERE a.community IS NOT NULL AND w.person_id NOT IN (
                SELECT person_id FROM core.person_address WHERE kind IN ('residence', 'household')
                GROUP BY person_id HAVING count(DISTINCT address_id) > 1)
            ORDER BY w.ylfn_id LIMIT 1""").fetchall()[0]
        new_text, = con.execute("SELECT standard_text FROM core.address WHERE community IS NOT NULL "
                                "AND community <> ? AND status = 'parsed' ORDER BY address_id LIMIT 1",
                                [old_community]).fetchall()[0]
    finally:
        con.close()

    before = _households(wh, old_community)
    db = next((work / "family_planning").glob("*.sqlite"))
    lite = sqlite3.connect(db)
    try:
        lite.execute("UPDATE T_YLFN SET XJZDZ = ?, GXSJ = '2099-01-01 08:00:00' WHERE YLFN_ID = ?",
                     [new_text, int(ylfn_id)])
        lite.commit()
    finally:
        lite.close()
    assert run_sync(_settings(work, wh)).resolution_mode == "incremental"
    assert assert_analyst_file_is_a_fresh_build(_settings(work, wh), tmp_path / "analyst") == "incremental"
    assert _households(wh, old_community) == before - 1


def test_the_analyst_aggregates_follow_an_address_whose_community_changed_under_the_same_residents(inbox,
                                                                                                 tmp_path):
    """A flat known from one family-planning record only: its woman's record is written
    again naming another community of the same street. The flat keeps its id (社区 never
    enters the address key) and its resident, so no current residence changed; the
    address row did (community), and the households of both communities must follow."""
    work, wh = tmp_path / "inbox", tmp_path / "w.duckdb"
    shutil.copytree(inbox, work)
    run_sync(_settings(work, wh))
    con = duckdb.connect(str(wh), read_only=True)
    try:
        ylfn_id, address_id, old_community, new_community = con.execute("""
            WITH only_one AS (SELECT address_id FROM core.address_xref GROUP BY address_id
                              HAVING count(DISTINCT (source_object, source_locator)) = 1)
            SELECT w.ylfn_id, a.address_id, a.community, o.community
            FROM core.fp_woman w
            JOIN core.person_address pa ON pa.person_id = w.person_id AND pa.kind = 'residence'
                 AND pa.valid_to IS NULL AND pa.source_system = 'family_planning'
            JOIN only_one USING (address_id) JOIN core.address a USING (address_id)
            JOIN core.person p ON p.person_id = w.person_id AND NOT coalesce(p.is_deceased, FALSE)
            JOIN (SELECT DISTINCT county, town, community FROM core.address WHERE community IS NOT NULL) o
                 ON o.county = a.county AND o.town = a.town AND o.community <> a.community
            WHERE a.status = 'parsed' AND a.community IS NOT NULL
            ORDER BY w.ylfn_id, o.community LIMIT 1""").fetchall()[0]
    finally:
        con.close()

    before_old, before_new = _households(wh, old_community), _households(wh, new_community)
    db = next((work / "family_planning").glob("*.sqlite"))
    lite = sqlite3.connect(db)
    try:
        # every address of her record naming the flat (her 户籍 may be the same flat)
        lite.execute("UPDATE T_YLFN SET XJZDZ = replace(XJZDZ, ?1, ?2), HJDZ = replace(HJDZ, ?1, ?2), "
                     "GXSJ = '2099-01-01 08:00:00' WHERE YLFN_ID = ?3", [old_community, new_community, int(ylfn_id)])
        lite.commit()
    finally:
        lite.close()
    assert run_sync(_settings(work, wh)).resolution_mode == "incremental"
    con = duckdb.connect(str(wh), read_only=True)
    try:
        assert con.execute("SELECT community FROM core.address WHERE address_id = ?",
                           [address_id]).fetchall() == [(new_community,)]
    finally:
        con.close()
    assert assert_analyst_file_is_a_fresh_build(_settings(work, wh), tmp_path / "analyst") == "incremental"
    assert (_households(wh, old_community), _households(wh, new_community)) == (before_old - 1, before_new + 1)


def _next_roster_month(work: Path, edit=None) -> str:
    """The last 低保 month saved again as the next month (other bytes, the same rows),
    `edit(sheet, columns, header_row)` applied to each of its sheets first (`columns`:
    header → 1-based column; `header_row`: the header's row number); returns the new
    file's name."""
    import openpyxl

    last = sorted((work / "low_income").glob("*.xlsx"))[-1]
    month = int(last.stem[-6:])
    name = f"{last.stem[:-6]}{month + 1 if month % 100 < 12 else month + 89}.xlsx"
    wb = openpyxl.load_workbook(last)
    for sheet in wb.worksheets if edit else []:
        header_row = next(r for r in sheet.iter_rows(min_row=1, max_row=6) if any(c.value == "成员姓名" for c in r))
        edit(sheet, {c.value: c.column for c in header_row if c.value}, header_row[0].row)
    wb.save(last.with_name(name))
    return name


def _sync_recording_scored(work: Path, wh: Path, monkeypatch, source_object: str) -> tuple[dict[str, str], set[str]]:
    """Sync; the new mentions of `source_object` with their match methods, and the
    mentions the model scored as new ones."""
    from pipelines.linkage.model import LinkageModel

    scored: set[str] = set()
    original = LinkageModel.predict_new

    def recording(self, new_lf, existing_lf, **kw):
        scored.update(new_lf["unique_id"].astype(str))
        return original(self, new_lf, existing_lf, **kw)

    monkeypatch.setattr(LinkageModel, "predict_new", recording)
    assert run_sync(_settings(work, wh)).resolution_mode == "incremental"
    con = duckdb.connect(str(wh), read_only=True)
    try:
        new = dict(con.execute("""
            SELECT x.mention_id, x.match_method FROM core.person_xref x JOIN stg.mention m USING (mention_id)
            WHERE m.source_object = ?""", [source_object]).fetchall())
    finally:
        con.close()
    return new, scored


def test_a_roster_month_restating_the_last_one_joins_its_persons_unscored_and_equals_a_rebuild(inbox, tmp_path,
                                                                                                monkeypatch):
    """A 低保 month that repeats the last one word for word (the same rows, a new file):
    its mentions with a valid ID are restatements — they join their persons by that ID
    without being blocked or scored (`linkage_index.restatements`) — and the warehouse
    equals `sync --full` of the same exports."""
    work, wh, rebuilt = tmp_path / "inbox", tmp_path / "w.duckdb", tmp_path / "rebuilt.duckdb"
    shutil.copytree(inbox, work)
    run_sync(_settings(work, wh))
    new, scored = _sync_recording_scored(work, wh, monkeypatch, _next_roster_month(work))
    unscored = set(new) - scored
    # most of the month restates the last one (a row whose household changed does not)
    assert len(unscored) > len(new) / 2, (len(unscored), len(new))
    assert {new[m] for m in unscored} == {"citizen_id"}
    _assert_a_rebuild_gives_the_same(work, wh, rebuilt)


@pytest.mark.parametrize("shared_weighs_more", [True, False])
def test_a_roster_month_missing_a_relatives_id_still_restates_the_last_one_and_equals_a_rebuild(
        inbox, tmp_path, monkeypatch, shared_weighs_more):
    """The next 低保 month with the household head's own ID left out of its member row
    (the way months of a roster most often differ): the other members now relate to
    the head by name and birth date only — their relatives' keys (``ctx``) a part of
    last month's — and they still restate last month's mentions unscored (scored, they
    could only weigh less than their twins did); the head, without an ID, is scored.
    Under a model that weighed relatives shared *below* relatives different, fewer keys
    could weigh more: those members are scored instead. Either way the warehouse equals
    `sync --full` of the same exports."""
    from pipelines.linkage.model import LinkageModel

    work, wh, rebuilt = tmp_path / "inbox", tmp_path / "w.duckdb", tmp_path / "rebuilt.duckdb"
    shutil.copytree(inbox, work)
    run_sync(_settings(work, wh))
    if not shared_weighs_more:
        trained = LinkageModel.level_weight
        reversed_context = {"shared": -1.0, "different": 0.0}
        monkeypatch.setattr(LinkageModel, "level_weight", lambda self, c, lv: reversed_context[lv]
                            if c == "context" else trained(self, c, lv))

    def drop_head_ids(sheet, col, header_row):
        for row in range(header_row + 1, sheet.max_row + 1):
            if sheet.cell(row, col["与户主关系"]).value in ("户主", "本人"):
                sheet.cell(row, col["成员身份证号"]).value = None

    name = _next_roster_month(work, drop_head_ids)
    new, scored = _sync_recording_scored(work, wh, monkeypatch, name)
    con = duckdb.connect(str(wh), read_only=True)
    try:
        # members whose relatives' keys are a strict part of a twin's, and no other mention
        # of theirs has the same keys (a month that also lacked the head's ID)
        partial = {r[0] for r in con.execute("""
            SELECT n.unique_id FROM stg.linkage_feature n JOIN stg.linkage_feature o
              ON o.cid = n.cid AND o.source_object <> n.source_object
            WHERE n.source_object = ? AND len(n.ctx) > 0 AND list_has_all(o.ctx, n.ctx)
              AND len(o.ctx) > len(n.ctx)
            EXCEPT SELECT n.unique_id FROM stg.linkage_feature n JOIN stg.linkage_feature o
              ON o.cid = n.cid AND o.source_object <> n.source_object AND o.ctx = n.ctx
            WHERE n.source_object = ?""", [name, name]).fetchall()}
        heads = {r[0] for r in con.execute("SELECT unique_id FROM stg.linkage_feature WHERE source_object = ? "
                                           "AND cid IS NULL", [name]).fetchall()}
    finally:
        con.close()
    assert len(partial) > 10, len(partial)
    if shared_weighs_more:
        assert partial <= set(new) and not (partial & scored), sorted(partial & scored)[:5]
    else:
        assert partial <= scored, sorted(partial - scored)[:5]
    assert {new[m] for m in partial} == {"citizen_id"}
    assert heads and heads <= scored
    _assert_a_rebuild_gives_the_same(work, wh, rebuilt)
