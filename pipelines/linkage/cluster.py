"""Clustering scored pairs into persons, with hard constraints.

Algorithm (a constrained single-linkage, greedy by probability):

1. Every mention starts alone. Officers' must-link pairs are united first, then the
   mentions that share a valid citizen ID, then those sharing a non-resident document
   (type + number, for mentions without a valid ID).
2. Candidate edges (scored pairs at or above the threshold, that meet
   `comparisons.LINK_REQUIREMENTS`) are taken in descending probability (ties: mention
   ids), and each is accepted unless its union would put into one component
   * two different valid citizen IDs, or two different non-resident document numbers, or
   * the two ends of an officer's cannot-link pair.
   A refused edge is recorded (``rejected``), it is not retried later.

Taking strong edges first means a mention that fits two people joins the better one,
and the constraint then keeps the other away (e.g. a twin without an ID in one export:
her exact-name edge to her own records wins over the pinyin edge to her sibling's).

Thresholds (precision first; a false merge costs far more than a missed link):

* ``DEFAULT_THRESHOLD = 0.999``: an edge needs posterior odds of 999:1. Measured on
  generated inboxes (10 000 households, seed 7, tests/benchmarks/accuracy.py):

  ==========  =========  ==========================  ==========================
  threshold   precision  recall (realistic / hard)   note
  ==========  =========  ==========================  ==========================
  0.99        0.99991    0.99981 / 0.99737           a false merge at realistic
  0.999       1.00000    0.99963 / 0.99606           chosen
  0.9999      1.00000    0.98165 / 0.95813           loses common names
  ==========  =========  ==========================  ==========================

  What 0.999 still misses are mostly very common names (王磊) with nothing but name and
  birth date in common, and look-alike typos of a name without a usable ID: exactly the
  pairs a precision-first index should hand to an officer rather than merge.
* ``REVIEW_BAND = (0.5, 0.999)``: pairs in this band that were not linked go to officers
  for review, as do refused edges above the threshold (they point at a wrong valid ID).

Must-link decisions win over the ID constraint (an officer may know an ID is a
checksum-valid typo); a cannot-link between mentions that must-links put together is
reported in ``conflicts`` and ignored.

`constrained_clusters` is pure Python with a union-find (path halving, union by size);
each constraint check looks at the component's ID set and cannot-link set only, so the
cost is O(edges · α) plus the cannot-link bookkeeping.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

DEFAULT_THRESHOLD = 0.999
REVIEW_BAND = (0.5, 0.999)
CLUSTER_COLUMNS = ["mention_id", "cluster_label", "match_method", "match_probability"]


class UnionFind:
    """Union-find over 0..n-1 with component payloads for the constraints."""

    def __init__(self, n: int):
        # plain lists: element access on a numpy array costs several times a list's,
        # and `find` runs millions of times on a district's first sync
        self.parent = list(range(n))
        self.size = [1] * n

    def find(self, x: int) -> int:
        parent = self.parent
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def union(self, a: int, b: int) -> int:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return ra
        if self.size[ra] < self.size[rb]:
            ra, rb = rb, ra
        self.parent[rb] = ra
        self.size[ra] += self.size[rb]
        return ra


def _known(col: pd.Series, pos: dict[str, int]) -> np.ndarray:
    """Which values of `col` are keys of `pos`. (`Series.isin(dict)` on pandas' Arrow
    strings turns every key into a pyarrow scalar first: seconds per call at a million
    mentions; a dict lookup per row is a fraction of that.)"""
    return np.fromiter((x in pos for x in col.tolist()), dtype=bool, count=len(col))


@dataclass
class ClusterResult:
    clusters: pd.DataFrame                     # CLUSTER_COLUMNS
    accepted: pd.DataFrame                     # edges accepted (mention_id_a, mention_id_b, probability)
    rejected: pd.DataFrame                     # edges refused by a constraint (+ reason)
    conflicts: list[str] = field(default_factory=list)


def constrained_clusters(
    mention_ids: list[str] | np.ndarray | pd.Series,
    edges: pd.DataFrame | None = None,
    *,
    citizen_ids: list | np.ndarray | pd.Series | None = None,
    document_keys: list | np.ndarray | pd.Series | None = None,
    decisions: pd.DataFrame | None = None,
    threshold: float = DEFAULT_THRESHOLD,
    anchors: list | np.ndarray | pd.Series | None = None,
) -> ClusterResult:
    """Cluster mentions (see the module docstring).

    edges: mention_id_a, mention_id_b, match_probability (already filtered by the link
    requirements; rows below `threshold` are ignored).
    citizen_ids / document_keys: per mention (aligned with `mention_ids`), NA for none.
    decisions: mention_id_a, mention_id_b, decision ('must_link' | 'cannot_link').
    anchors: per mention, True for nodes that stand for an already published person
    (incremental linking): no component may hold two of them.
    """
    ids = [x if type(x) is str else str(x) for x in (mention_ids.tolist() if hasattr(mention_ids, "tolist") else mention_ids)]
    n = len(ids)
    pos = {m: i for i, m in enumerate(ids)}
    if len(pos) != n:
        raise ValueError("mention ids are not unique")
    uf = UnionFind(n)

    def _vals(v):
        if v is None:
            return [None] * n
        col = pd.Series(v.tolist() if hasattr(v, "tolist") else list(v), dtype=object)
        col = col.where(col.notna(), None)
        return [x if x is None or type(x) is str else str(x) for x in col.tolist()]

    cid = _vals(citizen_ids)
    doc = _vals(document_keys)
    # component payloads, kept at the root
    comp_cid: dict[int, set[str]] = {i: {cid[i]} for i in range(n) if cid[i]}
    comp_doc: dict[int, set[str]] = {i: {doc[i]} for i in range(n) if doc[i] and not cid[i]}
    cannot: dict[int, set[int]] = {}
    anchor_of: dict[int, int] = {}
    if anchors is not None:
        anchor_of = {i: 1 for i, a in enumerate(list(anchors)) if bool(a)}
    method = np.array(["singleton"] * n, dtype=object)
    prob = np.full(n, np.nan)
    conflicts: list[str] = []

    def merge(a: int, b: int) -> int:
        ra, rb = uf.find(a), uf.find(b)
        if ra == rb:
            return ra
        r = uf.union(ra, rb)
        o = rb if r == ra else ra
        for store in (comp_cid, comp_doc):
            if o in store:
                store.setdefault(r, set()).update(store.pop(o))
        if o in cannot:
            cannot.setdefault(r, set()).update(cannot.pop(o))
        if o in anchor_of:
            anchor_of[r] = anchor_of.get(r, 0) + anchor_of.pop(o)
        return r

    def blocked(ra: int, rb: int) -> str | None:
        a_ids, b_ids = comp_cid.get(ra, set()), comp_cid.get(rb, set())
        if a_ids and b_ids and a_ids != b_ids:
            return "different_citizen_id"
        if ra in anchor_of and rb in anchor_of:
            return "two_existing_persons"
        a_doc, b_doc = comp_doc.get(ra, set()), comp_doc.get(rb, set())
        if a_doc and b_doc and a_doc != b_doc:
            return "different_document"
        small, other = (ra, rb) if len(cannot.get(ra, ())) <= len(cannot.get(rb, ())) else (rb, ra)
        for x in cannot.get(small, ()):
            if uf.find(x) == other:
                return "cannot_link"
        return None

    # 1. officers' must-links
    must = cant = pd.DataFrame(columns=["mention_id_a", "mention_id_b"])
    if decisions is not None and len(decisions):
        d = decisions.astype({"mention_id_a": str, "mention_id_b": str})
        d = d[_known(d["mention_id_a"], pos) & _known(d["mention_id_b"], pos)]
        must = d[d["decision"] == "must_link"]
        cant = d[d["decision"] == "cannot_link"]
    for a, b in zip(must["mention_id_a"], must["mention_id_b"]):
        ia, ib = pos[a], pos[b]
        merge(ia, ib)
        method[ia] = method[ib] = "must_link"
        prob[ia] = prob[ib] = 1.0
    for a, b in zip(cant["mention_id_a"], cant["mention_id_b"]):
        ia, ib = pos[a], pos[b]
        if uf.find(ia) == uf.find(ib):
            conflicts.append(f"cannot_link {a} / {b} ignored: must-link decisions put them together")
            continue
        cannot.setdefault(ia, set()).add(ib)
        cannot.setdefault(ib, set()).add(ia)
    # cannot-link sets live at the roots
    for i in list(cannot):
        r = uf.find(i)
        if r != i:
            cannot.setdefault(r, set()).update(cannot.pop(i))

    # 2. shared valid citizen ID, then shared document (never across a cannot-link, and
    #    never joining two existing persons: that is for a full run to decide)
    acc_rows: list[tuple] = []
    rej_rows: list[tuple] = []
    for key_list, label in ((cid, "citizen_id"), (doc, "document_number")):
        groups: dict[str, list[int]] = {}
        for i, k in enumerate(key_list):
            if k and (label == "citizen_id" or not cid[i]):
                groups.setdefault(k, []).append(i)
        for members in groups.values():
            if len(members) < 2:
                continue
            first = members[0]
            for j in members[1:]:
                ra, rb = uf.find(first), uf.find(j)
                if ra == rb:
                    continue
                if any(uf.find(x) == rb for x in cannot.get(ra, ())):
                    conflicts.append(f"cannot_link keeps apart {ids[first]} / {ids[j]} sharing a {label}")
                    continue
                if ra in anchor_of and rb in anchor_of:
                    rej_rows.append((ids[first], ids[j], 1.0, "two_existing_persons"))
                    continue
                if label == "citizen_id" or blocked(ra, rb) is None:
                    merge(first, j)
            for j in members:
                if method[j] == "singleton":
                    method[j] = label
                    prob[j] = 1.0

    # 3. probabilistic edges, strongest first
    if edges is not None and len(edges):
        e = edges[["mention_id_a", "mention_id_b", "match_probability"]].copy()
        e["mention_id_a"] = e["mention_id_a"].astype(str)
        e["mention_id_b"] = e["mention_id_b"].astype(str)
        e = e[(e["match_probability"] >= threshold).to_numpy() & _known(e["mention_id_a"], pos)
              & _known(e["mention_id_b"], pos)]
        e = e.sort_values(["match_probability", "mention_id_a", "mention_id_b"], ascending=[False, True, True],
                          kind="mergesort")
        for a, b, p in e.itertuples(index=False):
            ia, ib = pos[a], pos[b]
            ra, rb = uf.find(ia), uf.find(ib)
            if ra == rb:
                continue
            why = blocked(ra, rb)
            if why:
                rej_rows.append((a, b, p, why))
                continue
            merge(ia, ib)
            acc_rows.append((a, b, p))
            for i in (ia, ib):
                if method[i] == "singleton":
                    method[i] = "probabilistic"
                if method[i] == "probabilistic":
                    prob[i] = p if np.isnan(prob[i]) else max(prob[i], p)

    # labels: the component's smallest valid ID, else document, else smallest mention id
    roots = np.array([uf.find(i) for i in range(n)], dtype=np.int64)
    order = np.argsort(np.array(ids, dtype=object), kind="mergesort")
    label_of: dict[int, str] = {}
    for i in order:
        r = int(roots[i])
        if r not in label_of:
            label_of[r] = "M:" + ids[i]
    smallest = dict(label_of)  # root → "M:<smallest mention id>"
    for r in set(roots.tolist()):
        if comp_cid.get(r):
            label_of[r] = "ID:" + min(comp_cid[r])
        elif comp_doc.get(r):
            label_of[r] = "DOC:" + min(comp_doc[r])
    # a cannot-link can split one ID's mentions into several components: only the one
    # with the smallest mention keeps the ID label, the others are labelled by mention
    holder: dict[str, int] = {}
    for r in sorted(set(roots.tolist()), key=lambda r: smallest[r]):
        if label_of[r] in holder:
            label_of[r] = smallest[r]
        else:
            holder[label_of[r]] = r
    sizes = np.bincount(roots, minlength=n)
    lone = sizes[roots] == 1
    method[lone] = "singleton"
    prob[lone] = np.nan
    clusters = pd.DataFrame({
        "mention_id": ids,
        "cluster_label": [label_of[int(r)] for r in roots],
        "match_method": method,
        "match_probability": prob,
    })
    return ClusterResult(
        clusters=clusters,
        accepted=pd.DataFrame(acc_rows, columns=["mention_id_a", "mention_id_b", "match_probability"]),
        rejected=pd.DataFrame(rej_rows, columns=["mention_id_a", "mention_id_b", "match_probability", "reason"]),
        conflicts=conflicts,
    )
