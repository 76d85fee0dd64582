"""Run records: one row of `quality.run` per sync, backfill or decision.

A run that changed the warehouse writes its row inside its own transaction (published
with everything else). A run that found nothing to do never copies or rewrites the
warehouse (that is what keeps a no-op sync within a second or two at any size), so
its row goes to a small side file next to the warehouse, `<warehouse>.runs.jsonl`,
appended under the writer lock; the next transaction moves those rows into
`quality.run` (ignoring any already there) and removes the file once it published.
Readers (`residents status`) see both.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
from pathlib import Path
from typing import Any

import duckdb

RUN_COLUMNS = ("run_id", "flow", "started_at", "finished_at", "status", "parameters", "summary", "schema_version")


def pending_path(warehouse: str | os.PathLike[str]) -> Path:
    p = Path(warehouse)
    return p.with_name(p.name + ".runs.jsonl")


def run_row(*, run_id: str, flow: str, started_at: str, finished_at: str | None, status: str,
            parameters: dict[str, Any], summary: dict[str, Any]) -> dict[str, Any]:
    from warehouse.migrations import CURRENT_VERSION

    return {"run_id": run_id, "flow": flow, "started_at": started_at, "finished_at": finished_at,
            "status": status, "parameters": json.dumps(parameters, default=str, ensure_ascii=False),
            "summary": json.dumps(summary, default=str, ensure_ascii=False), "schema_version": CURRENT_VERSION}


def record_run(con: duckdb.DuckDBPyConnection, row: dict[str, Any]) -> None:
    """The run's row, in the open transaction."""
    con.execute(f"INSERT OR IGNORE INTO quality.run ({', '.join(RUN_COLUMNS)}) "
                f"VALUES ({', '.join('?' for _ in RUN_COLUMNS)})", [row[c] for c in RUN_COLUMNS])


def record_unchanged_run(warehouse: str | os.PathLike[str], row: dict[str, Any], *, lock_timeout_s: float) -> None:
    """A run that changed nothing: its row goes to the side file (see module docstring)."""
    from warehouse.store import writer_lock

    with writer_lock(Path(warehouse), timeout_s=lock_timeout_s, run_id=row.get("run_id"), flow=row.get("flow")):
        from warehouse.store import private_umask

        with private_umask(), open(pending_path(warehouse), "a", encoding="utf-8") as fh:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")


def pending_runs(warehouse: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Rows of the side file (a torn last line, from a crash mid-append, is skipped)."""
    path = pending_path(warehouse)
    if not path.exists():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        with contextlib.suppress(json.JSONDecodeError):
            row = json.loads(line)
            if isinstance(row, dict) and all(c in row for c in RUN_COLUMNS):
                rows.append(row)
    return rows


def fold_pending_runs(con: duckdb.DuckDBPyConnection, warehouse: str | os.PathLike[str]) -> int:
    """Move the side file's rows into quality.run (the caller holds the writer lock and
    removes the file after publishing: `discard_pending_runs`)."""
    rows = pending_runs(warehouse)
    for row in rows:
        record_run(con, row)
    return len(rows)


def discard_pending_runs(warehouse: str | os.PathLike[str]) -> None:
    pending_path(warehouse).unlink(missing_ok=True)


def load_pending_runs(con: duckdb.DuckDBPyConnection, warehouse: str | os.PathLike[str]) -> None:
    """On a (read-only) connection: a temp table `pending_run` shaped like quality.run
    with the side file's rows, so queries can read `quality.run UNION ALL pending_run`."""
    con.execute("CREATE OR REPLACE TEMP TABLE pending_run AS SELECT * FROM quality.run LIMIT 0")
    rows = pending_runs(warehouse)
    if rows:
        con.executemany(f"INSERT INTO pending_run ({', '.join(RUN_COLUMNS)}) "
                        f"VALUES ({', '.join('?' for _ in RUN_COLUMNS)})", [[r[c] for c in RUN_COLUMNS] for r in rows])


def record_interrupted_run(warehouse: str | os.PathLike[str], holder: str) -> None:
    """A run that was killed while it held the writer lock (its text was left in the
    lock file): one `interrupted` row in the side file, moved into quality.run by the
    next transaction. Called under the writer lock."""
    import re

    fields = dict(re.findall(r"(\w+)=(\S+)", holder))
    run_id = fields.get("run") if fields.get("run") not in (None, "-") else None
    started = fields.get("since")
    row = run_row(run_id=run_id or f"interrupted-{started or 'unknown'}-{fields.get('pid', '?')}",
                  flow=fields.get("flow") if fields.get("flow") not in (None, "-") else "unknown",
                  started_at=(started or "").replace("T", " ") or dt.datetime.now().isoformat(timespec="seconds"),
                  finished_at=None, status="interrupted",
                  parameters={}, summary={"pid": fields.get("pid"), "lock_text": holder[:200],
                                          "message": "运行被中断（进程被终止），未发布任何更改"})
    from warehouse.store import private_umask

    with private_umask(), open(pending_path(warehouse), "a", encoding="utf-8") as fh:
        fh.write(json.dumps(row, ensure_ascii=False) + "\n")
