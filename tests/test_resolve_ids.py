"""Stable person ids: carried over, merged (oldest survives), split, retired, never reused."""

from __future__ import annotations

import datetime as dt

import pandas as pd

from pipelines.resolve import assign_person_ids, deterministic_clusters, resolve_persons

EMPTY_XREF = pd.DataFrame({"mention_id": pd.Series(dtype=object), "person_id": pd.Series(dtype=object)})
EMPTY_PERSONS = pd.DataFrame({"person_id": pd.Series(dtype=object), "citizen_id": pd.Series(dtype=object)})


def mentions(*rows: tuple[str, str | None, str]) -> pd.DataFrame:
    """rows of (mention_id, citizen_id, export_date)."""
    return pd.DataFrame({
        "mention_id": [r[0] for r in rows],
        "citizen_id": [r[1] for r in rows],
        "export_date": [dt.date.fromisoformat(r[2]) for r in rows],
        "document_type": ["resident_id" if r[1] else None for r in rows],
        "document_number": [None for _ in rows],
    })


def published(res, persons_cid: dict[str, str | None]) -> tuple[pd.DataFrame, pd.DataFrame]:
    persons = pd.DataFrame({"person_id": list(persons_cid), "citizen_id": list(persons_cid.values())})
    return res.xref[["mention_id", "person_id"]], persons


def test_same_valid_id_is_one_person_and_others_are_singletons():
    m = mentions(("a", "X1", "2026-01-01"), ("b", "X1", "2026-01-02"), ("c", None, "2026-01-01"))
    res = resolve_persons(m, EMPTY_XREF, EMPTY_PERSONS)
    ids = dict(zip(res.xref["mention_id"], res.xref["person_id"]))
    assert ids["a"] == ids["b"] != ids["c"]
    methods = dict(zip(res.xref["mention_id"], res.xref["match_method"]))
    assert methods == {"a": "citizen_id", "b": "citizen_id", "c": "singleton"}


def test_ids_are_issued_in_order_of_first_mention():
    m = mentions(("z", "X2", "2026-01-01"), ("a", "X1", "2026-01-05"), ("b", None, "2026-01-03"))
    res = resolve_persons(m, EMPTY_XREF, EMPTY_PERSONS)
    ids = dict(zip(res.xref["mention_id"], res.xref["person_id"]))
    assert ids == {"z": "P0000000001", "b": "P0000000002", "a": "P0000000003"}
    assert res.next_sequence == 4


def test_ids_survive_a_later_load_and_new_mentions_join_existing_persons():
    m1 = mentions(("a", "X1", "2026-01-01"), ("c", None, "2026-01-01"))
    r1 = resolve_persons(m1, EMPTY_XREF, EMPTY_PERSONS)
    xref, persons = published(r1, {"P0000000001": "X1", "P0000000002": None})
    m2 = pd.concat([mentions(("n", None, "2026-01-02"), ("b", "X1", "2026-01-02")), m1], ignore_index=True)
    r2 = assign_person_ids(m2, deterministic_clusters(m2), xref, persons, next_sequence=3)
    ids = dict(zip(r2.xref["mention_id"], r2.xref["person_id"]))
    assert ids["a"] == ids["b"] == "P0000000001"
    assert ids["c"] == "P0000000002"
    assert ids["n"] == "P0000000003"
    assert r2.merge_log.empty


def test_merge_keeps_the_older_id_and_is_logged():
    # two persons published separately, now the same valid ID links them
    prev_xref = pd.DataFrame({"mention_id": ["a", "b"], "person_id": ["P0000000007", "P0000000003"]})
    prev_persons = pd.DataFrame({"person_id": ["P0000000007", "P0000000003"], "citizen_id": [None, None]})
    m = mentions(("a", "X1", "2026-01-01"), ("b", "X1", "2026-01-02"))
    res = assign_person_ids(m, deterministic_clusters(m), prev_xref, prev_persons, next_sequence=8)
    assert set(res.xref["person_id"]) == {"P0000000003"}
    log = res.merge_log
    assert list(log["event"]) == ["merge"]
    assert (log["from_person_id"].iloc[0], log["to_person_id"].iloc[0]) == ("P0000000007", "P0000000003")


def test_split_keeps_the_id_with_the_larger_part_and_logs_the_new_one():
    prev_xref = pd.DataFrame({"mention_id": ["a", "b", "c"], "person_id": ["P0000000001"] * 3})
    prev_persons = pd.DataFrame({"person_id": ["P0000000001"], "citizen_id": [None]})
    clusters = pd.DataFrame({"mention_id": ["a", "b", "c"], "cluster_label": ["k1", "k1", "k2"],
                             "match_method": "probabilistic", "match_probability": 0.99})
    m = mentions(("a", None, "2026-01-01"), ("b", None, "2026-01-01"), ("c", None, "2026-01-01"))
    res = assign_person_ids(m, clusters, prev_xref, prev_persons, next_sequence=2)
    ids = dict(zip(res.xref["mention_id"], res.xref["person_id"]))
    assert ids["a"] == ids["b"] == "P0000000001"
    assert ids["c"] == "P0000000002"
    assert list(res.merge_log["event"]) == ["split"]
    assert res.merge_log["to_person_id"].iloc[0] == "P0000000002"


def test_person_without_mentions_is_retired_and_its_number_never_reused():
    prev_xref = pd.DataFrame({"mention_id": ["gone"], "person_id": ["P0000000009"]})
    prev_persons = pd.DataFrame({"person_id": ["P0000000009"], "citizen_id": [None]})
    m = mentions(("new", None, "2026-02-01"))
    res = assign_person_ids(m, deterministic_clusters(m), prev_xref, prev_persons)
    assert res.xref["person_id"].tolist() == ["P0000000010"]
    assert res.merge_log[["event", "from_person_id"]].values.tolist() == [["retire", "P0000000009"]]


def test_citizen_id_of_an_existing_person_claims_its_id_even_from_new_mentions():
    # a corrected file replaces the only mention, but the person (by citizen ID) stays
    prev_xref = pd.DataFrame({"mention_id": ["old-file|2|member"], "person_id": ["P0000000004"]})
    prev_persons = pd.DataFrame({"person_id": ["P0000000004"], "citizen_id": ["X9"]})
    m = mentions(("fix-file|2|member", "X9", "2026-03-01"))
    res = assign_person_ids(m, deterministic_clusters(m), prev_xref, prev_persons)
    assert res.xref["person_id"].tolist() == ["P0000000004"]
    assert res.merge_log.empty


def test_foreign_documents_link_by_type_and_number():
    m = pd.DataFrame({
        "mention_id": ["a", "b", "c"], "citizen_id": [None, None, None],
        "export_date": [dt.date(2026, 1, 1)] * 3,
        "document_type": ["passport", "passport", "passport"],
        "document_number": ["E1234567", "E1234567", "E7654321"],
    })
    c = deterministic_clusters(m)
    labels = dict(zip(c["mention_id"], c["cluster_label"]))
    assert labels["a"] == labels["b"] != labels["c"]
