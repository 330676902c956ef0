"""Rule mining: counts checked with direct boolean masks and a naive row-by-row evaluation."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.tree import DecisionTreeClassifier

from shipyard.errors import InvalidInput, SchemaMismatch
from shipyard.risk.rules import (
    Condition,
    Rule,
    RuleSet,
    rule_stats,
    select_rules,
    threshold_rules,
    tree_rules,
)

GERMAN_CSV = Path(__file__).resolve().parents[2] / "src" / "shipyard" / "demo" / "germancredit.csv"


@pytest.fixture(scope="module")
def credit() -> tuple[pd.DataFrame, np.ndarray]:
    df = pd.read_csv(GERMAN_CSV)
    y = (df.pop("creditability") == "bad").to_numpy(dtype=int)
    df["credit_amount"] = df["credit_amount"].astype(float)
    df.loc[df.index[::13], "credit_amount"] = np.nan  # exercise missing-value routing
    return df, y


def naive_condition(c: Condition, v) -> bool:
    missing = v is None or (isinstance(v, float) and math.isnan(v))
    if missing:
        return c.missing or c.op == "is_null"
    if c.op == "<=":
        return v <= c.value
    if c.op == ">":
        return v > c.value
    if c.op == "<":
        return v < c.value
    if c.op == ">=":
        return v >= c.value
    if c.op == "==":
        return str(v) == str(c.value)
    if c.op == "!=":
        return str(v) != str(c.value)
    if c.op == "in":
        return str(v) in {str(x) for x in c.value}
    if c.op == "not_in":
        return str(v) not in {str(x) for x in c.value}
    return c.op == "not_null"


def naive_hits(rules: list[Rule], df: pd.DataFrame) -> np.ndarray:
    out = []
    for rec in df.to_dict("records"):
        out.append(any(all(naive_condition(c, rec[c.feature]) for c in r.conditions) for r in rules))
    return np.array(out)


def test_threshold_rules_counts(credit):
    df, y = credit
    t = threshold_rules(df, y, min_lift=1.2, max_hit_rate=0.5)
    assert len(t) > 5
    for row in t.head(25).itertuples():
        col = df[row.feature]
        if row.op == "<=":
            m = (col <= row.value).to_numpy()
        elif row.op == ">":
            m = (col > row.value).to_numpy()
        else:
            m = (col.astype(str) == row.value).to_numpy() & col.notna().to_numpy()
        assert row.hits == m.sum() and row.bad == y[m].sum()
        assert row.lift == pytest.approx(y[m].mean() / y.mean())
        assert row.lift >= 1.2 and 0.01 <= row.hit_rate <= 0.5
    assert t["lift"].is_monotonic_decreasing


def test_tree_rules_counted_from_data_match_tree_leaves(credit):
    df, y = credit
    feats = ["duration_in_month", "credit_amount", "age_in_years", "status_of_existing_checking_account",
             "purpose"]
    t = tree_rules(df, y, features=feats, max_depth=4, min_samples_leaf=20, min_lift=0.0)
    # every leaf is a rule and the leaves partition the data
    total = np.zeros(len(df), dtype=int)
    for row in t.itertuples():
        m = row.rule.mask(df)
        total += m
        assert row.hits == m.sum() and row.bad == int(y[m].sum())
        assert row.bad_rate == pytest.approx(y[m].mean())
    assert (total == 1).all()
    # the same tree routes each training row to the leaf whose rule covers it
    from shipyard.risk.rules import _tree_matrix

    X, _ = _tree_matrix(df, feats, 30)
    clf = DecisionTreeClassifier(max_depth=4, min_samples_leaf=20, random_state=0).fit(X, y)
    leaf_of_row = clf.apply(X)
    for row in t.itertuples():
        np.testing.assert_array_equal(row.rule.mask(df), leaf_of_row == row.leaf)
        assert row.hits == clf.tree_.n_node_samples[row.leaf]


def test_select_rules_greedy_budget(credit):
    df, y = credit
    cands = threshold_rules(df, y, min_lift=1.3, max_hit_rate=0.3)
    sel = select_rules(cands, df, y, max_hit_rate=0.15, max_rules=6)
    steps = sel.steps
    assert 1 <= len(steps) <= 6
    assert (steps["cum_hit_rate"] <= 0.15 + 1e-12).all()
    assert steps["cum_bad"].is_monotonic_increasing
    # first pick is the single rule catching the most bads within budget
    masks = np.vstack([r.mask(df) for r in cands["rule"]])
    ok = masks.sum(axis=1) <= int(0.15 * len(df))
    assert steps["marginal_bad"].iloc[0] == (masks[ok].astype(int) @ y).max()
    # marginal gains add up to the union
    union = sel.ruleset.evaluate(df)
    assert steps["marginal_bad"].sum() == y[union].sum() == steps["cum_bad"].iloc[-1]
    assert steps["marginal_hits"].sum() == union.sum()


def test_ruleset_spec_roundtrip_and_naive_evaluation(credit):
    df, y = credit
    rs = RuleSet([
        Rule((Condition("duration_in_month", ">", 30), Condition("credit_amount", "<=", 4000.0, missing=True))),
        Rule((Condition("purpose", "in", ["education", "repairs"]),), name="purpose"),
        Rule((Condition("credit_history", "!=", "critical account/ other credits existing (not at this bank)"),
              Condition("age_in_years", "<", 25))),
        Rule((Condition("credit_amount", "is_null"), Condition("age_in_years", ">=", 60))),
    ], name="policy")
    spec = json.loads(json.dumps(rs.to_spec()))
    back = RuleSet.from_spec(spec)
    assert back.to_spec() == rs.to_spec()
    vec = back.evaluate(df)
    np.testing.assert_array_equal(vec, naive_hits(rs.rules, df))
    per_record = np.array([back.evaluate_record(r)["hit"] for r in df.to_dict("records")])
    np.testing.assert_array_equal(vec, per_record)
    flags = back.flags(df)
    assert flags["purpose"].sum() == df["purpose"].isin(["education", "repairs"]).sum()
    st = back.stats(df, y)
    assert st["hits"].iloc[-1] == vec.sum() and st["bad"].iloc[-1] == y[vec].sum()


def test_rule_stats_and_bad_input(credit):
    df, y = credit
    r = Rule((Condition("age_in_years", "<", 25),))
    st = rule_stats([r], df, y)
    m = df["age_in_years"].to_numpy() < 25
    assert st["hits"].iloc[0] == m.sum() and st["recall"].iloc[0] == pytest.approx(y[m].sum() / y.sum())
    with pytest.raises(SchemaMismatch, match="no_such"):
        Rule((Condition("no_such", ">", 1),)).mask(df)
    with pytest.raises(SchemaMismatch, match="no_such"):
        Rule((Condition("no_such", ">", 1),)).matches({"age_in_years": 30})
    with pytest.raises(InvalidInput, match="operator"):
        Condition("x", "~", 1)
    with pytest.raises(InvalidInput, match="not numeric"):
        Rule((Condition("purpose", ">", 1),)).mask(df)
    with pytest.raises(InvalidInput, match="binary"):
        rule_stats([r], df, np.arange(len(df)))
    with pytest.raises(InvalidInput, match="rows"):
        rule_stats([r], df, y[:10])
    with pytest.raises(InvalidInput, match="kind"):
        RuleSet.from_spec({"kind": "other", "rules": []})


def test_ruleset_flavor_roundtrip(credit, tmp_path):
    pytest.importorskip("shipyard.models.package")
    from shipyard.models.package import load_model, save_model

    df, y = credit
    num = df.select_dtypes("number").astype(float)
    sel = select_rules(threshold_rules(num, y), num, y, max_hit_rate=0.2)
    rs = sel.ruleset
    save_model(rs, tmp_path / "m")
    m = load_model(tmp_path / "m")
    assert m.flavor == "ruleset" and m.has_fast_path
    X = num[m.input_names]
    expected = rs.evaluate(num).astype(float)
    np.testing.assert_array_equal(m.predict(X), expected)
    np.testing.assert_array_equal(m.predict_array(X.to_numpy()), expected)
    rec = X.iloc[5].to_dict()
    assert m.predict(rec)[0] == float(rs.evaluate_record(rec)["hit"])
