"""Read-only access for analysts and the `status` / `query` commands."""

from __future__ import annotations

import os

import duckdb
import numpy as np
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
    using the linkage model stored by the last resolution (restored with the name
    frequencies of the current mentions, so the weights are those the run scored with).

    Each comparison frame: 比对项 (comparison), 结果 (the level that applied), m, u and
    权重 (its match weight in bits, log2 of the Bayes factor; the prior row holds the
    prior odds, the total row the sum and, in 结果, the match probability)."""
    from pipelines.linkage import LinkageModel, explain_pairs
    from warehouse.decisions import latest_model_settings, mentions_of

    con = connect_read_only(path)
    try:
        mentions = con.execute("SELECT * FROM stg.mention").df()
        relationships = con.execute("SELECT kind, from_mention_id, to_mention_id FROM stg.relationship").df()
        model = LinkageModel.from_settings(latest_model_settings(con))
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
    pairs = pairs[:20]
    frames = explain_pairs(mentions, pairs, relationships=relationships, model=model) if pairs else []
    for (a, b), frame in zip(pairs, frames):
        out.append((f"{a}  ↔  {b}", _explain_display(frame)))
    return out


def _explain_display(frame: pd.DataFrame) -> pd.DataFrame:
    """An `explain_pair` frame narrowed for a terminal (five short columns)."""
    level = frame["level"].astype(object).copy()
    level[frame["comparison"] == "prior"] = "先验"
    m, u, w = (pd.to_numeric(frame[c], errors="coerce") for c in ("m_probability", "u_probability", "match_weight"))
    adjusted = (m > 0) & (u > 0) & ((w - np.log2(m / u)).abs() > 0.01)
    level[adjusted] = level[adjusted] + "（频率调整）"  # a common name weighs less than m/u says
    total = frame["comparison"] == "total"
    if total.any() and "match_probability" in frame:
        level[total] = "概率 " + frame.loc[total, "match_probability"].map(lambda p: f"{p:.6f}")
    return pd.DataFrame({
        "比对项": frame["comparison"],
        "结果": level,
        "m": frame["m_probability"].map(lambda v: "" if pd.isna(v) else f"{v:.3g}"),
        "u": frame["u_probability"].map(lambda v: "" if pd.isna(v) else f"{v:.3g}"),
        "权重": frame["match_weight"].map(lambda v: f"{v:+.2f}"),
    })
