"""Schema versioning: a warehouse built by an older version is migrated, not rebuilt.

`MIGRATIONS` is an ordered list of (version, description, function). `migrate` applies
every migration newer than the warehouse's recorded version, then (re)creates any
declared table that does not exist yet, refreshes comments and recreates the views.
A migration that changes an existing table (add/rename a column, backfill a value)
goes into the list with the next version number; never edit a released one. A new
table declared in `warehouse.ddl` also needs a (possibly empty) migration entry: the
declared tables are created whenever a migration runs.
"""

from __future__ import annotations

from collections.abc import Callable

import duckdb

from warehouse.ddl import SCHEMA_VERSION, Table, create_all_sql


def create_declared(con: duckdb.DuckDBPyConnection) -> None:
    """Every declared schema, table and comment (IF NOT EXISTS: existing data untouched)."""
    con.execute(";\n".join(create_all_sql()))


def empty_table(con: duckdb.DuckDBPyConnection, table: Table) -> None:
    """Empty `table` by dropping it and creating it again from its declaration (key,
    comments). Deleting every row of a keyed table takes each key out of its index one by
    one: a full rebuild of a 1M-resident warehouse spent ~19 s deleting its core tables
    (core.person alone 8.4 s) and 10 s each for the linkage index and the xref, against
    0.1 s this way. Inside the caller's transaction: a failed run rolls it back. Views name
    tables, not their storage: they read the new one."""
    con.execute(f"DROP TABLE IF EXISTS {table.qualified}")
    for sql in table.create_sql():
        con.execute(sql)


def create_missing(con: duckdb.DuckDBPyConnection) -> list[str]:
    """The declared tables this warehouse lacks (a department whose mapping was added
    after the warehouse was built), created with their comments; returns their names."""
    from warehouse.ddl import SCHEMAS, all_tables

    have = {f"{s}.{t}" for s, t in con.execute(
        "SELECT schema_name, table_name FROM duckdb_tables() WHERE database_name = current_database()").fetchall()}
    missing = [t for t in all_tables() if t.qualified not in have]
    if missing:
        con.execute(";\n".join([f"CREATE SCHEMA IF NOT EXISTS {s}" for s in SCHEMAS]
                               + [stmt for t in missing for stmt in t.create_sql()]))
    return [t.qualified for t in missing]


def _v1_initial(con: duckdb.DuckDBPyConnection) -> None:
    """Version 1: every table declared in warehouse.ddl."""
    create_declared(con)


def _v6_sole_in_household(con: duckdb.DuckDBPyConnection) -> None:
    """Version 6: a linkage feature added; the index rows lack it, so the table goes (DuckDB
    cannot delete and alter one table in a transaction), is declared anew, and the next
    sync computes the features of every mention again (as for a warehouse from before
    the index, version 2). Resolved persons are untouched."""
    have = {r[0] for r in con.execute(
        "SELECT column_name FROM information_schema.columns "
        "WHERE table_schema = 'stg' AND table_name = 'linkage_feature'").fetchall()}
    if have and "sole_in_household" not in have:  # dropped: `create_declared` makes it anew, empty
        con.execute("DROP TABLE stg.linkage_feature")


Migration = tuple[int, str, Callable[[duckdb.DuckDBPyConnection], None]]

MIGRATIONS: list[Migration] = [
    (1, "initial schema: stg, core, quality, mart", _v1_initial),
    (2, "stg.linkage_feature: the persisted linkage index (filled by the next sync)", lambda con: None),
    (3, "quality.district: the district, inferred from the data or configured (filled by the next sync)",
     lambda con: None),
    (4, "quality.audit: the append-only audit log of officers' views and changes of persons", lambda con: None),
    (5, "quality.publish: one row per publish, so derived files know the state they were built from",
     lambda con: None),
    (6, "stg.linkage_feature.sole_in_household: the index is emptied and refilled by the next sync",
     _v6_sole_in_household),
]

CURRENT_VERSION = MIGRATIONS[-1][0]


def current_version(con: duckdb.DuckDBPyConnection) -> int:
    exists = con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema='quality' AND table_name='schema_version'"
    ).fetchall()[0][0]
    if not exists:
        return 0
    return con.execute("SELECT coalesce(max(version), 0) FROM quality.schema_version").fetchall()[0][0]


def migrate(con: duckdb.DuckDBPyConnection) -> int:
    """Bring the warehouse to CURRENT_VERSION; returns the version it was at before."""
    from warehouse.exceptions import SchemaTooNewError
    from warehouse.views import create_views

    before = current_version(con)
    if before > CURRENT_VERSION:
        raise SchemaTooNewError(found=before, supported=CURRENT_VERSION)
    con.execute("CREATE SCHEMA IF NOT EXISTS quality; " + SCHEMA_VERSION.create_sql()[0])
    pending = [(v, d, fn) for v, d, fn in MIGRATIONS if v > before]
    con.execute("BEGIN TRANSACTION")
    try:
        for version, description, fn in pending:
            fn(con)
            con.execute("INSERT INTO quality.schema_version VALUES (?, now(), ?)", [version, description])
        if pending:
            create_declared(con)
        else:
            create_missing(con)  # a mapping added since: its staging and fact tables
        # mart.grid keeps the size the last build gave it: a transaction that builds
        # nothing (a failed run's record) must not put back the default
        create_views(con, grid_households=None)
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return before
