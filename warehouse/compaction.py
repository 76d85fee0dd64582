"""Dead rows: what DuckDB keeps of deleted rows, and when a table is rewritten without them.

A DuckDB DELETE only marks rows deleted; the file keeps them and every scan reads them.
A nightly sync deletes and derives again the rows the persons it touched reach (at 1M
residents a 低保 month: ~38,000 roster lines and enrolments; core.person's and
core.address's rows are mostly UPDATEd in place, `build._in_place_sql`, and only a row
that changed beyond its counts, dates and latest text is deleted), so a table grows by its
dead rows every night. DuckDB's own upkeep does not fit that:

* a table with a key (PRIMARY KEY: core.person, core.address, stg.mention, …) is never
  vacuumed, so its dead rows would pile up for as long as the warehouse lives;
* the others are vacuumed at every checkpoint, at a cost that follows the table, not the
  change: 2.3 s of the 1M nightly delta's 4.6 s commit.

So the warehouse commits without DuckDB's vacuum (`max_vacuum_tasks = 0` for the commit,
`store.commit_without_vacuum`) and keeps its tables itself: `note` records, when a
run opens the warehouse, each table's rows in the file and live rows; `compact`, at the
end of the run and inside its transaction, rewrites every table whose dead rows reached
`COMPACT_RATIO` of its live ones (and `COMPACT_MIN_DEAD`): its live rows are copied out,
the table is dropped and declared again (`migrations.empty_table`: key, comments) and the
rows go back. A scan then reads at most 1.5 times the live rows, and a table is rewritten
after its dead rows reached half its size: each deleted row costs at most two rows
copied, once. A failed run rolls the rewrite back with everything else.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb

#: a table is rewritten when its dead rows reach this share of its live rows ...
COMPACT_RATIO = 0.5
#: ... and at least this many (fewer cost a scan a few milliseconds: not worth a rewrite)
COMPACT_MIN_DEAD = 10_000
#: the temp table `note` leaves on the run's connection
NOTED = "_storage_at_open"


@dataclass(frozen=True)
class TableStorage:
    table: str        # schema.name
    stored: int       # rows in the file, deleted ones included
    live: int
    oid: int | None = None  # DuckDB's table oid: a table dropped and created again gets a new one

    @property
    def dead(self) -> int:
        return self.stored - self.live

    @property
    def bloated(self) -> bool:
        return self.dead >= max(COMPACT_RATIO * self.live, COMPACT_MIN_DEAD)


def storage(con: duckdb.DuckDBPyConnection) -> list[TableStorage]:
    """Rows in the file and live rows of every declared table of the warehouse on `con`
    (its committed state; one count per table: ~40 ms at 1M residents)."""
    from warehouse.ddl import all_tables

    declared = {t.qualified for t in all_tables()}
    have = [(f"{s}.{n}", size, oid) for s, n, size, oid in con.execute(
        "SELECT schema_name, table_name, estimated_size, table_oid FROM duckdb_tables() "
        "WHERE database_name = current_database() AND NOT temporary").fetchall() if f"{s}.{n}" in declared]
    if not have:
        return []
    counts = con.execute(" UNION ALL ".join(f"SELECT {i}, count(*) FROM {name}"
                                            for i, (name, _, _) in enumerate(have))).fetchall()
    live = dict(counts)
    return [TableStorage(name, size, live[i], oid) for i, (name, size, oid) in enumerate(have)]


def _oids(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """schema.name → DuckDB's table oid, now."""
    return {f"{s}.{n}": oid for s, n, oid in con.execute(
        "SELECT schema_name, table_name, table_oid FROM duckdb_tables() "
        "WHERE database_name = current_database() AND NOT temporary").fetchall()}


def note(con: duckdb.DuckDBPyConnection) -> None:
    """Record the tables' storage as the run found it (before it changes anything: inside
    the run's transaction DuckDB's row estimate leaves out the run's own rows), and each
    table's oid."""
    rows = storage(con)
    con.execute(f"CREATE OR REPLACE TEMP TABLE {NOTED} (tbl VARCHAR, stored BIGINT, live BIGINT, oid BIGINT)")
    if rows:
        con.executemany(f"INSERT INTO {NOTED} VALUES (?, ?, ?, ?)", [[r.table, r.stored, r.live, r.oid] for r in rows])


def noted(con: duckdb.DuckDBPyConnection) -> list[TableStorage]:
    try:
        return [TableStorage(*r) for r in con.execute(f"SELECT tbl, stored, live, oid FROM {NOTED} ORDER BY tbl"
                                                      ).fetchall()]
    except duckdb.CatalogException:
        return []


def compact(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Rewrite, inside the run's transaction, every table whose dead rows (as `note` found
    them) reached the threshold; returns their names. A table the run already emptied and
    filled again (a full build) holds no dead rows: it is left alone."""
    from warehouse.ddl import all_tables
    from warehouse.migrations import empty_table

    declared = {t.qualified: t for t in all_tables()}
    oids_now = _oids(con)
    done = []
    for t in noted(con):
        if not t.bloated or t.table not in declared:
            continue
        if oids_now.get(t.table) != t.oid:
            continue  # dropped and created anew by this run (before or after a `store.commit_stage`)
        con.execute(f"CREATE OR REPLACE TEMP TABLE _compact AS SELECT * FROM {t.table}")
        empty_table(con, declared[t.table])
        con.execute(f"INSERT INTO {t.table} BY NAME SELECT * FROM _compact")
        con.execute("DROP TABLE _compact")
        done.append(t.table)
    con.execute(f"DROP TABLE IF EXISTS temp.{NOTED}")
    return done


__all__ = ["COMPACT_MIN_DEAD", "COMPACT_RATIO", "TableStorage", "compact", "note", "noted", "storage"]
