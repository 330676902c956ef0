"""When binning merges a category too rare for a bin of its own, the Binner, its spec and
`shipyard bin` say so, with the IV before and after (the IV before checked against toad)."""

from __future__ import annotations

import json

import click
import pytest
from click.testing import CliRunner

from shipyard.risk import Binner

from .conftest import GERMAN

toad = pytest.importorskip("toad")


def test_merged_table_lists_every_rare_category_sharing_a_bin(german):
    X, y = german
    b = Binner(min_bin_share=0.05).fit(X, y)
    table = b.merged_table()
    listed = {(r.variable, r.category) for r in table.itertuples()}
    expected = set()
    for c, fb in b.bins_.items():
        if fb.kind != "categorical":
            continue
        shares = X[c].value_counts(normalize=True)
        for group in fb.groups:
            if len(group) > 1:
                expected |= {(c, cat) for cat in group if shares[cat] < 0.05}
    assert listed == expected and ("foreign_worker", "no") in listed
    for r in table.itertuples():
        assert r.share == pytest.approx((X[r.variable] == r.category).mean())
        assert r.reason == ("rare_share" if r.share < b.rare_share else "min_bin_share")
        # IV with one bin per category, by an independent implementation
        assert r.iv_unmerged == pytest.approx(toad.stats.IV(X[r.variable], y), abs=1e-9)
        assert r.iv == pytest.approx(b.bins_[r.variable].iv)
    assert not Binner(min_bin_share=0.01, rare_share=0.0).fit(X[["foreign_worker"]], y).merged_table().shape[0]


def test_bin_command_reports_the_merge(tmp_path):
    from shipyard.risk.cli import register

    root = click.Group("shipyard")
    register(root)
    spec_path = tmp_path / "spec.json"
    res = CliRunner().invoke(root, ["bin", str(GERMAN), "--target", "creditability", "--min-bin-share", "0.05",
                                    "-o", str(spec_path)])
    assert res.exit_code == 0, res.output
    line = next(x for x in res.output.splitlines() if x.strip().startswith("foreign_worker:"))
    assert "'no' (3.7%) into [no,yes]" in line and "IV 0.0439 with a bin per category -> 0.0000" in line
    spec = json.loads(spec_path.read_text())
    fw = next(f for f in spec["features"] if f["name"] == "foreign_worker")
    assert fw["merged"]["categories"] == [{"category": "no", "share": 0.037, "bin": "no,yes",
                                           "reason": "min_bin_share"}]
    assert fw["merged"]["iv_unmerged"] == pytest.approx(0.043877, abs=1e-6) and fw["iv"] == 0.0
    again = Binner.from_spec(spec)
    assert again.merged_table().equals(Binner.from_spec(json.loads(again.to_json())).merged_table())
    assert len(again.merged_table()) == sum(len(f.get("merged", {}).get("categories", [])) for f in spec["features"])
