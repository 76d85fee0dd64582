"""The id_conflict alert of the build (`warehouse.build._ID_CONFLICTS`, `_ALERTS`) on
hand-made person mentions: which differences between departments are a conflict, and
that only those persons are alerted, each with what differs. And how a full build
empties a table (`warehouse.migrations.empty_table`)."""

import re

import duckdb
import pandas as pd
import pytest

from warehouse import build
from warehouse.migrations import create_declared

#: (person, department, name, simplified, pinyin, birth date, valid ID)
MENTIONS = [
    # two departments, two birth dates: a conflict on the birth date
    ("P1", "low_income", "王芳", "王芳", "wangfang", "1980-01-02", True),
    ("P1", "civil_affairs", "王芳", "王芳", "wangfang", "1981-01-02", True),
    # two unrelated names: a conflict on the name
    ("P2", "low_income", "张伟", "张伟", "zhangwei", "1975-05-05", True),
    ("P2", "floating_population", "李娜", "李娜", "lina", "1975-05-05", True),
    # both: one alert naming both
    ("P3", "low_income", "刘洋", "刘洋", "liuyang", "1990-03-03", True),
    ("P3", "family_planning", "陈静", "陈静", "chenjing", "1991-03-03", True),
    # a Traditional spelling (same Simplified form), a homophone, a one-character typo
    ("P4", "low_income", "陳麗", "陈丽", "chenli", "1970-07-07", True),
    ("P4", "civil_affairs", "陈丽", "陈丽", "chenli", "1970-07-07", True),
    ("P5", "low_income", "周影", "周影", "zhouying", "1960-06-06", True),
    ("P5", "civil_affairs", "周颖", "周颖", "zhouying", "1960-06-06", True),
    ("P6", "low_income", "黄晓明", "黄晓明", "huangxiaoming", "1985-08-08", True),
    ("P6", "civil_affairs", "黄小明", "黄小明", "huangxiaoming2", "1985-08-08", True),
    # an invalid ID: nothing to conflict on
    ("P7", "low_income", "赵敏", "赵敏", "zhaomin", "1988-09-09", False),
    ("P7", "civil_affairs", "钱多", "钱多", "qianduo", "1989-09-09", False),
    # two birth dates within one department only: not a conflict between departments
    ("P8", "low_income", "孙丽", "孙丽", "sunli", "1999-01-01", True),
    ("P8", "low_income", "孙丽", "孙丽", "sunli", "1999-01-02", True),
]


@pytest.fixture()
def alerts() -> pd.DataFrame:
    con = duckdb.connect()
    create_declared(con)
    pm = pd.DataFrame(MENTIONS, columns=["person_id", "source_system", "name", "name_simplified", "name_pinyin",
                                         "birth_date", "has_valid_id"])
    pm["birth_date"] = pd.to_datetime(pm["birth_date"]).dt.date
    pm["name_pinyin_alt"] = pd.Series([None] * len(pm), dtype="string")
    pm["source_object"] = pm["source_system"] + ".xlsx"
    pm["source_locator"] = [f"Sheet1!{i + 2}" for i in range(len(pm))]
    con.register("pm_frame", pm)
    con.execute("CREATE TEMP TABLE pm AS SELECT * FROM pm_frame")
    build._run(con, build._ID_CONFLICTS, None)
    build._run(con, build._ALERTS, None)
    out = con.execute("SELECT person_id, detail FROM core.alert WHERE alert_kind = 'id_conflict' ORDER BY 1").df()
    con.close()
    return out


def test_only_conflicts_between_departments_on_a_valid_id_are_alerted(alerts):
    assert list(alerts["person_id"]) == ["P1", "P2", "P3"]


def test_each_alert_says_what_differs(alerts):
    detail = alerts.set_index("person_id")["detail"]
    assert "出生日期不一致" in detail["P1"] and "1980-01-02（low_income）" in detail["P1"]
    assert "姓名不一致" in detail["P2"] and "张伟（low_income）" in detail["P2"] and "李娜" in detail["P2"]
    assert "姓名和出生日期不一致" in detail["P3"]


def test_a_full_build_empties_a_table_by_recreating_it_with_its_key_and_comments(tmp_path):
    """`empty_table` (a full rebuild: every core table, the xref, the linkage index) drops the table and
    creates it again from its declaration inside the caller's transaction: no rows, the
    key still enforced, the Chinese comments as declared, views on it still answer, and a
    rollback brings the rows back."""
    from warehouse.ddl import PERSON_XREF
    from warehouse.migrations import empty_table

    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    create_declared(con)
    row = "('civil_affairs', 'a.xlsx', 'Sheet1!2', 'subject', 'M1', 'P1', 'citizen_id', 1.0, FALSE)"
    con.execute(f"INSERT INTO core.person_xref VALUES {row}")
    con.execute("CREATE VIEW xref_count AS SELECT count(*) AS n FROM core.person_xref")
    comments = con.execute("SELECT column_name, comment FROM duckdb_columns() WHERE schema_name = 'core' "
                           "AND table_name = 'person_xref' ORDER BY column_index").fetchall()
    con.execute("BEGIN")
    empty_table(con, PERSON_XREF)
    assert con.execute("SELECT n FROM xref_count").fetchall() == [(0,)]
    con.execute(f"INSERT INTO core.person_xref VALUES {row}")
    with pytest.raises(duckdb.ConstraintException):
        con.execute(f"INSERT INTO core.person_xref VALUES {row}")
    con.execute("ROLLBACK")
    assert con.execute("SELECT n FROM xref_count").fetchall() == [(1,)]
    con.execute("BEGIN")
    empty_table(con, PERSON_XREF)
    con.execute("COMMIT")
    assert con.execute("SELECT n FROM xref_count").fetchall() == [(0,)]
    assert con.execute("SELECT column_name, comment FROM duckdb_columns() WHERE schema_name = 'core' "
                       "AND table_name = 'person_xref' ORDER BY column_index").fetchall() == comments
    assert all(c for _, c in comments)
    assert con.execute("SELECT comment FROM duckdb_tables() WHERE schema_name = 'core' "
                       "AND table_name = 'person_xref'").fetchall() == [(PERSON_XREF.comment,)]
    con.close()


def test_a_scoped_build_brings_a_diffed_table_to_its_derived_rows_by_difference(tmp_path):
    """`build._apply_difference` on core.relationship: of the rows in scope (a relationship
    of a dirty person), one derived again unchanged stays where it is (same rowid: not
    written again), one no longer derived is deleted, a new one inserted; rows are a
    multiset (a row held twice and derived once keeps one copy; derived twice, two); a row
    out of scope is left alone."""
    from warehouse.build import DIFFED, BuildScope, _apply_difference, _diffed_block, _staged_name
    from warehouse.ddl import core_tables

    relationship = {t.qualified: t for t in core_tables()}["core.relationship"]
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    create_declared(con)

    def rel(a, b, kind="household_member", source="low_income", until=None):
        return (kind, a, b, "2026-01-01", until, source, "low_income_enrolment")

    before = [rel("P1", "P2", "spouse", "civil_affairs"), rel("P1", "P3"), rel("P1", "P3"),
              rel("P4", "P1", "parent_child", "family_planning"), rel("P3", "P9"), rel("P7", "P8")]
    con.executemany("INSERT INTO core.relationship VALUES (?, ?, ?, ?, ?, ?, ?)", before)
    rowid = con.execute("SELECT rowid, * FROM core.relationship ORDER BY rowid").fetchall()
    derived = [rel("P1", "P2", "spouse", "civil_affairs"),   # unchanged
               rel("P1", "P3"),                            # held twice, derived once
               rel("P1", "P5"), rel("P1", "P5"),           # new, twice
               rel("P3", "P9", until="2026-07-01")]        # changed (P3 is dirty)
    con.execute("CREATE TEMP TABLE _dp (k VARCHAR)")
    con.executemany("INSERT INTO _dp VALUES (?)", [["P1"], ["P3"], ["P5"]])
    staged = _staged_name("core.relationship")
    con.execute(f"CREATE TEMP TABLE {staged} AS SELECT * FROM core.relationship LIMIT 0")
    con.executemany(f"INSERT INTO {staged} VALUES (?, ?, ?, ?, ?, ?, ?)", derived)
    con.execute("BEGIN")
    _apply_difference(con, relationship, BuildScope(frozenset({"P1", "P3", "P5"}), frozenset()))
    con.execute("COMMIT")
    after = con.execute("SELECT rowid, * FROM core.relationship").fetchall()
    rows = sorted(tuple(map(str, r[1:])) for r in after)
    expected = sorted(tuple(map(str, r)) for r in con.execute(
        "SELECT * FROM (VALUES " + ", ".join(["(?, ?, ?, CAST(? AS DATE), CAST(? AS DATE), ?, ?)"] * 6) + ")",
        [v for r in derived + [rel("P7", "P8")] for v in r]).fetchall())
    assert rows == expected
    kept = {r[0] for r in after} & {r[0] for r in rowid}
    # the spouse row, one copy of P1-P3 and P7-P8 kept their rowids; the rest is new
    assert sorted(r[1:4] for r in rowid if r[0] in kept) == [
        ("household_member", "P1", "P3"), ("household_member", "P7", "P8"), ("spouse", "P1", "P2")]
    assert not con.execute(f"SELECT count(*) FROM duckdb_tables() WHERE table_name = '{staged}'").fetchall()[0][0]

    # the blocks that derive the diffed tables write into their temp tables, nothing else does
    for sql, tables in ((build._RELATIONSHIP, ["core.relationship"]),
                        (build._LOW_INCOME_ENROLMENT, ["core.low_income_enrolment"]), (build._ALERTS, [])):
        redirected, hit = _diffed_block(sql)
        assert hit == tables
        for table in DIFFED:
            assert not re.search(rf"(INSERT INTO|UPDATE) {re.escape(table)}\b", redirected)
    assert _diffed_block(build._ADDRESSES) == (build._ADDRESSES, [])  # person_address: most of it changes


def test_a_scoped_build_updates_restated_rows_in_place_and_replaces_the_others(tmp_path):
    """`build._in_place_sql` on core.person: a person whose only changes are in its
    `IN_PLACE` columns (seen again: counts, dates, latest address text) is UPDATEd where it
    is (same rowid: no index delete); one whose name or source list changed is deleted
    and inserted again; one no longer derived is deleted; a new one inserted; one out of
    scope is left alone. The result is the derived rows, whichever way each got there."""
    from warehouse.build import IN_PLACE, _in_place_sql
    from warehouse.ddl import ADDRESS, PERSON

    for table in (PERSON, ADDRESS):  # declared columns that exist, are no key and no LIST (slow to update)
        types = {c.name: c.type for c in table.columns}
        assert all(c in types and c not in table.primary_key and not types[c].endswith("[]")
                   for c in IN_PLACE[table.qualified])
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    create_declared(con)

    def person(pid, name="张三", systems=("low_income",), n=1, last="2026-06-01", address="龙山路1号"):
        return (pid, None, None, None, name, None, "1", "1980-01-01", None, None, None, None, None, address, None,
                False, list(systems), n, "2026-01-01", last)

    marks = ", ".join("?" * 20)
    before = [person("P1"), person("P2"), person("P3"), person("P4"), person("P6")]
    con.executemany(f"INSERT INTO core.person VALUES ({marks})", before)
    derived = [person("P1", n=2, last="2026-07-01", address="龙山区龙山路1号"),   # seen again: in place
               person("P2", name="张叁", n=2),                                     # name changed
               person("P6", systems=("low_income", "floating_population")),       # source list changed
               person("P5")]                                                       # new
    con.execute("CREATE TEMP TABLE derived AS SELECT * FROM core.person LIMIT 0")
    con.executemany(f"INSERT INTO derived VALUES ({marks})", derived)
    con.execute("CREATE TEMP TABLE expected AS SELECT * FROM derived")  # the derived rows, and P4 as it was
    con.execute(f"INSERT INTO expected VALUES ({marks})", person("P4"))
    rowid = dict(con.execute("SELECT person_id, rowid FROM core.person").fetchall())
    sql = _in_place_sql(PERSON, "SELECT * FROM derived", "p.person_id IN ('P1', 'P2', 'P3', 'P5', 'P6')")
    con.execute("BEGIN")
    for stmt in sql.split(";\n"):
        con.execute(stmt)
    con.execute("COMMIT")
    after = con.execute("SELECT * FROM core.person ORDER BY person_id").fetchall()
    assert [r[0] for r in after] == ["P1", "P2", "P4", "P5", "P6"]
    assert after == con.execute("SELECT * FROM expected ORDER BY person_id").fetchall()
    new_rowid = dict(con.execute("SELECT person_id, rowid FROM core.person").fetchall())
    assert new_rowid["P1"] == rowid["P1"] and new_rowid["P4"] == rowid["P4"]   # updated in place / untouched
    assert new_rowid["P2"] != rowid["P2"] and new_rowid["P6"] != rowid["P6"]   # deleted and inserted again
