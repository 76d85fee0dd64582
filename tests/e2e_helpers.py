"""Helpers for the end-to-end tests: generated inboxes, syncs, warehouse snapshots."""

from __future__ import annotations

import re
import shutil
import sqlite3
from pathlib import Path

import duckdb
import pandas as pd

from connectors import discover_exports
from flows import Selection, run_sync
from settings import load_settings

#: core tables compared between two warehouses; columns that record *when* or *which
#: run* are left out (they differ between two runs by design)
VOLATILE_COLUMNS = {"logged_at", "run_id", "export_id"}
COMPARED_TABLES = [
    "core.person", "core.person_xref", "core.address", "core.address_xref", "core.person_address",
    "core.relationship", "core.marriage_registration", "core.cremation", "core.low_income_roster_line",
    "core.low_income_enrolment", "core.floating_registration", "core.floating_registration_history",
    "core.fp_woman", "core.fp_child", "core.alert", "core.person_merge_log",
]


def sync(inbox: Path, warehouse: Path, selection: Selection = Selection(), **kw):
    settings = load_settings(inbox=inbox, warehouse=warehouse, lock_timeout_s=30)
    return run_sync(settings, selection=selection, **kw)


PERSON_ID = re.compile(r"P\d{10}")


def snapshot(warehouse: Path, tables: list[str] = COMPARED_TABLES, *,
             canonical_ids: bool = False) -> dict[str, pd.DataFrame]:
    """Every compared table, volatile columns dropped, rows in a canonical order.

    `canonical_ids`: replace each person id by the smallest mention id of its person.
    Loading the same exports in a different arrival order (day by day vs at once)
    issues ids in a different order — ids never change once issued — so such
    warehouses are equal up to this renaming (and their merge logs differ)."""
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        rename = {}
        if canonical_ids:
            rename = dict(con.execute("SELECT person_id, min(mention_id) FROM core.person_xref GROUP BY 1").fetchall())
            tables = [t for t in tables if t != "core.person_merge_log"]
        out = {}
        for t in tables:
            df = con.execute(f"SELECT * FROM {t}").df()
            df = df.drop(columns=[c for c in df.columns if c in VOLATILE_COLUMNS]).astype(str)
            if rename:
                for c in df.columns:
                    if df[c].str.contains(PERSON_ID, regex=True).any():
                        df[c] = df[c].str.replace(PERSON_ID, lambda m: rename.get(m.group(0), m.group(0)), regex=True)
            out[t] = df.sort_values(list(df.columns)).reset_index(drop=True)
        return out
    finally:
        con.close()


def assert_same(a: dict[str, pd.DataFrame], b: dict[str, pd.DataFrame]) -> None:
    for t in a:
        pd.testing.assert_frame_equal(a[t], b[t], obj=t)


def truth_mentions(inbox: Path) -> pd.DataFrame:
    return pd.read_csv(inbox / "_truth" / "mentions.csv", dtype=str, keep_default_na=False)


def retracted_locators(inbox: Path) -> set[tuple[str, str]]:
    """(table, primary key) of family-planning rows with SCBZ = 1."""
    db = next((inbox / "family_planning").glob("*.sqlite"))
    con = sqlite3.connect(db)
    try:
        rows = [("T_YLFN", str(r[0])) for r in con.execute("SELECT YLFN_ID FROM T_YLFN WHERE SCBZ = 1")]
        rows += [("T_ZN", str(r[0])) for r in con.execute("SELECT ZN_ID FROM T_ZN WHERE SCBZ = 1")]
        return set(rows)
    finally:
        con.close()


def copy_inbox_until(src: Path, dst: Path, day) -> None:
    """The part of a generated inbox that had arrived by `day` (file exports by date; the
    family-planning database as a whole)."""
    for ef in discover_exports(src).files:
        if ef.export_date <= day:
            target = dst / ef.path.relative_to(src)
            target.parent.mkdir(parents=True, exist_ok=True)
            if not target.exists():
                shutil.copy2(ef.path, target)
    fp = dst / "family_planning"
    if not fp.exists():
        shutil.copytree(src / "family_planning", fp)


def export_days(inbox: Path) -> list:
    return sorted({ef.export_date for ef in discover_exports(inbox).files})


def analyst_build_mode(settings) -> str:
    """How the last publish wrote the analyst file (build_info.mode)."""
    con = duckdb.connect(str(settings.resolved_analyst_warehouse()), read_only=True)
    try:
        return con.execute("SELECT mode FROM build_info").fetchall()[0][0]
    finally:
        con.close()


def assert_analyst_file_is_a_fresh_build(settings, work: Path) -> str:
    """The published analyst file (however the last publish wrote it: updated in place for
    the persons a scoped sync touched, or in full) holds exactly what a full build from
    the published officer warehouse holds; returns how it was written."""
    from warehouse import analyst

    work.mkdir(parents=True, exist_ok=True)
    copy, fresh = work / "officer-copy.duckdb", work / "fresh.analyst.duckdb"
    shutil.copyfile(settings.warehouse, copy)
    con = duckdb.connect(str(copy))
    try:
        analyst.build(con, fresh, settings.resolved_pseudonym_key(), grid_households=settings.grid_households)
    finally:
        con.close()
    published = duckdb.connect(str(settings.resolved_analyst_warehouse()), read_only=True)
    rebuilt = duckdb.connect(str(fresh), read_only=True)
    try:
        for table in analyst.TABLES:
            a, b = (c.execute(f"SELECT * FROM {table.name} ORDER BY ALL NULLS FIRST").df()
                    for c in (published, rebuilt))
            pd.testing.assert_frame_equal(a, b, check_dtype=False, obj=f"analyst.{table.name}")
    finally:
        published.close()
        rebuilt.close()
    return analyst_build_mode(settings)
