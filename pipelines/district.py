"""Which district an inbox belongs to, inferred from the data itself (never assumed).

Addresses written without their upper levels (``林荫路269号10-2-101``) get the province,
city and county of the district the exports come from. Nothing is assumed: unless
``[district]`` is configured, the first sync infers the district from three kinds of
evidence, all matched against the civil-affairs division table (MCA 2025, levels 1–4,
`pipelines.normalize.address_rules.gazetteer`):

* ``address`` — addresses that name their county (written in full, or with the county);
* ``town``    — addresses (and roster 街道/乡镇 columns) that start with a 街道/镇/乡 name:
  a name found under one county counts fully for it; a name found under k counties
  (城关镇) counts 1/k for each;
* ``citizen_id`` — the region code (first six digits) of valid citizen IDs, at half weight
  (an ID names where a person was first registered, often not where they live).

`district_evidence` turns address / township / ID values into weighted votes per county
code, `infer_district` decides. It decides only when the evidence is plentiful
(`MIN_RECORDS` records, with at least `MIN_ADDRESS_RECORDS` address or township records
for the winner) and clear (the winner holds at least `MIN_SHARE` of all weight and
`MIN_LEAD` times the runner-up's: the rest is the hukou of people from elsewhere and
birthplaces); otherwise it refuses (status ``scarce`` or
``ambiguous``) and the caller asks the officer to configure ``[district]``.
`check_configured` compares a configured district with the evidence and returns a
Chinese warning when the data clearly belongs elsewhere.

Pure functions: no files, no warehouse, no settings.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from pipelines.normalize import address_rules as R
from pipelines.normalize.address import DistrictContext, parse_one, town_candidates
from pipelines.normalize.ids import normalize_citizen_ids

__all__ = ["CHECK_ADDRESS_VALUES", "CHECK_ID_VALUES", "EVIDENCE_COLUMNS", "DistrictInference", "check_configured",
           "district_evidence", "infer_district", "KIND_LABELS"]

#: weighted votes: one row per (county code, kind)
EVIDENCE_COLUMNS = ["county_code", "kind", "records", "weight"]
KIND_LABELS = {"address": "写明区县的地址", "town": "街道/乡镇名称", "citizen_id": "身份证地区码"}
ID_WEIGHT = 0.5

MIN_RECORDS = 20           # records of evidence for the winner
MIN_ADDRESS_RECORDS = 5    # of them from addresses or township names (IDs alone are birthplaces)
MIN_SHARE = 0.3            # the winner's share of all weighted evidence (the rest: hukou elsewhere, births)
MIN_LEAD = 3.0             # the winner's weight over the runner-up's
HIGH_LEAD = 10.0           # 把握高: lead and records above these
HIGH_RECORDS = 200
#: values parsed per call: the evidence of a first sync of a million residents is sampled
MAX_ADDRESS_VALUES = 20_000
MAX_ID_VALUES = 50_000
#: ... and when a district in force is only checked against a sync's new exports
#: (`check_configured`): a contradiction is a clear majority (the county in force under a
#: quarter of the other's weight), which a tenth of the sample shows as surely (a share
#: within ±2 % at 2 000 values) for a tenth of the parsing (a 1M roster month: 0.6 → 0.07 s)
CHECK_ADDRESS_VALUES = 2_000
CHECK_ID_VALUES = 5_000


def _empty() -> pd.DataFrame:
    return pd.DataFrame({"county_code": pd.Series(dtype=object), "kind": pd.Series(dtype=object),
                         "records": pd.Series(dtype=float), "weight": pd.Series(dtype=float)})


def _sample(values: pd.Series, limit: int, seed: int = 0) -> pd.Series:
    values = values.dropna().astype(str).str.strip()
    values = values[values != ""]
    if len(values) > limit:
        values = values.sample(limit, random_state=seed)
    return values


def district_evidence(addresses: pd.Series | None = None, towns: pd.Series | None = None,
                      citizen_ids: pd.Series | None = None, *, max_addresses: int = MAX_ADDRESS_VALUES,
                      max_ids: int = MAX_ID_VALUES) -> pd.DataFrame:
    """Weighted votes per county code (`EVIDENCE_COLUMNS`) from raw address texts, raw
    township names (a roster's 街道 column) and raw citizen-ID cells. Values are sampled
    (`max_addresses` addresses and township names, `max_ids` IDs) so the cost is bounded
    whatever the size."""
    parts = [_empty()]
    g = R.gazetteer()
    if addresses is not None and len(addresses):
        sample = _sample(addresses, max_addresses)
        counts = sample.value_counts()
        rows: list[tuple[str, str, float, float]] = []
        for text, n in counts.items():
            rec = parse_one(text)
            code = rec.get("county_code")
            if code and not rec.get("county_filled"):
                rows.append((code, "town" if rec.get("town_inferred") else "address", float(n), float(n)))
                continue
            if rec.get("county_code") is None and rec.get("clean"):
                cands = town_candidates(rec["clean"])
                for c in cands:
                    rows.append((c, "town", n / len(cands), n / len(cands)))
        if rows:
            parts.append(pd.DataFrame(rows, columns=EVIDENCE_COLUMNS))
    if towns is not None and len(towns):
        sample = _sample(towns, max_addresses)
        rows = []
        for name, n in sample.value_counts().items():
            clean = R.clean_text(name)
            codes = g.town_codes.get(clean, [])
            counties = sorted({g.by_code[c].parent for c in codes})
            for c in counties:
                rows.append((c, "town", n / len(counties), n / len(counties)))
        if rows:
            parts.append(pd.DataFrame(rows, columns=EVIDENCE_COLUMNS))
    if citizen_ids is not None and len(citizen_ids):
        ids = normalize_citizen_ids(_sample(citizen_ids, max_ids).reset_index(drop=True))
        region = ids.loc[ids["status"].isin(["valid", "upgraded_15"]), "region_code"].dropna().astype(str)
        region = region[region.map(lambda c: c in g.by_code and g.by_code[c].level == 3)]
        if len(region):
            vc = region.value_counts()
            parts.append(pd.DataFrame({"county_code": vc.index.astype(object), "kind": "citizen_id",
                                       "records": vc.to_numpy(dtype=float),
                                       "weight": vc.to_numpy(dtype=float) * ID_WEIGHT}))
    out = pd.concat([p for p in parts if len(p)] or [_empty()], ignore_index=True)
    return out.groupby(["county_code", "kind"], as_index=False)[["records", "weight"]].sum()


def _label(code: str) -> str:
    g = R.gazetteer()
    path = g.path(code)
    return "".join(g.by_code[path[lv]].name for lv in (1, 2, 3) if lv in path)


@dataclass(frozen=True)
class DistrictInference:
    """What the evidence says. ``status``: ``inferred`` (decided), ``ambiguous`` (two or
    more counties compete), ``scarce`` (too little evidence) or ``none`` (no evidence)."""

    status: str
    county_code: str | None = None
    province: str | None = None
    city: str | None = None
    county: str | None = None
    confidence: str | None = None          # 高 / 中 (only when inferred)
    share: float = 0.0                     # the winner's share of all weighted evidence
    lead: float = 0.0                      # the winner's weight over the runner-up's (inf: no runner-up)
    records: float = 0.0                   # records supporting the winner
    total_records: float = 0.0
    by_kind: dict[str, float] = field(default_factory=dict)  # the winner's records per evidence kind
    candidates: tuple[tuple[str, str, float], ...] = ()      # (code, label, share), best first

    @property
    def is_decided(self) -> bool:
        return self.status == "inferred"

    @property
    def label(self) -> str:
        return "".join(x for x in (self.province, self.city, self.county) if x)

    def context(self) -> DistrictContext:
        return DistrictContext(self.province, self.city, self.county, self.county_code)

    def evidence_zh(self) -> str:
        parts = [f"{KIND_LABELS[k]} {int(round(v))} 条" for k, v in sorted(self.by_kind.items()) if v >= 0.5]
        return "，".join(parts) or "无"

    def candidates_zh(self, limit: int = 3) -> str:
        return "、".join(f"{label}（{code}，{share:.0%}）" for code, label, share in self.candidates[:limit])

    def message_zh(self) -> str:
        if self.status == "inferred":
            lead = "无其他候选" if self.lead == float("inf") else f"为第二位的 {self.lead:.0f} 倍"
            return (f"辖区由数据推断为 {self.label}（{self.county_code}），把握{self.confidence}：占全部证据的 "
                    f"{self.share:.0%}，{lead}；依据 {self.evidence_zh()}")
        if self.status == "ambiguous":
            return (f"无法从数据判断辖区：证据分散于 {self.candidates_zh()}。"
                    "请在配置文件 residents.toml 的 [district] 中写明辖区，例如 county_code = \"" +
                    (self.candidates[0][0] if self.candidates else "XXXXXX") + "\"")
        if self.status == "scarce":
            top = f"（最多的是 {self.candidates_zh(1)}，仅 {int(round(self.records))} 条记录）" if self.candidates else ""
            return ("无法从数据判断辖区：可用的证据太少" + top +
                    "。请在配置文件 residents.toml 的 [district] 中写明辖区（county_code = 六位区划代码）")
        return ("无法从数据判断辖区：导出中没有写明区县的地址、可识别的街道/乡镇名称或有效身份证号。"
                "请在配置文件 residents.toml 的 [district] 中写明辖区（county_code = 六位区划代码）")

    def to_row(self) -> dict[str, Any]:
        return {"county_code": self.county_code, "province": self.province, "city": self.city,
                "county": self.county, "confidence": self.confidence, "share": self.share,
                "evidence_records": int(round(self.total_records)), "detail": self.message_zh()}


def infer_district(evidence: pd.DataFrame) -> DistrictInference:
    """Decide the district from `district_evidence` output (possibly concatenated from
    several exports); refuses when the evidence is scarce or ambiguous."""
    if evidence is None or evidence.empty or float(evidence["weight"].sum()) <= 0:
        return DistrictInference("none")
    by_county = evidence.groupby("county_code")[["weight", "records"]].sum().sort_values("weight", ascending=False)
    total_w = float(by_county["weight"].sum())
    total_records = float(by_county["records"].sum())
    shares = by_county["weight"] / total_w
    candidates = tuple((str(c), _label(str(c)), float(s)) for c, s in shares.head(5).items())
    top = str(by_county.index[0])
    share = float(shares.iloc[0])
    second_w = float(by_county["weight"].iloc[1]) if len(by_county) > 1 else 0.0
    kinds = evidence[evidence["county_code"] == top].groupby("kind")["records"].sum()
    by_kind = {str(k): float(v) for k, v in kinds.items()}
    records = float(by_county["records"].iloc[0])
    addr_records = by_kind.get("address", 0.0) + by_kind.get("town", 0.0)
    g = R.gazetteer()
    path = g.path(top)
    name = lambda lv: g.by_code[path[lv]].name if lv in path else None  # noqa: E731
    lead = float(by_county["weight"].iloc[0]) / second_w if second_w else float("inf")
    base = dict(share=share, lead=lead, records=records, total_records=total_records, by_kind=by_kind, candidates=candidates)
    if share < MIN_SHARE or (second_w and by_county["weight"].iloc[0] < MIN_LEAD * second_w):
        return DistrictInference("ambiguous", **base)
    if records < MIN_RECORDS or addr_records < MIN_ADDRESS_RECORDS:
        return DistrictInference("scarce", **base)
    confidence = "高" if lead >= HIGH_LEAD and records >= HIGH_RECORDS else "中"
    return DistrictInference("inferred", top, name(1), name(2), name(3), confidence, **base)


def check_configured(configured: DistrictContext, evidence: pd.DataFrame) -> str | None:
    """A Chinese warning when the data clearly belongs to another county than the one
    configured (the inferred county is decided and the configured one holds less than
    a quarter of its weight); None when they agree or the data cannot tell."""
    code = configured.codes()[2]
    if code is None or evidence is None or evidence.empty:
        return None
    inferred = infer_district(evidence)
    if not inferred.is_decided or inferred.county_code == code:
        return None
    weights = evidence.groupby("county_code")["weight"].sum()
    own = float(weights.get(code, 0.0))
    if own >= 0.25 * float(weights.get(inferred.county_code, 0.0)):
        return None
    own_share = own / float(weights.sum())
    return (f"配置的辖区 {_label(code)}（{code}）与数据不符：数据指向 {inferred.label}（{inferred.county_code}）"
            f"（占证据 {inferred.share:.0%}，依据 {inferred.evidence_zh()}），配置的辖区仅占 {own_share:.0%}。"
            "省略上级的地址已按配置的辖区补全；请核对 [district] 配置")


def combine(parts: list[pd.DataFrame]) -> pd.DataFrame:
    """Sum the evidence of several exports."""
    parts = [p for p in parts if p is not None and len(p)]
    if not parts:
        return _empty()
    return pd.concat(parts, ignore_index=True).groupby(["county_code", "kind"], as_index=False)[
        ["records", "weight"]].sum()


def scale(evidence: pd.DataFrame, factor: float) -> pd.DataFrame:
    """Evidence of a sample scaled to the whole (records and weight times `factor`)."""
    out = evidence.copy()
    out[["records", "weight"]] = out[["records", "weight"]].to_numpy(dtype=float) * float(factor)
    return out



#: rows of one export kept as evidence (the evidence of all exports is sampled again)
ROWS_PER_EXPORT = 20_000


@dataclass
class DistrictInputs:
    """Raw evidence values gathered from several exports (sampled per export)."""

    addresses: list[pd.Series] = field(default_factory=list)
    towns: list[pd.Series] = field(default_factory=list)
    citizen_ids: list[pd.Series] = field(default_factory=list)

    def add_export(self, frame: pd.DataFrame, mapping: Any) -> None:
        """The address, township-context and citizen-ID columns of one raw export (as its
        mapping declares them), at most `ROWS_PER_EXPORT` rows."""
        from pipelines.standardize import map_columns

        if frame is None or frame.empty:
            return
        if len(frame) > ROWS_PER_EXPORT:
            frame = frame.sample(ROWS_PER_EXPORT, random_state=0)
        mapped, _ = map_columns(frame, mapping)
        for spec in mapping.columns:
            if spec.field not in mapped.columns:
                continue
            if spec.address_kind is not None:
                self.addresses.append(mapped[spec.field])
            elif spec.kind == "citizen_id":
                self.citizen_ids.append(mapped[spec.field])
        town_field = (getattr(mapping, "address_context", None) or {}).get("town")
        if town_field and town_field in mapped.columns:
            self.towns.append(mapped[town_field])

    def evidence(self, *, max_addresses: int = MAX_ADDRESS_VALUES, max_ids: int = MAX_ID_VALUES) -> pd.DataFrame:
        cat = lambda parts: pd.concat(parts, ignore_index=True) if parts else None  # noqa: E731
        return district_evidence(cat(self.addresses), cat(self.towns), cat(self.citizen_ids),
                                 max_addresses=max_addresses, max_ids=max_ids)
