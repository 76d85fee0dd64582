"""Officers' link decisions, the review queue and the stored linkage model.

A decision is about two *mentions* (a person id is turned into one of its mentions),
so it survives re-clustering: every later resolution receives the active decisions
and must honour them (must-link pairs together, cannot-link pairs apart).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json

import duckdb
import pandas as pd

# the decision errors live with the other warehouse errors (a command that only needs
# to recognise them, like the audited `query`, does not import pandas through this module)
from warehouse.exceptions import DecisionConflictError, ForceWithoutReasonError, UnknownReferenceError  # noqa: F401
from warehouse.frames import frame_table


DECISION_COLUMNS = ["mention_id_a", "mention_id_b", "decision"]
_DECISION_ZH = {"must_link": "是同一人", "cannot_link": "不是同一人"}


def _is_person(ref: str) -> bool:
    """Whether a reference names a person (P + digits) rather than a record."""
    return ref.startswith("P") and ref[1:].isdigit()


def mentions_of(con: duckdb.DuckDBPyConnection, ref: str) -> list[str]:
    """The mention ids a reference stands for: a person id → all its mentions."""
    if _is_person(ref):
        rows = con.execute("SELECT mention_id FROM core.person_xref WHERE person_id = ? ORDER BY mention_id",
                           [ref]).fetchall()
    else:
        rows = con.execute("SELECT mention_id FROM stg.mention WHERE mention_id = ?", [ref]).fetchall()
    if not rows:
        raise UnknownReferenceError(ref=ref)
    return [r[0] for r in rows]


def decision_mention(con: duckdb.DuckDBPyConnection, ref: str, mentions: list[str]) -> str:
    """The mention a must-link names for `ref`: a record itself; for a person, its first
    mention that carries the person's citizen ID (else its document number), else its
    first mention. The clustering joins the mentions sharing a valid ID before any scored
    pair, and a must-link overrides the ID constraint only between the two components it
    joins: on a mention its person holds by probability alone (no ID), it would take that
    record to the other person and leave the rest behind, refused by the two IDs (a
    person of 4 records linked to one of 5: 7 and 2 instead of 9)."""
    if not _is_person(ref):
        return mentions[0]
    found = con.execute(
        "SELECT min(m.mention_id) FROM core.person_xref x JOIN stg.mention m USING (mention_id) "
        "JOIN core.person p ON p.person_id = x.person_id WHERE x.person_id = ? "
        "AND (m.citizen_id = p.citizen_id OR (p.citizen_id IS NULL AND m.document_number = p.document_number))",
        [ref]).fetchall()
    return found[0][0] if found and found[0][0] is not None else mentions[0]


def add_decision(con: duckdb.DuckDBPyConnection, a: str, b: str, decision: str, *, decided_by: str,
                 reason: str | None = None, channel: str = "cli") -> str:
    """Store a decision between two mentions; an earlier decision on the pair is deactivated."""
    if decision not in ("must_link", "cannot_link"):
        raise ValueError(decision)
    a, b = sorted((a, b))
    now = dt.datetime.now()
    decision_id = "D" + hashlib.sha1(f"{a}|{b}|{decision}|{now.isoformat()}".encode()).hexdigest()[:15]
    con.execute("UPDATE core.link_decision SET is_active = FALSE WHERE mention_id_a = ? AND mention_id_b = ?", [a, b])
    con.execute("INSERT INTO core.link_decision VALUES (?, ?, ?, ?, ?, ?, ?, ?, TRUE)",
                [decision_id, a, b, decision, decided_by, now, reason, channel])
    return decision_id


def link_persons(con: duckdb.DuckDBPyConnection, ref_a: str, ref_b: str, *, decided_by: str,
                 reason: str | None = None, channel: str = "cli", force: bool = False) -> list[str]:
    """must-link: one mention of each side is enough (clusters are transitive), recorded
    for a person on a mention carrying its citizen ID (`decision_mention`).

    Refused (`DecisionConflictError`) when an active cannot-link stands between the two
    sides, unless `force` (with a reason): then that cannot-link is deactivated, and
    both stay in core.link_decision."""
    ma, mb = mentions_of(con, ref_a), mentions_of(con, ref_b)
    a, b = decision_mention(con, ref_a, ma), decision_mention(con, ref_b, mb)
    if a == b:
        return []
    _overrule(con, _contradicting(con, ma, mb, "cannot_link"), "must_link", ref_a, ref_b, force, reason)
    return [add_decision(con, a, b, "must_link", decided_by=decided_by, reason=reason, channel=channel)]


def unlink(con: duckdb.DuckDBPyConnection, ref_a: str, ref_b: str, *, decided_by: str,
           reason: str | None = None, channel: str = "cli", force: bool = False) -> list[str]:
    """cannot-link between every mention of one side and every mention of the other.

    Refused when active must-links tie the two sides together (directly or through
    other records), unless `force` (with a reason): then those must-links are deactivated."""
    ma, mb = mentions_of(con, ref_a), mentions_of(con, ref_b)
    if set(ma) & set(mb):
        raise UnknownReferenceError(ref=f"{ref_a} 与 {ref_b} 有相同的记录，无法分开")
    _overrule(con, _contradicting(con, ma, mb, "must_link"), "cannot_link", ref_a, ref_b, force, reason)
    return [add_decision(con, a, b, "cannot_link", decided_by=decided_by, reason=reason, channel=channel)
            for a in ma for b in mb]


def _contradicting(con: duckdb.DuckDBPyConnection, ma: list[str], mb: list[str], kind: str) -> pd.DataFrame:
    """Active decisions of `kind` that a new opposite decision between ma and mb would
    contradict: cannot-links between the sides; must-links on a chain joining them."""
    active = con.execute("SELECT decision_id, mention_id_a, mention_id_b, decided_by, decided_at, reason "
                         "FROM core.link_decision WHERE is_active AND decision = ? ORDER BY decided_at", [kind]).df()
    sa, sb = set(ma), set(mb)
    if kind == "cannot_link":
        hit = [(x in sa and y in sb) or (x in sb and y in sa)
               for x, y in zip(active["mention_id_a"], active["mention_id_b"])]
        return active[hit]
    parent: dict[str, str] = {}

    def root(x: str) -> str:
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for x, y in zip(active["mention_id_a"], active["mention_id_b"]):
        parent[root(x)] = root(y)
    joined = {root(x) for x in sa} & {root(y) for y in sb}
    hit = [root(x) in joined and (x in sa | sb or y in sa | sb)
           for x, y in zip(active["mention_id_a"], active["mention_id_b"])]
    return active[hit]


def _overrule(con: duckdb.DuckDBPyConnection, earlier: pd.DataFrame, new: str, ref_a: str, ref_b: str,
              force: bool, reason: str | None) -> None:
    if earlier.empty:
        return
    if not force:
        first = earlier.iloc[0]
        raise DecisionConflictError(new=f"要求{_DECISION_ZH[new]}：", ref_a=ref_a, ref_b=ref_b,
                                    earlier_by=first["decided_by"], earlier_at=str(first["decided_at"])[:19],
                                    earlier=_DECISION_ZH["cannot_link" if new == "must_link" else "must_link"],
                                    earlier_id=first["decision_id"], earlier_reason=first["reason"] or "未填写")
    if not (reason and reason.strip()):
        raise ForceWithoutReasonError()
    con.executemany("UPDATE core.link_decision SET is_active = FALSE WHERE decision_id = ?",
                    [[d] for d in earlier["decision_id"]])


def active_decisions(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """mention_id_a, mention_id_b, decision of active decisions whose mentions still exist."""
    return con.execute(
        "SELECT mention_id_a, mention_id_b, decision FROM core.link_decision d WHERE is_active "
        "AND mention_id_a IN (SELECT mention_id FROM stg.mention) "
        "AND mention_id_b IN (SELECT mention_id FROM stg.mention) ORDER BY mention_id_a, mention_id_b").df()


def decisions_changed_since_last_run(con: duckdb.DuckDBPyConnection) -> bool:
    row = con.execute(
        "SELECT (SELECT max(decided_at) FROM core.link_decision) > "
        "coalesce((SELECT max(trained_at) FROM quality.linkage_model), TIMESTAMP '1900-01-01')").fetchall()
    return bool(row[0][0])


def new_decision_mentions(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Mentions named by officers' decisions taken since the last resolution (their
    persons are re-clustered by the next sync, or right away by `link`/`unlink`)."""
    return [r[0] for r in con.execute("""
        WITH since AS (SELECT coalesce(max(trained_at), TIMESTAMP '1900-01-01') AS t FROM quality.linkage_model),
        d AS (SELECT mention_id_a, mention_id_b FROM core.link_decision, since WHERE decided_at > since.t)
        SELECT mention_id_a FROM d UNION SELECT mention_id_b FROM d ORDER BY 1""").fetchall()]


def save_model(con: duckdb.DuckDBPyConnection, *, run_id: str, mode: str, threshold: float, mentions: int,
               settings: dict | None) -> None:
    con.execute("INSERT INTO quality.linkage_model VALUES (?, now(), ?, ?, ?, ?)",
                [run_id, mode, threshold, mentions, json.dumps(settings, ensure_ascii=False) if settings else None])


def latest_model_settings(con: duckdb.DuckDBPyConnection) -> dict | None:
    """The stored settings of the latest model (restore with `LinkageModel.from_settings`:
    Splink's settings plus what the model was trained on)."""
    rows = con.execute("SELECT settings FROM quality.linkage_model WHERE settings IS NOT NULL "
                       "ORDER BY trained_at DESC LIMIT 1").fetchall()
    return json.loads(rows[0][0]) if rows else None


def write_candidates(con: duckdb.DuckDBPyConnection, candidates: pd.DataFrame, *, replace: bool = True) -> None:
    """Replace the review queue (person ids filled from the current xref).

    ``replace=False`` (an incremental resolution, which scores only the new mentions) adds
    the new pairs to the queue and keeps the rest, with their person ids refreshed."""
    if replace:
        con.execute("DELETE FROM core.match_candidate")
    else:
        for side in ("a", "b"):  # only the queue's mentions are looked up, only changed ids written
            con.execute(f"UPDATE core.match_candidate c SET person_id_{side} = x.person_id "
                        "FROM (SELECT mention_id, person_id FROM core.person_xref WHERE mention_id IN "
                        f"(SELECT mention_id_{side} FROM core.match_candidate)) x "
                        f"WHERE x.mention_id = c.mention_id_{side} AND c.person_id_{side} IS DISTINCT FROM x.person_id")
    if candidates is None or candidates.empty:
        return
    if not replace:
        with frame_table(con, "_cand_keys", candidates[["mention_id_a", "mention_id_b"]]):
            con.execute("DELETE FROM core.match_candidate c USING _cand_keys k "
                        "WHERE c.mention_id_a = k.mention_id_a AND c.mention_id_b = k.mention_id_b")
    level_cols = [c for c in candidates.columns if c.startswith("level_")]
    df = candidates.assign(levels=[json.dumps({c[6:]: (None if pd.isna(v) else str(v)) for c, v in zip(level_cols, row)},
                                              ensure_ascii=False)
                                   for row in candidates[level_cols].itertuples(index=False)])
    with frame_table(con, "_cand", df[["mention_id_a", "mention_id_b", "match_probability", "match_weight", "reason",
                                         "levels"]]):
        con.execute(
            "INSERT INTO core.match_candidate SELECT c.mention_id_a, c.mention_id_b, xa.person_id, xb.person_id, "
            "c.match_probability, c.match_weight, c.reason, c.levels FROM _cand c "
            "LEFT JOIN core.person_xref xa ON xa.mention_id = c.mention_id_a "
            "LEFT JOIN core.person_xref xb ON xb.mention_id = c.mention_id_b")


def read_review_queue(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """The review queue with both mentions' details, for the officers' xlsx."""
    return con.execute("""
        SELECT c.mention_id_a, c.mention_id_b, c.person_id_a, c.person_id_b, c.match_probability, c.reason,
               a.source_system AS system_a, a.source_object AS object_a, a.source_locator AS locator_a,
               a.name AS name_a, a.citizen_id AS id_a, coalesce(a.id_raw, '') AS id_raw_a, a.birth_date AS birth_a,
               a.gender AS gender_a, a.phone AS phone_a, coalesce(a.current_address, a.hukou_address) AS address_a,
               b.source_system AS system_b, b.source_object AS object_b, b.source_locator AS locator_b,
               b.name AS name_b, b.citizen_id AS id_b, coalesce(b.id_raw, '') AS id_raw_b, b.birth_date AS birth_b,
               b.gender AS gender_b, b.phone AS phone_b, coalesce(b.current_address, b.hukou_address) AS address_b
        FROM core.match_candidate c
        JOIN stg.mention a ON a.mention_id = c.mention_id_a
        JOIN stg.mention b ON b.mention_id = c.mention_id_b
        ORDER BY c.match_probability DESC, c.mention_id_a, c.mention_id_b""").df()
