"""`warehouse.digest`: the multiset digest the warehouse compares id columns with."""

from __future__ import annotations

import duckdb
import pytest

from warehouse.digest import digest, digest_sql, minus


@pytest.fixture()
def con():
    c = duckdb.connect()
    c.execute("CREATE TABLE t (id VARCHAR, e BIGINT)")
    c.execute("INSERT INTO t VALUES ('a', 1), ('b', 1), ('c', 2), (NULL, 3)")
    yield c
    c.close()


def test_a_digest_is_the_sum_of_its_disjoint_parts(con) -> None:
    whole = digest(con, "t", "id", "e")
    parts = [digest(con, "t WHERE e = 1", "id", "e"), digest(con, "t WHERE e = 2", "id", "e")]
    assert whole[0] == 3  # the NULL id is not counted
    assert minus(whole, *parts) == (0, 0)
    assert digest(con, "t WHERE FALSE", "id") == (0, 0)


def test_nulls_are_left_out_of_the_sum_as_of_the_count(con) -> None:
    # DuckDB hashes NULL like a value: a column with a NULL must digest as without it
    assert digest(con, "t", "id") == digest(con, "t WHERE id IS NOT NULL", "id")


def test_equal_values_do_not_cancel_and_different_sets_differ(con) -> None:
    con.execute("CREATE TABLE twice AS SELECT id FROM t WHERE id = 'a' UNION ALL SELECT id FROM t WHERE id = 'a'")
    assert digest(con, "twice", "id") != digest(con, "t WHERE id = 'a'", "id")
    assert digest(con, "t WHERE id IN ('a', 'b')", "id") != digest(con, "t WHERE id IN ('a', 'c')", "id")
    # the export goes into the digest of (id, export): the same ids under other exports differ
    assert digest(con, "t", "id", "e") != digest(con, "(SELECT id, e + 1 AS e FROM t)", "id", "e")


def test_the_sql_reads_as_two_aggregates_of_one_select(con) -> None:
    (c1, h1, c2, h2), = con.execute(f"SELECT {digest_sql('id')}, {digest_sql('id', 'e')} FROM t").fetchall()
    assert (c1, h1) == digest(con, "t", "id") and (c2, h2) == digest(con, "t", "id", "e")
