"""Multiset digests: whether two columns (or a table and a sum of its parts) hold the same
values, from one scan of each instead of a join.

A digest of a column is the count of its values and the sum of their 64-bit hashes
(`hash()`, any number of columns hashed together). The sum is a multiset digest: equal
values do not cancel, the digest of a union of disjoint parts is the sum of theirs, and
two different multisets agree only by a hash collision. NULLs are not counted (`count`
and `sum` skip them); the digest of no rows is (0, 0).

The warehouse asks it where a whole-table comparison would otherwise run on every sync
or decision: the linkage index against the staged mentions (`linkage_index`), a staged
column against its parent (`quality`)."""

from __future__ import annotations

from typing import Any

import duckdb

Digest = tuple[int, int]


def digest_sql(*expressions: str) -> str:
    """SQL of the digest of `expressions` hashed together, as two aggregates: the count
    of rows whose first expression is not NULL and the sum of their hashes (0 for none;
    DuckDB hashes a NULL like any value, so they are filtered out of the sum too)."""
    first = expressions[0]
    return f"count({first}), coalesce(sum(hash({', '.join(expressions)})) FILTER (WHERE {first} IS NOT NULL), 0)"


def digest(con: duckdb.DuckDBPyConnection, sql_from: str, *expressions: str, params: Any = None) -> Digest:
    """The digest of `expressions` over `sql_from` (a FROM clause, with any WHERE)."""
    (count, total), = con.execute(f"SELECT {digest_sql(*expressions)} FROM {sql_from}", params or []).fetchall()
    return int(count), int(total)


def minus(a: Digest, *parts: Digest) -> Digest:
    """The digest of `a` without the disjoint `parts` it holds."""
    return a[0] - sum(p[0] for p in parts), a[1] - sum(p[1] for p in parts)
