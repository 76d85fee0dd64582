"""End to end on a generated inbox: lineage, idempotency, kill safety, day-by-day,
backfill, alerts. Runs the sync without Prefect (`run_sync`); the Prefect flow itself
is exercised once in test_flow_prefect.py."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pandas as pd
import pytest

import synth
from flows import Selection
from tests.e2e_helpers import (
    assert_same, copy_inbox_until, export_days, retracted_locators, snapshot, sync, truth_mentions,
)

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def inbox(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("inbox") / "inbox"
    synth.generate(out, households=150, seed=11, noise="realistic")
    return out


@pytest.fixture(scope="module")
def loaded(inbox, tmp_path_factory) -> Path:
    wh = tmp_path_factory.mktemp("wh") / "warehouse.duckdb"
    summary = sync(inbox, wh)
    assert summary.status == "succeeded"
    return wh


def test_every_truth_mention_is_loaded_exactly_once_with_its_lineage(inbox, loaded):
    expected = truth_mentions(inbox)
    retracted = retracted_locators(inbox)
    con = duckdb.connect(str(loaded), read_only=True)
    xref = con.execute("SELECT source_system, source_object, source_locator, role, person_id, is_retracted "
                       "FROM core.person_xref").df()
    con.close()
    # mentions of soft-deleted family-planning rows stay, flagged as retracted
    flagged = {(o, l) for o, l, r in zip(xref.source_object, xref.source_locator, xref.is_retracted) if r}
    assert flagged == retracted
    key = ["source_system", "source_object", "source_locator", "role"]
    assert not xref.duplicated(key).any()
    merged = expected[key].merge(xref[key + ["person_id"]], on=key, how="outer", indicator=True)
    missing = merged[merged["_merge"] == "left_only"]
    extra = merged[merged["_merge"] == "right_only"]
    assert missing.empty, f"mentions in the truth but not loaded:\n{missing.head(10)}"
    assert extra.empty, f"mentions loaded but not in the truth:\n{extra.head(10)}"


def test_counts_add_up_per_export(loaded):
    con = duckdb.connect(str(loaded), read_only=True)
    bad = con.execute(
        "SELECT source_object, rows_read, rows_accepted, rows_rejected FROM quality.load_ledger "
        "WHERE status = 'loaded' AND rows_read <> rows_accepted + rows_rejected").fetchall()
    rejected_rows = con.execute(
        "SELECT l.export_id, l.rows_rejected, count(DISTINCT r.source_locator) FILTER (WHERE r.is_row_rejected) "
        "FROM quality.load_ledger l LEFT JOIN quality.rejected_record r USING (export_id) "
        "WHERE l.status = 'loaded' GROUP BY ALL HAVING l.rows_rejected <> count(DISTINCT r.source_locator) "
        "FILTER (WHERE r.is_row_rejected)").fetchall()
    con.close()
    assert bad == []
    assert rejected_rows == []


def test_excel_corrupted_ids_are_quarantined_and_never_a_key(inbox, loaded):
    truth = truth_mentions(inbox)
    corrupted = truth[truth["id_quirk"].isin(["excel_scientific", "excel_truncated", "excel_numeric_cell", "typo"])]
    assert len(corrupted) > 0
    con = duckdb.connect(str(loaded), read_only=True)
    m = con.execute("SELECT source_object, source_locator, role, citizen_id, id_status FROM stg.mention").df()
    rejected = con.execute("SELECT source_object, source_locator, raw_value FROM quality.rejected_record").df()
    con.close()
    j = corrupted.merge(m, on=["source_object", "source_locator", "role"])
    assert len(j) == len(corrupted)
    assert j["citizen_id"].isna().all(), j[j["citizen_id"].notna()]
    flagged = corrupted.merge(rejected, left_on=["source_object", "source_locator", "id_written"],
                              right_on=["source_object", "source_locator", "raw_value"])
    assert len(flagged.drop_duplicates(["source_object", "source_locator", "role"])) == len(corrupted)


def test_second_sync_of_the_same_inbox_changes_no_row(inbox, loaded, tmp_path):
    wh = tmp_path / "again.duckdb"
    shutil.copy2(loaded, wh)
    before = snapshot(wh)
    summary = sync(inbox, wh)
    assert all(e.status in ("duplicate", "unchanged") for e in summary.exports), summary.exports
    assert_same(before, snapshot(wh))
    con = duckdb.connect(str(wh), read_only=True)
    ledger_rows = con.execute("SELECT count(*) FROM quality.load_ledger").fetchall()[0][0]
    con.close()
    con = duckdb.connect(str(loaded), read_only=True)
    assert ledger_rows == con.execute("SELECT count(*) FROM quality.load_ledger").fetchall()[0][0]
    con.close()


def test_injected_failure_leaves_warehouse_as_before_and_rerun_completes(inbox, loaded, tmp_path):
    wh = tmp_path / "w.duckdb"
    half = tmp_path / "half"
    copy_inbox_until(inbox, half, export_days(inbox)[0])
    sync(half, wh)
    before = (wh.read_bytes())
    with pytest.raises(RuntimeError, match="injected"):
        sync(inbox, wh, fail_before_publish=True)
    assert wh.read_bytes() == before
    sync(inbox, wh)
    assert_same(snapshot(loaded, canonical_ids=True), snapshot(wh, canonical_ids=True))


def test_sigkill_mid_load_leaves_warehouse_as_before_and_rerun_equals_clean_load(inbox, loaded, tmp_path):
    wh = tmp_path / "w.duckdb"
    half = tmp_path / "half"
    copy_inbox_until(inbox, half, export_days(inbox)[0])
    sync(half, wh)
    before = wh.read_bytes()
    code = ("import sys; from tests.e2e_helpers import sync; from pathlib import Path; "
            "sync(Path(sys.argv[1]), Path(sys.argv[2]))")
    proc = subprocess.Popen([sys.executable, "-c", code, str(inbox), str(wh)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    building = wh.with_name(wh.name + ".building")
    deadline = time.monotonic() + 120
    while not building.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, "the sync finished before it could be killed"
    time.sleep(1.0)  # well inside the load
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert wh.read_bytes() == before
    sync(inbox, wh)  # the rerun discards the stale working copy and completes the load
    assert_same(snapshot(loaded, canonical_ids=True), snapshot(wh, canonical_ids=True))


def test_day_by_day_sync_equals_one_shot_sync(inbox, loaded, tmp_path):
    daily_inbox = tmp_path / "daily"
    wh = tmp_path / "daily.duckdb"
    for day in export_days(inbox):
        copy_inbox_until(inbox, daily_inbox, day)
        sync(daily_inbox, wh)
    assert_same(snapshot(loaded, canonical_ids=True), snapshot(wh, canonical_ids=True))


def test_backfill_of_a_range_equals_the_original_load(inbox, loaded, tmp_path):
    wh = tmp_path / "w.duckdb"
    shutil.copy2(loaded, wh)
    days = export_days(inbox)
    for source in ("floating_population", "low_income", "civil_affairs", "family_planning"):
        summary = sync(inbox, wh, Selection(sources=(source,), since=days[0] - dt.timedelta(days=400),
                                            until=days[-1], force=True))
        assert summary.status == "succeeded"
        assert any(e.status == "loaded" for e in summary.exports), source
    assert_same(snapshot(loaded), snapshot(wh))


def test_every_deceased_person_on_a_later_roster_is_alerted(inbox, loaded):
    truth = truth_mentions(inbox)
    persons = pd.read_csv(inbox / "_truth" / "persons.csv", dtype=str, keep_default_na=False)
    deaths = persons[persons["death_date"] != ""][["person_key", "death_date"]]
    con = duckdb.connect(str(loaded), read_only=True)
    lines = con.execute("SELECT source_object, source_locator, month_start FROM core.low_income_roster_line").df()
    xref = con.execute("SELECT source_object, source_locator, role, person_id FROM core.person_xref").df()
    alerts = con.execute("SELECT person_id FROM mart.alerts WHERE alert_kind = 'deceased_receiving_benefit'").df()
    con.close()
    roster = truth[truth["source_system"] == "low_income"].merge(deaths, on="person_key")
    roster = roster.merge(lines, on=["source_object", "source_locator"])
    after = roster[pd.to_datetime(roster["month_start"]) > pd.to_datetime(roster["death_date"])]
    assert len(after) > 0, "the generated inbox should hold a deceased person on a later roster"
    flagged = after.merge(xref, on=["source_object", "source_locator", "role"])
    missing = set(flagged["person_id"]) - set(alerts["person_id"])
    assert not missing, f"deceased on later rosters without an alert: {missing}"


def test_analyst_views_mask_ids_and_phones(loaded):
    con = duckdb.connect(str(loaded), read_only=True)
    views = [r[0] for r in con.execute(
        "SELECT schema_name || '.' || view_name FROM duckdb_views() WHERE schema_name = 'mart'").fetchall()]
    assert "mart.alerts" in views
    for v in views:
        df = con.execute(f"SELECT * FROM {v}").df()
        text = df.astype(str)
        for col in text.columns:
            assert not text[col].str.contains(r"\b\d{17}[\dX]\b", regex=True).any(), (v, col)
            assert not text[col].str.contains(r"\b1[3-9]\d{9}\b", regex=True).any(), (v, col)
    con.close()


USABLE_QUIRKS = {"clean", "lowercase_x", "fullwidth", "spaces", "apostrophe", "old15"}
CORRUPTED_QUIRKS = {"excel_scientific", "excel_truncated", "excel_numeric_cell", "typo"}


def test_usable_ids_are_recovered_and_corrupted_ones_never_accepted(inbox, loaded):
    from tests.benchmarks.id_recovery import id_recovery

    fig = id_recovery(inbox, loaded)
    assert fig["usable"] > 0 and fig["corrupted"] > 0
    assert fig["usable_recovered"] / fig["usable"] >= 0.999, fig
    assert fig["corrupted_accepted"] == 0, fig
    assert fig["corrupted_flagged"] == fig["corrupted"], fig


def test_address_mentions_of_one_flat_share_one_address_id(inbox, loaded):
    """Pairwise over address mentions in the warehouse: same flat ⇔ same address_id."""
    import itertools

    truth = pd.read_csv(inbox / "_truth" / "addresses.csv", dtype=str, keep_default_na=False)
    con = duckdb.connect(str(loaded), read_only=True)
    xref = con.execute("SELECT source_object, source_locator, field, address_id FROM core.address_xref").df()
    con.close()
    j = truth.merge(xref, on=["source_object", "source_locator", "field"])
    assert len(j) >= 0.98 * len(truth), "address mentions of the truth missing from core.address_xref"

    def pairs(groups: pd.Series) -> set[tuple[int, int]]:
        out: set[tuple[int, int]] = set()
        for idx in groups.groupby(groups).groups.values():
            out |= set(itertools.combinations(sorted(idx), 2))
        return out

    true_pairs, found = pairs(j["flat_key"]), pairs(j["address_id"])
    tp = len(true_pairs & found)
    precision = tp / len(found) if found else 1.0
    recall = tp / len(true_pairs) if true_pairs else 1.0
    f1 = 2 * precision * recall / (precision + recall)
    assert f1 >= 0.99, (precision, recall, f1)
    assert precision >= 0.999, "two different flats share an address_id"


def test_foreign_documents_are_kept_as_documents_not_id_errors(inbox, loaded):
    truth = truth_mentions(inbox)
    foreign = truth[truth["id_quirk"] == "foreign_document"]
    assert len(foreign) > 0
    con = duckdb.connect(str(loaded), read_only=True)
    m = con.execute("SELECT source_object, source_locator, role, document_type, document_number, citizen_id "
                    "FROM stg.mention").df()
    q = con.execute("SELECT source_object, source_locator, raw_value FROM quality.rejected_record "
                    "WHERE error_code LIKE 'id_%'").df()
    con.close()
    j = foreign.merge(m, on=["source_object", "source_locator", "role"])
    assert len(j) == len(foreign)
    assert (j["document_type"] != "resident_id").all(), j
    assert (j["document_number"] == j["id_written"].str.strip()).all(), j
    flagged = j.merge(q, left_on=["source_object", "source_locator", "id_written"],
                      right_on=["source_object", "source_locator", "raw_value"])
    assert flagged.empty, flagged
