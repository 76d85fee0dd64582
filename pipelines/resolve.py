"""Person resolution: mentions → clusters → stable person ids.

The stage has two replaceable halves:

* a *clusterer* turns mentions into clusters (`cluster_label` per mention, plus how
  each mention was matched and with what probability). `deterministic_clusters`
  links mentions that carry the same valid citizen ID (or the same foreign document
  type and number); every other mention is its own person.
* `assign_person_ids` makes ids stable across runs: a cluster keeps the id its
  mentions had before (or the id of the existing person with its citizen ID); when
  clusters merge the oldest id survives; when an old person is split the largest
  part keeps the id; ids nobody claims any more are retired. Every such event goes
  to the merge log. New ids are issued in the order of each cluster's earliest
  mention (export date, then mention id), so loading the same exports day by day or
  all at once issues the same ids.

Pure functions on frames: no warehouse, no files.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

XREF_COLUMNS = ["mention_id", "person_id", "match_method", "match_probability"]
MERGE_LOG_COLUMNS = ["event", "from_person_id", "to_person_id", "reason"]


@dataclass
class Resolution:
    xref: pd.DataFrame        # XREF_COLUMNS, one row per mention
    merge_log: pd.DataFrame   # MERGE_LOG_COLUMNS
    next_sequence: int        # the next person-id sequence number to issue


def deterministic_clusters(mentions: pd.DataFrame) -> pd.DataFrame:
    """mention_id, cluster_label, match_method, match_probability.

    Key: a valid citizen ID, else a non-resident document (type + number), else the
    mention itself. A cluster of more than one mention was matched on `citizen_id`."""
    cid = mentions["citizen_id"].astype("string")
    doc_ok = mentions["document_number"].notna() & ~mentions["document_type"].isin(["resident_id"]) & cid.isna()
    doc_key = "DOC:" + mentions["document_type"].astype("string") + ":" + mentions["document_number"].astype("string")
    key = ("ID:" + cid).fillna(doc_key.where(doc_ok)).fillna("M:" + mentions["mention_id"].astype("string"))
    size = key.map(key.value_counts())
    method = np.where(size > 1, np.where(key.str.startswith("ID:"), "citizen_id", "document_number"), "singleton")
    return pd.DataFrame({
        "mention_id": mentions["mention_id"].to_numpy(),
        "cluster_label": key.to_numpy(),
        "match_method": method,
        "match_probability": np.where(size > 1, 1.0, np.nan),
    })


def format_person_id(seq: int) -> str:
    return f"P{seq:010d}"


def parse_person_seq(person_id: pd.Series) -> pd.Series:
    return pd.to_numeric(person_id.astype("string").str[1:], errors="coerce")


def assign_person_ids(
    mentions: pd.DataFrame,
    clusters: pd.DataFrame,
    previous_xref: pd.DataFrame,
    previous_persons: pd.DataFrame,
    next_sequence: int | None = None,
) -> Resolution:
    """Give every cluster a stable person id (see module docstring).

    mentions: mention_id, export_date, citizen_id (for carrying ids by citizen ID)
    clusters: mention_id, cluster_label, match_method, match_probability
    previous_xref: mention_id, person_id (last published)
    previous_persons: person_id, citizen_id (last published)
    """
    prev_ids = pd.concat([previous_xref["person_id"], previous_persons["person_id"]]).dropna()
    if next_sequence is None:
        seqs = parse_person_seq(prev_ids)
        next_sequence = int(seqs.max()) + 1 if len(seqs) and seqs.notna().any() else 1

    m = clusters.merge(mentions[["mention_id", "export_date", "citizen_id"]], on="mention_id", how="left")
    m = m.merge(previous_xref[["mention_id", "person_id"]].rename(columns={"person_id": "old_id"}),
                on="mention_id", how="left")
    # a cluster whose citizen ID belongs to an existing person claims that person too
    by_cid = previous_persons.dropna(subset=["citizen_id"])[["citizen_id", "person_id"]]
    by_cid = by_cid.rename(columns={"person_id": "cid_id"}).drop_duplicates("citizen_id")
    m = m.merge(by_cid, on="citizen_id", how="left")

    claims = pd.concat([
        m[["cluster_label", "old_id", "mention_id"]].rename(columns={"old_id": "pid"}),
        m[["cluster_label", "cid_id", "mention_id"]].rename(columns={"cid_id": "pid"}),
    ]).dropna(subset=["pid"])
    # how strongly each cluster claims each old id (mentions carried over)
    strength = (claims.groupby(["pid", "cluster_label"]).size().rename("n").reset_index())
    strength["seq"] = parse_person_seq(strength["pid"])

    # each old id goes to the cluster with most of its mentions (ties: smallest label)
    owner = strength.sort_values(["pid", "n", "cluster_label"], ascending=[True, False, True])
    owner = owner.drop_duplicates("pid")
    # each cluster keeps the oldest id it owns
    kept = owner.sort_values(["cluster_label", "seq"]).drop_duplicates("cluster_label")
    cluster_id = kept.set_index("cluster_label")["pid"]

    log = []
    # merges: a cluster owning several old ids keeps the oldest, the others merge into it
    merged = owner[~owner["pid"].isin(kept["pid"])].merge(
        kept[["cluster_label", "pid"]].rename(columns={"pid": "to"}), on="cluster_label")
    for r in merged.itertuples(index=False):
        log.append(("merge", r.pid, r.to, "同一人的记录已关联（较早的编号保留）"))
    # splits: an old id also claimed by clusters that did not get it
    lost = strength.merge(owner[["pid", "cluster_label"]].rename(columns={"cluster_label": "owner"}), on="pid")
    lost = lost[lost["cluster_label"] != lost["owner"]]

    # new ids for clusters that own nothing, in order of their earliest mention
    first = (m.assign(export_date=pd.to_datetime(m["export_date"]))
              .sort_values(["export_date", "mention_id"], na_position="last")
              .drop_duplicates("cluster_label")[["cluster_label"]])
    new_clusters = first[~first["cluster_label"].isin(cluster_id.index)]["cluster_label"]
    new_ids = pd.Series([format_person_id(next_sequence + i) for i in range(len(new_clusters))],
                        index=new_clusters.to_numpy(), dtype=object)
    next_sequence += len(new_clusters)
    cluster_id = pd.concat([cluster_id, new_ids])

    split_to = lost.assign(to=lost["cluster_label"].map(cluster_id)).drop_duplicates(["pid", "to"])
    for r in split_to.itertuples(index=False):
        log.append(("split", r.pid, r.to, "原为同一人的部分记录被拆分为另一人"))
    retired = set(prev_ids) - set(owner["pid"])
    for pid in sorted(retired):
        log.append(("retire", pid, None, "该人员已无任何来源记录（来源文件被更正或撤回）"))

    xref = pd.DataFrame({
        "mention_id": clusters["mention_id"].to_numpy(),
        "person_id": clusters["cluster_label"].map(cluster_id).to_numpy(),
        "match_method": clusters["match_method"].to_numpy(),
        "match_probability": clusters["match_probability"].to_numpy(),
    })
    return Resolution(xref=xref, merge_log=pd.DataFrame(log, columns=MERGE_LOG_COLUMNS),
                      next_sequence=next_sequence)


def resolve_persons(mentions: pd.DataFrame, previous_xref: pd.DataFrame, previous_persons: pd.DataFrame,
                    clusterer=deterministic_clusters) -> Resolution:
    """Cluster the mentions with `clusterer`, then assign stable ids."""
    clusters = clusterer(mentions)
    return assign_person_ids(mentions, clusters, previous_xref, previous_persons)


# --------------------------------------------------------------------------------------
# with probabilistic linkage (pipelines.linkage)
# --------------------------------------------------------------------------------------
@dataclass
class LinkedResolution:
    resolution: Resolution
    candidates: pd.DataFrame       # review queue: mention_id_a, mention_id_b, match_probability, reason, level_*
    model_settings: dict | None    # trained Splink settings (stored for explanations and incremental runs)
    mode: str                      # deterministic | full | incremental


def resolve_mentions(
    mentions: pd.DataFrame,
    relationships: pd.DataFrame | None,
    decisions: pd.DataFrame | None,
    previous_xref: pd.DataFrame,
    previous_persons: pd.DataFrame,
    next_sequence: int,
    *,
    mode: str = "full",
    model_settings: dict | None = None,
    district=None,
) -> LinkedResolution:
    """Cluster the mentions and assign stable ids.

    mode ``deterministic``: valid-ID clusters only. ``full``: probabilistic linkage over
    all mentions (a model is trained on them). ``incremental``: only mentions new since
    the last resolution are linked, to existing persons or to each other; existing
    persons are neither merged nor split (the stored model is reused when given).
    `previous_xref` carries person_id (and, for incremental, match_method and
    match_probability of the published mentions)."""
    if mode == "deterministic":
        clusters = deterministic_clusters(mentions)
        res = assign_person_ids(mentions, clusters, previous_xref, previous_persons, next_sequence)
        return LinkedResolution(res, pd.DataFrame(), None, mode)

    from pipelines.linkage import LinkageModel, link_new_mentions, resolve_probabilistic, review_candidates

    model = LinkageModel()
    if model_settings:
        model.settings = model_settings
    known = set(previous_xref["mention_id"])
    is_new = ~mentions["mention_id"].isin(known)
    if mode == "incremental" and known and model.settings is not None:
        existing = mentions[~is_new].merge(previous_xref[["mention_id", "person_id"]], on="mention_id")
        links, refused = link_new_mentions(mentions[is_new], existing, relationships, decisions, model=model,
                                           district=district)
        prev = previous_xref.set_index("mention_id")
        old = pd.DataFrame({
            "mention_id": existing["mention_id"].to_numpy(),
            "cluster_label": ("P:" + existing["person_id"].astype(str)).to_numpy(),
            "match_method": existing["mention_id"].map(prev["match_method"]).to_numpy()
            if "match_method" in prev else "probabilistic",
            "match_probability": existing["mention_id"].map(prev["match_probability"]).to_numpy()
            if "match_probability" in prev else np.nan,
        })
        clusters = pd.concat([old, links[["mention_id", "cluster_label", "match_method", "match_probability"]]],
                             ignore_index=True)
        res = assign_person_ids(mentions, clusters, previous_xref, previous_persons, next_sequence)
        candidates = refused.assign(reason="refused:" + refused["reason"].astype(str)) if len(refused) else refused
        return LinkedResolution(res, candidates, model.settings, "incremental")

    result, _pairs, model = resolve_probabilistic(mentions, relationships, decisions, district=district)
    clusters = result.clusters
    order = pd.Index(clusters["mention_id"]).get_indexer(mentions["mention_id"].astype(str))
    clusters = clusters.iloc[order].reset_index(drop=True)
    candidates = review_candidates(mentions, relationships, decisions, model=model, district=district)
    res = assign_person_ids(mentions, clusters, previous_xref, previous_persons, next_sequence)
    return LinkedResolution(res, candidates, model.settings if model is not None else None, "full")
