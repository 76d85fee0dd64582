"""End-to-end check of address keys on a generated inbox (the issue's acceptance measure):
mentions of one flat share one address_key (pairwise F1 >= 0.99) and different flats
(almost) never share one."""

from __future__ import annotations

import pandas as pd
import pytest

from pipelines.normalize.address import DistrictContext, parse_addresses

synth_generate = pytest.importorskip("synth.generate")


def _pairs(sizes: pd.Series) -> int:
    return int((sizes * (sizes - 1) // 2).sum())


@pytest.mark.parametrize("noise", ["realistic", "hard"])
def test_generated_inbox_address_keys(tmp_path, noise):
    synth_generate.generate(tmp_path, 3000, 11, noise=noise)
    truth = pd.read_csv(tmp_path / "_truth" / "addresses.csv", dtype=str, keep_default_na=False)
    assert len(truth) > 100
    parsed = parse_addresses(truth["written"].replace("", None), default_district=DistrictContext.from_code("220402"))
    truth["key"] = parsed["address_key"].fillna("<none>")
    tp = _pairs(truth.groupby(["flat_key", "key"]).size())
    precision = tp / max(1, _pairs(truth.groupby("key").size()))
    recall = tp / max(1, _pairs(truth.groupby("flat_key").size()))
    f1 = 2 * precision * recall / (precision + recall)
    assert f1 >= 0.99, (precision, recall)
    # different flats share a key only where the generator wrote two households' hukou
    # addresses identically (up to dropping the province), which no parser can separate
    assert precision >= 0.999, precision
    assert (parsed["status"] == "parsed").mean() > 0.98
