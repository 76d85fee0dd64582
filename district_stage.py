"""The district stage of a sync: which district (province, city, county) completes the
addresses of this run's exports. Configured (`[district]`), else stored in the warehouse
by an earlier sync, else inferred from the exports themselves (`pipelines.district`) and
stored. The flow gives the readers; this decides.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pandas as pd

from settings import Settings
from warehouse.runs import SyncSummary


def district_context(settings: Settings, con: Any = None) -> Any:
    """The district in force: the configured `[district]`, else the one stored in the
    warehouse (inferred by an earlier sync), else None."""
    from pipelines.normalize.address import DistrictContext

    if settings.district.is_configured:
        return configured_district(settings)
    if con is not None:
        from warehouse import district as wdistrict

        row = wdistrict.current(con)
        if row:
            return DistrictContext(row["province"], row["city"], row["county"], row["county_code"])
    return None


def configured_district(settings: Settings) -> Any:
    """`[district]` as a DistrictContext with its codes; a district the division table
    does not know (or cannot tell apart) is a configuration error."""
    from pipelines.normalize import address_rules
    from pipelines.normalize.address import DistrictContext
    from settings import ConfigError

    d = settings.district
    ctx = DistrictContext(province=d.province, city=d.city, county=d.county, county_code=d.county_code)
    code = ctx.codes()[2]
    if code is None:
        raise ConfigError("invalid_value", key="district", value=d.county_code or d.county or d.city or d.province,
                          detail="区划表（民政部 2025）中找不到唯一的县级区划：请写县级六位代码 county_code，"
                                 "如 county_code = \"150203\"")
    g = address_rules.gazetteer()
    path = g.path(code)
    if d.county_code and d.county and g.by_code[code].name != d.county and d.county not in (
            address_rules.short_name(g.by_code[code].name) or "",):
        raise ConfigError("invalid_value", key="district.county", value=d.county,
                          detail=f"与 county_code {code}（{g.by_code[code].name}）不符")
    name = lambda lv: g.by_code[path[lv]].name if lv in path else None  # noqa: E731
    return DistrictContext(name(1), name(2), name(3), code)


def add_evidence(inputs: Any, raw: Any, mapping: Any) -> None:
    """An export's district evidence; an export whose columns cannot even be mapped gives
    none (its load fails alone later, with its own message)."""
    try:
        inputs.add_export(raw.frame, mapping)
    except Exception:  # noqa: BLE001 - reported by the load of this export
        pass


#: raw exports read for the district evidence are kept for the load up to this many rows
#: (beyond, they are read again). At 1M residents the file exports are ~313 000 rows, 0.46 GB
#: as frames, each dropped as it is staged, long before the sync's peak (the build); read
#: twice they cost the full sync ~3 s of its 8 s of reading. A sync of several million
#: residents keeps the first 500 000 rows' worth (~0.75 GB) and reads the rest again.
RAW_CACHE_ROWS = 500_000


def establish_district(con: Any, settings: Settings, summary: SyncSummary, files: list[Any], sql_maps: list[Any],
                       mappings: dict[str, Any], *, is_new: Callable[[Any], bool], read_file: Callable[[Any], Any],
                       read_sql: Callable[[Any], Any]) -> tuple[Any, dict[str, Any]]:
    """The district this sync completes addresses with, and the raw exports already read.

    The new exports' address, township and ID columns are evidence (`pipelines.district`).
    Configured `[district]` wins; else the district stored by an earlier sync; else it is
    inferred from the evidence and stored — or, when the evidence is scarce or ambiguous,
    the sync stops with a `ConfigError` asking for `[district]` (nothing is staged).
    A district in force that the evidence contradicts is a warning (summary, report).

    The sync gives its readers: `is_new(export_file)` (the file is to be loaded this run),
    `read_file(export_file)` and `read_sql(mapping)` (the rows this run would load)."""
    from connectors.exceptions import ConnectorError
    from pipelines.district import (CHECK_ADDRESS_VALUES, CHECK_ID_VALUES, DistrictInputs, check_configured,
                                    infer_district)
    from settings import ConfigError
    from warehouse import district as wdistrict

    stored = wdistrict.current(con)
    inputs = DistrictInputs()
    cache: dict[str, Any] = {}
    cached_rows = 0
    read_any = False

    for ef in files:
        if not is_new(ef):
            continue
        try:
            raw = read_file(ef)
        except ConnectorError:
            continue  # the load reads it again and records the failure
        except OSError:
            continue
        add_evidence(inputs, raw, mappings[ef.mapping])
        read_any = True
        if cached_rows + len(raw.frame) <= RAW_CACHE_ROWS:
            cache[str(ef.path)] = raw
            cached_rows += len(raw.frame)

    def read_sql_too() -> None:
        nonlocal read_any, cached_rows
        for mapping in sql_maps:
            try:
                raw = read_sql(mapping)
            except Exception:  # noqa: BLE001 - the load reads it again and records the failure
                continue
            add_evidence(inputs, raw, mapping)
            read_any = read_any or not raw.frame.empty
            cache[f"sql:{mapping.source_object}"] = raw
            cached_rows += len(raw.frame)

    configured = settings.district.is_configured
    if not configured and stored is None:
        if summary.persons_before:  # loaded before the district was recorded: what it holds is evidence too
            addresses, ids = wdistrict.staged_values(con)
            inputs.addresses.append(pd.Series(addresses, dtype=object))
            inputs.citizen_ids.append(pd.Series(ids, dtype=object))
            read_any = read_any or bool(addresses or ids)
        inference = infer_district(inputs.evidence())
        if not inference.is_decided and sql_maps:
            read_sql_too()
            inference = infer_district(inputs.evidence())
        if not inference.is_decided:
            if not read_any:
                return None, cache  # nothing to stage: nothing to complete (the next sync infers)
            raise ConfigError("district_unknown", detail=inference.message_zh())
        ctx = inference.context()
        row = inference.to_row()
        wdistrict.record(con, run_id=summary.run_id, method="inferred", **row)
        summary.district = f"{inference.label}（{inference.county_code}）"
        summary.district_note = inference.message_zh()
        return ctx, cache

    # the district in force is only checked against the new exports: a smaller sample
    evidence = inputs.evidence(max_addresses=CHECK_ADDRESS_VALUES, max_ids=CHECK_ID_VALUES)
    if configured:
        ctx = configured_district(settings)
        method, note = "configured", "辖区按配置文件 [district]"
    else:
        from pipelines.normalize.address import DistrictContext

        ctx = DistrictContext(stored["province"], stored["city"], stored["county"], stored["county_code"])
        method = stored["method"]
        note = "辖区沿用仓库中已存的" + ("推断结果" if method == "inferred" else "配置")
    warning = check_configured(ctx, evidence) if read_any else None
    label = "".join(x for x in (ctx.province, ctx.city, ctx.county) if x)
    summary.district = f"{label}（{ctx.county_code}）"
    summary.district_note = note
    summary.district_warning = warning
    changed = stored is None or stored["county_code"] != ctx.county_code or stored["method"] != method
    if changed or warning:
        wdistrict.record(con, run_id=summary.run_id, method=method, county_code=ctx.county_code,
                         province=ctx.province, city=ctx.city, county=ctx.county,
                         confidence=stored["confidence"] if (stored and not configured) else None,
                         share=stored["share"] if (stored and not configured) else None,
                         evidence_records=int(round(float(evidence["records"].sum()))) if len(evidence) else 0,
                         detail=note, warning=warning)
    return ctx, cache
