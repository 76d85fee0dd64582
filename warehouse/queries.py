"""Read-only access for analysts and the `status` / `query` commands."""

from __future__ import annotations

import os

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


def explain_person(path: str | os.PathLike[str], ref_a: str, ref_b: str | None = None) -> list[tuple[str, pd.DataFrame]]:
    """Explanations for a person (its mentions, how each was matched, and the pairwise
    comparison of each mention with the person's first one) or for one pair of mentions,
    using the linkage model stored by the last resolution."""
    from pipelines.linkage import LinkageModel, explain_pair
    from warehouse.decisions import latest_model_settings, mentions_of

    con = connect_read_only(path)
    try:
        mentions = con.execute("SELECT * FROM stg.mention").df()
        relationships = con.execute("SELECT kind, from_mention_id, to_mention_id FROM stg.relationship").df()
        model = LinkageModel()
        model.settings = latest_model_settings(con)
        out: list[tuple[str, pd.DataFrame]] = []
        if ref_b is None and ref_a.startswith("P"):
            ids = mentions_of(con, ref_a)
            xref = con.execute(
                "SELECT x.mention_id, x.source_system, x.source_locator, x.role, x.match_method, "
                "round(x.match_probability, 4) AS match_probability, m.name, m.citizen_id, m.id_status, m.birth_date "
                "FROM core.person_xref x JOIN stg.mention m USING (mention_id) WHERE x.person_id = ? "
                "ORDER BY x.mention_id", [ref_a]).df()
            out.append((f"{ref_a} 的记录及匹配方式", xref))
            pairs = [(ids[0], other) for other in ids[1:]]
        else:
            a = mentions_of(con, ref_a)[0]
            b = mentions_of(con, ref_b)[0] if ref_b else None
            if b is None:
                raise ValueError("explain needs a person id, or two mention ids")
            pairs = [(a, b)]
    finally:
        con.close()
    for a, b in pairs[:20]:
        frame = explain_pair(mentions, a, b, relationships=relationships, model=model)
        out.append((f"{a}  ↔  {b}", frame))
    return out
