"""民政: 婚姻登记 (xlsx) and 火化信息 (CSV, UTF-8 with BOM)."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import xlsxwriter

from ..config import NoiseConfig
from ..noise import render_dates, render_ethnicity, render_gender, render_phones
from ..population import DAY, World, d64
from .common import (Sheet, TruthLog, file_name, fixed_properties, hukou_addresses, household_flats, pick,
                     residence_addresses, write_identity)

SYSTEM = "civil_affairs"
MARRIAGE_SHEET = "婚姻登记"


def export_days(days: int) -> list[int]:
    """Civil affairs exports every third day (the first one carries the backlog)."""
    return sorted(set(range(0, days, 3)) | {days - 1})


def write_civil_affairs(rng, world: World, inbox: Path, noise: NoiseConfig, truth: TruthLog) -> list[Path]:
    folder = inbox / SYSTEM
    folder.mkdir(parents=True, exist_ok=True)
    period = world.period
    cremations = _cremations(rng, world)
    marriages = world.marriages
    files: list[Path] = []
    prev = None
    late = _late_reports(rng, cremations, export_days(period.days))
    for k, day_i in enumerate(export_days(period.days)):
        day = period.start + timedelta(days=day_i)
        style = int(rng.integers(0, 3)) if k else 0
        m = marriages[_since(marriages.date.to_numpy(), prev, day)]
        if len(m):
            files.append(_write_marriages(rng, world, m, folder / file_name("婚姻登记", day, style, "xlsx"),
                                          day, noise, truth))
        c = cremations[_since(cremations.cremation.to_numpy(), prev, day) & ~cremations.index.isin(late.index)]
        if len(c):
            files.append(_write_cremations(rng, world, c, folder / file_name("火化信息", day, style, "csv"),
                                           noise, truth))
        if k == 1 and len(late):
            files.append(_write_cremations(rng, world, late, folder / file_name("火化信息", day, style, "csv", "_补报"),
                                           noise, truth))
        prev = day
    return files


def _since(dates: np.ndarray, previous_export: date | None, export: date) -> np.ndarray:
    """Events after the previous export up to this one (the first export takes the backlog)."""
    upto = dates <= d64(export)
    return upto if previous_export is None else upto & (dates > d64(previous_export))


# ----------------------------------------------------------------------------------------
# 婚姻登记
# ----------------------------------------------------------------------------------------

PARTY_FIELDS = ("姓名", "证件类型", "证件号码", "出生日期", "国籍", "民族", "户籍所在地")


def _marriage_headers(rng) -> list[str]:
    cert = pick(rng, ["登记证字号", "证件编号"], [0.7, 0.3])
    id_word = pick(rng, ["证件号码", "身份证号"], [0.7, 0.3])
    cols = [cert, "业务类型", "登记日期"]
    for side in ("男方", "女方"):
        cols += [f"{side}{f if f != '证件号码' else id_word}" for f in PARTY_FIELDS]
    return cols + ["登记机关"]


def _write_marriages(rng, world: World, events: pd.DataFrame, path: Path, day: date, noise: NoiseConfig,
                     truth: TruthLog) -> Path:
    p = world.persons
    headers = _marriage_headers(rng)
    n = len(events)
    date_style = pick(rng, ["iso", "slash", "excel", "chinese"], [0.4, 0.2, 0.3, 0.1])
    reg_dates = render_dates(rng, events.date.to_numpy(), date_style, noise, excel_cells=True)
    locators = [f"{MARRIAGE_SHEET}!{r}" for r in range(3, 3 + n)]
    parties = {}
    for side, col in (("男方", "man"), ("女方", "woman")):
        who = events[col].to_numpy()
        w = write_identity(rng, world, who, noise, "xlsx")
        hukou, hkeys = hukou_addresses(rng, world, who, noise)
        foreign = p.citizen_id.to_numpy()[who] == ""
        eth = render_ethnicity(rng, np.where(foreign, "", p.ethnicity.to_numpy()[who]), pick(rng, ["name", "short"]), noise)
        parties[side] = (w, hukou, render_dates(rng, p.birth.to_numpy()[who], date_style, noise, excel_cells=True),
                         p.doc_type.to_numpy()[who], p.nationality.to_numpy()[who], eth)
        role = "man" if side == "男方" else "woman"
        truth.add_mentions(SYSTEM, path.name, locators, role, who, w.ids, w.names, w.name_quirks)
        truth.add_addresses(SYSTEM, path.name, locators, f"{side}户籍所在地", hkeys, hukou)

    wb = xlsxwriter.Workbook(str(path))
    fixed_properties(wb, day)
    sh = Sheet(wb, MARRIAGE_SHEET)
    sh.title(0, f"{world.district.county}婚姻登记信息导出", len(headers))
    for c, h in enumerate(headers):
        sh.cell(1, c, h)
    office = f"{world.district.city}{world.district.county}民政局婚姻登记处"
    kinds, certs = events.kind.to_numpy(), events.cert_no.to_numpy()
    for i in range(n):
        r = i + 2
        row = [certs[i], kinds[i], reg_dates[i]]
        for side in ("男方", "女方"):
            w, hukou, births, dtype, nat, eth = parties[side]
            row += [w.names[i], dtype[i], w.ids.cells[i], births[i], nat[i], eth[i], hukou[i]]
        row.append(office)
        for c, v in enumerate(row):
            sh.cell(r, c, v)
    wb.close()
    return path


# ----------------------------------------------------------------------------------------
# 火化信息
# ----------------------------------------------------------------------------------------


def _cremations(rng, world: World) -> pd.DataFrame:
    p = world.persons
    dead = np.flatnonzero(~np.isnat(p.death.to_numpy()))
    death = p.death.to_numpy()[dead]
    crem = np.minimum(death + rng.integers(1, 4, len(dead)) * DAY, d64(world.period.end))
    df = pd.DataFrame({"person": dead, "death": death, "cremation": crem}).sort_values(["cremation", "person"])
    df["cert_no"] = [f"HH{world.district.code}{d.year}{i + 1:05d}"
                     for i, d in enumerate(pd.to_datetime(df.cremation))]
    return df.reset_index(drop=True)


def _late_reports(rng, cremations: pd.DataFrame, days: list[int]) -> pd.DataFrame:
    """A few cremations of the backlog are only reported later, in a ``_补报`` file."""
    if len(days) < 2 or len(cremations) < 3:
        return cremations.iloc[0:0]
    k = max(1, len(cremations) // 20)
    return cremations.iloc[np.sort(rng.choice(len(cremations) // 2 + 1, size=k, replace=False))]


def _handler_phones(rng, world: World, persons: np.ndarray) -> np.ndarray:
    """Phone of the family member who handled the cremation (not the deceased's own)."""
    p = world.persons
    h = p.household.to_numpy()
    alive_adult = np.isnat(p.death.to_numpy()) & (p.age.to_numpy() >= 18)
    first_other = pd.Series(np.flatnonzero(alive_adult)).groupby(h[alive_adult]).first()
    out = []
    for x in persons:
        other = first_other.get(h[x], -1)
        if other >= 0 and other != x:
            out.append(p.phone.iat[other])
        else:
            out.append("1" + str(int(rng.integers(3, 9))) + str(int(rng.integers(0, 10**9))).zfill(9))
    return np.asarray(out, dtype=object)


def _write_cremations(rng, world: World, crem: pd.DataFrame, path: Path, noise: NoiseConfig,
                      truth: TruthLog) -> Path:
    p = world.persons
    who = crem.person.to_numpy()
    n = len(who)
    w = write_identity(rng, world, who, noise, "excel_csv")
    date_style = pick(rng, ["iso", "slash", "compact", "dot", "chinese"], [0.5, 0.2, 0.1, 0.1, 0.1])
    hukou, hkeys = hukou_addresses(rng, world, who, noise)
    flats = household_flats(world, who)
    last, lkeys = residence_addresses(rng, world, flats, noise)
    name_col = pick(rng, ["逝者姓名", "姓名"], [0.7, 0.3])
    id_col = pick(rng, ["身份证号码", "公民身份号码"], [0.7, 0.3])
    frame = pd.DataFrame({
        "火化证明编号": crem.cert_no.to_numpy(),
        name_col: w.names,
        "性别": render_gender(rng, p.gender.to_numpy()[who], pick(rng, ["word", "code"], [0.8, 0.2]), noise),
        "民族": render_ethnicity(rng, p.ethnicity.to_numpy()[who], pick(rng, ["name", "short", "code"]), noise),
        id_col: w.ids.text,
        "出生日期": render_dates(rng, p.birth.to_numpy()[who], date_style, noise),
        "死亡日期": render_dates(rng, crem.death.to_numpy(), date_style, noise),
        "火化日期": render_dates(rng, crem.cremation.to_numpy(), date_style, noise),
        "户籍地址": hukou,
        "生前住址": last,
        "经办人联系电话": render_phones(rng, _handler_phones(rng, world, who), noise),
    })
    frame.to_csv(path, index=False, encoding="utf-8-sig", lineterminator="\r\n")
    locators = [str(i) for i in range(2, 2 + n)]
    truth.add_mentions(SYSTEM, path.name, locators, "deceased", who, w.ids, w.names, w.name_quirks)
    truth.add_addresses(SYSTEM, path.name, locators, "户籍地址", hkeys, hukou)
    truth.add_addresses(SYSTEM, path.name, locators, "生前住址", lkeys, last)
    return path
