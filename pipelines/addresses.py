"""Address mentions: every address cell of an accepted record, parsed and keyed.

One row per (record, address column) with a value: the source's own column name
(`field`), the raw text, the parsed levels and the stable `address_id`
(`pipelines.normalize.address`), the kind of person–address link it states
(hukou / residence / household / last, from the mapping) with its validity dates,
and the roles of the person mentions that the address belongs to.
"""

from __future__ import annotations

import pandas as pd

from pipelines.normalize.address import COLUMNS as PARSED_COLUMNS
from pipelines.normalize.address import DistrictContext, address_id_from_key, parse_addresses
from schemas.mapping import SourceMapping

ADDRESS_MENTION_COLUMNS = [
    "source_system", "source_object", "source_locator", "field", "column_field", "address_kind", "roles",
    "raw_text", "valid_from", "valid_to", *PARSED_COLUMNS, "address_id",
]


def _period_start(period: pd.Series) -> pd.Series:
    return pd.to_datetime(period.astype("string").str.slice(0, 7) + "-01", errors="coerce").dt.date


def address_mentions(records: pd.DataFrame, mapping: SourceMapping, field_to_header: dict[str, str], *,
                     district: DistrictContext | None = None, period: str | None = None) -> pd.DataFrame:
    """Address mentions of accepted, normalised records (see module docstring)."""
    parts = []
    ctx = None
    if mapping.address_context:
        ctx = pd.DataFrame({level: records[col] for level, col in mapping.address_context.items()},
                           index=records.index)
    for spec in mapping.columns:
        if spec.address_kind is None:
            continue
        text = records[spec.field]
        has = text.notna()
        if not has.any():
            continue
        rec = records[has]
        part = pd.DataFrame({
            "source_system": rec["source_system"], "source_object": rec["source_object"],
            "source_locator": rec["source_locator"],
            "field": field_to_header.get(spec.field, spec.header), "column_field": spec.field,
            "address_kind": spec.address_kind, "roles": ",".join(mapping.roles_using(spec.field)),
            "raw_text": text[has],
            "valid_from": _bound(rec, spec.valid_from, period),
            "valid_to": _bound(rec, spec.valid_to, period),
        })
        parsed = parse_addresses(text[has], context=ctx.loc[has[has].index] if ctx is not None else None,
                                 default_district=district)
        part = pd.concat([part, parsed], axis=1)
        parts.append(part)
    if not parts:
        return pd.DataFrame(columns=ADDRESS_MENTION_COLUMNS)
    out = pd.concat(parts, ignore_index=True)
    keys = out["address_key"]
    uniq = pd.Series(keys.dropna().unique())
    ids = dict(zip(uniq, (address_id_from_key(k) for k in uniq)))
    out["address_id"] = keys.map(ids)
    return out.reindex(columns=ADDRESS_MENTION_COLUMNS)


def _bound(rec: pd.DataFrame, field: str | None, period: str | None) -> pd.Series:
    if field is None:
        return pd.Series(None, index=rec.index, dtype=object)
    if field == "$period":
        return _period_start(pd.Series(period, index=rec.index, dtype=object))
    return rec[field]
