"""Synthetic district generator: department exports with realistic quirks, plus truth files."""

from .config import LONGSHAN, District, NoiseConfig, PopulationConfig
from .generate import GenerateSummary, generate

__all__ = ["generate", "GenerateSummary", "NoiseConfig", "PopulationConfig", "District", "LONGSHAN"]
