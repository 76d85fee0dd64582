"""Configuration of the synthetic district: the place, the population and the noise."""

from __future__ import annotations

from dataclasses import dataclass, fields

# --------------------------------------------------------------------------------------
# The place
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Community:
    """A 社区 (urban) or 村 (rural) with its 12-digit statistical division code."""

    name: str
    code: str


@dataclass(frozen=True)
class Subdistrict:
    """A 街道 (urban) or 乡/镇 (rural) with its communities, roads and estates."""

    name: str
    code: str
    communities: tuple[Community, ...]
    roads: tuple[str, ...] = ()
    estates: tuple[str, ...] = ()
    rural: bool = False


@dataclass(frozen=True)
class District:
    province: str
    city: str
    county: str
    code: str  # GB/T 2260 county code
    phone_area: str  # landline area code
    subdistricts: tuple[Subdistrict, ...]
    #: (county code, weight) of the birthplaces in the IDs of local residents
    birth_regions: tuple[tuple[str, float], ...] = ()
    #: share of flats in villages (None: PopulationConfig.rural_share); a rural county has most
    rural_share: float | None = None

    @property
    def urban(self) -> tuple[Subdistrict, ...]:
        return tuple(s for s in self.subdistricts if not s.rural)

    @property
    def rural(self) -> tuple[Subdistrict, ...]:
        return tuple(s for s in self.subdistricts if s.rural)


def _sub(name: str, seq: int, communities: str, roads: str, estates: str = "", rural: bool = False,
         county: str = "220402") -> Subdistrict:
    code = f"{county}{seq:03d}000"
    comms = tuple(Community(c, f"{county}{seq:03d}{i + 1:03d}") for i, c in enumerate(communities.split()))
    return Subdistrict(name, code, comms, tuple(roads.split()), tuple(estates.split()), rural)


LONGSHAN = District(
    province="吉林省",
    city="辽源市",
    county="龙山区",
    code="220402",
    phone_area="0437",
    subdistricts=(
        _sub("向阳街道", 1, "向阳社区 新兴社区 龙泰社区 兴华社区", "向阳路 龙山路 人民大街 新兴大街",
             "金城花园 龙山家园 阳光嘉园"),
        _sub("北寿街道", 2, "北寿社区 福寿社区 青年社区", "北寿大路 辽河大路 长白山路", "福苑小区 鑫源小区"),
        _sub("南康街道", 3, "南康社区 康宁社区 光明社区 民主社区", "南康街 南康路 建设大街 胜利路",
             "锦绣华庭 康居小区"),
        _sub("东吉街道", 4, "泰安社区 东吉社区 和平社区", "人民大街 东吉大街 东宁路 隆基路", "东方名苑 泰安小区"),
        _sub("西宁街道", 5, "西宁社区 德胜社区 新华社区", "西宁大路 中山路 解放路", "御景城 水岸华府"),
        _sub("新兴街道", 6, "站前社区 北新社区 胜利社区", "站前路 福镇大路 东兴路", "盛世华城"),
        _sub("寿山镇", 100, "寿山村 新立村 永治村 东安村", "", rural=True),
        _sub("工农乡", 200, "工农村 长青村 太平村", "", rural=True),
    ),
    birth_regions=(("220402", 0.62), ("220403", 0.10), ("220421", 0.08), ("220422", 0.08), ("220102", 0.03),
                   ("220202", 0.03), ("220302", 0.02), ("222401", 0.02), ("230102", 0.01), ("210102", 0.01)),
)

# --------------------------------------------------------------------------------------
# The population
# --------------------------------------------------------------------------------------


@dataclass
class PopulationConfig:
    """Shares and rates of the population model (not noise: these are true facts)."""

    floating_share: float = 0.17  # households whose hukou is elsewhere (流动人口): ~15% of persons
    hmt_share: float = 0.03  # of floating households: from Hong Kong, Macao, Taiwan
    low_income_share: float = 0.05  # of local households on the 低保 roster
    rural_share: float = 0.12  # of flats in villages
    estate_share: float = 0.30  # of urban flats named by estate / building letter
    spouse_rate: float = 0.72
    parent_rate: float = 0.08  # an elderly parent lives in the household
    twins_rate: float = 0.03  # of households with children
    namesake_rate: float = 0.012  # persons given one of the very common names
    death_rate_per_year: float = 0.012
    marriage_rate_per_year: float = 0.01  # marriage registrations per person-year
    divorce_rate_per_year: float = 0.003
    foreign_spouse_share: float = 0.12
    benefit_after_death_share: float = 0.5  # deceased low-income people left on the roster
    floating_dead_still_resident_share: float = 0.5
    roster_months: int = 4
    fp_soft_delete_rate: float = 0.02
    daily_floating_change_rate: float = 0.004


# --------------------------------------------------------------------------------------
# The noise
# --------------------------------------------------------------------------------------

_NOISE_PRESETS: dict[str, dict[str, float]] = {
    "clean": {},  # every rate 0
    "realistic": {
        "id_lowercase_x": 0.3, "id_fullwidth": 0.012, "id_spaces": 0.015, "id_apostrophe": 0.012,
        "id_old15": 0.08, "id_typo": 0.012, "id_empty": 0.02, "id_placeholder": 0.008,
        "excel_numeric_cell": 0.03, "excel_scientific": 0.015, "excel_truncated": 0.015,
        "roster_excel_factor": 2.0,
        "name_traditional": 0.012, "name_spaces": 0.015, "name_dot_variant": 0.6,
        "name_homophone": 0.01, "name_lookalike": 0.006, "name_latin": 0.004,
        "date_mix": 0.12, "code_mix": 0.05, "phone_variant": 0.2,
        "address_variant": 0.7, "address_fullwidth": 0.05,
    },
    "hard": {
        "id_lowercase_x": 0.6, "id_fullwidth": 0.04, "id_spaces": 0.04, "id_apostrophe": 0.04,
        "id_old15": 0.2, "id_typo": 0.04, "id_empty": 0.05, "id_placeholder": 0.02,
        "excel_numeric_cell": 0.08, "excel_scientific": 0.04, "excel_truncated": 0.04,
        "roster_excel_factor": 2.0,
        "name_traditional": 0.04, "name_spaces": 0.04, "name_dot_variant": 0.8,
        "name_homophone": 0.03, "name_lookalike": 0.02, "name_latin": 0.01,
        "date_mix": 0.35, "code_mix": 0.2, "phone_variant": 0.5,
        "address_variant": 0.9, "address_fullwidth": 0.12,
    },
}


@dataclass
class NoiseConfig:
    """Rates of the realistic quirks, per person mention (or per value).

    ``NoiseConfig()`` is the 'realistic' preset; ``NoiseConfig("hard")`` or
    ``NoiseConfig("clean")`` pick another one. Any rate given explicitly overrides the
    preset: ``NoiseConfig("realistic", id_typo=0.1)``.
    """

    level: str = "realistic"
    # citizen ID disguises (fraction of mentions; old15 of those born before 1980,
    # lowercase_x of IDs ending in X)
    id_lowercase_x: float | None = None
    id_fullwidth: float | None = None
    id_spaces: float | None = None
    id_apostrophe: float | None = None
    id_old15: float | None = None
    id_typo: float | None = None
    id_empty: float | None = None
    id_placeholder: float | None = None
    # Excel corruption (xlsx, and CSV that went through Excel)
    excel_numeric_cell: float | None = None
    excel_scientific: float | None = None
    excel_truncated: float | None = None
    roster_excel_factor: float | None = None  # rosters are the most Excel-damaged
    # names
    name_traditional: float | None = None
    name_spaces: float | None = None
    name_dot_variant: float | None = None  # of names with a middle dot
    name_homophone: float | None = None
    name_lookalike: float | None = None
    name_latin: float | None = None
    # values written in another style than the file's usual one
    date_mix: float | None = None
    code_mix: float | None = None  # gender / ethnicity as code instead of name or back
    phone_variant: float | None = None
    address_variant: float | None = None  # not the full standard form
    address_fullwidth: float | None = None

    def __post_init__(self) -> None:
        if self.level not in _NOISE_PRESETS:
            raise ValueError(f"unknown noise level {self.level!r}; use one of {sorted(_NOISE_PRESETS)}")
        preset = _NOISE_PRESETS[self.level]
        for f in fields(self):
            if f.name != "level" and getattr(self, f.name) is None:
                setattr(self, f.name, preset.get(f.name, 1.0 if f.name == "roster_excel_factor" else 0.0))

    @classmethod
    def of(cls, noise: NoiseConfig | str | None) -> NoiseConfig:
        if noise is None:
            return cls()
        if isinstance(noise, str):
            return cls(noise)
        return noise

    @property
    def is_clean(self) -> bool:
        return self.level == "clean"
