"""Read-only access for analysts and the `status` / `query` commands."""

from __future__ import annotations

import os
from dataclasses import dataclass

import duckdb
import pandas as pd

from warehouse.exceptions import ReadOnlyQueryError
from warehouse.store import connect_read_only


def run_read_only(path: str | os.PathLike[str], sql: str) -> pd.DataFrame:
    """Run one SQL statement on a read-only connection (writes are refused by DuckDB)."""
    con = connect_read_only(path)
    try:
        return con.execute(sql).df()
    except duckdb.Error as exc:
        raise ReadOnlyQueryError(detail=str(exc).splitlines()[0]) from None
    finally:
        con.close()


def recent_runs(path: str | os.PathLike[str], limit: int = 10) -> pd.DataFrame:
    return run_read_only(path, f"""
        SELECT run_id, flow, status, started_at, finished_at,
               json_extract_string(summary, '$.persons_after') AS persons,
               json_extract_string(summary, '$.persons_created') AS created
        FROM quality.run ORDER BY started_at DESC LIMIT {int(limit)}""")


def ledger_overview(path: str | os.PathLike[str]) -> pd.DataFrame:
    return run_read_only(path, """
        SELECT source_system, mapping, status, count(*) AS exports, sum(rows_read) AS rows_read,
               sum(rows_accepted) AS accepted, sum(rows_rejected) AS rejected,
               sum(values_rejected) AS values_rejected, max(export_date) AS latest_export
        FROM quality.load_ledger GROUP BY ALL ORDER BY source_system, mapping, status""")


@dataclass
class ExplainInputs:
    """What explaining a person or a pair needs from the warehouse."""

    mentions: pd.DataFrame
    relationships: pd.DataFrame
    model_settings: dict | None
    pairs: list[tuple[str, str]]
    person_records: pd.DataFrame | None   # the person's mentions and how each was matched


def explain_inputs(path: str | os.PathLike[str], ref_a: str, ref_b: str | None = None,
                   max_pairs: int = 20) -> ExplainInputs:
    """For a person id: its mentions, each paired with the person's first one; for two
    references: that pair. With the stored linkage model's settings."""
    from warehouse.decisions import latest_model_settings, mentions_of

    con = connect_read_only(path)
    try:
        mentions = con.execute("SELECT * FROM stg.mention").df()
        relationships = con.execute("SELECT kind, from_mention_id, to_mention_id FROM stg.relationship").df()
        settings = latest_model_settings(con)
        records = None
        if ref_b is None and ref_a.startswith("P"):
            ids = mentions_of(con, ref_a)
            records = con.execute(
                "SELECT x.mention_id, x.source_system, x.source_locator, x.role, x.match_method, "
                "round(x.match_probability, 4) AS match_probability, m.name, m.citizen_id, m.id_status, m.birth_date "
                "FROM core.person_xref x JOIN stg.mention m USING (mention_id) WHERE x.person_id = ? "
                "ORDER BY x.mention_id", [ref_a]).df()
            pairs = [(ids[0], other) for other in ids[1:]]
        else:
            if ref_b is None:
                raise ValueError("explain needs a person id, or two mention ids")
            pairs = [(mentions_of(con, ref_a)[0], mentions_of(con, ref_b)[0])]
    finally:
        con.close()
    return ExplainInputs(mentions, relationships, settings, pairs[:max_pairs], records)
