"""Pair generation and scoring on Spark (Splink 5's Spark backend).

The model is declared once (`comparisons.py`: DuckDB SQL) and trained on the driver
(`model.LinkageModel.fit`, DuckDB: the same random sample of pairs for u, the same
labelled pairs for m, so both engines weigh evidence identically). `SparkScorer`
then runs the heavy part — the blocking joins over every mention and the scoring of
every blocked pair — on a Spark session, with the trained settings translated to Spark
SQL (`spark_sql`), and hands the scored pairs back. Clustering under the constraints
(`cluster.constrained_clusters`) and id assignment stay on the driver.

Data crosses between the driver and Spark as Parquet files in a work directory given
by the caller: the linkage frame (`linkage_input.parquet`) and the term-frequency
lookups go out, the pairs scored at or above the floor (`pairs.parquet`) come back.
Splink's intermediate tables are broken off their lineage as Parquet under a checkpoint
directory inside the work directory; everything a run wrote is removed after it.

``zh_char_distance`` (the characters' Levenshtein distance, rapidfuzz) and ``hamming``
(DuckDB's, on the ID digits) are registered on the session as Arrow UDFs under the
names the comparisons use (`register_spark_functions`). They are closures, so an
executor needs rapidfuzz and pyarrow but not this package.

No Prefect, no paths of its own: the session and the work directory are passed in
(`engines.py` makes them).
"""

from __future__ import annotations

import itertools
import logging
import shutil
from copy import deepcopy
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

__all__ = ["SparkScorer", "register_spark_functions", "spark_settings", "spark_sql"]

_RUN = itertools.count()


# ------------------------------------------------------------------ SQL translation
def _list_columns() -> set[str]:
    from pipelines.linkage.model import _SCHEMA

    names = {f.name for f in _SCHEMA if pa.types.is_list(f.type)}
    return names | {f"{n}_l" for n in names} | {f"{n}_r" for n in names}


def spark_sql(sql: str) -> str:
    """One condition of `comparisons.py` (DuckDB SQL) in Spark SQL.

    sqlglot transpiles the syntax; what it cannot know is rewritten on the tree:
    ``len(list)`` → ``size(list)`` (sqlglot reads DuckDB's ``len`` as a string length),
    ``list_intersect`` → ``array_intersect``, and ``date_diff('day', a, b)`` →
    ``datediff(b, a)``. ``zh_char_distance`` and ``hamming`` stay as they are: they are
    registered on the session (`register_spark_functions`)."""
    import sqlglot
    from sqlglot import exp

    lists = _list_columns()

    def is_list(node: exp.Expression) -> bool:
        if isinstance(node, exp.Column):
            return node.name in lists
        return isinstance(node, exp.Anonymous) and node.name.lower() == "list_intersect"

    def rewrite(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.Length) and is_list(node.this):
            return exp.Anonymous(this="size", expressions=[node.this])
        if isinstance(node, exp.DateDiff):
            unit = (node.args.get("unit").name if node.args.get("unit") is not None else "DAY").upper()
            if unit != "DAY":
                raise ValueError(f"date_diff unit {unit} has no Spark translation here: {sql}")
            return exp.Anonymous(this="datediff", expressions=[node.this, node.expression])
        return node

    def intersect(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.Anonymous) and node.name.lower() == "list_intersect":
            return exp.Anonymous(this="array_intersect", expressions=list(node.expressions))
        return node

    tree = sqlglot.parse_one(sql, read="duckdb").transform(rewrite).transform(intersect)
    return tree.sql(dialect="spark")


def spark_settings(settings: dict[str, Any]) -> dict[str, Any]:
    """Trained Splink settings (DuckDB dialect, `LinkageModel.settings`) for Spark: every
    level's condition and every blocking rule through `spark_sql`; m, u and λ unchanged."""
    out = deepcopy(settings)
    out["sql_dialect"] = "spark"
    for cc in out.get("comparisons", []):
        for lv in cc.get("comparison_levels", []):
            lv["sql_condition"] = spark_sql(lv["sql_condition"])
    rules = []
    for br in out.get("blocking_rules_to_generate_predictions", []):
        if isinstance(br, dict):
            br = {**br, "blocking_rule": spark_sql(br["blocking_rule"]), "sql_dialect": "spark"}
        else:
            br = spark_sql(br)
        rules.append(br)
    out["blocking_rules_to_generate_predictions"] = rules
    return out


# ------------------------------------------------------------------ UDFs
def register_spark_functions(spark: Any) -> None:
    """``zh_char_distance(a, b)`` (Levenshtein on characters, as the DuckDB function of
    `model.register_functions`) and ``hamming(a, b)`` (differing positions of two
    equally long strings, as DuckDB's) on `spark`, as Arrow UDFs."""
    from pyspark.sql.functions import arrow_udf
    from pyspark.sql.types import IntegerType

    def char_distance(a: pa.Array, b: pa.Array) -> pa.Array:
        from rapidfuzz.distance import Levenshtein

        dist = Levenshtein.distance
        return pa.array([None if (x is None or y is None) else dist(x, y)
                         for x, y in zip(a.to_pylist(), b.to_pylist())], type=pa.int32())

    def hamming(a: pa.Array, b: pa.Array) -> pa.Array:
        from rapidfuzz.distance import Hamming

        dist = Hamming.distance
        return pa.array([None if (x is None or y is None) else dist(x, y)
                         for x, y in zip(a.to_pylist(), b.to_pylist())], type=pa.int32())

    spark.udf.register("zh_char_distance", arrow_udf(char_distance, IntegerType()))
    spark.udf.register("hamming", arrow_udf(hamming, IntegerType()))


# ------------------------------------------------------------------ scoring
class SparkScorer:
    """Scores the blocked pairs of a linkage frame on `spark` (see module docstring).

    `work_dir`: a directory for the Parquet exchange (created if missing; each call
    uses, then removes, a subdirectory of its own). `partitions`: Spark partitions of
    the scored pairs (default: the session's ``spark.sql.shuffle.partitions``)."""

    engine = "spark"

    def __init__(self, spark: Any, work_dir: str | Path, *, partitions: int | None = None,
                 keep_files: bool = False):
        self.spark = spark
        self.work_dir = Path(work_dir)
        self.partitions = partitions
        self.keep_files = keep_files
        self.last_run: dict[str, Any] = {}
        self._registered = False

    def _api(self) -> Any:
        from splink.backends.spark import SparkAPI

        if not self._registered:
            register_spark_functions(self.spark)
            self._registered = True
        kw = {"num_partitions_on_repartition": self.partitions} if self.partitions else {}
        return SparkAPI(spark_session=self.spark, break_lineage_method="parquet",
                        register_udfs_automatically=False, **kw)

    def predict(self, settings: dict[str, Any], table: pa.Table, tf_tables: dict[str, pd.DataFrame],
                columns: list[str], threshold: float | None) -> pd.DataFrame:
        """Scored pairs (`columns` of Splink's prediction) of `table` (the linkage frame
        as `model.to_arrow` makes it) under the trained `settings`, with the term
        frequencies `tf_tables` (column → frame ``<col>, tf_<col>``)."""
        return self._score(settings, [table], tf_tables, columns, threshold)

    def predict_new(self, settings: dict[str, Any], new: pa.Table, existing: pa.Table,
                    tf_tables: dict[str, pd.DataFrame], columns: list[str], threshold: float | None) -> pd.DataFrame:
        """Pairs new × new and new × existing (blocked; existing × existing never), as
        `LinkageModel.predict_new` scores them on DuckDB."""
        return self._score(settings, [new, existing], tf_tables, columns, threshold)

    def _score(self, settings: dict[str, Any], tables: list[pa.Table], tf_tables: dict[str, pd.DataFrame],
               columns: list[str], threshold: float | None) -> pd.DataFrame:
        from splink import Linker

        logging.getLogger("splink").setLevel(logging.WARNING)
        run = self.work_dir / f"run-{next(_RUN)}"
        tag = f"{run.name.replace('-', '_')}_{id(self)}"
        run.mkdir(parents=True, exist_ok=True)
        try:
            # Splink breaks the lineage of its intermediate tables as Parquet here
            self.spark.sparkContext.setCheckpointDir(str(run / "checkpoints"))
            db = self._api()
            inputs = []
            for i, table in enumerate(tables):
                path = run / f"linkage_input_{i}.parquet"
                pq.write_table(table, path)
                inputs.append(db.register(self.spark.read.parquet(str(path)), table_name=f"__linkage_{i}_{tag}"))
            linker = Linker(inputs[0], spark_settings(settings), log_level=logging.WARNING, validate_settings=False)
            for col, frame in tf_tables.items():
                path = run / f"tf_{col}.parquet"
                pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path)
                tf = db.register(self.spark.read.parquet(str(path)), table_name=f"__tf_{col}_{tag}")
                linker.table_management.register_term_frequency_lookup(tf, col)
            kw = {"threshold_match_probability": threshold or None, "warning_mode": "never"}
            if len(inputs) == 1:
                outputs = [linker.inference.predict(**kw)]
            else:
                outputs = [linker.inference.predict_within(inputs[0], **kw)]
                if tables[1].num_rows:
                    outputs.append(linker.inference.predict_between(inputs[0], inputs[1], **kw))
            parts = []
            for i, scored in enumerate(outputs):
                out = run / f"pairs_{i}.parquet"
                self.spark.table(scored.physical_name).select(*columns).write.mode("overwrite").parquet(str(out))
                scored.drop_table_from_database_and_remove_from_cache()
                parts.append(pq.read_table(out))
            pairs = pa.concat_tables(parts).to_pandas() if len(parts) > 1 else parts[0].to_pandas()
            self.last_run = {"mentions": sum(t.num_rows for t in tables), "pairs": len(pairs), "work_dir": str(run)}
            return pairs
        finally:
            if not self.keep_files:
                shutil.rmtree(run, ignore_errors=True)
