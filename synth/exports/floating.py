"""流动人口登记: daily delta CSV files in GB18030, upserted by 登记编号."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from .. import reference as ref
from ..config import NoiseConfig, PopulationConfig
from ..noise import render_dates, render_ethnicity, render_gender, render_phones
from ..population import DAY, World, d64
from .common import (TruthLog, file_name, flat_keys_of, hukou_addresses, pick, residence_addresses,
                     write_identity)

SYSTEM = "floating_population"
FIELDS = ("登记编号", "姓名", "性别", "民族", "出生日期", "公民身份号码", "户籍地址", "现居住地址", "居住事由", "登记日期",
          "居住证编号", "居住证签发日期", "居住证有效期至", "联系电话", "服务处所", "登记状态", "注销日期", "更新时间")
ALIASES_AFTER_UPGRADE = {"公民身份号码": "身份证号", "户籍地址": "户籍地详址", "现居住地址": "现住址", "服务处所": "工作单位"}
SECOND = np.timedelta64(1, "s")


@dataclass
class Registrations:
    """One registration per floating resident, with the written values that stay the same."""

    persons: np.ndarray
    reg_no: np.ndarray
    reg_day: np.ndarray  # datetime64[D]
    reason: np.ndarray
    employer: np.ndarray
    cancel_due: np.ndarray  # datetime64[D]: cancellation after death (NaT: never)


def _registrations(rng, world: World, cfg: PopulationConfig) -> Registrations:
    p = world.persons
    per = np.flatnonzero(p.floating.to_numpy() & (p.household.to_numpy() >= 0))
    h = p.household.to_numpy()[per]
    start = d64(world.period.start)
    days = world.period.days
    n_h = len(world.households)
    h_reg = start - rng.integers(10, 1100, n_h) * DAY
    arriving = (rng.random(n_h) < 0.04) & (days > 1)
    h_reg[arriving] = start + rng.integers(1, max(days, 2), arriving.sum()) * DAY
    reg_day = h_reg[h] + np.where(rng.random(len(per)) < 0.2, rng.integers(0, 20, len(per)), 0) * DAY
    reg_day = np.where((h_reg[h] < start) & (reg_day >= start), h_reg[h], reg_day)
    age = p.age.to_numpy()[per]
    work = np.asarray(["务工", "经商", "其他"], dtype=object)[rng.choice(3, len(per), p=[0.7, 0.22, 0.08])]
    reason = np.where(age < 6, "投靠亲友", np.where(age < 19, "就学",
                      np.where(age >= 60, np.where(rng.random(len(per)) < 0.7, "投靠亲友", "就医"), work))).astype(object)
    d = world.district
    names = dict(city=d.city, county=d.county, city_short=_short(d.city or d.province),
                 province_short=_short(d.province))
    employer = np.array([ref.EMPLOYERS[a % len(ref.EMPLOYERS)].format(w=ref.EMPLOYER_WORDS[b % len(ref.EMPLOYER_WORDS)],
                                                                      **names)
                         if r in ("务工", "经商") else ""
                         for r, a, b in zip(reason, rng.integers(0, 100, len(per)), rng.integers(0, 100, len(per)))],
                        dtype=object)
    death = p.death.to_numpy()[per]
    cancel = ~np.isnat(death) & (rng.random(len(per)) >= cfg.floating_dead_still_resident_share)
    dead = np.flatnonzero(~np.isnat(death))
    if len(dead) and not (~cancel[dead]).any():
        cancel[dead[0]] = False  # at least one deceased resident still registered 在住
    cancel_due = np.where(cancel, death + rng.integers(5, 30, len(per)) * DAY, np.datetime64("NaT"))
    years = pd.to_datetime(reg_day).year.to_numpy()
    reg_no = np.array([f"{world.district.code}{y}{i:07d}" for i, y in enumerate(years)], dtype=object)
    return Registrations(per, reg_no, reg_day, reason, employer, cancel_due.astype("datetime64[D]"))


def _clock(rng, days: np.ndarray) -> np.ndarray:
    return days.astype("datetime64[s]") + rng.integers(8 * 3600, 18 * 3600, len(days)) * SECOND


def write_floating(rng, world: World, inbox: Path, noise: NoiseConfig, truth: TruthLog,
                   cfg: PopulationConfig) -> list[Path]:
    folder = inbox / SYSTEM
    folder.mkdir(parents=True, exist_ok=True)
    reg = _registrations(rng, world, cfg)
    n = len(reg.persons)
    start = d64(world.period.start)
    days = world.period.days

    # values written once per registration (a re-issued row repeats the stored record)
    w = write_identity(rng, world, reg.persons, noise, "csv")
    hukou, hukou_keys = hukou_addresses(rng, world, reg.persons, noise)
    p = world.persons
    date_style = pick(rng, ["iso", "compact", "slash"], [0.7, 0.2, 0.1])
    gender = render_gender(rng, p.gender.to_numpy()[reg.persons], pick(rng, ["word", "code"], [0.7, 0.3]), noise)
    eth = render_ethnicity(rng, p.ethnicity.to_numpy()[reg.persons], pick(rng, ["name", "code"], [0.8, 0.2]), noise)
    births = render_dates(rng, p.birth.to_numpy()[reg.persons], date_style, noise)
    phones = render_phones(rng, p.phone.to_numpy()[reg.persons], noise)
    reg_dates = render_dates(rng, reg.reg_day, date_style, noise)

    # mutable state
    flat = world.households.flat.to_numpy()[p.household.to_numpy()[reg.persons]].copy()
    addr, _ = residence_addresses(rng, world, flat, noise)
    status = np.zeros(n, dtype=np.int8)  # 0 在住, 1 已注销
    cancel_day = np.full(n, np.datetime64("NaT"), dtype="datetime64[D]")
    adult = p.age.to_numpy()[reg.persons] >= 16
    has_permit = adult & (rng.random(n) < 0.6)
    issue = np.where(has_permit, np.minimum(reg.reg_day + rng.integers(15, 60, n) * DAY, start - DAY),
                     np.datetime64("NaT")).astype("datetime64[D]")
    valid = (issue + 365 * DAY).astype("datetime64[D]")
    permit_no = np.where(has_permit, [f"{world.district.code}{i:010d}" for i in rng.integers(0, 10**10, n)],
                         "").astype(object)
    used = np.zeros(len(world.flats), dtype=bool)
    used[world.households.flat.to_numpy()] = True
    spare = list(np.flatnonzero(~used)[rng.permutation(int((~used).sum()))])

    rows: list[tuple] = []  # (day index, registration, status, address, flat, permit, issue, valid, cancel, updated)

    def emit(day_i, idx, updated):
        for j, t in zip(idx, updated):
            rows.append((day_i, j, status[j], addr[j], flat[j], permit_no[j], issue[j], valid[j], cancel_day[j], t))

    # day 0: the initial extract of every registration so far, as it stands
    known = reg.reg_day < start
    done = known & (reg.cancel_due < start)
    status[done], cancel_day[done] = 1, reg.cancel_due[done]
    last = np.maximum(reg.reg_day, np.where(np.isnat(issue), reg.reg_day, issue))
    last = np.where(done, reg.cancel_due, last)
    emit(0, np.flatnonzero(known), _clock(rng, last[known]))
    death = p.death.to_numpy()[reg.persons]
    for d in range(1, days):
        day = start + d * DAY
        new = np.flatnonzero(reg.reg_day == day)
        active = np.flatnonzero((status == 0) & (reg.reg_day < day) & (np.isnat(death) | (death > day)))
        ev = rng.random(len(active))
        rate = cfg.daily_floating_change_rate
        renew, move, leave = active[ev < rate], active[(ev >= rate) & (ev < 1.5 * rate)], \
            active[(ev >= 1.5 * rate) & (ev < 2 * rate)]
        died = np.flatnonzero((reg.cancel_due == day) & (status == 0))
        renew = renew[has_permit[renew] | adult[renew]]
        permit_no[renew] = np.where(permit_no[renew] == "",
                                    [f"{world.district.code}{i:010d}" for i in rng.integers(0, 10**10, len(renew))],
                                    permit_no[renew])
        issue[renew], valid[renew] = day, day + 365 * DAY
        for j in move:
            if spare:
                flat[j] = spare.pop()
        if len(move):
            addr[move], _ = residence_addresses(rng, world, flat[move], noise)
        gone = np.concatenate([leave, died])
        status[gone], cancel_day[gone] = 1, day
        changed = np.unique(np.concatenate([new, renew, move, gone]))
        emit(d, changed, _clock(rng, np.full(len(changed), day)))

    table = pd.DataFrame(rows, columns=["day", "reg", "status", "address", "flat", "permit", "issue", "valid",
                                        "cancel", "updated"]).astype(
        {"day": np.int64, "reg": np.int64, "status": np.int8, "flat": np.int64, "issue": "datetime64[s]",
         "valid": "datetime64[s]", "cancel": "datetime64[s]", "updated": "datetime64[s]"})
    late_day, late_rows = _late_rows(rng, table, days)
    drift_day = int(rng.integers(1, days)) if days > 1 else 1
    styles = rng.permutation(3)
    files = []
    for d in range(days):
        for suffix, part in (("", table[(table.day == d) & ~table.index.isin(late_rows)]),
                             ("_补报", table[table.index.isin(late_rows)] if d == late_day else table.iloc[0:0])):
            if suffix and not len(part):
                continue
            day = world.period.start + timedelta(days=d)
            style = int(styles[d]) if d < 3 else int(rng.integers(0, 3))
            path = folder / file_name("流动人口登记", day, style, "csv", suffix)
            headers = {f: (ALIASES_AFTER_UPGRADE.get(f, f) if d >= drift_day else f) for f in FIELDS}
            files.append(_write_file(rng, world, reg, part, path, headers, noise, truth, w, hukou, hukou_keys,
                                     dict(gender=gender, eth=eth, births=births, phones=phones, reg_dates=reg_dates),
                                     date_style))
    return files


def _late_rows(rng, table: pd.DataFrame, days: int) -> tuple[int, np.ndarray]:
    """Some rows of one day only arrive later, in a ``_补报`` file for that day."""
    if days < 2:
        return -1, np.array([], dtype=np.int64)
    candidates = [d for d in range(1, days) if (table.day == d).sum() >= 1] or [0]
    d = int(candidates[int(rng.integers(0, len(candidates)))])
    idx = table.index[table.day == d].to_numpy()
    k = max(1, len(idx) // 4)
    return d, np.sort(rng.choice(idx, size=min(k, len(idx)), replace=False))


def _write_file(rng, world: World, reg: Registrations, part: pd.DataFrame, path: Path, headers: dict,
                noise: NoiseConfig, truth: TruthLog, w, hukou, hukou_keys, written: dict, date_style: str) -> Path:
    j = part.reg.to_numpy()
    frame = pd.DataFrame({
        headers["登记编号"]: reg.reg_no[j],
        headers["姓名"]: w.names[j],
        headers["性别"]: written["gender"][j],
        headers["民族"]: written["eth"][j],
        headers["出生日期"]: written["births"][j],
        headers["公民身份号码"]: w.ids.text[j],
        headers["户籍地址"]: hukou[j],
        headers["现居住地址"]: part.address.to_numpy(),
        headers["居住事由"]: reg.reason[j],
        headers["登记日期"]: written["reg_dates"][j],
        headers["居住证编号"]: part.permit.to_numpy(),
        headers["居住证签发日期"]: render_dates(rng, part.issue.to_numpy(), date_style, noise),
        headers["居住证有效期至"]: render_dates(rng, part.valid.to_numpy(), date_style, noise),
        headers["联系电话"]: written["phones"][j],
        headers["服务处所"]: reg.employer[j],
        headers["登记状态"]: np.where(part.status.to_numpy() == 1, "已注销", "在住"),
        headers["注销日期"]: render_dates(rng, part.cancel.to_numpy(), date_style, noise),
        headers["更新时间"]: pd.Series(part.updated.to_numpy()).dt.strftime("%Y-%m-%d %H:%M:%S").to_numpy(),
    })
    frame.to_csv(path, index=False, encoding="gb18030", lineterminator="\r\n")
    locators = [str(i) for i in range(2, 2 + len(part))]
    truth.add_mentions(SYSTEM, path.name, locators, "registrant", reg.persons[j], w.ids.take(j), w.names[j],
                       w.name_quirks[j])
    truth.add_addresses(SYSTEM, path.name, locators, headers["户籍地址"], hukou_keys[j], hukou[j])
    truth.add_addresses(SYSTEM, path.name, locators, headers["现居住地址"], flat_keys_of(world, part.flat.to_numpy()),
                        part.address.to_numpy())
    return path


def _short(name: str) -> str:
    """吉林省 → 吉林, 辽源市 → 辽源, 内蒙古自治区 → 内蒙古 (the name without its suffix)."""
    import re

    m = re.match(r"^(.{2,}?)(?:维吾尔自治区|壮族自治区|回族自治区|自治区|特别行政区|省|市|地区|盟|自治州|州)$", name or "")
    return m.group(1) if m else name
