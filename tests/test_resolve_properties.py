"""Property: loading more data never renumbers an existing person id unless the change is
logged (merge or split), and an issued id is never issued again."""

from __future__ import annotations

import datetime as dt

import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from pipelines.resolve import assign_person_ids

EMPTY_XREF = pd.DataFrame({"mention_id": pd.Series(dtype=object), "person_id": pd.Series(dtype=object)})
EMPTY_PERSONS = pd.DataFrame({"person_id": pd.Series(dtype=object), "citizen_id": pd.Series(dtype=object)})

# a load: each mention id (m0..m29) gets a true-ish cluster number (0..7); later loads
# add mentions and may re-cluster earlier ones (as probabilistic linkage can)
loads = st.lists(
    st.dictionaries(st.integers(0, 29).map(lambda i: f"m{i:02d}"), st.integers(0, 7), min_size=1, max_size=30),
    min_size=2, max_size=5,
)


@settings(max_examples=60, deadline=None)
@given(loads)
def test_ids_change_only_with_a_logged_merge_or_split(batches):
    xref, persons = EMPTY_XREF, EMPTY_PERSONS
    seen: dict[str, str] = {}           # mention → last published person id
    issued: set[str] = set()
    next_seq = 1
    assignment: dict[str, int] = {}
    for day, batch in enumerate(batches):
        assignment.update(batch)         # mentions accumulate; later loads may re-cluster
        mentions = pd.DataFrame({
            "mention_id": sorted(assignment),
            "export_date": [dt.date(2026, 1, 1) + dt.timedelta(days=day)] * len(assignment),
            "citizen_id": [None] * len(assignment),
        })
        clusters = pd.DataFrame({
            "mention_id": mentions["mention_id"],
            "cluster_label": [f"K{assignment[m]}" for m in mentions["mention_id"]],
            "match_method": "probabilistic", "match_probability": 0.99,
        })
        res = assign_person_ids(mentions, clusters, xref, persons, next_seq)
        new_ids = dict(zip(res.xref["mention_id"], res.xref["person_id"]))
        logged = {(r.from_person_id, r.to_person_id) for r in res.merge_log.itertuples()
                  if r.event in ("merge", "split")}
        for m, old in seen.items():
            new = new_ids[m]
            assert new == old or (old, new) in logged, (m, old, new, logged)
        # brand-new ids are never ids issued before
        fresh = set(new_ids.values()) - set(seen.values())
        assert not (fresh & issued), fresh & issued
        # one cluster, one id; different clusters, different ids
        per_cluster = res.xref.assign(k=clusters["cluster_label"].to_numpy()).groupby("k")["person_id"].nunique()
        assert (per_cluster == 1).all()
        assert res.xref.groupby("person_id")["mention_id"].count().sum() == len(mentions)
        assert len(set(new_ids.values())) == clusters["cluster_label"].nunique()
        issued |= set(new_ids.values())
        seen = new_ids
        xref = res.xref[["mention_id", "person_id"]]
        persons = pd.DataFrame({"person_id": sorted(set(new_ids.values())), "citizen_id": None})
        next_seq = res.next_sequence
