"""Warehouse invariants in SQL (`warehouse.quality.check_invariants`): each kind of check
on a small consistent scratch warehouse, corrupted one way per test."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from warehouse import quality
from warehouse.migrations import create_declared

RUN = "r1"
PERSONS = [f"P{i:010d}" for i in range(1, 11)]


def _insert(con: duckdb.DuckDBPyConnection, table: str, rows: list[dict]) -> None:
    cols = list(rows[0])
    con.executemany(f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                    [[r[c] for c in cols] for r in rows])


def _without_constraints(con: duckdb.DuckDBPyConnection, table: str) -> None:
    """The table as it would be if its key were lost (what the invariants guard against)."""
    con.execute(f"CREATE OR REPLACE TABLE {table} AS SELECT * FROM {table}")


@pytest.fixture
def con() -> Iterator[duckdb.DuckDBPyConnection]:
    """Ten persons with one mention each, two addresses, a cremation, a roster line and
    two exports of the same file source (8 → 10 rows: within the 50% threshold)."""
    c = duckdb.connect()
    create_declared(c)
    _insert(c, "core.person", [
        {"person_id": p, "citizen_id": f"11010519800101{i:03d}X", "name": f"人{i}", "gender": "12"[i % 2],
         "birth_date": "1980-01-01", "ethnicity": "01", "marital_status": "20"} for i, p in enumerate(PERSONS, 1)])
    where = {"source_system": "civil_affairs", "source_object": "火化信息_20261121.csv"}
    _insert(c, "stg.mention", [{"export_id": 2, **where, "source_locator": str(i), "mention_id": f"m{i}",
                                "role": "deceased"} for i in range(1, 11)])
    _insert(c, "core.person_xref", [{**where, "source_locator": str(i), "role": "deceased", "mention_id": f"m{i}",
                                     "person_id": p, "match_method": "exact_id"} for i, p in enumerate(PERSONS, 1)])
    _insert(c, "core.address", [{"address_id": "A1"}, {"address_id": "A2"}])
    _insert(c, "core.address_xref", [{**where, "source_locator": "1", "field": "address", "address_id": "A1"},
                                     {**where, "source_locator": "2", "field": "address", "address_id": None}])
    _insert(c, "core.person_address", [{"person_id": PERSONS[0], "address_id": "A1", "kind": "hukou",
                                        "source_system": "civil_affairs"}])
    _insert(c, "core.cremation", [{**where, "source_locator": "1", "cremation_no": "HH1", "person_id": PERSONS[0]}])
    roster = {"source_system": "civil_affairs", "source_object": "低保花名册_202611.xlsx", "month": "2026-11",
              "month_start": "2026-11-01", "category": "A"}
    _insert(c, "core.low_income_roster_line", [{**roster, "source_locator": "Sheet1!3", "person_id": PERSONS[1],
                                                "role": "head", "relationship_to_head": "02"}])
    _insert(c, "quality.load_ledger", [
        {"export_id": i, "run_id": run, "source_system": "civil_affairs", "mapping": "火化信息",
         "source_object": f"火化信息_2026112{i}.csv", "content_sha256": str(i), "status": "loaded", "rows_read": n,
         "loaded_at": "2026-11-21 08:00:00"} for i, run, n in [(1, "r0", 8), (2, RUN, 10)]])
    yield c
    c.close()


def _check(res: pd.DataFrame, target: str, column: str, expectation: str | None = None) -> pd.Series:
    rows = res[(res["target"] == target) & (res["column_name"] == column)]
    if expectation:
        rows = rows[rows["expectation"] == expectation]
    assert len(rows) == 1, rows
    return rows.iloc[0]


def _failed(res: pd.DataFrame) -> set[tuple[str, str, str]]:
    bad = res[~res["success"]]
    return set(zip(bad["target"], bad["column_name"], bad["expectation"]))


def _examples(row: pd.Series) -> list:
    return json.loads(row["unexpected_examples"])


UNIQUE, NOT_NULL, IN_SET = quality.UNIQUE, quality.NOT_NULL, quality.IN_SET


# ------------------------------------------------------------------------ shape
def test_result_columns_are_those_of_the_expectation_suites():
    from pipelines.expectations import RESULT_COLUMNS

    assert quality.RESULT_COLUMNS == RESULT_COLUMNS


def test_a_consistent_warehouse_passes_every_check(con):
    res = quality.check_invariants(con, RUN)
    assert list(res.columns) == quality.RESULT_COLUMNS
    assert len(res) == len(quality.warehouse_invariants()) == 42
    assert res["success"].all(), res[~res["success"]]
    assert res["exception"].isna().all() and res["unexpected_examples"].isna().all()
    assert set(res["suite"]) == {"warehouse"}
    person = _check(res, "core.person", "person_id", UNIQUE)
    assert (person["element_count"], person["unexpected_count"], person["unexpected_percent"]) == (10, 0, 0.0)
    # a key the table's PRIMARY KEY enforces is not counted again, and says so; one it does not is
    assert person["observed_value"] == quality.ENFORCED_BY_KEY
    assert pd.isna(_check(res, "core.person", "citizen_id", UNIQUE)["observed_value"])
    change = _check(res, "quality.row_count_change", "change_ratio")
    assert (change["element_count"], change["unexpected_count"]) == (1, 0)


def test_an_empty_warehouse_passes_with_nothing_checked():
    c = duckdb.connect()
    create_declared(c)
    res = quality.check_invariants(c, RUN)
    assert res["success"].all() and (res["element_count"] == 0).all() and (res["unexpected_count"] == 0).all()
    assert res["unexpected_percent"].isna().all()


def test_the_warehouse_path_does_not_import_great_expectations(tmp_path: Path):
    code = """
import sys, duckdb
from warehouse import quality
from warehouse.migrations import create_declared
con = duckdb.connect()
create_declared(con)
con.execute("INSERT INTO core.person (person_id, gender) VALUES ('P1', '7')")
res = quality.check_invariants(con, "r1")
assert not res["success"].all()
leaked = sorted(m for m in sys.modules if m.startswith(("great_expectations", "pipelines")))
assert not leaked, leaked
print("ok")
"""
    out = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).parents[1], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


# ------------------------------------------------------------------------ one corruption each
def test_duplicate_person_id_fails_uniqueness_with_the_id_as_example(con):
    _without_constraints(con, "core.person")
    con.execute(f"INSERT INTO core.person (person_id, name, birth_date) VALUES ('{PERSONS[0]}', '重复', '1980-01-01')")
    res = quality.check_invariants(con, RUN)
    assert _failed(res) == {("core.person", "person_id", UNIQUE)}
    row = _check(res, "core.person", "person_id", UNIQUE)
    assert (row["element_count"], row["unexpected_count"], row["severity"]) == (11, 2, "error")
    assert row["unexpected_percent"] == pytest.approx(2 / 11 * 100)
    assert _examples(row) == [PERSONS[0]]


def test_null_person_id_fails_not_null_and_is_not_a_duplicate(con):
    _without_constraints(con, "core.person")
    con.execute("INSERT INTO core.person (person_id, citizen_id, name, birth_date) "
                "VALUES (NULL, '110105198001010990', '无编号', '1980-01-01'), "
                "(NULL, '110105198001010991', '无编号', '1980-01-01')")
    res = quality.check_invariants(con, RUN)
    assert _failed(res) == {("core.person", "person_id", NOT_NULL)}
    row = _check(res, "core.person", "person_id", NOT_NULL)
    assert (row["element_count"], row["unexpected_count"]) == (12, 2)
    assert row["unexpected_percent"] == pytest.approx(2 / 12 * 100)
    assert row["unexpected_examples"] is None  # nothing to show of a null
    unique = _check(res, "core.person", "person_id", UNIQUE)
    assert (unique["unexpected_count"], unique["unexpected_percent"]) == (0, 0.0)  # nulls are not checked


def test_dangling_address_id_fails_the_reference_and_a_null_one_does_not(con):
    con.execute("INSERT INTO core.person_address VALUES (?, 'A9', 'current', NULL, NULL, 'civil_affairs', NULL)",
                [PERSONS[1]])
    res = quality.check_invariants(con, RUN)
    assert _failed(res) == {("core.person_address", "address_id__exists", IN_SET)}
    row = _check(res, "core.person_address", "address_id__exists")
    assert (row["element_count"], row["unexpected_count"], row["unexpected_percent"]) == (2, 1, 50.0)
    assert _examples(row) == ["A9"]  # the dangling value itself
    assert json.loads(row["kwargs"]) == {"column": "address_id__exists", "value_set": [True]}
    # an address that could not be parsed (null) is not dangling, and counts as checked
    con.execute("INSERT INTO core.address_xref (source_system, source_object, source_locator, field, address_id) "
                "VALUES ('civil_affairs', 'x.csv', '8', 'address', 'A8'), ('civil_affairs', 'x.csv', '9', 'address', NULL)")
    xref = _check(quality.check_invariants(con, RUN), "core.address_xref", "address_id__exists")
    assert (xref["element_count"], xref["unexpected_count"], xref["unexpected_percent"]) == (4, 1, 25.0)
    assert _examples(xref) == ["A8"]


def test_every_mention_resolved_is_answered_by_a_digest_and_checked_row_by_row_when_it_differs(con, monkeypatch):
    """`stg.mention.mention_id` and `core.person_xref.mention_id` hold the same values in a
    consistent warehouse: a digest of the two passes the check without joining them; when
    they differ the check runs on the rows, so a pass, a failure and its examples are
    those of the row-by-row check."""
    digests = []
    real = quality._same_values
    monkeypatch.setattr(quality, "_same_values", lambda c, inv: digests.append(real(c, inv)) or digests[-1])
    resolved = lambda: _check(quality.check_invariants(con, RUN), "stg.mention", "mention_id__exists")  # noqa: E731
    row = resolved()
    assert digests == [(10, 10, 0)] and row["success"] and row["element_count"] == 10
    # an xref row of a mention gone from staging: the digests differ, every mention is still resolved
    con.execute("INSERT INTO core.person_xref (source_system, source_object, source_locator, role, mention_id, "
                "person_id, match_method) VALUES ('civil_affairs', 'x.csv', '1', 'deceased', 'gone', 'P0000000001', "
                "'exact_id')")
    row = resolved()
    assert digests[-1] is None and row["success"] and row["element_count"] == 10
    # as many xref rows as mentions, one of them for another mention: m3 unresolved
    con.execute("DELETE FROM core.person_xref WHERE mention_id = 'm3'")
    row = resolved()
    assert digests[-1] is None and not row["success"] and row["unexpected_count"] == 1
    assert _examples(row) == ["m3"]


def test_deleted_person_leaves_dangling_references_in_every_table(con):
    con.execute("DELETE FROM core.person WHERE person_id = ?", [PERSONS[0]])
    res = quality.check_invariants(con, RUN)
    assert _failed(res) == {("core.person_xref", "person_id__exists", IN_SET),
                            ("core.person_address", "person_id__exists", IN_SET),
                            ("core.cremation", "person_id__exists", IN_SET)}
    assert all(_examples(r) == [PERSONS[0]] for _, r in res[~res["success"]].iterrows())


def test_unknown_codes_and_malformed_ids_fail_with_examples(con):
    con.execute("UPDATE core.person SET gender = '7' WHERE person_id IN (?, ?)", PERSONS[:2])
    con.execute("UPDATE core.person SET gender = NULL, citizen_id = '11010519800101003Y' WHERE person_id = ?",
                [PERSONS[2]])
    con.execute("UPDATE core.low_income_roster_line SET category = 'Z'")
    res = quality.check_invariants(con, RUN)
    assert _failed(res) == {("core.person", "gender", IN_SET), ("core.person", "citizen_id",
                                                                  "expect_column_values_to_match_regex"),
                            ("core.low_income_roster_line", "category", IN_SET)}
    gender = _check(res, "core.person", "gender")
    assert (gender["element_count"], gender["unexpected_count"]) == (10, 2)
    assert gender["unexpected_percent"] == pytest.approx(2 / 9 * 100)  # of the 9 non-null values
    assert _examples(gender) == ["7"]
    regex = _check(res, "core.person", "citizen_id", "expect_column_values_to_match_regex")
    assert regex["unexpected_count"] == 1 and _examples(regex) == ["11010519800101003Y"]
    assert _examples(_check(res, "core.low_income_roster_line", "category")) == ["Z"]


def test_roster_line_loaded_twice_fails_the_compound_key(con):
    con.execute("INSERT INTO core.low_income_roster_line SELECT * FROM core.low_income_roster_line")
    res = quality.check_invariants(con, RUN)
    assert _failed(res) == {("core.low_income_roster_line", "source_object,source_locator,role",
                             "expect_compound_columns_to_be_unique")}
    row = _check(res, "core.low_income_roster_line", "source_object,source_locator,role")
    assert (row["element_count"], row["unexpected_count"]) == (2, 2)
    assert _examples(row) == [{"source_object": "低保花名册_202611.xlsx", "source_locator": "Sheet1!3",
                               "role": "head"}]


def test_mostly_is_the_passing_share_of_checked_values(con):
    con.execute("UPDATE core.person SET name = NULL, birth_date = NULL WHERE person_id = ?", [PERSONS[0]])
    res = quality.check_invariants(con, RUN)
    name = _check(res, "core.person", "name")
    assert not name["success"] and name["severity"] == "warning" and name["unexpected_count"] == 1
    birth = _check(res, "core.person", "birth_date")  # 9 of 10 = exactly the 90% asked for
    assert birth["success"] and birth["unexpected_count"] == 1 and birth["unexpected_percent"] == 10.0
    assert _failed(res) == {("core.person", "name", NOT_NULL)}


def test_row_count_change_beyond_the_threshold_fails_for_the_run_checked(con):
    con.execute("INSERT INTO quality.load_ledger (export_id, run_id, source_system, mapping, source_object, "
                "content_sha256, status, rows_read, loaded_at) VALUES (3, 'r2', 'civil_affairs', '火化信息', "
                "'火化信息_20261123.csv', '3', 'loaded', 1, now())")
    res = quality.check_invariants(con, "r2")
    assert _failed(res) == {("quality.row_count_change", "change_ratio", "expect_column_values_to_be_between")}
    row = _check(res, "quality.row_count_change", "change_ratio")
    assert (row["element_count"], row["unexpected_count"], row["severity"]) == (1, 1, "warning")
    assert _examples(row) == [pytest.approx(0.9)]  # |1 − 10| / 10
    assert quality.check_invariants(con, RUN)["success"].all()  # the earlier run: 8 → 10 rows
    lenient = quality.check_invariants(con, "r2", row_count_change_threshold=0.95)
    assert lenient["success"].all()
    assert "95%" in _check(lenient, "quality.row_count_change", "change_ratio")["description"]


def test_an_expectation_without_sql_is_refused(con):
    odd = quality.Invariant("core.person", "expect_column_mean_to_be_between", {"column": "mention_count"}, "平均")
    with pytest.raises(ValueError, match="expect_column_mean_to_be_between"):
        quality.run_invariants(con, [odd])


# ------------------------------------------------------------------ after a scoped build
def _scope(con: duckdb.DuckDBPyConnection, persons: list[str], addresses: list[str] = ()) -> quality.CheckScope:
    """A scoped build's key tables, as `warehouse.build._record_scope` leaves them."""
    for name, keys in (("scope_p", persons), ("scope_a", addresses)):
        con.execute(f"CREATE OR REPLACE TEMP TABLE {name} (k VARCHAR)")
        if keys:
            con.executemany(f"INSERT INTO {name} VALUES (?)", [[k] for k in keys])
    return quality.CheckScope("scope_p", "scope_a", run_id="r2")


def _record(con: duckdb.DuckDBPyConnection, run_id: str, scope: quality.CheckScope | None = None) -> pd.DataFrame:
    res = quality.check_invariants(con, run_id, scope=scope)
    quality.write_expectation_results(con, res, run_id=run_id)
    return res


@pytest.fixture
def small_scopes(monkeypatch):
    """This scratch warehouse's ten persons: a scope of a few is a large share of them."""
    monkeypatch.setattr(quality, "SCOPED_CHECK_MAX_SHARE", 0.5)


def test_after_a_scoped_build_a_check_that_passed_reads_the_rows_the_build_wrote(con, small_scopes):
    """`CheckScope`: a check that passed last time reads only the rows that name a person
    or an address of the build's scope (or come from this run's exports), and still
    catches what the build broke there — a reference to a person it removed, a new row's
    unknown code, a new value equal to one outside the scope."""
    _record(con, RUN)                                            # a full check: everything passed
    scope = _scope(con, [PERSONS[0], PERSONS[2]])
    res = _record(con, "r2", scope)
    assert res["success"].all()
    xref = _check(res, "core.person_xref", "person_id__exists")
    assert xref["observed_value"] == quality.SCOPED_ONLY and xref["element_count"] == 2
    assert _check(res, "stg.mention", "mention_id__exists")["element_count"] == 10  # no person column: whole
    assert pd.isna(_check(res, "core.person", "name")["observed_value"])            # a share (`mostly`): whole
    # what a scoped build could break, each in its scope
    con.execute("DELETE FROM core.person WHERE person_id = ?", [PERSONS[0]])     # removed, still referred to
    con.execute("UPDATE core.person SET gender = '7' WHERE person_id = ?", [PERSONS[2]])  # an unknown code
    con.execute("UPDATE core.person SET citizen_id = (SELECT citizen_id FROM core.person WHERE person_id = ?) "
                "WHERE person_id = ?", [PERSONS[3], PERSONS[2]])                 # P4's citizen ID, P4 out of scope
    res = _record(con, "r3", scope)
    assert {("core.person_xref", "person_id__exists"), ("core.person_address", "person_id__exists"),
            ("core.cremation", "person_id__exists"), ("core.person", "gender"),
            ("core.person", "citizen_id")} <= {(t, c) for t, c, _ in _failed(res)}
    unique = _check(res, "core.person", "citizen_id", UNIQUE)
    assert unique["unexpected_count"] == 2 and unique["observed_value"] == quality.SCOPED_ONLY


def test_a_check_that_failed_reads_its_whole_table_until_it_passes(con, small_scopes):
    """A failure outside the scope stays reported run after run (the check that found it
    reads its whole table while it fails); a check never run or changed, and every check
    at the first run of a calendar month, reads its whole table too."""
    con.execute("UPDATE core.person SET gender = '7' WHERE person_id = ?", [PERSONS[9]])
    assert ("core.person", "gender", IN_SET) in _failed(_record(con, RUN))
    scope = _scope(con, [PERSONS[0]])
    for run in ("r2", "r3"):
        res = _record(con, run, scope)
        gender = _check(res, "core.person", "gender", IN_SET)
        assert not gender["success"] and pd.isna(gender["observed_value"]) and gender["element_count"] == 10
        assert _check(res, "core.person", "ethnicity", IN_SET)["observed_value"] == quality.SCOPED_ONLY
    con.execute("UPDATE core.person SET gender = '1' WHERE person_id = ?", [PERSONS[9]])  # mended
    assert _check(_record(con, "r4", scope), "core.person", "gender", IN_SET)["success"]
    assert _check(_record(con, "r5", scope), "core.person", "gender", IN_SET)["observed_value"] == quality.SCOPED_ONLY
    # never run before (a new database), or its arguments changed: whole
    fresh = duckdb.connect()
    create_declared(fresh)
    assert (quality.check_invariants(fresh, RUN, scope=_scope(fresh, []))["observed_value"] != quality.SCOPED_ONLY).all()
    con.execute("UPDATE quality.expectation_result SET kwargs = '{\"column\": \"gender\", \"value_set\": [\"1\"]}' "
                "WHERE target = 'core.person' AND column_name = 'gender'")
    assert pd.isna(_check(_record(con, "r6", scope), "core.person", "gender", IN_SET)["observed_value"])
    # the first run of a month reads every table again
    assert _check(_record(con, "r7", scope), "core.person", "ethnicity", IN_SET)["observed_value"] == quality.SCOPED_ONLY
    con.execute("UPDATE quality.expectation_result SET evaluated_at = evaluated_at - INTERVAL 31 DAY")
    res = _record(con, "r8", scope)
    assert res["observed_value"].ne(quality.SCOPED_ONLY).all()
    assert _check(_record(con, "r9", scope), "core.person", "ethnicity", IN_SET)["observed_value"] == quality.SCOPED_ONLY
    # a large scope (here six of the ten persons) is checked whole
    assert _record(con, "r10", _scope(con, PERSONS[:6]))["observed_value"].ne(quality.SCOPED_ONLY).all()
