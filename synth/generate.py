"""Generate a synthetic district inbox (all four departments' exports) plus its truth.

    from synth import generate
    summary = generate(Path("inbox"), households=2000, seed=7)

Writes ``inbox/civil_affairs``, ``inbox/low_income``, ``inbox/floating_population``,
``inbox/family_planning/family_planning.sqlite`` and ``inbox/_truth/*.csv`` (see
ARCHITECTURE.md, "Truth files of the generator"). The same seed gives the same files.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from .config import LONGSHAN, District, NoiseConfig, PopulationConfig
from .exports.civil_affairs import write_civil_affairs
from .exports.common import TruthLog, rng_for
from .exports.family_planning import write_family_planning
from .exports.floating import write_floating
from .exports.low_income import write_low_income
from .population import (Period, World, as_object_columns, assign_deaths, assign_marriages, build_population,
                         select_low_income)


@dataclass
class GenerateSummary:
    out_dir: Path
    households: int
    persons: int
    mentions: int
    address_mentions: int
    files: list[Path] = field(default_factory=list)
    seconds: float = 0.0

    def __str__(self) -> str:
        return (f"{self.households} 户，{self.persons} 人，{len(self.files)} 个导出文件，"
                f"{self.mentions} 条人员记录，{self.address_mentions} 条地址，用时 {self.seconds:.1f} 秒 → {self.out_dir}")


def build_world(households: int, seed: int, *, start: date, days: int, district: District,
                population: PopulationConfig) -> World:
    """The true district and the events of the period (no noise, no files)."""
    period = Period.make(start, days, population.roster_months)
    flats, hh, persons = build_population(rng_for(seed, "population"), district, households, population, period)
    select_low_income(rng_for(seed, "low_income_selection"), hh, persons, population)
    assign_deaths(rng_for(seed, "deaths"), persons, hh, period, population)
    persons, marriages = assign_marriages(rng_for(seed, "marriages"), persons, district, period, population)
    return World(district, period, as_object_columns(flats), as_object_columns(hh), as_object_columns(persons),
                 marriages)


def generate(out_dir: Path, households: int, seed: int, *, start: date = date(2026, 7, 1), days: int = 10,
             district: District = LONGSHAN, noise: NoiseConfig | str | None = None,
             population: PopulationConfig | None = None) -> GenerateSummary:
    """Write a complete, deterministic inbox for ``households`` households into ``out_dir``.

    ``start``/``days``: the export days (daily floating-population deltas, civil-affairs
    exports every third day, the first carrying the backlog); the 低保 rosters cover the
    ``population.roster_months`` months up to the last export day.
    ``noise``: a NoiseConfig or a preset name ('clean', 'realistic', 'hard').
    """
    if households < 1 or days < 1:
        raise ValueError("households and days must be positive")
    t0 = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    noise = NoiseConfig.of(noise)
    population = population or PopulationConfig()
    world = build_world(households, seed, start=start, days=days, district=district, population=population)
    truth = TruthLog()
    files: list[Path] = []
    files += write_civil_affairs(rng_for(seed, "civil_affairs"), world, out_dir, noise, truth)
    files += write_low_income(rng_for(seed, "low_income"), world, out_dir, noise, truth)
    files += write_floating(rng_for(seed, "floating_population"), world, out_dir, noise, truth, population)
    files += write_family_planning(rng_for(seed, "family_planning"), world, out_dir, noise, truth, population)
    n_mentions, n_addresses = truth.write(out_dir / "_truth", world)
    return GenerateSummary(out_dir, households, len(world.persons), n_mentions, n_addresses, files,
                           time.perf_counter() - t0)
