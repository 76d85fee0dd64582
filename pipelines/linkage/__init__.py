"""Probabilistic person resolution (issue 4): which mentions are the same person.

Public API (pure functions on frames):

* `probabilistic_clusters(mentions, relationships=None, decisions=None, *, threshold=...)`
  → ``mention_id, cluster_label, match_method, match_probability``: the same contract as
  `pipelines.resolve.deterministic_clusters`, so
  ``resolve_persons(..., clusterer=probabilistic_clusters)`` (or a
  ``functools.partial`` carrying relationships and decisions) works unchanged.
  ``cluster_label`` is ``ID:<citizen id>`` when the cluster holds a valid ID (as the
  deterministic clusterer labels it), else ``DOC:<number>``, else
  ``M:<smallest mention id>`` (``DOC:<number>``: the number alone, since one passport is
  typed 护照 in one system and 其他 in another); ``match_method`` is ``citizen_id``, ``document_number``,
  ``must_link``, ``probabilistic`` or ``singleton``.
* `explain_pair(mentions, a, b)`: per comparison the level that applied, its m, u,
  Bayes factor and match weight, plus the prior and the total probability.
* `review_from(result, pairs, ...)`: pairs an officer should decide, from a clustering
  already done: probability in the uncertain band and not linked, links refused by a hard
  constraint, and high-probability pairs whose names differ (the twin pattern);
  `review_candidates(mentions, ...)` runs the resolution and then `review_from`.
* `link_new_mentions(new_mentions, existing_mentions, ...)`: the incremental step.

Steps: `features.linkage_frame` → `model.LinkageModel` (Splink 5, DuckDB; comparisons
and blocking from `comparisons.py`) → `cluster.constrained_clusters`.

Incremental vs full run
-----------------------
`link_new_mentions` compares only new × (blocked existing + new) mentions and attaches
each new mention to at most one existing person (or to a new cluster). It never merges
two existing persons and never splits one: a new mention that would bridge two
persons comes back in ``review`` as ``refused:two_existing_persons``. A full run
(`resolve_probabilistic` over all current mentions, then
`pipelines.resolve.assign_person_ids`) re-decides everything; it gives the same clusters
as the incremental run except where the new mentions are evidence that two existing
persons are one (the full run merges them and logs it), where a better-scored pair now
wins a contested mention, or where the model retrained on more data weighs a pair
differently. `pipelines.resolve.resolve_mentions` decides which to run (the rule is in
its docstring); person ids stay stable either way because `assign_person_ids` carries
them.

A restored model (`LinkageModel.from_settings` on the stored settings) has the trained
m, u and λ but no name frequencies: it computes them from the mentions it is given to
score, as training on them would, so it scores and explains exactly like the run that
trained it on the same mentions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from pipelines.linkage.cluster import (
    CLUSTER_COLUMNS,
    DEFAULT_THRESHOLD,
    REVIEW_BAND,
    ClusterResult,
    constrained_clusters,
)
from pipelines.linkage.comparisons import COMPARISONS, LINK_REQUIREMENTS, LinkRequirement, comparison
from pipelines.linkage.features import linkage_frame
from pipelines.linkage.model import LinkageModel

__all__ = [
    "DEFAULT_THRESHOLD", "REVIEW_BAND", "REVIEW_COLUMNS", "LinkageModel", "NameFrequencies", "explain_pair",
    "explain_pairs", "name_frequencies", "namesake_keys",
    "link_new_mentions", "linkage_frame", "map_nodes", "pair_levels", "meets_requirements", "probabilistic_clusters",
    "resolve_frame", "resolve_probabilistic", "review_candidates", "review_from",
]


# ----------------------------------------------------------------------------- helpers
def pair_levels(pairs: pd.DataFrame) -> pd.DataFrame:
    """The level label of every comparison for each scored pair (``level_<name>``)."""
    out = pd.DataFrame(index=pairs.index)
    for c in COMPARISONS:
        g = pairs[f"gamma_{c.name}"].astype(int)
        labels = {v: c.label_of(v) for v in g.unique()}
        out[f"level_{c.name}"] = g.map(labels)
    return out


def meets_requirements(pairs: pd.DataFrame, requirement: LinkRequirement = LINK_REQUIREMENTS) -> pd.Series:
    ok = pd.Series(False, index=pairs.index)
    for alt in requirement.any_of:
        m = pd.Series(True, index=pairs.index)
        for name, allowed in alt.items():
            cmp = comparison(name)
            m &= pairs[f"gamma_{cmp.name}"].isin([cmp.gamma(x) for x in allowed])
        ok |= m
    return ok


#: the largest chance, estimated from the data, that two different persons bearing a full
#: name were born on the same day (C(k, 2) / days spanned by the birth dates, k = the
#: number of birth dates the name is seen with): below it a name is *rare*
PLAIN_MAX_COINCIDENCE = 1e-3
#: a common full name still links on the exact birth date and gender when the expected
#: number of its bearers born on any one day (k / days spanned) is below this and the
#: data shows no namesake born that day (`NameFrequencies.ambiguous`)
PLAIN_MAX_NAMESAKES_PER_DAY = 5e-3
#: pairs are scored down to this probability so that plain-evidence pairs are seen
PLAIN_SCORE_FLOOR = 1e-9


@dataclass(frozen=True)
class NameFrequencies:
    """How common each name is among all current mentions: ``full`` (Simplified full
    name) and ``given`` (given name) → the number of distinct birth dates written with
    it (`name_bearers`), and ``span_days``, the days the birth dates span (at least a
    year). ``ambiguous``: the keys (`namesake_keys`: full name, birth date, gender) the
    data shows two persons under — two different valid IDs, or two records of one export
    file or table — None when unknown (the frame lacks those columns). ``sound`` and
    ``ambiguous_sound``: the same for the full name's pinyin (``name_py``), which
    homophones and romanised spellings share (周影 / 周颖, 钟红璐 / ZHONG HONGLU).
    `name_frequencies(lf)` computes them from a frame; a local resolution reads them from
    the whole linkage index (`warehouse.linkage_index.name_frequencies`)."""

    full: pd.Series
    given: pd.Series
    span_days: int
    ambiguous: frozenset[str] | None = None
    sound: pd.Series | None = None
    ambiguous_sound: frozenset[str] | None = None


def namesake_keys(name: pd.Series, birth: pd.Series, sex: pd.Series) -> pd.Series:
    """``name|YYYY-MM-DD|sex`` (NA when any part is unknown)."""
    day = pd.to_datetime(birth).dt.strftime("%Y-%m-%d").astype("string")
    return name.astype("string") + "|" + day + "|" + sex.astype("string")


def name_frequencies(lf: pd.DataFrame) -> NameFrequencies:
    births = pd.to_datetime(lf["birth"].dropna())
    span_days = max((births.max() - births.min()).days, 365) if len(births) else 365
    given = name_bearers(lf, "given") if "surname" in lf else pd.Series(dtype="int64")
    sound = name_bearers(lf, "name_py") if "name_py" in lf else None

    def seen_twice(name_col: str) -> frozenset[str] | None:
        if not {"sex", "cid", "source_object", name_col} <= set(lf.columns):
            return None
        g = lf.assign(key=namesake_keys(lf[name_col], lf["birth"], lf["sex"]))
        g = g[g["key"].notna()]
        ids = g.groupby("key")["cid"].nunique()
        in_one = g.groupby(["key", "source_object"], dropna=False).size().groupby(level=0).max()
        return frozenset(ids[ids > 1].index) | frozenset(in_one[in_one > 1].index)

    return NameFrequencies(name_bearers(lf), given, int(span_days), seen_twice("name_s"), sound,
                           seen_twice("name_py"))


def name_bearers(lf: pd.DataFrame, key: str = "name_s") -> pd.Series:
    """Full name (Simplified) → how many persons bear it, estimated from the data as the
    number of distinct birth dates it is written with (namesakes born the same day
    count once: the estimate errs on the rare side only for them). `key="given"`: the
    same for the given name (the name without its surname); `key="name_py"`: for the
    full name's pinyin."""
    frame = lf.assign(given=given_names(lf)) if key == "given" else lf
    known = frame[frame[key].notna() & frame["birth"].notna()]
    return known.groupby(key)["birth"].nunique()


def given_names(lf: pd.DataFrame) -> pd.Series:
    """The name without its surname (NA when either is unknown or nothing is left)."""
    name = lf["name_s"].astype("string")
    surname = lf["surname"].astype("string") if "surname" in lf else pd.Series(pd.NA, index=lf.index, dtype="string")
    n = surname.str.len()
    given = pd.Series(pd.NA, index=lf.index, dtype="string")
    for k in n.dropna().unique():  # one vectorised slice per surname length (1, 2, a few more)
        rows = (n == k).fillna(False).to_numpy()
        given[rows] = name[rows].str.slice(int(k))
    return given.where(given.str.len() > 0)


def plain_evidence(pairs: pd.DataFrame, lf: pd.DataFrame,
                   max_coincidence: float = PLAIN_MAX_COINCIDENCE, *,
                   frequencies: NameFrequencies | None = None) -> pd.Series:
    """Pairs whose evidence is plain although their score is not: the same exact birth
    date in two export files, the gender the same, no two valid IDs that disagree
    (`citizen_id` level not ``different_valid`` / ``disagree`` / a sequence-digit or
    two-digit difference; the clusterer still refuses to join two valid IDs), and

    * the same rare full name (identical Simplified form), or
    * the same rare given name of two or more characters under surnames one character
      or one sound apart (李忠建 / 季忠建: a mistyped surname), or
    * the same common full name, the gender known and the same, when few of its bearers
      are born on any one day (k / days spanned below `PLAIN_MAX_NAMESAKES_PER_DAY`) and
      the data shows no namesake born that day (two valid IDs, or two records of one
      file or table, under that name, birth date and gender): 刘霞 in a child record
      without ID and 刘霞 registered with one; or
    * the same full name by sound (the same pinyin: a homophone typo or a romanised
      spelling, 周影 / 周颖, 钟红璐 / ZHONG HONGLU), under the same conditions counted on the
      pinyin: the gender known and the same, few bearers of that sound per day, and no
      two persons seen under that sound, birth date and gender; or
    * names one character or one sound apart (邹武连 / 邹斌连, 王涛 / 玊涛) in two household
      listings (roster months) each of which lists no one else of that household born
      that day (``sole_in_household``), with the same flat, phone or relative besides:
      twins would be listed together, so the difference is a typo.

    A name is rare when the chance that two of its bearers (counted in the data,
    `name_bearers`) share a birthday is below `max_coincidence`; with the gender missing
    on one side (not contradicting, but not halving the namesakes either) below half of
    it. Twins (same birth date and surname, different given names) never qualify: not
    by name, and not as a typo where a listing shows both.

    `frequencies`: the names' frequencies among all current mentions when `lf` holds
    only some of them (default: computed from `lf`)."""
    out = pd.Series(False, index=pairs.index)
    if pairs.empty:
        return out
    # what every rule needs, cheap on level labels: only those pairs are looked at further
    # (a local resolution scores hundreds of thousands of pairs down to the floor)
    base = ((pairs["level_birth_date"] == "exact") & (pairs["level_source"] == "different")
            & ~pairs["level_citizen_id"].isin(["different_valid", "disagree", "sequence_edit", "two_edits"])
            & pairs["level_name"].isin(["exact", "one_char", "pinyin"])).to_numpy()
    if not base.any():
        return out
    pairs = pairs[base]
    freq = frequencies if frequencies is not None else name_frequencies(lf)
    span_days = freq.span_days
    # the per-mention values below only for the mentions of those pairs, looked up by
    # position: each pair side's row in `lf` (-1 when absent picks the NA sentinel that
    # `_at` appends), so every value is one array take, not a hash lookup per pair
    ids = pd.Index(lf["unique_id"].astype(str).to_numpy(dtype=object))
    left_all, right_all = ids.get_indexer(pairs["unique_id_l"].astype(str)), ids.get_indexer(
        pairs["unique_id_r"].astype(str))
    rows = np.unique(np.concatenate([left_all, right_all]))
    lf = lf.iloc[rows[rows >= 0]]
    at = np.full(len(ids) + 1, -1, dtype=np.int64)
    at[rows[rows >= 0]] = np.arange(int((rows >= 0).sum()))
    left, right = at[left_all], at[right_all]

    def codes(values: pd.Series) -> np.ndarray:
        """Each mention's value as an integer code (-1: unknown), with the sentinel."""
        return np.append(pd.factorize(values, use_na_sentinel=True)[0], -1)

    def counts(values: pd.Series, bearers: pd.Series) -> np.ndarray:
        """Bearers of each mention's value (1 when unknown), with the sentinel."""
        return np.append(values.map(bearers).astype("float64").fillna(1).to_numpy(dtype=float), 1.0)

    def same(code: np.ndarray) -> np.ndarray:
        return (code[left] == code[right]) & (code[left] >= 0)

    gender = pairs["level_gender"].to_numpy()
    limit = np.where(gender == "same", max_coincidence, np.where(gender == "null", max_coincidence / 2, -1.0))
    k = counts(lf["name_s"], freq.full)[left]
    full_c = k * (k - 1) / 2 / span_days
    exact_name = (pairs["level_name"] == "exact").to_numpy()
    same_full = exact_name & (full_c <= limit)

    def common(col: str, level: str, bearers: pd.Series | None, ambiguous: frozenset[str] | None) -> np.ndarray:
        """Pairs at name level `level` with the same `col` value (full name or its sound),
        the gender the same, few bearers of the value per day and no namesake seen under
        it, that birth date and gender."""
        if bearers is None or ambiguous is None or not {"sex", col} <= set(lf.columns):
            return np.zeros(len(pairs), dtype=bool)
        values = lf[col].astype("string")
        per_day = counts(values, bearers)[left] / span_days
        keys = namesake_keys(values, lf["birth"], lf["sex"])
        seen_twice = np.append(keys.isin(ambiguous).fillna(False).to_numpy(dtype=bool), False)[left]
        return ((pairs["level_name"] == level).to_numpy() & same(codes(values)) & (gender == "same")
                & (per_day <= PLAIN_MAX_NAMESAKES_PER_DAY) & ~seen_twice)

    same_full |= common("name_s", "exact", freq.full, freq.ambiguous)
    same_full |= common("name_py", "pinyin", freq.sound, freq.ambiguous_sound)
    given = given_names(lf) if "surname" in lf else pd.Series(pd.NA, index=lf.index, dtype="string")
    k = counts(given, freq.given)[left]
    given_c = k * (k - 1) / 2 / span_days
    one_apart = pairs["level_name"].isin(["one_char", "pinyin"]).to_numpy()
    long_given = np.append((given.str.len() >= 2).fillna(False).to_numpy(dtype=bool), False)
    same_given = one_apart & same(codes(given)) & long_given[left] & (given_c <= limit)
    sole = lf["sole_in_household"] if "sole_in_household" in lf else pd.Series(pd.NA, index=lf.index)
    sole = np.append(sole.astype("boolean").fillna(False).to_numpy(dtype=bool), False)
    listed_alone = sole[left] & sole[right]
    context = ((pairs["level_address"] == "same_flat") | (pairs["level_phone"] == "same")
               | (pairs["level_context"] == "shared")).to_numpy()
    typo_in_listing = one_apart & listed_alone & (gender == "same") & context
    out[base] = same_full | same_given | typo_in_listing
    return out


def _with_plain_evidence(pairs: pd.DataFrame, lf: pd.DataFrame, floor: float, threshold: float,
                         frequencies: NameFrequencies | None = None) -> pd.DataFrame:
    """Scored pairs at or above `floor`, plus the plain-evidence pairs (`plain_evidence`)
    whatever their score, those raised to `threshold` so that the clusterer takes them
    (after every better-scored pair; its constraints still apply)."""
    plain = plain_evidence(pairs, lf, frequencies=frequencies).to_numpy(dtype=bool)
    prob = pairs["match_probability"].to_numpy(dtype=float)
    keep = (prob >= floor) | plain
    pairs = pairs[keep].copy()
    raised = plain[keep] & (prob[keep] < threshold)
    pairs.loc[raised, "match_probability"] = threshold
    pairs["eligible"] = meets_requirements(pairs) | pd.Series(plain[keep], index=pairs.index)
    return pairs


def map_nodes(ids: pd.Series, node_of: "pd.Series | dict[str, str]") -> pd.Series:
    """Each mention id (as a Python string) mapped onto its clustered node — the anchor
    ``P:<person_id>`` of its published person in `node_of` — or itself (vectorised)."""
    ids = ids.astype(str).astype(object)
    node = ids.map(node_of if isinstance(node_of, pd.Series) else pd.Series(node_of, dtype=object)).astype(object)
    return node.where(node.notna(), ids)


def _edges(pairs: pd.DataFrame) -> pd.DataFrame:
    return pairs.rename(columns={"unique_id_l": "mention_id_a", "unique_id_r": "mention_id_b"})


def _empty_clusters(mentions: pd.DataFrame) -> pd.DataFrame:
    from pipelines.resolve import deterministic_clusters

    return deterministic_clusters(mentions)


# ------------------------------------------------------------------------ full run
def resolve_probabilistic(
    mentions: pd.DataFrame,
    relationships: pd.DataFrame | None = None,
    decisions: pd.DataFrame | None = None,
    *,
    threshold: float = DEFAULT_THRESHOLD,
    model: LinkageModel | None = None,
    district=None,
    score_from: float | None = None,
) -> tuple[ClusterResult, pd.DataFrame, LinkageModel | None]:
    """Everything `probabilistic_clusters` computes: (cluster result, scored pairs with
    their levels and ``eligible`` flag, the trained model).

    Pairs are kept from probability `score_from` (default: `threshold`); clustering only
    ever uses those at or above `threshold`. Pass ``score_from=REVIEW_BAND[0]`` to derive
    the review queue from the same run (`review_from`)."""
    if len(mentions) < 2:
        det = _empty_clusters(mentions)
        return ClusterResult(det, pd.DataFrame(), pd.DataFrame()), pd.DataFrame(), model
    lf = linkage_frame(mentions, relationships, district=district)
    return resolve_frame(lf, decisions, threshold=threshold, model=model, score_from=score_from)


def resolve_frame(
    lf: pd.DataFrame,
    decisions: pd.DataFrame | None = None,
    *,
    threshold: float = DEFAULT_THRESHOLD,
    model: LinkageModel | None = None,
    score_from: float | None = None,
) -> tuple[ClusterResult, pd.DataFrame, LinkageModel | None]:
    """`resolve_probabilistic` on a linkage frame already built (`linkage_frame`, or the
    persisted index): trains `model` on it unless it is trained, scores the blocked
    pairs, clusters them under the constraints."""
    if len(lf) < 2:
        alone = constrained_clusters(lf["unique_id"], None, citizen_ids=lf["cid"], document_keys=lf["doc_no"],
                                     decisions=decisions, threshold=threshold)
        return alone, pd.DataFrame(), model
    floor = min(score_from, threshold) if score_from is not None else threshold
    if model is None or model.settings is None:
        model = (model or LinkageModel()).fit(lf)
        pairs = model.predict(threshold=PLAIN_SCORE_FLOOR)
        model.release_training()  # its database, before the pairs are weighed and clustered
    else:
        pairs = model.predict(lf, threshold=PLAIN_SCORE_FLOOR)
    pairs = pd.concat([pairs, pair_levels(pairs)], axis=1)
    pairs = _with_plain_evidence(pairs, lf, floor, threshold, model.name_frequencies)
    result = constrained_clusters(
        lf["unique_id"], _edges(pairs[pairs["eligible"]]), citizen_ids=lf["cid"], document_keys=lf["doc_no"],
        decisions=decisions, threshold=threshold)
    return result, pairs, model


def probabilistic_clusters(
    mentions: pd.DataFrame,
    relationships: pd.DataFrame | None = None,
    decisions: pd.DataFrame | None = None,
    *,
    threshold: float = DEFAULT_THRESHOLD,
    model: LinkageModel | None = None,
    district=None,
) -> pd.DataFrame:
    """mention_id, cluster_label, match_method, match_probability (see module docstring).

    Trains a model on `mentions` unless a trained `model` is given."""
    result, _, _ = resolve_probabilistic(mentions, relationships, decisions, threshold=threshold,
                                         model=model, district=district)
    order = pd.Index(result.clusters["mention_id"]).get_indexer(mentions["mention_id"].astype(str))
    return result.clusters.iloc[order].reset_index(drop=True)[CLUSTER_COLUMNS]


# ------------------------------------------------------------------------ explain
def explain_pair(mentions: pd.DataFrame, mention_a: str, mention_b: str, *,
                 relationships: pd.DataFrame | None = None, model: LinkageModel | None = None,
                 district=None) -> pd.DataFrame:
    """comparison, level, m_probability, u_probability, bayes_factor, match_weight (and the
    total row's match_probability) for one pair of mentions. Trains on `mentions` unless a
    trained `model` is given. A model restored from stored settings
    (`LinkageModel.from_settings`) takes its name frequencies from `mentions`, so it explains
    a pair exactly as the run that trained it on the same mentions scored it."""
    return explain_pairs(mentions, [(mention_a, mention_b)], relationships=relationships, model=model,
                         district=district)[0]


def explain_pairs(mentions: pd.DataFrame, pairs: list[tuple[str, str]], *,
                  relationships: pd.DataFrame | None = None, model: LinkageModel | None = None,
                  district=None) -> list[pd.DataFrame]:
    """`explain_pair` for several pairs (the linkage frame is built once)."""
    lf = linkage_frame(mentions, relationships, district=district)
    if model is None or model.settings is None:
        model = (model or LinkageModel()).fit(lf)
    return [model.explain(lf, str(a), str(b)) for a, b in pairs]


# ------------------------------------------------------------------------ review
REVIEW_COLUMNS = ["mention_id_a", "mention_id_b", "match_probability", "match_weight", "reason"] + [
    f"level_{c.name}" for c in COMPARISONS]


def review_from(
    result: ClusterResult,
    pairs: pd.DataFrame,
    decisions: pd.DataFrame | None = None,
    *,
    band: tuple[float, float] = REVIEW_BAND,
    threshold: float = DEFAULT_THRESHOLD,
    node_of: "pd.Series | dict[str, str] | None" = None,
) -> pd.DataFrame:
    """The review queue of a clustering already done: `pairs` as `resolve_probabilistic`
    returns them (scored from ``band[0]``, with levels and ``eligible``), `result` its
    clusters. Columns `REVIEW_COLUMNS`; reasons:

    * ``uncertain``: probability in ``band`` and the two are not in one cluster;
    * ``names_differ``: probability ≥ threshold but the link requirements failed (names
      not equivalent: the twin pattern), not in one cluster;
    * ``refused:<constraint>``: an eligible edge ≥ threshold that a hard constraint
      (different valid IDs, a cannot-link, two existing persons...) kept apart.

    Pairs with an officer decision are left out. `node_of` maps mention ids onto the
    clustered nodes when they differ (incremental linking clusters existing persons as
    one node ``P:<person_id>``)."""
    if pairs is None or pairs.empty:
        return pd.DataFrame(columns=REVIEW_COLUMNS)
    p = _edges(pairs)
    a, b = p["mention_id_a"].astype(str), p["mention_id_b"].astype(str)
    na, nb = (a, b) if node_of is None else (map_nodes(a, node_of), map_nodes(b, node_of))
    label = result.clusters.assign(mention_id=result.clusters["mention_id"].astype(str)).set_index(
        "mention_id")["cluster_label"]
    apart = (na.map(label).astype(object).fillna(na).to_numpy() != nb.map(label).astype(object).fillna(nb).to_numpy())
    prob = p["match_probability"].to_numpy()
    eligible = p["eligible"].to_numpy(dtype=bool)
    uncertain = (prob >= band[0]) & (prob < band[1]) & apart
    names = (prob >= threshold) & ~eligible & apart
    refused = (prob >= threshold) & eligible & apart
    why = {}
    if len(result.rejected):
        for x, y, r in zip(result.rejected["mention_id_a"].astype(str), result.rejected["mention_id_b"].astype(str),
                           result.rejected["reason"]):
            why.setdefault((x, y), r)
            why.setdefault((y, x), r)
    refused_reason = ["refused:" + why.get((x, y), "constraint") for x, y in zip(na, nb)]
    p["reason"] = np.where(refused, refused_reason, np.where(uncertain, "uncertain",
                                                              np.where(names, "names_differ", None)))
    out = p[p["reason"].notna()]
    if decisions is not None and len(decisions) and len(out):
        decided = set(zip(decisions["mention_id_a"].astype(str), decisions["mention_id_b"].astype(str)))
        decided |= {(y, x) for x, y in decided}
        keep = np.array([(x, y) not in decided for x, y in zip(out["mention_id_a"].astype(str),
                                                                out["mention_id_b"].astype(str))], dtype=bool)
        out = out[keep]
    out = out.sort_values(["match_probability", "mention_id_a", "mention_id_b"], ascending=[False, True, True],
                          kind="mergesort")
    return out[REVIEW_COLUMNS].reset_index(drop=True)


def review_candidates(
    mentions: pd.DataFrame,
    relationships: pd.DataFrame | None = None,
    decisions: pd.DataFrame | None = None,
    *,
    band: tuple[float, float] = REVIEW_BAND,
    threshold: float = DEFAULT_THRESHOLD,
    model: LinkageModel | None = None,
    district=None,
) -> pd.DataFrame:
    """Pairs for officers (see `review_from`): runs the resolution, then `review_from`.
    A caller that also needs the clusters should call `resolve_probabilistic` with
    ``score_from=band[0]`` and `review_from` on its result instead (one prediction)."""
    result, pairs, _ = resolve_probabilistic(mentions, relationships, decisions, threshold=threshold,
                                             model=model, district=district, score_from=band[0])
    return review_from(result, pairs, decisions, band=band, threshold=threshold)


# ------------------------------------------------------------------------ incremental
def link_new_mentions(
    new_mentions: pd.DataFrame,
    existing_mentions: pd.DataFrame,
    relationships: pd.DataFrame | None = None,
    decisions: pd.DataFrame | None = None,
    *,
    threshold: float = DEFAULT_THRESHOLD,
    band: tuple[float, float] = REVIEW_BAND,
    model: LinkageModel | None = None,
    district=None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Attach new mentions to existing persons without re-clustering the existing ones.

    existing_mentions: published mentions with their ``person_id``.
    Returns ``(links, review)``: links has one row per new mention: mention_id, person_id
    (the existing person it joins, or NA for a new person), cluster_label (``P:<person_id>``
    or a new cluster's label), match_method, match_probability; review holds the new
    mentions' pairs for officers (`review_from` columns and reasons, on mention ids),
    among them ``refused:two_existing_persons``: a new mention that would merge two
    existing persons (the caller should then re-cluster fully). The model is trained on
    existing + new mentions unless `model` is given; a restored model takes its name
    frequencies from existing + new mentions.
    See the module docstring for how this relates to a full run."""
    out_cols = ["mention_id", "person_id", "cluster_label", "match_method", "match_probability"]
    if len(new_mentions) == 0:
        return pd.DataFrame(columns=out_cols), pd.DataFrame(columns=REVIEW_COLUMNS)
    new_ids = set(new_mentions["mention_id"].astype(str))
    existing = existing_mentions[~existing_mentions["mention_id"].astype(str).isin(new_ids)]
    allm = pd.concat([existing.drop(columns=["person_id"], errors="ignore"), new_mentions], ignore_index=True)
    lf = linkage_frame(allm, relationships, district=district)
    is_new = lf["unique_id"].isin(new_ids).to_numpy()
    lf_new, lf_old = lf[is_new].reset_index(drop=True), lf[~is_new].reset_index(drop=True)
    if model is None or model.settings is None:
        model = (model or LinkageModel()).fit(lf)
    pairs = model.predict_new(lf_new, lf_old, threshold=PLAIN_SCORE_FLOOR)
    person_of = existing.assign(mention_id=existing["mention_id"].astype(str)).set_index("mention_id")["person_id"]
    node_of = "P:" + person_of.astype(str)

    # existing persons become single anchor nodes "P:<person_id>" carrying their valid ID
    old = lf_old.assign(person_id=lf_old["unique_id"].map(person_of)).dropna(subset=["person_id"])
    new_cids = set(lf_new["cid"].dropna())
    new_docs = set(lf_new["doc_no"].dropna())
    edges = None
    if len(pairs):
        pairs = pd.concat([pairs, pair_levels(pairs)], axis=1)
        pairs = _with_plain_evidence(pairs, lf, min(band[0], threshold), threshold)
        edges = _edges(pairs[pairs["eligible"]])[["mention_id_a", "mention_id_b", "match_probability"]].copy()
        for side in ("mention_id_a", "mention_id_b"):
            edges[side] = map_nodes(edges[side], node_of)
        edges = edges[edges["mention_id_a"] != edges["mention_id_b"]]
    touched = set(edges["mention_id_a"]).union(edges["mention_id_b"]) if edges is not None else set()
    rel = old[old["cid"].isin(new_cids) | old["doc_no"].isin(new_docs)
              | ("P:" + old["person_id"].astype(str)).isin(touched)]
    persons = rel.groupby("person_id").agg(cid=("cid", "min"), doc_no=("doc_no", "min")).reset_index()
    node_ids = list(lf_new["unique_id"]) + ["P:" + str(p) for p in persons["person_id"]]
    result = constrained_clusters(
        node_ids,
        edges,
        citizen_ids=list(lf_new["cid"]) + list(persons["cid"]),
        document_keys=list(lf_new["doc_no"]) + list(persons["doc_no"]),
        decisions=_decisions_on_nodes(decisions, person_of),
        threshold=threshold,
        anchors=[False] * len(lf_new) + [True] * len(persons),
    )
    cl = result.clusters.assign(mention_id=result.clusters["mention_id"].astype(str))
    is_anchor = cl["mention_id"].str.startswith("P:")
    anchor_label = cl[is_anchor].set_index("cluster_label")["mention_id"]
    links = cl[~is_anchor].copy()
    joined = links["cluster_label"].map(anchor_label)
    links["person_id"] = joined.str.slice(2).where(joined.notna(), pd.NA)
    links["cluster_label"] = joined.where(joined.notna(), links["cluster_label"])
    order = pd.Index(links["mention_id"]).get_indexer(new_mentions["mention_id"].astype(str))
    links = links.iloc[order].reset_index(drop=True)
    review = review_from(result, pairs, decisions, band=band, threshold=threshold, node_of=node_of)
    # two existing persons joined by a shared valid ID rather than a scored pair: shown on
    # one mention of each (the first), so the queue only ever names mentions
    bridged = result.rejected[(result.rejected["reason"] == "two_existing_persons")
                              & (result.rejected["match_probability"] >= 1.0)] if len(result.rejected) else None
    if bridged is not None and len(bridged):
        first = existing.assign(mention_id=existing["mention_id"].astype(str)).groupby("person_id")["mention_id"].min()
        rep = pd.Series(first.to_numpy(), index="P:" + first.index.astype(str))
        rows = pd.DataFrame({
            "mention_id_a": bridged["mention_id_a"].map(lambda n: rep.get(n, n)).to_numpy(),
            "mention_id_b": bridged["mention_id_b"].map(lambda n: rep.get(n, n)).to_numpy(),
            "match_probability": 1.0, "match_weight": np.nan, "reason": "refused:two_existing_persons"})
        review = pd.concat([review, rows.reindex(columns=REVIEW_COLUMNS)], ignore_index=True)
        review = review.drop_duplicates(["mention_id_a", "mention_id_b"]).reset_index(drop=True)
    return links[out_cols], review


def _decisions_on_nodes(decisions: pd.DataFrame | None, person_of: pd.Series) -> pd.DataFrame | None:
    """Officer decisions with existing mentions replaced by their person node."""
    if decisions is None or len(decisions) == 0:
        return None
    d = decisions.astype({"mention_id_a": str, "mention_id_b": str}).copy()
    for col in ("mention_id_a", "mention_id_b"):
        d[col] = d[col].map(lambda m: "P:" + str(person_of[m]) if m in person_of.index else m)
    return d[d["mention_id_a"] != d["mention_id_b"]]
