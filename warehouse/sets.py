"""The heavy set work of the build, declared once and run on either engine.

Two aggregations read every mention of a full build: the golden record of each person
(`core.person`'s survivorship rules) and the best parse of each address (`core.address`).
They are declared here as data — a `Survive` rule per golden column, the address levels —
and rendered to SQL per `Dialect`:

* ``duckdb`` (default): run on the warehouse connection into a temp table;
* ``spark``: the rows they read are written to Parquet, aggregated by a
  `ParquetEngine` (the Spark engine, `engines.SparkSql`), and the result read back
  from Parquet into the same temp table.

Either way the build then inserts from that temp table with the same SQL, so the two
engines give the same `core.person` and `core.address` (tests/test_spark_engine.py).
Scoped (nightly) builds touch a few thousand persons and always run in DuckDB.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal, Protocol

import duckdb


@dataclass(frozen=True)
class Dialect:
    """How the two engines spell what the set SQL needs."""

    name: Literal["duckdb", "spark"]

    def arg_max(self, value: str, keys: tuple[str, ...]) -> str:
        """`value` of the row whose `keys` (compared in order) are greatest."""
        if self.name == "spark":
            return f"max_by({value}, struct({', '.join(keys)}))"
        return f"arg_max({value}, ({', '.join(keys)}))" if len(keys) > 1 else f"arg_max({value}, {keys[0]})"

    def sorted_set(self, expr: str) -> str:
        """The distinct values of `expr` as a sorted list."""
        if self.name == "spark":
            return f"array_sort(collect_set({expr}))"
        return f"list(DISTINCT {expr} ORDER BY {expr})"


DUCKDB, SPARK = Dialect("duckdb"), Dialect("spark")
DIALECTS = {d.name: d for d in (DUCKDB, SPARK)}


# --------------------------------------------------------------------------------------
# core.person: survivorship rules over the person's mentions (`pm`, build._PERSON_MENTIONS)
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Survive:
    """One golden column: `rule` over `expr` of the mentions where `where` holds.

    * ``mode``: the value most mentions agree on; ties go to the most recent statement
      (`pm.recency`: not retracted first, then export date, then mention id — unique,
      so there is never a tie left — as a rank within the person);
    * ``latest``: the most recent non-empty value;
    * ``earliest``: the smallest value (dates)."""

    alias: str
    expr: str
    rule: Literal["mode", "latest", "earliest"]
    where: str = "TRUE"

    def cte(self, d: Dialect, source: str) -> str:
        if self.rule == "mode":
            return f"""{self.alias} AS (
      SELECT person_id, {d.arg_max("v", ("n", "last"))} AS {self.alias}
      FROM (SELECT person_id, {self.expr} AS v, count(*) AS n, max(recency) AS last
            FROM {source} WHERE {self.expr} IS NOT NULL AND ({self.where}) GROUP BY person_id, {self.expr}) t
      GROUP BY person_id)"""
        agg = d.arg_max(self.expr, ("recency",)) if self.rule == "latest" else f"min({self.expr})"
        return f"""{self.alias} AS (SELECT person_id, {agg} AS {self.alias}
                FROM {source} WHERE {self.expr} IS NOT NULL AND ({self.where}) GROUP BY person_id)"""


#: the golden columns of core.person, in the order `build._PERSON_ROWS` uses them
GOLDEN_PERSON: tuple[Survive, ...] = (
    Survive("g_citizen_id", "citizen_id", "mode", "has_valid_id"),
    Survive("g_document_type", "document_type", "mode", "citizen_id IS NULL AND document_type <> 'resident_id'"),
    Survive("g_document_number", "document_number", "mode", "citizen_id IS NULL AND document_type <> 'resident_id'"),
    Survive("g_name", "coalesce(name_simplified, name)", "mode"),
    Survive("g_name_pinyin", "name_pinyin", "mode"),
    Survive("g_id_gender", "id_gender", "mode", "has_valid_id"),
    Survive("g_gender", "gender", "mode", "gender IN ('1', '2')"),
    Survive("g_id_birth", "id_birth_date", "mode", "has_valid_id"),
    Survive("g_birth", "birth_date", "mode"),
    Survive("g_ethnicity", "ethnicity", "mode"),
    Survive("g_nationality", "nationality", "mode"),
    Survive("g_fp_marital", "marital_status", "latest", "source_system = 'family_planning'"),
    Survive("g_phone", "phone", "latest"),
    Survive("g_hukou", "hukou_address", "latest"),
    Survive("g_current", "current_address", "latest"),
    Survive("g_death", "death_date", "earliest", "source_system = 'civil_affairs'"),
)

#: the columns of `pm` the golden record reads (what goes to Parquet for another engine)
GOLDEN_INPUT_COLUMNS = ("person_id", "recency", "has_valid_id", "citizen_id", "document_type", "document_number",
                        "name_simplified", "name", "name_pinyin", "id_gender", "gender", "id_birth_date",
                        "birth_date", "ethnicity", "nationality", "marital_status", "source_system", "phone",
                        "hukou_address", "current_address", "death_date", "export_date")


def golden_person_sql(d: Dialect, source: str) -> str:
    """One row per person of `source` (mentions with person_id): every golden column,
    plus the systems, mention count and first/last export date."""
    ctes = ",\n".join(r.cte(d, source) for r in GOLDEN_PERSON)
    joins = " ".join(f"LEFT JOIN {r.alias} USING (person_id)" for r in GOLDEN_PERSON)
    cols = ", ".join(r.alias for r in GOLDEN_PERSON)
    return f"""WITH
{ctes},
    base AS (SELECT person_id, {d.sorted_set("source_system")} AS systems,
                    count(*) AS n, min(export_date) AS first_seen, max(export_date) AS last_seen
             FROM {source} GROUP BY person_id)
SELECT b.person_id, {cols}, b.systems, b.n, b.first_seen, b.last_seen
FROM base b {joins}"""


# --------------------------------------------------------------------------------------
# core.address: each level from the best parse that has it
# --------------------------------------------------------------------------------------
#: the address levels (and their division codes) of core.address, in column order
ADDRESS_LEVELS = ("province", "city", "county", "town", "community", "road", "house_number", "estate", "building",
                  "unit", "floor", "room", "rural_group", "province_code", "city_code", "county_code", "town_code")
#: the best parse: highest confidence, then the longer standard text, then the text itself
_BEST = ("coalesce(confidence, -1.0)", "length(coalesce(standard_text, ''))", "coalesce(standard_text, '')")
ADDRESS_INPUT_COLUMNS = (*ADDRESS_LEVELS, "address_id", "standard_text", "address_key", "confidence", "status",
                         "source_system", "raw_text")


def best_address_sql(d: Dialect, source: str) -> str:
    """One row per address_id of `source` (address mentions): every level from the best
    parse that has it (variants that omit 街道/社区 do not blank it out); the standard text
    and status of the best parse overall. The parses are ranked within their address once
    (`_best`; `_raw_best` for the raw text): each aggregation keeps an integer, not the
    strings of a composite key (a full build's peak -0.5 GB, faster)."""
    levels = ",\n       ".join(f"{d.arg_max(c, ('_best',))} FILTER (WHERE {c} IS NOT NULL) AS {c}"
                                for c in ADDRESS_LEVELS)
    raw_best = (*_BEST[:2], "coalesce(raw_text, '')")
    return f"""SELECT address_id,
       {levels},
       {d.arg_max("standard_text", ("_best",))} AS standard_text,
       min(address_key) AS address_key, max(confidence) AS confidence,
       {d.arg_max("status", ("_best",))} AS status,
       count(*) AS n_mentions, {d.sorted_set("source_system")} AS systems,
       {d.arg_max("raw_text", ("_raw_best",))} AS raw_text
FROM (SELECT *, dense_rank() OVER (PARTITION BY address_id ORDER BY {", ".join(_BEST)}) AS _best,
             dense_rank() OVER (PARTITION BY address_id ORDER BY {", ".join(raw_best)}) AS _raw_best
      FROM {source}) ranked
GROUP BY address_id"""


# --------------------------------------------------------------------------------------
# running a step
# --------------------------------------------------------------------------------------
class ParquetEngine(Protocol):
    """Runs one query of its `dialect` over Parquet inputs (registered under their
    names) and writes the result as Parquet files into the directory `out`."""

    dialect: str

    def run(self, sql: str, inputs: dict[str, Path], out: Path) -> None: ...


@dataclass(frozen=True)
class SetStep:
    """A temp table `name` on the build's connection: `render(dialect, relation)` over
    the rows of `source` (a DuckDB query of the build; only `columns` are read)."""

    name: str
    source: str
    columns: tuple[str, ...]
    render: Callable[[Dialect, str], str]


def run_step(con: duckdb.DuckDBPyConnection, step: SetStep, engine: ParquetEngine | None = None,
             work_dir: Path | None = None) -> None:
    """Leave `step.name` as a temp table on `con`: computed here, or by `engine` on
    Parquet files in `work_dir` (removed afterwards)."""
    cols = ", ".join(f'"{c}"' for c in step.columns)
    if engine is None:
        con.execute(f"CREATE OR REPLACE TEMP TABLE {step.name} AS "
                    + step.render(DUCKDB, f"(SELECT {cols} FROM ({step.source}) s) src"))
        return
    if work_dir is None:
        raise ValueError("a set step on another engine needs a work directory")
    work = Path(work_dir) / f"build_{step.name}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        source = work / "in.parquet"
        con.execute(f"COPY (SELECT {cols} FROM ({step.source}) s) TO '{_sql_path(source)}' (FORMAT parquet)")
        out = work / "out"
        engine.run(step.render(DIALECTS[engine.dialect], "src"), {"src": source}, out)
        con.execute(f"CREATE OR REPLACE TEMP TABLE {step.name} AS "
                    f"SELECT * FROM read_parquet('{_sql_path(out)}/*.parquet')")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _sql_path(path: Path) -> str:
    return str(path.resolve()).replace("'", "''")


__all__ = ["ADDRESS_LEVELS", "DIALECTS", "DUCKDB", "Dialect", "GOLDEN_PERSON", "ParquetEngine", "SPARK", "SetStep",
           "Survive", "best_address_sql", "golden_person_sql", "run_step"]
