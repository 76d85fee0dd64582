"""Issue 11: the analysts' de-identified file, attacked with what the officer file knows.

The generated district is synced once; the analyst file next to the warehouse is then
searched for identifiers (ID pattern, mobiles, names, birth dates, the pieces of a masked
ID) and the attacks of docs/DEIDENTIFICATION.md are run against it."""

from __future__ import annotations

import re
from pathlib import Path

import duckdb
import pandas as pd
import pytest

import synth
from flows import Selection, run_sync
from settings import load_settings
from warehouse.analyst import TABLES, pseudonym

SECRET = "analyst-test-secret"
ENV = {"RESIDENTS_PSEUDONYM_KEY": SECRET}
ID_18 = re.compile(r"\d{17}[\dXx]")
ID_15 = re.compile(r"(?<!\d)\d{15}(?!\d)")
MOBILE = re.compile(r"(?<!\d)1[3-9]\d{9}(?!\d)")


@pytest.fixture(scope="module")
def synced(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("analyst")
    inbox = root / "inbox"
    synth.generate(inbox, households=60, seed=21, noise="realistic", days=2)
    wh = root / "warehouse.duckdb"
    settings = load_settings(inbox=inbox, warehouse=wh, lock_timeout_s=30, env=ENV)
    assert run_sync(settings).status == "succeeded"
    return wh, settings.resolved_analyst_warehouse()


@pytest.fixture(scope="module")
def analyst_tables(synced) -> dict[str, pd.DataFrame]:
    _wh, analyst = synced
    con = duckdb.connect(str(analyst), read_only=True)
    try:
        names = [r[0] for r in con.execute("SELECT table_name FROM duckdb_tables() ORDER BY 1").fetchall()]
        return {n: con.execute(f"SELECT * FROM {n}").df() for n in names}
    finally:
        con.close()


@pytest.fixture(scope="module")
def officer(synced) -> pd.DataFrame:
    wh, _ = synced
    con = duckdb.connect(str(wh), read_only=True)
    try:
        return con.execute("SELECT person_id, citizen_id, name, birth_date, phone FROM core.person").df()
    finally:
        con.close()


def _text_cells(df: pd.DataFrame) -> pd.DataFrame:
    return df.astype(str)


def test_the_analyst_file_is_published_next_to_the_warehouse_with_the_declared_tables(synced, analyst_tables):
    wh, analyst = synced
    assert analyst == wh.with_name("warehouse.analyst.duckdb") and analyst.exists()
    assert set(analyst_tables) == {t.name for t in TABLES} | {"build_info"}
    assert len(analyst_tables["person"]) > 50
    con = duckdb.connect(str(analyst), read_only=True)
    undocumented = con.execute("SELECT table_name, column_name FROM duckdb_columns() "
                               "WHERE NOT internal AND database_name = current_database() AND (comment IS NULL OR comment = '')").fetchall()
    schemas = {r[0] for r in con.execute("SELECT DISTINCT schema_name FROM duckdb_tables() WHERE database_name = current_database()").fetchall()}
    con.close()
    assert not undocumented
    assert schemas == {"main"}  # no core, stg or quality in the analyst file


def test_no_id_pattern_no_mobile_and_no_masked_id_in_any_column(analyst_tables):
    for name, df in analyst_tables.items():
        for col, values in _text_cells(df).items():
            assert not values.str.contains(ID_18).any(), (name, col)
            assert not values.str.contains(ID_15).any(), (name, col)
            assert not values.str.contains(MOBILE).any(), (name, col)
            assert not values.str.contains(r"\d{2,}\*{3,}|\*{3,}\d{2,}", regex=True).any(), (name, col)


def test_no_name_of_the_officer_warehouse_appears(analyst_tables, officer):
    names = set(officer["name"].dropna().astype(str))
    long_names = [n for n in names if len(n) >= 3]
    pattern = re.compile("|".join(map(re.escape, long_names))) if long_names else None
    for name, df in analyst_tables.items():
        for col, values in _text_cells(df).items():
            assert not values.isin(names).any(), (name, col)
            if pattern is not None:
                assert not values.str.contains(pattern).any(), (name, col)


def test_person_keys_are_keyed_hashes_stable_across_runs_and_hide_the_person_id(synced, analyst_tables, officer):
    keys = set(analyst_tables["person"]["person_key"])
    assert keys == {pseudonym(SECRET.encode(), p) for p in officer["person_id"]}
    # without the secret, the plain hash of the person id (or of the ID) does not give the key
    import hashlib

    some = officer.iloc[0]
    assert "K" + hashlib.sha256(some["person_id"].encode()).hexdigest()[:20] not in keys
    for name, df in analyst_tables.items():
        for col, values in _text_cells(df).items():
            assert not values.str.contains(r"P\d{10}", regex=True).any(), (name, col)
    # a second sync (a decision republishes too) keeps every key
    wh, analyst = synced
    settings = load_settings(warehouse=wh, inbox=wh.parent / "inbox", lock_timeout_s=30, env=ENV)
    assert run_sync(settings, selection=Selection(full=True)).status == "succeeded"
    con = duckdb.connect(str(analyst), read_only=True)
    again = {r[0] for r in con.execute("SELECT person_key FROM person").fetchall()}
    con.close()
    assert again == keys


def _per_person_values(tables: dict[str, pd.DataFrame]) -> dict[str, set[str]]:
    """Every value the analyst file holds about each person (all rows naming its key)."""
    out: dict[str, set[str]] = {}
    for df in tables.values():
        key_cols = [c for c in df.columns if c.endswith("person_key")]
        for kc in key_cols:
            sub = df[df[kc].notna()]
            cells = sub.astype(str)
            for key, row in zip(sub[kc], cells.itertuples(index=False)):
                out.setdefault(key, set()).update(row)
    return out


def test_reconstruction_no_piece_of_an_id_birth_date_or_phone_is_in_a_persons_rows(analyst_tables, officer):
    """The issue's attack generalised: everything the analyst file says about a person,
    searched for the pieces an ID is built from (the 8 birth-date digits, the last 4,
    the date itself), the whole ID and the phone."""
    values = _per_person_values(analyst_tables)
    checked = 0
    for r in officer.itertuples(index=False):
        key = pseudonym(SECRET.encode(), r.person_id)
        held = values.get(key, set())
        pieces = set()
        if isinstance(r.citizen_id, str) and len(r.citizen_id) == 18:
            pieces |= {r.citizen_id, r.citizen_id[6:14], r.citizen_id[-4:], r.citizen_id[10:14], r.citizen_id[-6:]}
        if pd.notna(r.birth_date):
            d = pd.Timestamp(r.birth_date)
            pieces |= {d.strftime("%Y%m%d"), d.strftime("%Y-%m-%d"), d.strftime("%m%d"), str(d.date())}
        if isinstance(r.phone, str) and r.phone:
            pieces |= {r.phone, r.phone[-4:]}
        found = pieces & held
        assert not found, (r.person_id, found)
        checked += bool(pieces)
    assert checked > 50


def test_region_plus_birth_date_rebuild_finds_nothing(analyst_tables, officer):
    """The mart attack on the analyst file: region code (6 digits) + birth date + the
    masked tail. Region codes are there (addresses), but no person date finer than the
    month exists: every date column of a table about persons is the first of a month,
    and the person table has the birth year only."""
    for name, df in analyst_tables.items():
        if not any(c.endswith("person_key") for c in df.columns):
            continue
        for col in df.columns:
            s = df[col]
            if pd.api.types.is_datetime64_any_dtype(s) or (s.dropna().map(type).astype(str).str.contains("date").any()):
                days = pd.to_datetime(s.dropna()).dt.day
                assert (days == 1).all(), (name, col)
    person = analyst_tables["person"]
    assert "birth_date" not in person.columns and "birth_year" in person.columns
    # candidates an attacker still faces for one person with region and birth year known:
    # 365 days x 500 sequence numbers of the right gender parity, one check digit each
    assert 365 * 500 > 10_000


def test_small_cells_single_out_no_identifier(analyst_tables, officer):
    """Uniqueness: even a person alone in their (birth year, gender, ethnicity, community)
    cell is only a key; the officer facts that would name them (ID, name, phone, exact
    date) are absent (tested above). Here: the cells are reported, and the person table
    has no column whose value is unique to a person other than the key itself."""
    person = analyst_tables["person"]
    pa = analyst_tables["person_address"]
    addr = analyst_tables["address"][["address_id", "community"]]
    current = pa[pa["is_current"]].merge(addr, on="address_id").drop_duplicates("person_key")[["person_key", "community"]]
    cells = person.merge(current, on="person_key", how="left")
    sizes = cells.groupby(["birth_year", "gender", "ethnicity", "community"], dropna=False)["person_key"].transform("size")
    print(f"k-anonymity cells: {int((sizes == 1).sum())} of {len(cells)} persons alone in their cell")
    # no column but the key can tell persons apart by itself: each has few values,
    # whatever the population (years of birth, bands, codes, counts)
    for col in person.columns:
        if col == "person_key":
            continue
        assert person[col].astype(str).nunique() <= 150, col


def test_the_analyst_file_has_no_free_text_address_and_nothing_below_the_building(analyst_tables, synced):
    address = analyst_tables["address"]
    for col in ("standard_text", "house_number", "unit", "floor", "room", "rural_group", "example_raw_text",
                "address_key"):
        assert col not in address.columns
    wh, _ = synced
    con = duckdb.connect(str(wh), read_only=True)
    texts = {r[0] for r in con.execute(
        "SELECT standard_text FROM core.address UNION SELECT raw_text FROM core.address_xref "
        "UNION SELECT current_address FROM core.person WHERE current_address IS NOT NULL").fetchall() if r[0]}
    con.close()
    for name, df in analyst_tables.items():
        for col, values in _text_cells(df).items():
            assert not values.isin(texts).any(), (name, col)


def test_a_publish_without_the_analyst_file_makes_the_next_one_build_it_in_full(synced, tmp_path):
    """The analyst file is updated in place only when it was built from the previous
    publish: a change published without it (here a bare `store.transaction`) is caught by
    `quality.publish`, and the next publish builds the file in full."""
    import shutil

    from flows import apply_decisions
    from tests.e2e_helpers import assert_analyst_file_is_a_fresh_build
    from warehouse import store
    from warehouse.decisions import link_persons

    wh0, analyst0 = synced
    wh = tmp_path / "warehouse.duckdb"
    shutil.copy2(wh0, wh)
    shutil.copy2(analyst0, wh.with_name("warehouse.analyst.duckdb"))
    with store.transaction(wh) as con:
        con.execute("UPDATE core.person SET ethnicity = '测试族' WHERE person_id = (SELECT min(person_id) FROM core.person)")
    settings = load_settings(inbox=wh0.parent / "inbox", warehouse=wh, lock_timeout_s=30, env=ENV)
    con = duckdb.connect(str(wh), read_only=True)
    pa, pb = (r[0] for r in con.execute("SELECT person_id FROM core.person ORDER BY person_id DESC LIMIT 2").fetchall())
    con.close()
    apply_decisions(settings, lambda c: link_persons(c, pa, pb, decided_by="测试员", reason="同一人"))
    assert assert_analyst_file_is_a_fresh_build(settings, tmp_path / "fresh") == "full"
    con = duckdb.connect(str(settings.resolved_analyst_warehouse()), read_only=True)
    try:
        assert con.execute("SELECT why_full FROM build_info").fetchall() == [("missed_publish",)]
        assert con.execute("SELECT count(*) FROM person WHERE ethnicity = '测试族'").fetchall()[0][0] == 1
    finally:
        con.close()
