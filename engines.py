"""The compute engines person resolution and the build can run on (wiring only).

* ``duckdb`` (default): everything in this process, Splink on an in-memory DuckDB.
* ``spark``: the blocked pairs are generated and scored by Splink's Spark backend on the
  Spark master of the settings (`pipelines.linkage.spark.SparkScorer`); training,
  clustering under the constraints and person ids stay in this process. A full build's
  set work (golden records, best address parses: `warehouse.sets`) runs as Spark SQL
  over Parquet (`SparkSql`).

This module makes what the pure pipelines are handed: the Spark session (its Python
workers run this interpreter) and the Parquet work directory (`spark_work_dir`, default
``.residents/spark`` beside the warehouse; on a real cluster a path every executor
reads and writes at the same place, e.g. an NFS or HDFS-fuse mount). Nothing here is
imported unless the Spark engine is chosen.
"""

from __future__ import annotations

import os
import shutil
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from settings import ConfigError, Settings

__all__ = ["EngineUnavailable", "SparkSql", "build_sets", "java_version", "require_spark", "spark_available",
           "spark_scorer", "spark_session", "spark_sets", "work_dir_of"]


class EngineUnavailable(ConfigError):
    """The chosen engine cannot start here (no Java, no pyspark, master unreachable)."""

    def __init__(self, detail: str) -> None:
        super().__init__("invalid_value", key="engine", value="spark", detail=detail)


def java_version() -> str | None:
    """The `java -version` line of the Java Spark would start (JAVA_HOME first), or None."""
    import subprocess

    home = os.environ.get("JAVA_HOME")
    java = str(Path(home) / "bin" / "java") if home else shutil.which("java")
    if not java or not Path(java).exists():
        return None
    try:
        out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = (out.stderr or out.stdout).strip().splitlines()
    return text[0] if out.returncode == 0 and text else None


def spark_available() -> str | None:
    """None when a local Spark can start here; else why not (Chinese, for the officer)."""
    try:
        import pyspark  # noqa: F401
    except ImportError:
        return "未安装 pyspark（make install 会安装）"
    if java_version() is None:
        return "未找到 Java（Spark 需要 Java 17 或更高版本：apt-get install openjdk-17-jre-headless，或设置 JAVA_HOME）"
    return None


def require_spark(settings: Settings) -> None:
    """Before a sync starts: `EngineUnavailable` (exit 2) when it is to resolve on Spark
    and Spark cannot start here, rather than failing after the exports were read."""
    if settings.engine == "spark" and settings.resolution_mode != "deterministic":
        why = spark_available()
        if why:
            raise EngineUnavailable(why)


def work_dir_of(settings: Settings) -> Path:
    return Path(settings.spark_work_dir or settings.warehouse.resolve().parent / ".residents" / "spark")


@contextmanager
def spark_session(master: str, work_dir: Path, *, partitions: int = 8) -> Iterator[Any]:
    """A Spark session on `master` whose Python workers run this interpreter, its
    scratch space (``spark.local.dir``, ``spark.sql.warehouse.dir``) under `work_dir`. An active
    session on the same master is reused and left running (a test's shared session);
    one started here is stopped on exit."""
    why = spark_available()
    if why:
        raise EngineUnavailable(why)
    # the executors' Python must have rapidfuzz and pyarrow: in local mode, this one
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    from pyspark.sql import SparkSession

    # the session of this thread, else the one this process already started (another thread's)
    active = SparkSession.getActiveSession() or getattr(SparkSession, "_instantiatedSession", None)
    if active is not None and active.sparkContext.master == master:
        yield active
        return
    work_dir.mkdir(parents=True, exist_ok=True)
    builder = (SparkSession.builder.master(master).appName("residents-resolution")
               .config("spark.ui.enabled", "false").config("spark.ui.showConsoleProgress", "false")
               .config("spark.sql.shuffle.partitions", str(partitions))
               .config("spark.pyspark.python", os.environ["PYSPARK_PYTHON"])
               .config("spark.local.dir", str(work_dir / "local"))
               # not a `spark-warehouse/` folder in whatever directory the officer ran from
               .config("spark.sql.warehouse.dir", (work_dir / "sql-warehouse").resolve().as_uri())
               .config("spark.driver.extraJavaOptions", "-Dlog4j2.level=ERROR"))
    if master.startswith("local"):
        # everything in this process: no need for the host name to resolve (CI containers)
        builder = builder.config("spark.driver.bindAddress", "127.0.0.1").config("spark.driver.host", "127.0.0.1")
    try:
        spark = builder.getOrCreate()
    except Exception as exc:  # noqa: BLE001 - the JVM or the master could not be reached
        raise EngineUnavailable(f"无法连接 Spark（{master}）：{type(exc).__name__}: {str(exc)[:200]}") from None
    spark.sparkContext.setLogLevel("ERROR")
    try:
        yield spark
    finally:
        spark.stop()


@contextmanager
def spark_scorer(master: str, work_dir: str | Path, *, partitions: int = 8) -> Iterator[Any]:
    """A `pipelines.linkage.spark.SparkScorer` on a session of `master` (see
    `spark_session`); its Parquet exchange files live in `work_dir`, removed after each
    scoring run."""
    from pipelines.linkage.spark import SparkScorer

    work = Path(work_dir)
    with spark_session(master, work, partitions=partitions) as spark:
        yield SparkScorer(spark, work / "exchange")


class SparkSql:
    """A `warehouse.sets.ParquetEngine` on a Spark session: the full build's set work
    (golden records, best address parses) as Spark SQL over Parquet files."""

    dialect = "spark"

    def __init__(self, spark: Any) -> None:
        self.spark = spark

    def run(self, sql: str, inputs: dict[str, Path], out: Path) -> None:
        for name, path in inputs.items():
            self.spark.read.parquet(Path(path).resolve().as_uri()).createOrReplaceTempView(name)
        try:
            self.spark.sql(sql).write.mode("overwrite").parquet(Path(out).resolve().as_uri())
        finally:
            for name in inputs:
                self.spark.catalog.dropTempView(name)


@contextmanager
def spark_sets(master: str, work_dir: str | Path, *, partitions: int = 8) -> Iterator[SparkSql]:
    """A `SparkSql` on a session of `master` (see `spark_session`)."""
    with spark_session(master, Path(work_dir), partitions=partitions) as spark:
        yield SparkSql(spark)


@contextmanager
def build_sets(settings: Settings, *, on_spark: bool) -> Iterator[tuple[SparkSql | None, Path | None]]:
    """The engine of a build's set work (`warehouse.build.build_core`'s `sets`,
    `sets_dir`): Spark when `on_spark` (a full build on the Spark engine), its Parquet
    files under the engine's work directory; else (None, None): DuckDB, in this process."""
    if not on_spark:
        yield None, None
        return
    opts = spark_options(settings)
    with spark_sets(opts["master"], opts["work_dir"], partitions=opts["partitions"]) as sets:
        yield sets, Path(opts["work_dir"]) / "build"


def spark_options(settings: Settings) -> dict[str, Any]:
    """What a resolution on Spark needs of the settings (`spark_scorer`'s arguments)."""
    return {"master": settings.spark_master, "work_dir": str(work_dir_of(settings)),
            "partitions": settings.spark_partitions}
