"""The decisions of the resolve stage, apart from the flow that wires it: what changed
since the last resolution (the linkage index refreshed for the mentions staged since),
whether the stored model may resolve only that (`resolve_locally`) or everything must be
re-clustered, how new persons are numbered, and the checks run on what was built; and
the explanation of a match (`explain_person`, for `residents explain` and the web page).

`flows._resolve_and_build` calls these in order (resolve → build → check) inside the
sync's or the decision's transaction; nothing here opens a file itself (the `warehouse`
package does) or knows Prefect.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import pandas as pd

from settings import Settings
from warehouse.runs import SyncSummary


#: features are computed this many target mentions at a time, each part with the
#: mentions related to it: a first load of millions holds one part in pandas, not all
FEATURE_PART = 200_000


def refresh_linkage_index(con: Any, district: Any, *, everything: bool, part: int = FEATURE_PART,
                          exports: list[int] | None = None) -> tuple[int, Any]:
    """What changed since the last resolution (`exports`: surveyed from the exports the
    run staged, `linkage_index.changes`), then the linkage features of the mentions staged
    since (all of them with `everything`), `part` mentions at a time (a mention's
    features read its own row and its partners': the parts give the features the whole
    would): (current mentions, the changes)."""
    from pipelines.linkage import linkage_frame
    from pipelines.normalize.address import forget_remembered_keys
    from warehouse import linkage_index as index

    changes, targets = index.changes(con, everything=everything, exports=exports)
    gone = list(changes.removed["mention_id"]) if changes.exact else None
    if not targets:
        index.write_features(con, None, None, gone=gone)
    for start in range(0, len(targets), part):
        chunk = targets[start:start + part]
        mentions, relationships = index.inputs_of(con, chunk)
        lf = linkage_frame(mentions, relationships, district=district)
        lf = lf[lf["unique_id"].astype(object).isin(chunk)]  # object dtype: a fast hash lookup
        export_of = mentions.set_index("mention_id")["export_id"]
        index.write_features(con, lf, export_of.reindex(lf["unique_id"]), everything=everything and start == 0,
                             first=start == 0, gone=gone)
        del mentions, relationships, lf, export_of
    # the features were the last to read the address keys the standardisation parsed
    forget_remembered_keys()
    return index.mention_count(con), changes


def resolve_locally(con: Any, settings: Settings, run_id: str, changes: Any, decided: list[str], n_mentions: int,
                     next_seq: int, spark: dict[str, Any] | None = None) -> Any:
    """Resolve only what changed, with the stored model. New mentions are blocked against
    the linkage index and attached to the published persons they match, each person one
    anchor node (`pipelines.resolve.attach_new_mentions`: only new × existing pairs are
    scored). Changed and removed mentions, officers' new decisions, and any group of new
    mentions that would join two persons or that a constraint refuses re-cluster the
    persons they touch in whole (`pipelines.resolve.resolve_component`). None when the
    stored model may not be used (`pipelines.resolve.incremental_obstacle`): a full run.
    `spark`: score the pairs on Spark (`engines.spark_options`), as the full run does."""
    from pipelines.linkage import LinkageModel, NameFrequencies
    from pipelines.linkage.comparisons import BLOCKING_RULES
    from pipelines.resolve import (MERGE_LOG_COLUMNS, XREF_COLUMNS, LinkedResolution, Resolution,
                                   attach_new_mentions, incremental_obstacle, resolve_component, score_new)
    from warehouse import decisions, linkage_index as index

    model = LinkageModel.from_settings(decisions.latest_model_settings(con))
    # a decision alone is applied locally whatever the model's age (nothing to count for it)
    if not (decided and not changes and model.settings):
        has_xref = con.execute("SELECT count(*) > 0 FROM core.person_xref").fetchall()[0][0]
        if incremental_obstacle(n_mentions, 1 if has_xref else 0, model.training if model.settings else None,
                                min_mentions=settings.incremental_min_mentions,
                                max_drift=settings.incremental_max_growth, citizen_ids=index.citizen_id_count(con),
                                max_mention_growth=settings.incremental_max_mention_growth):
            return None
    changed_persons = set(index.person_of(con, changes.changed + decided)["person_id"]) | set(
        changes.removed["person_id"])
    # restatements of a resolved mention (most of a monthly roster: the same columns, the
    # relatives' keys the same or a part of them) join its person by their ID without
    # being scored (`linkage_index.restatements`)
    restated = index.restatements(con, sorted(set(changes.new) - set(decided)), changed_persons,
                                  partial_context=_partial_context_restates(model))
    core_ids = sorted((set(changes.dirty) | set(decided) | set(index.mentions_of_persons(con, changed_persons)))
                      - set(restated["mention_id"]))
    if not core_ids and restated.empty:
        return _nothing_to_resolve(model, next_seq, changes, con, run_id)
    from contextlib import nullcontext

    from engines import spark_scorer

    # on the Spark engine the pairs of the local re-clustering are scored there too; the
    # session starts only now that there is something to score
    with (spark_scorer(**spark) if spark else nullcontext()) as scorer:
        model.scorer = scorer
        rules = [b.sql for b in BLOCKING_RULES] + ["l.cid = r.cid", "l.doc_no = r.doc_no"]
        tf_cols = model.tf_columns()
        candidates = index.blocked_with(con, core_ids, rules)
        partners = index.decision_partners(con, core_ids)
        # one pass over the index for both (each fetch of rows by id scans it whole)
        both = index.features(con, [*core_ids, *candidates])
        in_core = both["unique_id"].isin(set(core_ids)).to_numpy()
        lf_core, lf_cand = both[in_core].reset_index(drop=True), both[~in_core].reset_index(drop=True)
        del both
        model.tf_tables = index.term_frequencies(con, tf_cols, [*core_ids, *candidates])
        with _beside(scorer is None) as run_beside:
            # the new mentions are scored (the model's own DuckDB, mostly outside the GIL)
            # while the warehouse answers the lookups below
            scored = run_beside(score_new, model, lf_core, lf_cand)
            model.name_frequencies = NameFrequencies(*index.name_frequencies(con, [*core_ids, *candidates]))
            cand_person = pd.concat([index.person_of(con, [*candidates, *partners]).set_index("mention_id")["person_id"],
                                     restated.set_index("mention_id")["person_id"]])
            all_decisions = decisions.active_decisions(con)
            anchors = index.persons(con, set(cand_person.reindex(candidates).dropna()))
            pairs = scored.result()
        # fast path: persons that only gain mentions are anchors; the rest is re-clustered whole
        hard = set(core_ids) - (set(changes.new) - set(decided))
        att = attach_new_mentions(model, lf_core, lf_cand, cand_person, anchors, hard, all_decisions, pairs=pairs)
        hard_persons = att.hard_persons | set(cand_person.reindex(partners).dropna())
        # a restatement of a person re-clustered in whole is re-clustered with it
        restated_hard = restated["person_id"].isin(hard_persons).to_numpy()
        hard_ids = sorted(att.hard_mentions | set(index.mentions_of_persons(con, hard_persons))
                          | set(restated.loc[restated_hard, "mention_id"]))
        facts = index.mention_facts(con, att.links["mention_id"])
        simple, next_seq = _number_new_persons(att.links, facts, next_seq)
        simple = pd.concat([simple, restated[~restated_hard].assign(match_method="citizen_id", match_probability=1.0)],
                           ignore_index=True)
        joined = index.person_of(con, index.mentions_of_persons(con, set(att.joined["person_id"])))
        joined = joined[joined["match_method"] == "singleton"].drop(columns=["match_method", "match_probability"])
        joined = joined.merge(att.joined, on="person_id")
        parts, log, review = [simple, joined], pd.DataFrame(columns=MERGE_LOG_COLUMNS), att.review
        touched = set(simple["person_id"]) | set(att.joined["person_id"])
        removed = changes.removed
        if hard_ids or len(removed):
            lf = index.features(con, hard_ids)
            # the index has not changed since the frequencies above were counted: for
            # mentions among those they were counted for, they hold every value needed
            # (they are looked up by value), so they serve again
            if not set(hard_ids) <= {*core_ids, *candidates}:
                model.tf_tables = index.term_frequencies(con, tf_cols, hard_ids)
                model.name_frequencies = NameFrequencies(*index.name_frequencies(con, hard_ids))
            prev_xref = index.person_of(con, [*hard_ids, *removed["mention_id"]])
            prev_persons = index.persons(con, set(prev_xref["person_id"]))
            comp = resolve_component(lf, index.mention_facts(con, hard_ids), all_decisions, prev_xref, prev_persons,
                                     next_seq, model)
            parts.append(comp.resolution.xref)
            log, next_seq = comp.resolution.merge_log, comp.resolution.next_sequence
            review = pd.concat([review, comp.candidates], ignore_index=True)
            touched |= comp.touched_persons
        xref = pd.concat([p[XREF_COLUMNS] for p in parts if len(p)], ignore_index=True) if any(
            len(p) for p in parts) else pd.DataFrame(columns=XREF_COLUMNS)
        index.write_local_resolution(con, xref, removed["mention_id"], log, run_id)
        return LinkedResolution(Resolution(xref, log, next_seq), review, model.stored_settings(), "incremental",
                                touched_persons=frozenset(touched))


def _partial_context_restates(model: Any) -> bool:
    """Whether a mention whose relatives' keys are a part of its twin's restates it
    (`linkage_index.restatements`): when the trained model weighs relatives shared at
    least as much as relatives different (fewer keys can then only weigh less) — as a
    model trained on rosters does: relatives shared is rare between strangers. Checked on
    the stored model each run, not assumed."""
    from pipelines.linkage.comparisons import CONTEXT

    return model.settings is not None and (
        model.level_weight(CONTEXT.name, "shared") >= model.level_weight(CONTEXT.name, "different"))


@contextmanager
def _beside(threaded: bool) -> Iterator[Callable[..., Any]]:
    """`run(fn, *args)` → a future of `fn(*args)`: on a thread of its own when `threaded`,
    else computed right there (a Spark scorer is driven from the calling thread). Leaving
    the block waits for the thread; an error of `fn` is raised by `result()` either way."""
    if not threaded:
        def now(fn: Callable[..., Any], *args: Any) -> Future:
            done: Future = Future()
            try:
                done.set_result(fn(*args))
            except Exception as exc:  # noqa: BLE001 - raised by result(), as from the thread
                done.set_exception(exc)
            return done
        yield now
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="score") as pool:
        yield pool.submit


def _number_new_persons(links: pd.DataFrame, facts: pd.DataFrame, next_seq: int) -> tuple[pd.DataFrame, int]:
    """Person ids for attached mentions: the anchor's, or new ones for new clusters, issued
    in the order of each cluster's earliest mention (export date, then mention id) as a
    full run issues them."""
    from pipelines.resolve import format_person_id

    out = links.merge(facts[["mention_id", "export_date"]], on="mention_id", how="left")
    fresh = out[out["person_id"].isna()]
    first = (fresh.assign(export_date=pd.to_datetime(fresh["export_date"]))
             .sort_values(["export_date", "mention_id"], na_position="last")
             .drop_duplicates("cluster_label")["cluster_label"])
    ids = {label: format_person_id(next_seq + i) for i, label in enumerate(first)}
    out["person_id"] = out["person_id"].where(out["person_id"].notna(), out["cluster_label"].map(ids))
    return out.drop(columns=["export_date"]), next_seq + len(ids)


def _nothing_to_resolve(model: Any, next_seq: int, changes: Any, con: Any, run_id: str) -> Any:
    """Only removals: their xref rows go, their persons retire when nothing is left."""
    from pipelines.resolve import LinkedResolution, assign_person_ids
    from warehouse import linkage_index as index

    empty = pd.DataFrame(columns=["mention_id", "cluster_label", "match_method", "match_probability"])
    facts = pd.DataFrame(columns=["mention_id", "export_date", "citizen_id"])
    res = assign_person_ids(facts, empty, changes.removed, index.persons(con, set(changes.removed["person_id"])),
                            next_seq)
    index.write_local_resolution(con, res.xref, changes.removed["mention_id"], res.merge_log, run_id)
    return LinkedResolution(res, pd.DataFrame(), model.stored_settings(), "incremental",
                            touched_persons=frozenset(changes.removed["person_id"].astype(str)))


def threshold() -> float:
    from pipelines.linkage import DEFAULT_THRESHOLD

    return DEFAULT_THRESHOLD


def check_warehouse(con: Any, settings: Settings, run_id: str, summary: SyncSummary, *,
                     persons_table: str | None = None) -> None:
    """After the build, in the same transaction: the warehouse invariants as aggregate SQL
    (quality.expectation_result; after a scoped build see `warehouse.quality.CheckScope`)
    and the cross-source findings (quality.finding)."""
    from warehouse import quality
    from warehouse.build import build_scope

    # a scoped build: a check that passed last time reads the rows the build wrote
    scope = build_scope(con)
    results = quality.check_invariants(
        con, run_id, row_count_change_threshold=settings.row_count_change_threshold,
        scope=quality.CheckScope(*scope, run_id=run_id) if scope is not None else None)
    quality.write_expectation_results(con, results, run_id=run_id)
    findings = quality.refresh_cross_source_findings(con, run_id, persons_table=persons_table)
    failed = results[~results["success"].astype(bool)]
    summary.quality = {"warehouse_checks": len(results), "warehouse_checks_failed": len(failed),
                       **{f"finding:{k}": v for k, v in findings.items()}}


def explain_person(settings: Settings, ref_a: str, ref_b: str | None = None) -> list[tuple[str, pd.DataFrame]]:
    """Explanations for a person (its mentions, how each was matched, and the pairwise
    comparison of each mention with the person's first one) or for one pair of mentions,
    using the linkage model stored by the last resolution, on the mentions' rows of the
    linkage index and the name frequencies over all current mentions (so the weights are
    those the run scored with); only the rows involved are read.

    Each comparison frame: 比对项 (comparison), 结果 (the level that applied), m, u and
    权重 (its match weight in bits, log2 of the Bayes factor; the prior row holds the
    prior odds, the total row the sum and, in 结果, the match probability)."""
    from pipelines.linkage import LinkageModel
    from pipelines.linkage.labels_zh import explain_display, records_display
    from warehouse.queries import explain_inputs

    model = LinkageModel.from_settings(None)
    inp = explain_inputs(settings.warehouse, ref_a, ref_b, tf_columns=tuple(model.tf_columns()))
    out: list[tuple[str, pd.DataFrame]] = []
    if inp.person_records is not None:
        out.append((f"{ref_a} 的记录及匹配方式", records_display(inp.person_records)))
    if not inp.pairs:
        return out
    if not inp.model_settings:
        raise ValueError("仓库中没有已训练的匹配模型（确定性解析模式或尚未同步），无法解释匹配权重")
    model = LinkageModel.from_settings(inp.model_settings)
    model.tf_tables = inp.term_frequencies
    for a, b in inp.pairs:
        out.append((f"{a}  ↔  {b}", explain_display(model.explain(inp.features, str(a), str(b)))))
    return out
