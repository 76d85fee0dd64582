"""Constrained clustering (pipelines.linkage.cluster): oracle and property tests."""

from __future__ import annotations

import random

import networkx as nx
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipelines.linkage.cluster import constrained_clusters


def _random_graph(rng: random.Random, n: int, p: float) -> pd.DataFrame:
    rows = []
    for i in range(n):
        for j in range(i + 1, n):
            if rng.random() < p:
                rows.append((f"m{i:04d}", f"m{j:04d}", 0.5 + rng.random() / 2))
    return pd.DataFrame(rows, columns=["mention_id_a", "mention_id_b", "match_probability"])


def _partition(clusters: pd.DataFrame) -> set[frozenset[str]]:
    return {frozenset(g["mention_id"]) for _, g in clusters.groupby("cluster_label")}


@pytest.mark.parametrize("seed", range(25))
def test_unconstrained_equals_connected_components(seed: int) -> None:
    """Without IDs or decisions every accepted edge is a union: networkx is the oracle."""
    rng = random.Random(seed)
    n = rng.randint(1, 120)
    edges = _random_graph(rng, n, rng.choice([0.005, 0.02, 0.05, 0.2]))
    ids = [f"m{i:04d}" for i in range(n)]
    res = constrained_clusters(ids, edges, threshold=0.0)
    g = nx.Graph()
    g.add_nodes_from(ids)
    g.add_edges_from(zip(edges["mention_id_a"], edges["mention_id_b"]))
    assert _partition(res.clusters) == {frozenset(c) for c in nx.connected_components(g)}
    assert res.rejected.empty
    # singletons and probabilistic members are labelled as such
    sizes = res.clusters.groupby("cluster_label")["mention_id"].transform("size")
    assert (res.clusters.loc[sizes == 1, "match_method"] == "singleton").all()
    assert (res.clusters.loc[sizes > 1, "match_method"] == "probabilistic").all()


def test_threshold_filters_edges() -> None:
    edges = pd.DataFrame({"mention_id_a": ["a", "b"], "mention_id_b": ["b", "c"],
                          "match_probability": [0.9999, 0.99]})
    res = constrained_clusters(["a", "b", "c"], edges, threshold=0.999)
    assert _partition(res.clusters) == {frozenset({"a", "b"}), frozenset({"c"})}
    row = res.clusters.set_index("mention_id").loc["a"]
    assert row["match_method"] == "probabilistic" and row["match_probability"] == pytest.approx(0.9999)


def test_strongest_edge_wins_a_contested_mention() -> None:
    """x fits both A (weaker) and B (stronger); A and B carry different IDs."""
    edges = pd.DataFrame({"mention_id_a": ["a", "b"], "mention_id_b": ["x", "x"],
                          "match_probability": [0.9991, 0.99999]})
    res = constrained_clusters(["a", "b", "x"], edges, citizen_ids=["ID1", "ID2", None], threshold=0.999)
    assert _partition(res.clusters) == {frozenset({"a"}), frozenset({"b", "x"})}
    assert res.rejected["reason"].tolist() == ["different_citizen_id"]
    labels = res.clusters.set_index("mention_id")["cluster_label"]
    assert labels["b"] == labels["x"] == "ID:ID2"


def test_shared_id_and_must_link_and_labels() -> None:
    ids = ["a", "b", "c", "d", "e"]
    res = constrained_clusters(
        ids, None, citizen_ids=["X", "X", None, None, None], document_keys=[None, None, "passport:E1", "passport:E1", None],
        decisions=pd.DataFrame({"mention_id_a": ["e"], "mention_id_b": ["a"], "decision": ["must_link"]}))
    c = res.clusters.set_index("mention_id")
    assert c.loc["a", "cluster_label"] == c.loc["b", "cluster_label"] == c.loc["e", "cluster_label"] == "ID:X"
    assert c.loc["b", "match_method"] == "citizen_id"
    assert c.loc["e", "match_method"] == "must_link"
    assert c.loc["c", "cluster_label"] == "DOC:passport:E1" and c.loc["c", "match_method"] == "document_number"


def test_two_existing_persons_never_merge() -> None:
    edges = pd.DataFrame({"mention_id_a": ["n", "n"], "mention_id_b": ["P:1", "P:2"],
                          "match_probability": [0.99999, 0.9999]})
    res = constrained_clusters(["n", "P:1", "P:2"], edges, anchors=[False, True, True], threshold=0.999)
    assert _partition(res.clusters) == {frozenset({"n", "P:1"}), frozenset({"P:2"})}
    assert res.rejected["reason"].tolist() == ["two_existing_persons"]


@st.composite
def _constrained_case(draw):
    n = draw(st.integers(2, 40))
    ids = [f"m{i:03d}" for i in range(n)]
    pairs = st.tuples(st.integers(0, n - 1), st.integers(0, n - 1)).filter(lambda t: t[0] != t[1])
    edges = draw(st.lists(st.tuples(pairs, st.floats(0.0, 1.0)), max_size=120))
    cids = draw(st.lists(st.sampled_from([None, None, None, "A", "B", "C"]), min_size=n, max_size=n))
    cannot = draw(st.lists(pairs, max_size=15))
    return ids, edges, cids, cannot


@given(_constrained_case())
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_constraints_always_hold(case) -> None:
    ids, edges, cids, cannot = case
    e = pd.DataFrame([(ids[a], ids[b], p) for (a, b), p in edges],
                     columns=["mention_id_a", "mention_id_b", "match_probability"])
    dec = pd.DataFrame([(ids[a], ids[b], "cannot_link") for a, b in cannot
                        if not (cids[a] and cids[a] == cids[b])],
                       columns=["mention_id_a", "mention_id_b", "decision"])
    res = constrained_clusters(ids, e, citizen_ids=cids, decisions=dec, threshold=0.3)
    label = res.clusters.set_index("mention_id")["cluster_label"]
    # two different valid IDs never share a cluster
    per_cluster = pd.DataFrame({"label": label.to_numpy(), "cid": cids}).dropna().groupby("label")["cid"].nunique()
    assert (per_cluster <= 1).all()
    # cannot-link always holds
    for a, b, _ in dec.itertuples(index=False):
        assert label[a] != label[b]
    # mentions sharing a valid ID are always together (no cannot-link among them here)
    for c in {x for x in cids if x}:
        members = [i for i, x in zip(ids, cids) if x == c]
        assert label[members].nunique() == 1
    # every accepted edge is above the threshold; output covers every mention once
    assert (res.accepted["match_probability"] >= 0.3).all()
    assert sorted(res.clusters["mention_id"]) == sorted(ids)


@given(_constrained_case(), st.lists(st.tuples(st.integers(0, 39), st.integers(0, 39)), max_size=6))
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_cannot_link_holds_even_between_mentions_sharing_a_citizen_id(case, same_id_cannot) -> None:
    """An officer may split one valid ID's mentions (a checksum-valid typo): the cannot-link
    holds and the parts get distinct labels (one label is one person downstream)."""
    ids, edges, cids, cannot = case
    n = len(ids)
    extra = [(a % n, b % n) for a, b in same_id_cannot]
    # aim some cannot-links at pairs that share an ID
    by_id = {}
    for i, c in enumerate(cids):
        if c:
            by_id.setdefault(c, []).append(i)
    for k, (a, b) in enumerate(extra):
        group = by_id.get(cids[a]) if cids[a] else None
        if group and len(group) > 1:
            extra[k] = (group[0], group[-1])
    pairs = [(a, b) for a, b in cannot + extra if a != b]
    e = pd.DataFrame([(ids[a], ids[b], p) for (a, b), p in edges],
                     columns=["mention_id_a", "mention_id_b", "match_probability"])
    dec = pd.DataFrame([(ids[a], ids[b], "cannot_link") for a, b in pairs],
                       columns=["mention_id_a", "mention_id_b", "decision"])
    res = constrained_clusters(ids, e, citizen_ids=cids, decisions=dec, threshold=0.3)
    label = res.clusters.set_index("mention_id")["cluster_label"]
    assert res.conflicts == [] or all("sharing a citizen_id" in c for c in res.conflicts)
    for a, b, _ in dec.itertuples(index=False):
        assert label[a] != label[b], (a, b)
    per_cluster = pd.DataFrame({"label": label.to_numpy(), "cid": cids}).dropna().groupby("label")["cid"].nunique()
    assert (per_cluster <= 1).all()
    assert sorted(res.clusters["mention_id"]) == sorted(ids)
