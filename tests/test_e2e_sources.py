"""End to end with real sources: a generated district whose file exports sit on the SFTP
server and whose family-planning tables sit in a MariaDB exchange database (前置机).
One `residents sync` pulls and loads everything; a second run fetches nothing and
changes nothing."""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
import subprocess
import uuid
from pathlib import Path

import duckdb
import pytest
import sqlalchemy as sa

import synth
from tests.e2e_helpers import assert_same, snapshot, sync

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
FILE_SYSTEMS = ("civil_affairs", "low_income", "floating_population")


def copy_family_planning_to_mysql(sqlite_path: Path, url: sa.URL) -> int:
    """The generated T_YLFN / T_ZN, as the exchange platform would hold them in MariaDB."""
    from synth.exports.family_planning import DDL

    engine = sa.create_engine(url)
    rows_copied = 0
    try:
        with engine.begin() as conn:
            for stmt in DDL.replace("TIMESTAMP", "DATETIME").split(";"):
                if stmt.strip():
                    conn.exec_driver_sql(stmt)
        src = sqlite3.connect(sqlite_path)
        try:
            for table in ("T_YLFN", "T_ZN"):
                cur = src.execute(f"SELECT * FROM {table}")
                cols = [d[0] for d in cur.description]
                rows = cur.fetchall()
                with engine.begin() as conn:
                    conn.exec_driver_sql(f"INSERT INTO {table} ({', '.join(cols)}) "
                                         f"VALUES ({', '.join(['%s'] * len(cols))})", rows)
                rows_copied += len(rows)
        finally:
            src.close()
    finally:
        engine.dispose()
    return rows_copied


def ledger(warehouse: Path) -> list[tuple]:
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        return con.execute("SELECT source_object, status, path FROM quality.load_ledger").fetchall()
    finally:
        con.close()


def residents(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(ROOT / ".venv" / "bin" / "residents"), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=900)


def file_state(folder: Path) -> dict[str, tuple[int, str]]:
    return {str(p.relative_to(folder)): (p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_one_sync_pulls_and_loads_everything_a_second_changes_nothing(sftp_server, mysql_db, tmp_path):
    exports = Path(sftp_server["root"]) / f"e2e-{uuid.uuid4().hex[:8]}"
    try:
        synth.generate(exports, households=80, seed=5, noise="realistic")
        assert copy_family_planning_to_mysql(exports / "family_planning" / "family_planning.sqlite", mysql_db) > 0
        password = mysql_db.password
        lines = [f'inbox = "{tmp_path / "inbox"}"', f'warehouse = "{tmp_path / "warehouse.duckdb"}"', ""]
        for system in FILE_SYSTEMS:
            lines += [f"[sources.{system}]",
                      f'url = "sftp://{sftp_server["user"]}@{sftp_server["host"]}:{sftp_server["port"]}'
                      f'{exports / system}/"',
                      f'key_file = "{sftp_server["key"]}"', "settle_seconds = 0.5", ""]
        lines += ["[sources.family_planning]",
                  f'url = "{mysql_db._replace(password=None).render_as_string(hide_password=False)}"',
                  'password_env = "RESIDENTS_E2E_EXCHANGE_PASSWORD"', ""]
        config = tmp_path / "residents.toml"
        config.write_text("\n".join(lines), encoding="utf-8")
        assert password not in config.read_text(encoding="utf-8")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_API_URL", "RESIDENTS_"))}
        env["RESIDENTS_E2E_EXCHANGE_PASSWORD"] = password

        first = residents("sync", "-c", str(config), env=env, cwd=tmp_path)
        assert first.returncode == 0, first.stdout + first.stderr
        assert password not in first.stdout + first.stderr
        for system in FILE_SYSTEMS:   # every export file landed, byte for byte
            assert file_state(tmp_path / "inbox" / system).keys() == file_state(exports / system).keys()
        # the same district loaded from a local inbox (SQLite) gives the same warehouse
        wh, reference = tmp_path / "warehouse.duckdb", tmp_path / "reference.duckdb"
        assert sync(exports, reference).status == "succeeded"
        ours, theirs = ledger(wh), ledger(reference)
        assert {(o, s) for o, s, _p in ours} == {(o, s) for o, s, _p in theirs}
        assert {"T_YLFN", "T_ZN"} <= {o for o, s, _p in ours if s == "loaded"}
        assert all(password not in (p or "") for _o, _s, p in ours)
        assert_same(snapshot(reference), snapshot(wh))

        inbox_before, wh_before = file_state(tmp_path / "inbox"), file_state(tmp_path)[wh.name]
        second = residents("sync", "-c", str(config), env=env, cwd=tmp_path)
        assert second.returncode == 0, second.stdout + second.stderr
        assert "无新数据" in second.stdout
        assert file_state(tmp_path / "inbox") == inbox_before      # nothing fetched, manifest untouched
        assert file_state(tmp_path)[wh.name] == wh_before           # the warehouse was not rewritten

        pulled = residents("pull", "-c", str(config), env=env, cwd=tmp_path)
        assert pulled.returncode == 0, pulled.stdout + pulled.stderr
        assert file_state(tmp_path / "inbox") == inbox_before
    finally:
        shutil.rmtree(exports, ignore_errors=True)
