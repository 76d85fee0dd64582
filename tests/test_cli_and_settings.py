"""The CLI's read-side commands and the configuration layering."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
from typer.testing import CliRunner

import synth
from cli import app
from settings import ConfigError, load_settings
from tests.e2e_helpers import sync
from warehouse.runs import Selection

runner = CliRunner()


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("cli")
    synth.generate(base / "inbox", households=30, seed=3, noise="realistic", days=2)
    wh = base / "w.duckdb"
    sync(base / "inbox", wh)
    return wh


def test_query_prints_a_table_and_csv(warehouse):
    r = runner.invoke(app, ["query", "-w", str(warehouse), "SELECT count(*) AS n FROM core.person"])
    assert r.exit_code == 0, r.output
    assert "n" in r.output
    r = runner.invoke(app, ["query", "-w", str(warehouse), "--format", "csv",
                            "SELECT source_system, count(*) AS n FROM core.person_xref GROUP BY 1 ORDER BY 1"])
    assert r.exit_code == 0, r.output
    lines = r.output.strip().splitlines()
    assert lines[0] == "source_system,n"
    assert any(line.startswith("low_income,") for line in lines)


def test_query_is_read_only(warehouse):
    r = runner.invoke(app, ["query", "-w", str(warehouse), "DELETE FROM core.person"])
    assert r.exit_code == 1
    assert "只读" in r.output or "read-only" in r.output.lower()
    r = runner.invoke(app, ["query", "-w", str(warehouse), "SELECT count(*) FROM core.person"])
    assert r.exit_code == 0


def test_query_on_missing_warehouse_says_so(tmp_path):
    r = runner.invoke(app, ["query", "-w", str(tmp_path / "nope.duckdb"), "SELECT 1"])
    assert r.exit_code == 1
    assert "不存在" in r.output


def test_status_shows_runs_and_ledger(warehouse, monkeypatch):
    import cli

    monkeypatch.setattr(cli.console, "width", 200)
    r = runner.invoke(app, ["status", "-w", str(warehouse)])
    assert r.exit_code == 0, r.output
    assert "最近的运行" in r.output and "装载台账" in r.output and "low_income" in r.output


def test_a_runs_publish_is_timed_and_folded_into_its_row_by_the_next_run(tmp_path, monkeypatch):
    """The publish (commit, analyst file, reports, rename) comes after the run wrote its
    row: its seconds reach `status` at once (the side file) and quality.run with the
    next run that publishes."""
    import gc
    import json

    import cli
    import duckdb
    from runtime import BATCH_GC_THRESHOLD
    from warehouse.queries import recent_stage_times
    from warehouse.runs import pending_runs

    synth.generate(tmp_path / "inbox", households=12, seed=5, noise="clean", days=2)
    wh = tmp_path / "w.duckdb"
    import flows

    seen = []
    configure = flows.configure_warehouse
    monkeypatch.setattr(flows, "configure_warehouse", lambda s: (seen.append(gc.get_threshold()), configure(s)))
    first = sync(tmp_path / "inbox", wh, Selection(until=date(2026, 7, 1)))
    # the run tunes the collector for a batch job (runtime.py), then puts the process's back
    assert seen == [BATCH_GC_THRESHOLD] and gc.get_threshold() != BATCH_GC_THRESHOLD
    pending = pending_runs(wh)
    assert [(r["run_id"], r.get("amends")) for r in pending] == [(first.run_id, True)]
    stages = json.loads(pending[0]["summary"])["stage_seconds"]
    assert 0 < stages["publish"] < stages["total"]
    names, rows = recent_stage_times(wh)
    assert rows[0][0] == first.run_id and rows[0][names.index("发布（提交、分析库、报告）")] is not None
    monkeypatch.setattr(cli.console, "width", 250)
    assert "发布" in runner.invoke(app, ["status", "-w", str(wh)]).output

    second = sync(tmp_path / "inbox", wh)  # the next day's exports: published
    assert second.status == "succeeded" and second.run_id != first.run_id
    con = duckdb.connect(str(wh), read_only=True)
    row = con.execute("SELECT summary FROM quality.run WHERE run_id = ?", [first.run_id]).fetchall()
    con.close()
    assert len(row) == 1 and json.loads(row[0][0])["stage_seconds"]["publish"] == stages["publish"]
    assert [r["run_id"] for r in pending_runs(wh)] == [second.run_id]


def test_settings_layering(tmp_path):
    cfg = tmp_path / "residents.toml"
    cfg.write_text('inbox = "/data/inbox"\nwarehouse = "/data/w.duckdb"\ngrid_households = 250\n'
                   '[district]\ncounty = "西安区"\ncounty_code = "220403"\n', encoding="utf-8")
    s = load_settings(cfg, env={})
    assert (str(s.inbox), s.grid_households, s.district.county_code, s.district.city) == \
        ("/data/inbox", 250, "220403", None)
    s = load_settings(cfg, env={"RESIDENTS_WAREHOUSE": "/env/w.duckdb", "RESIDENTS_GRID_HOUSEHOLDS": "200"})
    assert (str(s.warehouse), s.grid_households) == ("/env/w.duckdb", 200)
    s = load_settings(cfg, env={"RESIDENTS_WAREHOUSE": "/env/w.duckdb"}, warehouse=Path("/cli/w.duckdb"))
    assert str(s.warehouse) == "/cli/w.duckdb"
    with pytest.raises(ConfigError, match="配置文件不存在"):
        load_settings(tmp_path / "missing.toml", env={})


def test_family_planning_url_defaults_to_the_sqlite_in_the_inbox(tmp_path):
    (tmp_path / "family_planning").mkdir()
    (tmp_path / "family_planning" / "ylfn.sqlite").write_bytes(b"")
    s = load_settings(env={}, inbox=tmp_path)
    assert s.resolved_family_planning_url() == f"sqlite:///{(tmp_path / 'family_planning' / 'ylfn.sqlite').resolve()}"
    s = load_settings(env={"RESIDENTS_FAMILY_PLANNING_URL": "postgresql+psycopg://u@h/db"}, inbox=tmp_path)
    assert s.resolved_family_planning_url() == "postgresql+psycopg://u@h/db"


@pytest.mark.parametrize("toml", [
    '[sources.low_income]\nurl = "sftp://exchange:pw-LEAK-123@10.1.2.3/x/"\n',
    '[sources.low_income]\nurl = "mysql+pymysql://reader:pw-LEAK-123@qzj/wis"\nattempts = "many"\n',
    'family_planning_url = "mysql+pymysql://reader:pw-LEAK-123@qzj/wis"\n',
])
def test_a_settings_error_never_echoes_a_password_written_in_a_url(tmp_path, toml):
    cfg = tmp_path / "residents.toml"
    cfg.write_text(toml, encoding="utf-8")
    try:
        load_settings(cfg, env={})
    except ConfigError as exc:
        assert "pw-LEAK-123" not in str(exc)
    else:   # accepted (the URL is only checked when used): then it must not be echoed later either
        assert "pw-LEAK-123" not in repr(load_settings(cfg, env={}))


@pytest.mark.parametrize("value, resolved", [("4GB", "4GB"), ("512 mb", "512MB"), ("1.5GiB", "1.5GiB"),
                                             ("none", None), ("NONE", None)])
def test_memory_limit_values(value, resolved):
    assert load_settings(env={}, memory_limit=value).resolved_memory_limit() == resolved


@pytest.mark.parametrize("value", ["auto", "50%"])
def test_memory_limit_as_a_share_of_the_machine(value):
    import os

    total_mb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**20
    got = load_settings(env={}, memory_limit=value).resolved_memory_limit()
    share = 0.25 if value == "auto" else 0.5
    assert got.endswith("MB") and abs(int(got[:-2]) - max(1024, total_mb * share)) <= 1


@pytest.mark.parametrize("value", ["lots", "4", "0GB", "150%", "-1GB", "4 GB; DROP TABLE x"])
def test_a_bad_memory_limit_is_a_configuration_error(value):
    with pytest.raises(ConfigError, match="memory_limit"):
        load_settings(env={}, memory_limit=value)


@pytest.mark.parametrize("memory, linkage, resolved", [
    ("8GB", "auto", "2000MB"), ("1GB", "auto", "512MB"), ("none", "auto", None), ("8GB", "3GB", "3GB"),
    ("8GB", "none", None), ("1.5GiB", "auto", "512MB"), ("20GiB", "auto", "5368MB")])
def test_the_linkage_databases_get_a_quarter_of_the_memory_limit(memory, linkage, resolved):
    s = load_settings(env={}, memory_limit=memory, linkage_memory_limit=linkage)
    assert s.resolved_linkage_memory_limit() == resolved


def test_a_bad_linkage_memory_limit_is_a_configuration_error():
    with pytest.raises(ConfigError, match="linkage_memory_limit"):
        load_settings(env={}, linkage_memory_limit="half")


def test_the_memory_limit_reaches_the_warehouse_and_the_linkage_databases(tmp_path, monkeypatch):
    """`memory_limit` bounds the sync's warehouse connection and, a quarter of it
    (`linkage_memory_limit = "auto"`), the linkage model's in-memory databases, which spill
    to a private folder next to the warehouse (never to `./.tmp` of wherever the command ran)."""
    import duckdb

    from pipelines.linkage import model as linkage_model
    from warehouse import store

    seen: dict[str, str] = {}
    real_db = linkage_model.LinkageModel._db

    def spying_db():
        db = real_db()
        seen["model"], seen["spill"] = db.duckdb_con.execute(
            "SELECT current_setting('memory_limit'), current_setting('temp_directory')").fetchall()[0]
        return db

    real_open = store.open_database

    def spying_open(path, **kw):
        con = real_open(path, **kw)
        if not kw.get("read_only"):
            seen["warehouse"] = con.execute("SELECT current_setting('memory_limit')").fetchall()[0][0]
        return con

    monkeypatch.setattr(linkage_model.LinkageModel, "_db", staticmethod(spying_db))
    monkeypatch.setattr(store, "open_database", spying_open)
    inbox, wh = tmp_path / "inbox", tmp_path / "w.duckdb"
    synth.generate(inbox, households=20, seed=3)
    try:
        from flows import run_sync

        assert run_sync(load_settings(env={}, inbox=inbox, warehouse=wh, memory_limit="300MB")).status == "succeeded"
    finally:
        store.set_memory_limit(None)
        linkage_model.set_duckdb_options()
    spill_dir = tmp_path / ".residents" / "tmp"
    # 300 MB in MiB; the model's databases a quarter of it, at least 512 MB (488 MiB)
    assert seen["warehouse"].startswith("286") and seen["model"].startswith("488")
    assert Path(seen["spill"]) == spill_dir and spill_dir.is_dir() and (spill_dir.stat().st_mode & 0o077) == 0
    assert duckdb.connect().execute("SELECT current_setting('memory_limit')").fetchall()[0][0] != seen["model"]


@pytest.mark.parametrize("memory, incremental, resolved", [
    ("auto", "auto", "1GB"), ("512MB", "auto", "512MB"), ("none", "auto", "1GB"), ("8GB", "3GB", "3GB"),
    ("8GB", "none", None)])
def test_a_local_run_gets_the_incremental_memory_limit(memory, incremental, resolved):
    s = load_settings(env={}, memory_limit=memory, incremental_memory_limit=incremental)
    assert s.resolved_incremental_memory_limit() == resolved


def test_a_local_run_bounds_the_warehouse_cache_and_a_full_one_does_not(tmp_path, monkeypatch):
    """A sync that resolves and rebuilds only what changed builds under
    `incremental_memory_limit`; the first sync, and one that has to re-cluster everyone,
    under `memory_limit`."""
    import shutil

    import duckdb

    from flows import run_sync
    from warehouse import build, store

    def duckdb_size(v: str) -> str:  # DuckDB's own rendering of a size
        return duckdb.connect().execute(f"SET memory_limit = '{v}'; SELECT current_setting('memory_limit')") \
            .fetchall()[0][0]

    seen: list[str] = []
    real_build = build.build_core

    def spying_build(con, **kw):
        seen.append(con.execute("SELECT current_setting('memory_limit')").fetchall()[0][0])
        return real_build(con, **kw)

    monkeypatch.setattr(build, "build_core", spying_build)
    inbox, daily, wh = tmp_path / "inbox", tmp_path / "daily", tmp_path / "w.duckdb"
    synth.generate(inbox, households=40, seed=5, days=2)
    roster = max((inbox / "low_income").glob("*.xlsx"))
    day = max((inbox / "floating_population").glob("*.csv"))
    shutil.copytree(inbox, daily, ignore=shutil.ignore_patterns(roster.name, day.name, "_truth"))
    settings = dict(env={}, inbox=daily, warehouse=wh, memory_limit="900MB", incremental_memory_limit="400MB",
                    incremental_max_growth=10.0)
    try:
        assert run_sync(load_settings(**settings, incremental_min_mentions=0)).status == "succeeded"
        shutil.copy2(roster, daily / "low_income" / roster.name)
        local = run_sync(load_settings(**settings, incremental_min_mentions=0))
        shutil.copy2(day, daily / "floating_population" / day.name)
        again_full = run_sync(load_settings(**settings, incremental_min_mentions=10**9))
    finally:
        store.set_memory_limit(None)
    assert local.resolution_mode == "incremental" and again_full.resolution_mode == "full"
    assert seen == [duckdb_size("900MB"), duckdb_size("400MB"), duckdb_size("900MB")]


_COMMAND = """
import atexit, sys
sys.path.insert(0, {root!r})
from runtime import run_command

class Torn:
    def __del__(self):
        print("torn down", flush=True)

kept = Torn()  # a module global: freed only by the interpreter's teardown

def main():
    atexit.register(lambda: print("later handler ran"))
    sys.stdout.write("output left in the buffer")
    {end}

run_command(main)
"""


@pytest.mark.parametrize("end, status, stderr", [
    ("pass", 0, ""),
    ("raise SystemExit(3)", 3, ""),
    ("raise SystemExit('配置错误')", 1, "配置错误"),
    ("raise SystemExit(None)", 0, ""),
])
def test_a_command_ends_without_the_teardown_and_keeps_its_status(end, status, stderr):
    """`runtime.run_command` (the `residents` entry point): the exit status is the one the
    command exited with, buffered output and later exit handlers are not lost, and the
    interpreter's teardown (0.4 s after a 1M delta) is skipped — an object freed only
    there is never finalised."""
    import subprocess
    import sys

    root = str(Path(__file__).resolve().parents[1])
    proc = subprocess.run([sys.executable, "-c", _COMMAND.format(root=root, end=end)], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == status
    assert proc.stdout.startswith("output left in the buffer") and "later handler ran" in proc.stdout
    assert "torn down" not in proc.stdout
    assert stderr in proc.stderr


def test_a_command_that_fails_with_an_exception_ends_as_python_ends_it():
    import subprocess
    import sys

    root = str(Path(__file__).resolve().parents[1])
    proc = subprocess.run([sys.executable, "-c", _COMMAND.format(root=root, end="raise ValueError('坏')")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and "ValueError: 坏" in proc.stderr
    assert "later handler ran" in proc.stdout and "torn down" in proc.stdout
