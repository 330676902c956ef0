"""Rule mining for risk policies: threshold rules, decision-tree rules, greedy rule-set selection.

A :class:`Rule` is an AND of :class:`Condition` s; a record that satisfies it is a **hit** (flagged,
typically declined or sent to review). A :class:`RuleSet` flags a record when **any** of its rules
hits. For a rule on data with binary target y (1 = bad; read by :mod:`shipyard.risk.target`, so
every function taking ``y`` also takes ``bad=``):

* hit rate = hits / rows, bad rate = bads among hits / hits,
* lift = bad rate / overall bad rate, recall = bads among hits / all bads.

Missing values never satisfy a comparison unless the condition says ``missing=True`` (then a
missing value satisfies it). Rule sets are stored as a declarative JSON spec (:meth:`RuleSet.to_spec`)
and evaluated by the same code in batch (vectorised over a DataFrame) and per record (serving).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from shipyard.errors import InvalidInput, MissingColumn
from shipyard.risk.target import TargetLabel, ValuesLike, binary_target

__all__ = [
    "Condition",
    "Rule",
    "RuleSet",
    "SPEC_KIND",
    "rule_stats",
    "select_rules",
    "threshold_rules",
    "tree_rules",
]

SPEC_KIND = "shipyard.ruleset"
_NUM_OPS = {"<", "<=", ">", ">="}
_SET_OPS = {"==", "!=", "in", "not_in"}
_NULL_OPS = {"is_null", "not_null"}


def _is_missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA


@dataclass(frozen=True)
class Condition:
    """``feature op value``; ``missing=True`` makes missing values satisfy the condition.

    ``op`` is one of ``<``, ``<=``, ``>``, ``>=`` (numeric ``value``), ``==``, ``!=`` (one value),
    ``in``, ``not_in`` (a list of values), ``is_null``, ``not_null`` (no value).
    """

    feature: str
    op: str
    value: Any = None
    missing: bool = False

    def __post_init__(self) -> None:
        if self.op not in _NUM_OPS | _SET_OPS | _NULL_OPS:
            raise InvalidInput(
                f"condition on {self.feature!r}: unknown operator {self.op!r}; use one of "
                f"{sorted(_NUM_OPS | _SET_OPS | _NULL_OPS)}",
                {"field": "op"},
            )
        if self.op in ("in", "not_in"):
            object.__setattr__(self, "value", tuple(self.value))

    def describe(self) -> str:
        v = list(self.value) if isinstance(self.value, tuple) else self.value
        base = f"{self.feature} {self.op}" if self.op in _NULL_OPS else f"{self.feature} {self.op} {v!r}"
        return f"({base} or missing)" if self.missing else base

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"feature": self.feature, "op": self.op}
        if self.op not in _NULL_OPS:
            d["value"] = list(self.value) if isinstance(self.value, tuple) else self.value
        if self.missing:
            d["missing"] = True
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Condition:
        try:
            return cls(str(d["feature"]), str(d["op"]), d.get("value"), bool(d.get("missing", False)))
        except KeyError as exc:
            raise InvalidInput(f"rule condition is missing {exc.args[0]!r}: {dict(d)}", {"field": exc.args[0]}) from exc

    # ------------------------------------------------------------------------------ evaluation
    def mask(self, df: pd.DataFrame) -> np.ndarray:
        """Vectorised evaluation over a DataFrame; returns a boolean array."""
        if self.feature not in df.columns:
            raise MissingColumn(
                f"rule needs column {self.feature!r}, which the data does not have", {"field": self.feature}
            )
        col = df[self.feature]
        na = col.isna().to_numpy()
        if self.op == "is_null":
            return na
        if self.op == "not_null":
            return ~na
        numeric = pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col)
        if self.op in _NUM_OPS:
            if not numeric:
                raise InvalidInput(
                    f"condition {self.describe()} compares numbers but column {self.feature!r} is not numeric",
                    {"field": self.feature},
                )
            x = col.to_numpy(dtype=float, na_value=np.nan)
            t = float(self.value)
            with np.errstate(invalid="ignore"):
                hit = {"<": x < t, "<=": x <= t, ">": x > t, ">=": x >= t}[self.op]
        else:
            vals = [self.value] if self.op in ("==", "!=") else list(self.value)
            if numeric:
                hit = np.isin(col.to_numpy(dtype=float, na_value=np.nan), np.asarray(vals, dtype=float))
            else:
                hit = col.astype(object).where(~col.isna(), None).isin([str(v) for v in vals]).to_numpy()
            if self.op in ("!=", "not_in"):
                hit = ~hit
            hit = hit & ~na
        return hit | na if self.missing else hit & ~na

    def test(self, value: Any) -> bool:
        """Per-record evaluation of one value (the serving fast path)."""
        if _is_missing(value):
            return self.missing or self.op == "is_null"
        op = self.op
        if op == "is_null":
            return False
        if op == "not_null":
            return True
        if op in _NUM_OPS:
            x = float(value)
            t = float(self.value)
            return x < t if op == "<" else x <= t if op == "<=" else x > t if op == ">" else x >= t
        vals = (self.value,) if op in ("==", "!=") else self.value
        if isinstance(value, int | float | np.number) and not isinstance(value, bool):
            inside = any(not isinstance(v, str) and float(v) == float(value) for v in vals)
        else:
            inside = str(value) in {str(v) for v in vals}
        return inside if op in ("==", "in") else not inside


@dataclass(frozen=True)
class Rule:
    """A conjunction of conditions; ``name`` labels it in reports and decisions."""

    conditions: tuple[Condition, ...]
    name: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "conditions", tuple(self.conditions))
        if not self.name:
            object.__setattr__(self, "name", self.describe())

    def describe(self) -> str:
        return " and ".join(c.describe() for c in self.conditions) or "always"

    def mask(self, df: pd.DataFrame) -> np.ndarray:
        out = np.ones(len(df), dtype=bool)
        for c in self.conditions:
            out &= c.mask(df)
        return out

    def matches(self, record: Mapping[str, Any]) -> bool:
        for c in self.conditions:
            if c.feature not in record:
                raise MissingColumn(
                    f"rule {self.name!r} needs field {c.feature!r}, which the record does not have",
                    {"field": c.feature},
                )
            if not c.test(record[c.feature]):
                return False
        return True

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "conditions": [c.to_dict() for c in self.conditions]}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Rule:
        return cls(tuple(Condition.from_dict(c) for c in d.get("conditions", [])), str(d.get("name", "")))


def _stats_from_masks(masks: np.ndarray, y: np.ndarray) -> pd.DataFrame:
    """Hit/bad counts for a (rules × rows) boolean matrix."""
    hits = masks.sum(axis=1).astype(np.int64)
    bads = (masks.astype(np.int32) @ y.astype(np.int32)).astype(np.int64)
    n, n_bad = len(y), int(y.sum())
    with np.errstate(invalid="ignore", divide="ignore"):
        bad_rate = np.where(hits > 0, bads / np.maximum(hits, 1), np.nan)
    return pd.DataFrame({
        "hits": hits,
        "hit_rate": hits / n,
        "bad": bads,
        "bad_rate": bad_rate,
        "lift": bad_rate / (n_bad / n),
        "recall": bads / n_bad,
    })


def rule_stats(rules: Sequence[Rule], data: pd.DataFrame, y: ValuesLike, *, bad: TargetLabel | None = None) -> pd.DataFrame:
    """Hit rate, bad rate, lift and recall of each rule on ``data`` with target ``y`` (1 = bad)."""
    yy = binary_target(y, bad)
    if len(yy) != len(data):
        raise InvalidInput(f"data has {len(data)} rows but the target {len(yy)}", {"field": "target"})
    masks = np.vstack([r.mask(data) for r in rules]) if rules else np.zeros((0, len(data)), bool)
    st = _stats_from_masks(masks, yy)
    st.insert(0, "rule", [r.name for r in rules])
    return st


# --------------------------------------------------------------------------------- rule mining
def threshold_rules(
    data: pd.DataFrame,
    y: ValuesLike,
    *,
    features: Sequence[str] | None = None,
    quantiles: Sequence[float] | None = None,
    min_hit_rate: float = 0.01,
    max_hit_rate: float = 0.3,
    min_lift: float = 1.5,
    max_categories: int = 50,
    bad: TargetLabel | None = None,
) -> pd.DataFrame:
    """Single-variable rules ``x > t`` / ``x <= t`` (numeric) and ``x == c`` (categorical).

    Numeric thresholds t are the distinct values at ``quantiles`` of the feature (default 0.02,
    0.04, …, 0.98); categorical candidates are the ``max_categories`` most frequent values. Counts are
    vectorised (sort + cumulative sums). Candidates are kept when ``min_hit_rate ≤ hit rate ≤
    max_hit_rate`` and ``lift ≥ min_lift``; the table is sorted by lift. The ``rule`` column holds
    :class:`Rule` objects ready for :func:`select_rules`.
    """
    yy = binary_target(y, bad)
    if len(yy) != len(data):
        raise InvalidInput(f"data has {len(data)} rows but the target {len(yy)}", {"field": "target"})
    qs = np.asarray(quantiles if quantiles is not None else np.arange(1, 50) / 50.0)
    n, n_bad = len(yy), int(yy.sum())
    rows: list[dict[str, Any]] = []
    for f in features or list(data.columns):
        col = data[f]
        na = col.isna().to_numpy()
        if pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col):
            x = col.to_numpy(dtype=float, na_value=np.nan)[~na]
            if len(x) == 0:
                continue
            yv = yy[~na]
            order = np.argsort(x, kind="stable")
            xs, ys = x[order], yv[order]
            cum_bad = np.concatenate([[0], np.cumsum(ys)])
            ts = np.unique(np.quantile(xs, qs))
            k = np.searchsorted(xs, ts, side="right")  # rows with x <= t
            le_hit, le_bad = k, cum_bad[k]
            gt_hit, gt_bad = len(xs) - k, cum_bad[-1] - cum_bad[k]
            for op, hits, bads in (("<=", le_hit, le_bad), (">", gt_hit, gt_bad)):
                for t, h, b in zip(ts, hits, bads, strict=True):
                    rows.append({"feature": f, "op": op, "value": float(t), "hits": int(h), "bad": int(b)})
        else:
            s = col.astype(object).where(~col.isna(), None)
            vc = s.value_counts().head(max_categories)
            bad_by = pd.Series(yy).groupby(s.to_numpy()).sum()
            for cat, h in vc.items():
                rows.append({"feature": f, "op": "==", "value": str(cat), "hits": int(h),
                             "bad": int(bad_by.get(cat, 0))})
    if not rows:
        return pd.DataFrame(columns=["rule", "feature", "op", "value", "hits", "hit_rate", "bad", "bad_rate",
                                     "lift", "recall"])
    t = pd.DataFrame(rows)
    t["hit_rate"] = t["hits"] / n
    t["bad_rate"] = t["bad"] / t["hits"].where(t["hits"] > 0)
    t["lift"] = t["bad_rate"] / (n_bad / n)
    t["recall"] = t["bad"] / n_bad
    t = t[(t["hit_rate"] >= min_hit_rate) & (t["hit_rate"] <= max_hit_rate) & (t["lift"] >= min_lift)]
    t = t.sort_values(["lift", "hits"], ascending=[False, False], kind="stable").reset_index(drop=True)
    t.insert(0, "rule", [Rule((Condition(f, o, v),)) for f, o, v in zip(t["feature"], t["op"], t["value"],
                                                                          strict=True)])
    return t


def _tree_matrix(data: pd.DataFrame, features: Sequence[str], max_categories: int
                 ) -> tuple[np.ndarray, list[tuple[str, Any]]]:
    """Numeric matrix for the tree: numeric columns as is (NaN kept), categoricals one-hot."""
    cols: list[np.ndarray] = []
    meta: list[tuple[str, Any]] = []
    for f in features:
        col = data[f]
        if pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col):
            x = col.to_numpy(dtype=float, na_value=np.nan)
            if np.isinf(x).any():
                raise InvalidInput(f"column {f!r} has infinite values; clip or drop them first", {"field": f})
            cols.append(x)
            meta.append((f, None))
        else:
            s = col.astype(object).where(~col.isna(), None)
            for cat in s.value_counts().head(max_categories).index:
                cols.append((s == cat).to_numpy(dtype=float))
                meta.append((f, str(cat)))
    if not cols:
        raise InvalidInput("tree_rules needs at least one feature", {"field": "features"})
    return np.column_stack(cols), meta


def tree_rules(
    data: pd.DataFrame,
    y: ValuesLike,
    *,
    features: Sequence[str] | None = None,
    max_depth: int = 3,
    min_samples_leaf: float | int = 0.02,
    min_lift: float = 1.5,
    max_categories: int = 30,
    random_state: int = 0,
    bad: TargetLabel | None = None,
) -> pd.DataFrame:
    """Rules read off the leaves of a CART tree (scikit-learn ``DecisionTreeClassifier``).

    Each root-to-leaf path becomes a rule. Numeric splits give ``x <= t`` / ``x > t`` (with
    ``missing=True`` on the side the tree sends missing values); categorical columns are one-hot
    encoded and give ``x == c`` / ``x != c``. Hits and bads of every leaf are **counted from the
    training data with the rule's own boolean mask**, not read from ``tree_.value`` (which holds class
    proportions since scikit-learn 1.4). Leaves with lift ≥ ``min_lift`` are returned, sorted by lift.
    """
    from sklearn.tree import DecisionTreeClassifier

    yy = binary_target(y, bad)
    if len(yy) != len(data):
        raise InvalidInput(f"data has {len(data)} rows but the target {len(yy)}", {"field": "target"})
    feats = list(features or data.columns)
    for f in feats:
        if f not in data.columns:
            raise MissingColumn(f"feature {f!r} is not a column of the data; pass one of {list(data.columns)[:20]}",
                                {"field": f})
    X, meta = _tree_matrix(data, feats, max_categories)
    clf = DecisionTreeClassifier(max_depth=max_depth, min_samples_leaf=min_samples_leaf,
                                 random_state=random_state).fit(X, yy)
    tr = clf.tree_
    go_left = getattr(tr, "missing_go_to_left", np.zeros(tr.node_count, dtype=np.uint8))
    rules: list[Rule] = []
    leaves: list[int] = []
    stack: list[tuple[int, tuple[Condition, ...]]] = [(0, ())]
    while stack:
        node, conds = stack.pop()
        left, right = tr.children_left[node], tr.children_right[node]
        if left == -1:
            rules.append(Rule(conds))
            leaves.append(node)
            continue
        f, cat = meta[tr.feature[node]]
        t = float(tr.threshold[node])
        miss_left = bool(go_left[node])
        if cat is None:
            lc = Condition(f, "<=", t, missing=miss_left)
            rc = Condition(f, ">", t, missing=not miss_left)
        else:  # one-hot indicator: <= 0.5 means "not this category" (missing rows have indicator 0)
            lc = Condition(f, "!=", cat, missing=True)
            rc = Condition(f, "==", cat)
        stack.append((right, (*conds, rc)))
        stack.append((left, (*conds, lc)))
    masks = np.vstack([r.mask(data) for r in rules])
    st = _stats_from_masks(masks, yy)
    st.insert(0, "rule", rules)
    st.insert(1, "leaf", leaves)
    st.insert(2, "depth", [len(r.conditions) for r in rules])
    st = st[st["lift"] >= min_lift].sort_values(["lift", "hits"], ascending=[False, False], kind="stable")
    return st.reset_index(drop=True)


# ------------------------------------------------------------------------------------ rule sets
@dataclass
class RuleSet:
    """Rules combined with OR: a record is flagged when any rule hits."""

    rules: list[Rule] = field(default_factory=list)
    name: str = "ruleset"
    description: str = ""

    def flags(self, data: pd.DataFrame) -> pd.DataFrame:
        """One boolean column per rule (named by the rule) plus ``hit`` (any rule)."""
        out = pd.DataFrame({r.name: r.mask(data) for r in self.rules}, index=data.index)
        out["hit"] = out.any(axis=1) if self.rules else False
        return out

    def evaluate(self, data: pd.DataFrame) -> np.ndarray:
        """Vectorised: boolean array, True where any rule hits."""
        out = np.zeros(len(data), dtype=bool)
        for r in self.rules:
            out |= r.mask(data)
        return out

    def evaluate_record(self, record: Mapping[str, Any]) -> dict[str, Any]:
        """Per-record fast path: ``{"hit": bool, "rules": [names of the rules that hit]}``."""
        fired = [r.name for r in self.rules if r.matches(record)]
        return {"hit": bool(fired), "rules": fired}

    def stats(self, data: pd.DataFrame, y: ValuesLike, *, bad: TargetLabel | None = None) -> pd.DataFrame:
        """Per-rule statistics plus a final ``<ruleset>`` row for the union."""
        yy = binary_target(y, bad)
        per = rule_stats(self.rules, data, yy)
        union = _stats_from_masks(self.evaluate(data)[None, :], yy)
        union.insert(0, "rule", f"<{self.name}: any>")
        return pd.concat([per, union], ignore_index=True)

    def to_spec(self) -> dict[str, Any]:
        """Declarative JSON-compatible spec that fully determines the rule set."""
        return {
            "kind": SPEC_KIND,
            "version": 1,
            "name": self.name,
            "description": self.description,
            "combine": "any",
            "rules": [r.to_dict() for r in self.rules],
        }

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> RuleSet:
        if spec.get("kind") != SPEC_KIND:
            raise InvalidInput(
                f"not a rule-set spec: kind is {spec.get('kind')!r}, expected {SPEC_KIND!r}", {"field": "kind"}
            )
        if int(spec.get("version", 1)) != 1:
            raise InvalidInput(f"unsupported rule-set spec version {spec.get('version')}", {"field": "version"})
        if spec.get("combine", "any") != "any":
            raise InvalidInput("only combine='any' is supported", {"field": "combine"})
        return cls([Rule.from_dict(r) for r in spec.get("rules", [])], str(spec.get("name", "ruleset")),
                   str(spec.get("description", "")))

    @property
    def features(self) -> list[str]:
        seen: list[str] = []
        for r in self.rules:
            for c in r.conditions:
                if c.feature not in seen:
                    seen.append(c.feature)
        return seen


@dataclass
class RuleSelection:
    """Result of :func:`select_rules`: the chosen :class:`RuleSet` and the step-by-step gains."""

    ruleset: RuleSet
    steps: pd.DataFrame


def select_rules(
    candidates: Iterable[Rule] | pd.DataFrame,
    data: pd.DataFrame,
    y: ValuesLike,
    *,
    max_hit_rate: float = 0.1,
    max_rules: int = 10,
    min_marginal_bad: int = 1,
    name: str = "ruleset",
    bad: TargetLabel | None = None,
) -> RuleSelection:
    """Greedy rule-set selection: catch the most bads within a hit-rate budget.

    At each step the candidate adding the most **not-yet-caught bads** is added, provided the union
    hit rate stays ≤ ``max_hit_rate``; ties go to the rule adding fewer new hits. Stops after
    ``max_rules`` or when no rule adds ``min_marginal_bad`` bads within budget. ``steps`` reports each
    rule's marginal hits, marginal bads and marginal bad rate, and the cumulative hit rate, bads
    caught (recall) and bad rate of the set so far.
    """
    rules = list(candidates["rule"]) if isinstance(candidates, pd.DataFrame) else list(candidates)
    yy = binary_target(y, bad)
    if len(yy) != len(data):
        raise InvalidInput(f"data has {len(data)} rows but the target {len(yy)}", {"field": "target"})
    n, n_bad = len(yy), int(yy.sum())
    budget = int(math.floor(max_hit_rate * n + 1e-9))
    masks = np.vstack([r.mask(data) for r in rules]) if rules else np.zeros((0, n), bool)
    covered = np.zeros(n, dtype=bool)
    chosen: list[Rule] = []
    steps: list[dict[str, Any]] = []
    available = np.ones(len(rules), dtype=bool)
    yi = yy.astype(np.int32)
    while len(chosen) < max_rules and available.any():
        new = masks & ~covered
        new_hits = new.sum(axis=1)
        new_bad = new.astype(np.int32) @ yi
        ok = available & (covered.sum() + new_hits <= budget) & (new_bad >= min_marginal_bad)
        if not ok.any():
            break
        key = np.where(ok, new_bad * (n + 1) - new_hits, -np.inf)
        i = int(np.argmax(key))
        covered |= masks[i]
        available[i] = False
        chosen.append(rules[i])
        hits, bads = int(covered.sum()), int(yy[covered].sum())
        steps.append({
            "step": len(chosen),
            "rule": rules[i].name,
            "marginal_hits": int(new_hits[i]),
            "marginal_bad": int(new_bad[i]),
            "marginal_bad_rate": float(new_bad[i] / new_hits[i]) if new_hits[i] else float("nan"),
            "cum_hits": hits,
            "cum_hit_rate": hits / n,
            "cum_bad": bads,
            "cum_recall": bads / n_bad,
            "cum_bad_rate": bads / hits,
            "cum_lift": (bads / hits) / (n_bad / n),
        })
    return RuleSelection(RuleSet(chosen, name), pd.DataFrame(steps))
