"""`warehouse.linkage_index.blocked_with` against an oracle: every (asked, other) pair of a
small random index tested against each blocking rule one by one, both ways round.

The index answers a sync's blocking with SQL joins over the whole persisted index, rules
that start with the same column's equality sharing one join; the oracle evaluates each
rule on the cross product, so a grouping or a direction that lost (or added) a pair
shows here, on values drawn to collide often."""

from __future__ import annotations

import datetime as dt

import duckdb
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from pipelines.linkage.comparisons import BLOCKING_RULES
from warehouse.ddl import STG_LINKAGE_FEATURE
from warehouse.linkage_index import _leading_equality, blocked_with

#: the rules a sync blocks with (`resolution.resolve_locally`), and two that take other
#: paths: an OR (never grouped) and a leading equality of two different columns
RULES = [b.sql for b in BLOCKING_RULES] + ["l.cid = r.cid", "l.doc_no = r.doc_no",
                                          "l.phone = r.phone OR l.name_s = r.name_s", "l.name_py = r.name_py_alt"]

_SMALL = st.sampled_from
_ROW = st.fixed_dictionaries({
    "cid": st.none() | _SMALL(["110105198001011234", "110105198001011242"]),
    "doc_no": st.none() | _SMALL(["E1234567"]),
    "id_kind": st.none() | _SMALL(["valid", "partial", "typo"]),
    "id_digits": st.none() | _SMALL(["11010519800101123", "11010519800101124", "1101051980"]),
    "id_p14": st.none() | _SMALL(["11010519800101", "11010519900202"]),
    "name_s": st.none() | _SMALL(["张伟", "章伟", "李忠建", "季忠建"]),
    "name_py": st.none() | _SMALL(["zhangwei", "lizhongjian"]),
    "name_py_alt": st.none() | _SMALL(["zhangwei", "jizhongjian"]),
    "name_initial": st.none() | _SMALL(["z", "l", "j"]),
    "surname": st.none() | _SMALL(["张", "李", "季"]),
    "birth": st.none() | _SMALL([dt.date(1980, 1, 1), dt.date(1990, 2, 2)]),
    "phone": st.none() | _SMALL(["13800000000", "13900000000"]),
})


def _index(rows: list[dict]) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute("CREATE SCHEMA stg")
    for sql in STG_LINKAGE_FEATURE.create_sql():
        con.execute(sql)
    frame = pd.DataFrame(rows)
    frame["unique_id"] = [f"m{i:02d}" for i in range(len(frame))]
    frame["export_id"] = 1
    frame["birth_year"] = [b.year if b is not None else None for b in frame["birth"]]
    cols = ", ".join(frame.columns)
    con.register("_rows", frame)
    con.execute(f"INSERT INTO {STG_LINKAGE_FEATURE.qualified} ({cols}) SELECT {cols} FROM _rows")
    return con


def _oracle(con: duckdb.DuckDBPyConnection, asked: list[str]) -> list[str]:
    """The mentions outside `asked` that a rule pairs with one of `asked`, either side."""
    lf = STG_LINKAGE_FEATURE.qualified
    con.register("_asked", pd.DataFrame({"id": asked}))
    found: set[str] = set()
    for rule in RULES:
        for sql in (f"SELECT r.unique_id FROM {lf} l, {lf} r WHERE l.unique_id IN (SELECT id FROM _asked) AND ({rule})",
                    f"SELECT l.unique_id FROM {lf} l, {lf} r WHERE r.unique_id IN (SELECT id FROM _asked) AND ({rule})"):
            found |= {r[0] for r in con.execute(sql).fetchall()}
    return sorted(found - set(asked))


@settings(max_examples=60, deadline=None)
@given(rows=st.lists(_ROW, min_size=2, max_size=14), data=st.data())
def test_blocked_with_finds_exactly_what_each_rule_pairs(rows, data):
    con = _index(rows)
    ids = [f"m{i:02d}" for i in range(len(rows))]
    asked = sorted(data.draw(st.sets(st.sampled_from(ids), min_size=1, max_size=len(ids) - 1)))
    assert blocked_with(con, asked, RULES) == _oracle(con, asked)


def test_rules_group_by_a_leading_equality_of_one_column_only():
    assert _leading_equality("l.birth = r.birth AND l.phone = r.phone") == ("birth", "l.phone = r.phone")
    assert _leading_equality("l.cid = r.cid") == ("cid", "")
    assert _leading_equality("l.surname = r.name_s") == (None, "l.surname = r.name_s")
    assert _leading_equality("l.a = r.a AND x OR y") == (None, "l.a = r.a AND x OR y")
    assert _leading_equality("length(l.name_s) >= 3 AND l.birth = r.birth")[0] is None
