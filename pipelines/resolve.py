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
    # an empty frame (nothing staged yet, every export failed) carries no dtypes: give its
    # keys those of the mentions so the joins below line up
    key_type = mentions["mention_id"].dtype
    if clusters.empty:
        clusters = clusters.astype({"mention_id": key_type})
    if previous_xref.empty:
        previous_xref = previous_xref.astype({"mention_id": key_type, "person_id": "object"})
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
        m[["cluster_label", "old_id", "mention_id"]].rename(columns={"old_id": "pid"}).assign(by_id=0),
        m[["cluster_label", "cid_id", "mention_id"]].rename(columns={"cid_id": "pid"}).assign(by_id=1),
    ]).dropna(subset=["pid"])
    # how strongly each cluster claims each old id (mentions carried over, then citizen IDs)
    strength = (claims.groupby(["pid", "cluster_label"])
                .agg(n=("by_id", "size"), n_cid=("by_id", "sum")).reset_index())
    strength["n_old"] = strength["n"] - strength["n_cid"]
    strength["seq"] = parse_person_seq(strength["pid"])

    # each old id goes to the cluster with most of its mentions (ties: the cluster whose
    # earliest mention comes first, as ids are issued, so a split gives the older id back
    # to the records that had it; then the one holding its citizen ID; then the smallest label)
    order = (m.assign(export_date=pd.to_datetime(m["export_date"]))
              .sort_values(["export_date", "mention_id"], na_position="last")
              .drop_duplicates("cluster_label")["cluster_label"])
    rank = pd.Series(range(len(order)), index=order.to_numpy())
    strength["first"] = strength["cluster_label"].map(rank)
    owner = strength.sort_values(["pid", "n_old", "first", "n_cid", "cluster_label"],
                                 ascending=[True, False, True, False, True])
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
    # a cluster split off a person gets back an id that was merged into that person
    # (`previous_persons.former_ids`, most recent first) when no one holds it: an
    # officer's unlink undoes the link's renumbering
    restored = _restore_former_ids(new_clusters, lost, previous_persons, set(owner["pid"]))
    fresh = [c for c in new_clusters if c not in restored]
    new_ids = pd.Series([format_person_id(next_sequence + i) for i in range(len(fresh))],
                        index=fresh, dtype=object)
    next_sequence += len(fresh)
    cluster_id = pd.concat([cluster_id, pd.Series(restored, dtype=object), new_ids])

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


def _restore_former_ids(new_clusters: pd.Series, lost: pd.DataFrame, previous_persons: pd.DataFrame,
                        taken: set[str]) -> dict[object, str]:
    """cluster_label → a former id of the person it split from (see `assign_person_ids`)."""
    if "former_ids" not in previous_persons or lost.empty or not len(new_clusters):
        return {}
    former = {p: str(f).split(",") for p, f in zip(previous_persons["person_id"], previous_persons["former_ids"])
              if isinstance(f, str) and f}
    if not former:
        return {}
    out: dict[object, str] = {}
    used = set(taken)
    lost_by_cluster = lost.sort_values(["cluster_label", "n"], ascending=[True, False]).groupby("cluster_label")["pid"]
    claims = {label: list(pids) for label, pids in lost_by_cluster}
    for label in new_clusters:
        for pid in claims.get(label, []):
            choice = next((f for f in former.get(pid, []) if f not in used), None)
            if choice:
                out[label] = choice
                used.add(choice)
                break
    return out


def resolve_persons(mentions: pd.DataFrame, previous_xref: pd.DataFrame, previous_persons: pd.DataFrame,
                    clusterer=deterministic_clusters) -> Resolution:
    """Cluster the mentions with `clusterer`, then assign stable ids."""
    clusters = clusterer(mentions)
    return assign_person_ids(mentions, clusters, previous_xref, previous_persons)


# --------------------------------------------------------------------------------------
# with probabilistic linkage (pipelines.linkage)
# --------------------------------------------------------------------------------------
#: Below this many current mentions every probabilistic resolution is a full run: it takes
#: seconds to a minute there, and it is exactly what one load of all exports gives.
INCREMENTAL_MIN_MENTIONS = 100_000
#: The stored model is stale once the population it was trained on (distinct valid
#: citizen IDs) grew by more than this share: the sync then retrains and re-clusters fully.
INCREMENTAL_MAX_DRIFT = 0.05
#: ... or once its mentions grew by more than this share (records restating known people,
#: e.g. each month's 低保 roster, shift the model's prior slowly).
INCREMENTAL_MAX_MENTION_GROWTH = 0.25


@dataclass
class LinkedResolution:
    resolution: Resolution
    candidates: pd.DataFrame       # review queue: mention_id_a, mention_id_b, match_probability, reason, level_*
    model_settings: dict | None    # trained Splink settings (stored for explanations and incremental runs)
    mode: str                      # deterministic | full | incremental
    why: str = ""                  # why this mode (a full run asked for incremental says why)
    #: person ids whose mentions changed in this resolution, before and after (what an
    #: incremental build must derive again)
    touched_persons: frozenset[str] = frozenset()


def incremental_obstacle(mentions: pd.DataFrame | int, previous_xref: pd.DataFrame | int, training: dict | None, *,
                         min_mentions: int | None = None, max_drift: float | None = None,
                         citizen_ids: int | None = None, max_mention_growth: float | None = None) -> str | None:
    """Why an incremental resolution must not be used (None: it may). See `resolve_mentions`.
    `mentions`, `previous_xref`: the frames, or just how many rows they have.

    The stored model goes stale when the *population* it was trained on changed: the
    distinct valid citizen IDs (`citizen_ids`, now; `training["citizen_ids"]`, then) grew
    by more than `max_drift`. Records that mention people already known (next month's
    低保 roster restates every member) do not make it stale by themselves; only when the
    mentions grew by more than `max_mention_growth` is it retrained. A model stored
    without a population count (older warehouses) is judged by its mentions against
    `max_drift`, as before."""
    min_mentions = INCREMENTAL_MIN_MENTIONS if min_mentions is None else min_mentions
    max_drift = INCREMENTAL_MAX_DRIFT if max_drift is None else max_drift
    max_mention_growth = INCREMENTAL_MAX_MENTION_GROWTH if max_mention_growth is None else max_mention_growth
    n_mentions = mentions if isinstance(mentions, int) else len(mentions)
    n_previous = previous_xref if isinstance(previous_xref, int) else len(previous_xref)
    if not n_previous:
        return "first_load"
    if training is None:
        return "no_stored_model"
    if n_mentions < min_mentions:
        return "small_warehouse"
    trained_on = float(training.get("mentions") or 0)
    if trained_on <= 0:
        return "model_stale"
    people_then = float(training.get("citizen_ids") or 0)
    if citizen_ids is None or people_then <= 0:
        return "model_stale" if (n_mentions - trained_on) > max_drift * trained_on else None
    if (citizen_ids - people_then) > max_drift * people_then:
        return "model_stale"
    if (n_mentions - trained_on) > max_mention_growth * trained_on:
        return "model_stale"
    return None


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
    min_incremental_mentions: int | None = None,
    max_drift: float | None = None,
) -> LinkedResolution:
    """Cluster the mentions and assign stable ids.

    mode ``deterministic``: valid-ID clusters only. ``full``: probabilistic linkage over
    all mentions (a model is trained on them; the review queue comes from the same
    scoring). ``incremental``: only mentions new since the last resolution are scored,
    against existing persons and each other, with the stored model (`model_settings`, as
    `LinkageModel.stored_settings` wrote it); each joins at most one existing person or
    starts a new one, and existing persons keep their mentions, methods and probabilities.
    `previous_xref` carries person_id (and match_method, match_probability).

    When incremental falls back to full (the rule)
    ----------------------------------------------
    A full run is a function of the current mentions alone, so loading exports day by day
    or all at once gives the same warehouse. An incremental run depends on the order of
    arrival (the model it reuses was trained on older data, and it never merges existing
    persons), so it is only used where a full run is expensive and would change little.
    An ``incremental`` request runs fully, and says why in ``why``, when:

    * ``first_load`` / ``no_stored_model``: nothing to link to, or no model to reuse;
    * ``small_warehouse``: fewer than `INCREMENTAL_MIN_MENTIONS` current mentions (a full
      run takes seconds to a minute there: exactness wins);
    * ``model_stale``: the mentions grew by more than `INCREMENTAL_MAX_DRIFT` (5 %) of
      those the stored model was trained on: its m, u, λ and name frequencies no longer
      describe the data, so the model is retrained and everything re-clustered;
    * ``bridge``: a new mention would join two existing persons (an edge refused as
      ``two_existing_persons``): that is evidence the two are one person, which only a
      full run may decide (it merges them and logs it);
    * and, decided by the sync before it asks (`flows`): officers' decisions changed, an
      export was superseded or retracted, or a forced reload (``--force``).

    Otherwise (the common nightly case on a large warehouse) only the new mentions are
    scored, and the review queue gains their uncertain pairs."""
    if mode == "deterministic":
        clusters = deterministic_clusters(mentions)
        res = assign_person_ids(mentions, clusters, previous_xref, previous_persons, next_sequence)
        return LinkedResolution(res, pd.DataFrame(), None, mode)

    from pipelines.linkage import REVIEW_BAND, LinkageModel, link_new_mentions, resolve_probabilistic, review_from

    why = ""
    if mode == "incremental":
        model = LinkageModel.from_settings(model_settings)
        why = incremental_obstacle(mentions, previous_xref, model.training if model.settings else None,
                                   min_mentions=min_incremental_mentions, max_drift=max_drift) or ""
        if not why:
            linked = _resolve_incremental(mentions, relationships, decisions, previous_xref, previous_persons,
                                          next_sequence, model, district, link_new_mentions)
            if linked is not None:
                return linked
            why = "bridge"

    result, pairs, model = resolve_probabilistic(mentions, relationships, decisions, district=district,
                                                 score_from=REVIEW_BAND[0])
    clusters = result.clusters
    order = pd.Index(clusters["mention_id"]).get_indexer(mentions["mention_id"].astype(str))
    clusters = clusters.iloc[order].reset_index(drop=True)
    candidates = review_from(result, pairs, decisions)
    res = assign_person_ids(mentions, clusters, previous_xref, previous_persons, next_sequence)
    return LinkedResolution(res, candidates, model.stored_settings() if model is not None else None, "full", why)


def _resolve_incremental(mentions, relationships, decisions, previous_xref, previous_persons, next_sequence,
                         model, district, link_new_mentions) -> LinkedResolution | None:
    """The incremental step; None when a new mention bridges two existing persons."""
    known = set(previous_xref["mention_id"])
    is_new = ~mentions["mention_id"].isin(known)
    existing = mentions[~is_new].merge(previous_xref[["mention_id", "person_id"]], on="mention_id")
    links, review = link_new_mentions(mentions[is_new], existing, relationships, decisions, model=model,
                                      district=district)
    if (review["reason"] == "refused:two_existing_persons").any():
        return None
    prev = previous_xref.set_index("mention_id")
    old = pd.DataFrame({
        "mention_id": existing["mention_id"].to_numpy(),
        "cluster_label": ("P:" + existing["person_id"].astype(str)).to_numpy(),
        "match_method": existing["mention_id"].map(prev["match_method"]).to_numpy()
        if "match_method" in prev else "probabilistic",
        "match_probability": existing["mention_id"].map(prev["match_probability"]).to_numpy()
        if "match_probability" in prev else np.nan,
    })
    old["match_method"] = old["match_method"].astype(object)
    old["match_probability"] = pd.to_numeric(pd.Series(old["match_probability"]), errors="coerce").astype(float)
    # a published singleton that a new mention joins is matched now, as a full run would say
    joined = links[links["person_id"].notna()]
    if len(joined):
        rank = {"citizen_id": 0, "document_number": 1, "must_link": 2, "probabilistic": 3}
        best = (joined.assign(r=joined["match_method"].map(rank).fillna(9),
                              cluster_label="P:" + joined["person_id"].astype(str))
                .sort_values(["cluster_label", "r", "match_probability"], ascending=[True, True, False])
                .drop_duplicates("cluster_label").set_index("cluster_label"))
        lone = (old["match_method"] == "singleton") & old["cluster_label"].isin(best.index)
        method = old["cluster_label"].map(best["match_method"]).astype(object)
        prob = pd.to_numeric(old["cluster_label"].map(best["match_probability"]), errors="coerce").astype(float)
        old["match_method"] = np.where(lone, method, old["match_method"])
        old["match_probability"] = np.where(lone, prob, old["match_probability"])
    clusters = pd.concat([old, links[["mention_id", "cluster_label", "match_method", "match_probability"]]],
                         ignore_index=True)
    res = assign_person_ids(mentions, clusters, previous_xref, previous_persons, next_sequence)
    return LinkedResolution(res, review, model.stored_settings(), "incremental")


# --------------------------------------------------------------------------------------
# local re-clustering: the work of a sync follows what changed
# --------------------------------------------------------------------------------------
def resolve_component(lf: pd.DataFrame, facts: pd.DataFrame, decisions: pd.DataFrame | None,
                      previous_xref: pd.DataFrame, previous_persons: pd.DataFrame, next_sequence: int, model, *,
                      threshold: float | None = None) -> LinkedResolution:
    """Re-cluster one closed set of mentions — changed, removed or decided ones, new ones
    that `attach_new_mentions` could not simply attach, and every mention of the
    published persons they touch — with the stored model,
    exactly as a full run clusters them, and carry the person ids (merges, splits and
    retirements logged as in a full run). `previous_xref` / `previous_persons`: the
    published rows of these mentions and persons; `facts`: mention_id, export_date,
    citizen_id of the mentions in `lf`. An untrained `model` (a full run: `lf` holds
    every mention) is trained on `lf` first.

    Equal to a full run with the same model whenever no pair crosses the set's border,
    which `attach_new_mentions` ensures one hop deep (every person scored at the review
    band's floor with one of its mentions is in it): the persons outside it were
    clustered before on the same evidence and nothing of theirs changed. What differs
    from a full run (documented in the README): the model is the stored one until the
    mentions grew past `incremental_max_growth`, and a chain of refused links two hops
    away is not reconsidered."""
    from pipelines.linkage import DEFAULT_THRESHOLD, REVIEW_BAND, resolve_frame, review_from

    threshold = DEFAULT_THRESHOLD if threshold is None else threshold
    trains = model.settings is None
    result, pairs, model = resolve_frame(lf, decisions, threshold=threshold, model=model, score_from=REVIEW_BAND[0])
    clusters = result.clusters
    order = pd.Index(clusters["mention_id"].astype(str)).get_indexer(facts["mention_id"].astype(str))
    clusters = clusters.iloc[order].reset_index(drop=True)
    candidates = review_from(result, pairs, decisions)
    res = assign_person_ids(facts, clusters, previous_xref, previous_persons, next_sequence)
    settings = model.stored_settings() if model is not None else None
    touched = frozenset(set(previous_xref["person_id"].dropna().astype(str)) | set(res.xref["person_id"].dropna()))
    return LinkedResolution(res, candidates, settings, "full" if trains else "incremental", touched_persons=touched)


@dataclass
class Attachment:
    """What `attach_new_mentions` decided, and what it left to `resolve_component`."""

    links: pd.DataFrame            # mention_id, person_id (NA: a new person), cluster_label, match_method, match_probability
    joined: pd.DataFrame           # person_id, match_method, match_probability: how each anchor was joined (a
    #                                published lone mention, 'singleton' so far, is matched that way now)
    review: pd.DataFrame           # REVIEW_COLUMNS for the attached mentions
    hard_persons: set[str]         # published persons to re-cluster in whole
    hard_mentions: set[str]        # core mentions to re-cluster with them


def score_new(model, lf_core: pd.DataFrame, lf_candidates: pd.DataFrame) -> pd.DataFrame:
    """The scored pairs `attach_new_mentions` works from: new × existing and new × new,
    down to the plain-evidence floor (the review band's floor and the plain-evidence
    pairs are kept from them, as a full run keeps them in `resolve_frame`). Needs the
    model's term frequencies, not its name frequencies: the caller may score while it
    counts those."""
    from pipelines.linkage import PLAIN_SCORE_FLOOR

    return (model.predict_new(lf_core, lf_candidates, threshold=PLAIN_SCORE_FLOOR)
            if len(lf_core) else pd.DataFrame())


def attach_new_mentions(model, lf_core: pd.DataFrame, lf_candidates: pd.DataFrame, candidate_person: pd.Series,
                        anchor_keys: pd.DataFrame, hard: set[str], decisions: pd.DataFrame | None, *,
                        threshold: float | None = None, pairs: pd.DataFrame | None = None) -> Attachment:
    """The fast path of a local resolution: a published person that only *gains* mentions
    (most of a monthly roster mentions people already known) is one node (an anchor,
    ``P:<person_id>``, carrying its valid ID or document from `anchor_keys`: person_id,
    citizen_id, document_number) instead of all its mentions, so only new × existing
    pairs are scored. `lf_core`: the mentions to resolve; those in `hard` (changed or
    decided mentions and the mentions of the persons they touch) are never attached here.

    A group of mentions linked at the review band's floor or above (or sharing a valid
    ID or document) is attached here only when it holds no hard mention, at most one
    anchor and no link a constraint refused; then the result is the one a full run gives
    (nothing in it can refuse a link inside the anchor's person). Every other group is
    returned in `hard_persons` / `hard_mentions`, for `resolve_component`. `pairs`: what
    `score_new` gave for these frames, when the caller scored them already."""
    from pipelines.linkage import (DEFAULT_THRESHOLD, REVIEW_BAND, _with_plain_evidence, constrained_clusters,
                                   map_nodes, pair_levels, review_from)
    from pipelines.linkage.cluster import UnionFind

    threshold = DEFAULT_THRESHOLD if threshold is None else threshold
    out_cols = ["mention_id", "person_id", "cluster_label", "match_method", "match_probability"]
    core_ids = [str(u) for u in lf_core["unique_id"]]
    if pairs is None:
        pairs = score_new(model, lf_core, lf_candidates)
    known = candidate_person.dropna()
    anchor_of = pd.Series(("P:" + known.astype(str)).to_numpy(dtype=object),
                          index=known.index.astype(str).to_numpy(dtype=object))

    def nodes_of(ids: pd.Series) -> pd.Series:
        return map_nodes(ids, anchor_of)

    # the groups: core mentions and anchors joined by a scored pair or a shared key
    nodes: dict[str, int] = {m: i for i, m in enumerate(core_ids)}
    links: list[tuple[str, str]] = []
    if len(pairs):
        pairs = pd.concat([pairs, pair_levels(pairs)], axis=1)
        pairs = _with_plain_evidence(pairs, pd.concat([lf_core, lf_candidates], ignore_index=True),
                                     min(REVIEW_BAND[0], threshold), threshold, model.name_frequencies)
        # each side's node once, for the groups here and the clusterer's edges below
        pairs["node_l"] = nodes_of(pairs["unique_id_l"]).to_numpy()
        pairs["node_r"] = nodes_of(pairs["unique_id_r"]).to_numpy()
        links += list(zip(pairs["node_l"], pairs["node_r"]))
    keys = anchor_keys.assign(node="P:" + anchor_keys["person_id"].astype(str))
    links += _key_links(core_ids, lf_core, keys)
    for a, b in links:
        for n in (a, b):
            nodes.setdefault(n, len(nodes))
    names = list(nodes)
    uf = UnionFind(len(names))
    for a, b in links:
        uf.union(uf.find(nodes[a]), uf.find(nodes[b]))
    group = {n: uf.find(i) for n, i in nodes.items()}
    members: dict[int, list[str]] = {}
    for n, g in group.items():
        members.setdefault(g, []).append(n)
    bad_groups = {g for g, ns in members.items()
                  if sum(n.startswith("P:") for n in ns) > 1 or any(n in hard for n in ns)}

    # cluster the rest with the anchors as single nodes
    easy_core = [m for m in core_ids if group[m] not in bad_groups]
    anchors = sorted({n for g, ns in members.items() if g not in bad_groups for n in ns if n.startswith("P:")})
    lf_easy = lf_core.set_index(lf_core["unique_id"].astype(str)).loc[easy_core]
    akeys = keys.set_index("node").reindex(anchors)
    edges = None
    if len(pairs):
        e = pairs[pairs["eligible"]]
        edges = pd.DataFrame({"mention_id_a": e["node_l"].to_numpy(), "mention_id_b": e["node_r"].to_numpy(),
                              "match_probability": e["match_probability"].to_numpy()})
        edges = edges[edges["mention_id_a"] != edges["mention_id_b"]]
    result = constrained_clusters(
        easy_core + anchors, edges,
        citizen_ids=list(lf_easy["cid"]) + list(akeys["citizen_id"]),
        document_keys=list(lf_easy["doc_no"]) + list(akeys["document_number"]),
        decisions=None, threshold=threshold, anchors=[False] * len(easy_core) + [True] * len(anchors))
    refused = set(result.rejected["mention_id_a"]).union(result.rejected["mention_id_b"]) if len(
        result.rejected) else set()
    bad_groups |= {group[n] for n in refused if n in group}
    hard_nodes = {n for g in bad_groups for n in members[g]}
    hard_persons = {n[2:] for n in hard_nodes if n.startswith("P:")}
    hard_mentions = {n for n in hard_nodes if not n.startswith("P:")}

    cl = result.clusters.assign(mention_id=result.clusters["mention_id"].astype(str))
    cl = cl[~cl["mention_id"].isin(hard_nodes)]
    is_anchor = cl["mention_id"].str.startswith("P:")
    anchor_label = cl[is_anchor].set_index("cluster_label")["mention_id"]
    attached = cl[~is_anchor].copy()
    joined = attached["cluster_label"].map(anchor_label).astype("string")
    attached["person_id"] = joined.str.slice(2).astype(object).where(joined.notna(), pd.NA)
    attached["cluster_label"] = joined.astype(object).where(joined.notna(), attached["cluster_label"])
    # an anchor stands for a published person; when that person is one lone mention, the
    # anchor's own method and probability are that mention's in a full run
    hit = cl[is_anchor & (cl["match_method"] != "singleton")]
    joined = pd.DataFrame({"person_id": hit["mention_id"].str.slice(2).to_numpy(),
                           "match_method": hit["match_method"].to_numpy(),
                           "match_probability": hit["match_probability"].to_numpy()})
    review = review_from(result, pairs if len(pairs) else None, decisions, threshold=threshold,
                         node_of=anchor_of)
    if len(review):
        review = review[~review["mention_id_a"].isin(hard_mentions) & ~review["mention_id_b"].isin(hard_mentions)
                        & ~nodes_of(review["mention_id_a"]).isin(hard_nodes).to_numpy()
                        & ~nodes_of(review["mention_id_b"]).isin(hard_nodes).to_numpy()]
    return Attachment(attached[out_cols].reset_index(drop=True), joined, review.reset_index(drop=True),
                      hard_persons, hard_mentions)


def _key_links(core_ids: list[str], lf_core: pd.DataFrame, keys: pd.DataFrame) -> list[tuple[str, str]]:
    """(mention, anchor) for each core mention whose valid ID — else document number — is
    an anchor's (`keys`: citizen_id, document_number, node; of two anchors with one key
    the last), vectorised: a roster month asks this of ~70 000 anchors."""
    def lookup(values: pd.Series, key: str) -> np.ndarray:
        known = keys[keys[key].notna()].drop_duplicates(key, keep="last")
        node = pd.Series(known["node"].to_numpy(dtype=object), index=known[key].astype(str).to_numpy(dtype=object))
        return values.astype(object).where(values.notna().to_numpy(), None).map(node).to_numpy(dtype=object)

    by_cid, by_doc = lookup(lf_core["cid"], "citizen_id"), lookup(lf_core["doc_no"], "document_number")
    anchor = np.where(pd.notna(by_cid), by_cid, by_doc)
    hit = pd.notna(anchor)
    return list(zip(np.asarray(core_ids, dtype=object)[hit], anchor[hit]))
