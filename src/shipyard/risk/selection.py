"""Variable selection for scorecards, with a table that says why each variable was kept or dropped.

Filters run in this order; a variable dropped by one step is not looked at by the later ones:

1. ``missing``: missing rate above ``max_missing``.
2. ``iv``: information value below ``min_iv``.
3. ``correlation``: |Pearson correlation of WOE values| above ``max_corr`` with a variable of
   higher IV that is kept (variables are visited in decreasing IV order).
4. ``vif``: the variable with the largest variance inflation factor (``diag(inv(corr))`` of the
   WOE values) is dropped while it exceeds ``max_vif``.
5. ``stepwise``: logistic regression on WOE values, forward/backward/both by AIC or BIC
   (maximum-likelihood fits by Newton–Raphson).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.base import clone

from shipyard.errors import InvalidInput
from shipyard.risk.binning import Binner
from shipyard.risk.binning._input import as_frame, check_not_empty
from shipyard.risk.target import FrameLike, TargetLabel, ValuesLike, binary_target, resolve_bad


@dataclass
class SelectionResult:
    selected: list[str]
    table: pd.DataFrame  # variable, iv, missing_rate, vif, kept, step, reason
    binner: Binner


def logit_loglik(X: np.ndarray, y: np.ndarray, max_iter: int = 50) -> float:
    """Maximised log-likelihood of a logistic regression with intercept (Newton–Raphson)."""
    A = np.column_stack([np.ones(len(y)), X])
    beta = np.zeros(A.shape[1])
    for _ in range(max_iter):
        eta = A @ beta
        p = 1.0 / (1.0 + np.exp(-eta))
        w = p * (1 - p)
        grad = A.T @ (y - p)
        H = (A * w[:, None]).T @ A + 1e-9 * np.eye(A.shape[1])
        step = np.linalg.solve(H, grad)
        beta += step
        if np.max(np.abs(step)) < 1e-10:
            break
    eta = A @ beta
    return float(np.sum(y * eta - np.logaddexp(0.0, eta)))


def _stepwise(W: pd.DataFrame, y: np.ndarray, direction: str, criterion: str) -> list[str]:
    n = len(y)
    pen = 2.0 if criterion == "aic" else math.log(n)

    def score(cols: list[str]) -> float:
        X = W[cols].to_numpy() if cols else np.zeros((n, 0))
        return -2.0 * logit_loglik(X, y) + pen * (len(cols) + 1)

    chosen: list[str] = [] if direction in ("forward", "both") else list(W.columns)
    best = score(chosen)
    while True:
        moves: list[tuple[float, list[str]]] = []
        if direction in ("forward", "both"):
            moves += [(score([*chosen, c]), [*chosen, c]) for c in W.columns if c not in chosen]
        if direction in ("backward", "both") and chosen:
            moves += [(score([c for c in chosen if c != d]), [c for c in chosen if c != d]) for d in chosen]
        if not moves:
            break
        val, cols = min(moves, key=lambda t: t[0])
        if val < best - 1e-9:
            best, chosen = val, cols
        else:
            break
    return chosen


def select_variables(
    X: FrameLike,
    y: ValuesLike,
    *,
    binner: Binner | None = None,
    max_missing: float = 0.95,
    min_iv: float = 0.02,
    max_corr: float = 0.7,
    max_vif: float = 10.0,
    stepwise: str | None = "both",
    criterion: str = "aic",
    bad: TargetLabel | None = None,
    bad_value: TargetLabel | None = None,
) -> SelectionResult:
    """Select variables (see the module docstring). ``binner``: fitted or not (default ``Binner()``);
    ``stepwise``: ``forward``, ``backward``, ``both`` or ``None``; ``criterion``: ``aic`` or ``bic``;
    ``bad``: the target value meaning bad (:mod:`shipyard.risk.target`; ``bad_value`` is its
    deprecated name)."""
    if stepwise not in (None, "forward", "backward", "both"):
        raise InvalidInput("stepwise must be 'forward', 'backward', 'both' or None", {"field": "stepwise"})
    if criterion not in ("aic", "bic"):
        raise InvalidInput("criterion must be 'aic' or 'bic'", {"field": "criterion"})
    df = as_frame(X)
    check_not_empty(df, "select_variables")
    yv = binary_target(y, resolve_bad(bad, bad_value, "select_variables"))
    if len(yv) != len(df):
        raise InvalidInput(f"X has {len(df)} rows but y has {len(yv)}; pass one target value per row",
                           {"field": "y"})
    if binner is None or not hasattr(binner, "bins_"):
        binner = clone(binner) if binner is not None else Binner()
        binner.set_params(output="woe", bad=None, bad_value=None)  # the target is already 0/1 here
        binner.fit(df, yv)
    names = list(binner.bins_)
    W = pd.DataFrame(binner.transform(df), columns=names) if binner.output == "woe" else None
    if W is None:
        W = pd.DataFrame({c: binner.bins_[c].woe[binner.transform(df)[:, j].astype(int)]
                          for j, c in enumerate(names)})
    ivs = {c: binner.bins_[c].iv for c in names}
    miss = {c: float(df[c].isna().mean()) for c in names}
    rows = {c: {"variable": c, "iv": ivs[c], "missing_rate": miss[c], "vif": np.nan, "kept": True,
                "step": "", "reason": "kept"} for c in names}

    def drop(c: str, step: str, reason: str) -> None:
        rows[c].update(kept=False, step=step, reason=reason)

    alive = [c for c in names]
    for c in list(alive):
        if miss[c] > max_missing:
            drop(c, "missing", f"missing rate {miss[c]:.3f} > {max_missing}")
            alive.remove(c)
    for c in list(alive):
        if ivs[c] < min_iv:
            drop(c, "iv", f"IV {ivs[c]:.4f} < {min_iv}")
            alive.remove(c)
    alive.sort(key=lambda c: (-ivs[c], c))
    if len(alive) > 1:
        corr = W[alive].corr().fillna(0.0)
        kept: list[str] = []
        for c in alive:
            hit = next((k for k in kept if abs(corr.loc[c, k]) > max_corr), None)
            if hit is not None:
                drop(c, "correlation", f"|corr| {abs(corr.loc[c, hit]):.3f} > {max_corr} with {hit} (higher IV)")
            else:
                kept.append(c)
        alive = kept
    while len(alive) > 1:
        cm = np.corrcoef(W[alive].to_numpy(), rowvar=False)
        vif = np.diag(np.linalg.pinv(cm))
        for c, v in zip(alive, vif, strict=True):
            rows[c]["vif"] = float(v)
        j = int(np.argmax(vif))
        if vif[j] <= max_vif:
            break
        drop(alive[j], "vif", f"VIF {vif[j]:.2f} > {max_vif}")
        alive.pop(j)
    if stepwise is not None and alive:
        chosen = set(_stepwise(W[alive], yv, stepwise, criterion))
        for c in alive:
            if c not in chosen:
                drop(c, "stepwise", f"not chosen by {stepwise} stepwise logistic regression ({criterion.upper()})")
        alive = [c for c in alive if c in chosen]
    for c in alive:
        rows[c]["reason"] = "kept: passed all filters"
    table = pd.DataFrame(list(rows.values())).sort_values(["kept", "iv"], ascending=[False, False],
                                                          ignore_index=True)
    return SelectionResult(selected=alive, table=table, binner=binner)
