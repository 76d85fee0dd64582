"""低保花名册: one xlsx workbook per month, household cells merged over member rows."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import xlsxwriter

from .. import reference as ref
from ..config import NoiseConfig
from ..noise import render_dates, render_gender, render_phones
from ..population import DAY, World, d64
from .common import Sheet, TruthLog, fixed_properties, pick, residence_addresses, write_identity

SYSTEM = "low_income"
HOUSEHOLD_FIELDS = ("序号", "街道", "社区", "户主姓名", "户主身份证号", "保障类别", "家庭保障人口", "月保障金额",
                    "家庭住址", "联系电话", "审批日期")
MEMBER_FIELDS = ("成员姓名", "与户主关系", "成员身份证号", "性别", "出生日期")
COLUMN_ORDER = ("序号", "街道", "社区", "户主姓名", "户主身份证号", "成员姓名", "与户主关系", "成员身份证号", "性别",
                "出生日期", "保障类别", "家庭保障人口", "月保障金额", "家庭住址", "联系电话", "审批日期")
CLASSES = {"letter": ("A类", "B类", "C类"), "number": ("一类", "二类", "三类")}


@dataclass
class Programme:
    """Who receives support in which month, and how much."""

    households: np.ndarray  # household indices
    first_month: np.ndarray  # index of the first roster month (-1: before the first roster)
    stop_month: np.ndarray  # index of the first month no longer supported (len(months): never)
    klass: np.ndarray  # 0, 1, 2
    amount_per_person: np.ndarray
    change_month: np.ndarray  # month index from which the amount changes
    change_factor: np.ndarray
    approved: np.ndarray  # datetime64[D]


def _programme(rng, world: World) -> Programme:
    hh = np.flatnonzero(world.households.low_income.to_numpy())
    n, months = len(hh), len(world.period.roster_months)
    first = np.where(rng.random(n) < 0.85, -1, rng.integers(1, max(2, months), n))
    first = np.minimum(first, months - 1)
    stop = np.where(rng.random(n) < 0.08, rng.integers(1, max(2, months), n), months)
    stop = np.maximum(stop, first + 1)
    m0 = d64(world.period.roster_months[0])
    approved = np.where(first < 0, m0 - rng.integers(30, 5 * 365, n) * DAY,
                        np.array([d64(world.period.roster_months[max(f, 0)]) for f in first]) - rng.integers(3, 25, n) * DAY)
    return Programme(hh, first, stop, rng.choice(3, n, p=[0.3, 0.5, 0.2]),
                     np.round(rng.uniform(280, 640, n) * 2) / 2, rng.integers(1, months + 5, n),
                     np.where(rng.random(n) < 0.5, 1.08, 0.9), approved)


def _relation_words(rng, world: World, members: np.ndarray) -> np.ndarray:
    p = world.persons
    role, gender = p.role.to_numpy()[members], p.gender.to_numpy()[members]
    head_gender = p.gender.to_numpy()[world.households["head"].to_numpy()[p.household.to_numpy()[members]]]
    out = np.empty(len(members), dtype=object)
    r = rng.integers(0, 100, len(members))
    for i in range(len(members)):
        if role[i] == "head":
            opts = ref.RELATION_HEAD
        elif role[i] == "spouse":
            opts = ref.RELATION_SPOUSE_OF_MALE_HEAD if head_gender[i] == "1" else ref.RELATION_SPOUSE_OF_FEMALE_HEAD
        elif role[i] == "child":
            opts = ref.RELATION_SON if gender[i] == "1" else ref.RELATION_DAUGHTER
        else:
            opts = ref.RELATION_FATHER if gender[i] == "1" else ref.RELATION_MOTHER
        out[i] = opts[r[i] % len(opts)]
    return out


def write_low_income(rng, world: World, inbox: Path, noise: NoiseConfig, truth: TruthLog) -> list[Path]:
    folder = inbox / SYSTEM
    folder.mkdir(parents=True, exist_ok=True)
    prog = _programme(rng, world)
    files = []
    for mi, month in enumerate(world.period.roster_months):
        roster = _roster_rows(world, prog, mi, month)
        path = folder / f"低保花名册_{month.year}{month.month:02d}.xlsx"
        _write_workbook(rng, world, prog, roster, path, month, multi_sheet=(mi % 2 == 1), noise=noise, truth=truth)
        files.append(path)
    return files


def _roster_rows(world: World, prog: Programme, mi: int, month: date) -> pd.DataFrame:
    """One row per listed member of every supported household of this month, head first."""
    p = world.persons
    hh = world.households
    on = (prog.first_month <= mi) & (prog.stop_month > mi)
    sel = np.flatnonzero(on)
    members_of = p.groupby("household", sort=False).indices
    month_start = d64(month)
    death = p.death.to_numpy()
    still_paid = p.benefit_after_death.to_numpy()
    rows = []
    heads = hh["head"].to_numpy()
    for j in sel:
        h = prog.households[j]
        head = heads[h]
        if not np.isnat(death[head]) and death[head] < month_start and not still_paid[head]:
            continue  # the household was stopped (停保) after the head died
        mem = members_of[h]
        listed = mem[np.isnat(death[mem]) | (death[mem] >= month_start) | still_paid[mem]]
        for k, m in enumerate(listed):
            rows.append((j, h, m, k == 0, len(listed)))
    df = pd.DataFrame(rows, columns=["prog", "household", "person", "is_first", "covered"]).astype(
        {"prog": np.int64, "household": np.int64, "person": np.int64, "is_first": bool, "covered": np.int64})
    flats = world.flats.iloc[hh.flat.to_numpy()[df.household.to_numpy()]]
    df["sub"] = flats["sub"].to_numpy()
    df["comm"] = flats["comm"].to_numpy()
    return df.sort_values(["sub", "comm", "household"], kind="stable").reset_index(drop=True)


def _headers(rng) -> dict[str, str]:
    return {
        "序号": "序号", "街道": pick(rng, ["街道", "街道（乡镇）"]), "社区": pick(rng, ["社区", "社区（村）"]),
        "户主姓名": "户主姓名", "户主身份证号": "户主身份证号", "成员姓名": "成员姓名", "与户主关系": "与户主关系",
        "成员身份证号": "成员身份证号", "性别": "性别", "出生日期": "出生日期", "保障类别": "保障类别",
        "家庭保障人口": "家庭保障人口", "月保障金额": pick(rng, ["月保障金额（元）", "月保障金", "保障金额"], [0.6, 0.25, 0.15]),
        "家庭住址": "家庭住址", "联系电话": "联系电话", "审批日期": "审批日期",
    }


def _write_workbook(rng, world: World, prog: Programme, roster: pd.DataFrame, path: Path, month: date, multi_sheet: bool,
                    noise: NoiseConfig, truth: TruthLog) -> None:
    p = world.persons
    hh = world.households
    district = world.district
    headers = _headers(rng)
    extra = ["备注"] if rng.random() < 0.4 else []
    columns = list(COLUMN_ORDER) + extra
    col = {f: i for i, f in enumerate(columns)}
    total_in_first = rng.random() < 0.5
    class_style = pick(rng, ["letter", "number"], [0.7, 0.3])
    date_style = pick(rng, ["iso", "excel", "slash", "compact"], [0.3, 0.4, 0.2, 0.1])
    gender_style = pick(rng, ["word", "code"], [0.85, 0.15])

    persons = roster.person.to_numpy()
    w = write_identity(rng, world, persons, noise, "xlsx", excel_factor=noise.roster_excel_factor)
    relation = _relation_words(rng, world, persons)
    gender = render_gender(rng, p.gender.to_numpy()[persons], gender_style, noise)
    births = render_dates(rng, p.birth.to_numpy()[persons], date_style, noise, excel_cells=True)
    first = np.flatnonzero(roster.is_first.to_numpy())
    hrows = roster.iloc[first]
    h_idx = hrows.household.to_numpy()
    addresses, flat_keys = residence_addresses(rng, world, hh.flat.to_numpy()[h_idx], noise)
    phone = p.phone.to_numpy()[hh["head"].to_numpy()[h_idx]]
    landline = hh.landline.to_numpy()[h_idx]
    phone = np.where((landline != "") & (rng.random(len(h_idx)) < 0.5), landline, phone)  # the household's
    head_phone = render_phones(rng, phone, noise)
    j = hrows.prog.to_numpy()
    mi = world.period.roster_months.index(month)
    amount = prog.amount_per_person[j] * hrows.covered.to_numpy()
    amount = np.round(np.where(prog.change_month[j] <= mi, amount * prog.change_factor[j], amount), 2)
    approved = render_dates(rng, prog.approved[j], date_style, noise, excel_cells=True)
    klass = np.asarray(CLASSES[class_style], dtype=object)[prog.klass[j]]
    remark = np.where(rng.random(len(first)) < 0.1, pick(rng, ["新增", "调标", "重残"]), "")

    wb = xlsxwriter.Workbook(str(path))  # constant_memory writes inline strings: ~3x slower here
    fixed_properties(wb, month)
    subs = roster["sub"].to_numpy()
    groups = [(district.subdistricts[s].name, np.flatnonzero(subs == s)) for s in sorted(set(subs.tolist()))] \
        if multi_sheet else [(pick(rng, ["花名册", "低保对象", "Sheet1"]), np.arange(len(roster)))]
    if not groups:
        groups = [("花名册", np.arange(0))]
    first_pos = {int(r): k for k, r in enumerate(first)}
    is_first, covered = roster.is_first.to_numpy(), roster.covered.to_numpy()
    sub_of, comm_of = roster["sub"].to_numpy(), roster["comm"].to_numpy()
    locators = np.empty(len(roster), dtype=object)
    for sheet_name, rows in groups:
        sh = Sheet(wb, sheet_name)
        sh.title(0, f"{district.county}城市居民最低生活保障对象花名册", len(columns))
        sh.title(1, f"统计月份：{month.year}年{month.month}月    单位：元", len(columns))
        for c, f in enumerate(columns):
            sh.cell(2, c, headers.get(f, f))
        r = 3
        seq = 0
        total_people, total_amount = 0, 0.0
        for start in rows[is_first[rows]]:
            k = first_pos[int(start)]
            size = int(covered[start])
            last = r + size - 1
            seq += 1
            hh_values = {
                "序号": float(seq), "街道": district.subdistricts[sub_of[start]].name,
                "社区": district.subdistricts[sub_of[start]].communities[comm_of[start]].name,
                "户主姓名": w.names[start], "户主身份证号": w.ids.cells[start], "保障类别": klass[k],
                "家庭保障人口": float(size), "月保障金额": float(amount[k]), "家庭住址": addresses[k],
                "联系电话": head_phone[k], "审批日期": approved[k],
            }
            for f, v in hh_values.items():
                sh.merged(r, last, col[f], v, money=(f == "月保障金额"))
            if extra and remark[k]:
                sh.cell(r, col["备注"], str(remark[k]))
            for x in range(start, start + size):
                sh.cell(r, col["成员姓名"], w.names[x])
                sh.cell(r, col["与户主关系"], relation[x])
                sh.cell(r, col["成员身份证号"], w.ids.cells[x])
                sh.cell(r, col["性别"], gender[x])
                sh.cell(r, col["出生日期"], births[x])
                locators[x] = f"{sheet_name}!{r + 1}"
                r += 1
            total_people += size
            total_amount += float(amount[k])
        sh.cell(r, 0 if total_in_first else 1, "合计")
        sh.cell(r, col["家庭保障人口"], float(total_people))
        sh.cell(r, col["月保障金额"], round(total_amount, 2), money=True)
    wb.close()

    roles = np.where(p.role.to_numpy()[persons] == "head", "head", "member")
    truth.add_mentions(SYSTEM, path.name, locators, roles, persons, w.ids, w.names, w.name_quirks)
    truth.add_addresses(SYSTEM, path.name, locators[first], headers["家庭住址"], flat_keys, addresses)
