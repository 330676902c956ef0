"""Built-in modelling components: binning/WOE, variable selection, scorecard, models, tuning,
evaluation, rule mining and the daily model report. They call ``shipyard.risk`` for the credit-risk
work and scikit-learn, XGBoost, LightGBM and Optuna for the rest.

Each function imports what it uses inside its body: code generation copies these functions into a
standalone script as they are. The target may be 0/1 or two labels (``bad_value`` names the bad one).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from shipyard.pipelines.components import builtin

if TYPE_CHECKING:
    import pandas as pd

    from shipyard.pipelines.context import NodeContext
    from shipyard.risk.binning import Binner
    from shipyard.risk.scorecard import Scorecard

ALGORITHMS = ("lr", "tree", "xgboost", "lightgbm")


@builtin("bin_woe", inputs={"train": "table"}, outputs={"binner": "binner"},
         choices={"method": ("optimal", "monotonic", "tree", "chimerge", "mdlp", "caim", "equal_width",
                             "equal_freq")})
def bin_woe(ctx: NodeContext, train: pd.DataFrame, target: str, bad_value: Any = None, method: str = "optimal",
            max_bins: int = 6, min_bin_share: float = 0.05, columns: list | None = None,
            exclude: list | None = None) -> Binner:
    """Bin every column (or ``columns``) and compute WOE/IV against the target."""
    from shipyard.risk.binning import Binner
    from shipyard.risk.metrics import to_binary_target

    skip = {target, *(exclude or [])}
    cols = list(columns) if columns else [c for c in train.columns if c not in skip]
    y = to_binary_target(train[target], bad=bad_value, field=target)
    binner = Binner(method=method, max_bins=max_bins, min_bin_share=min_bin_share).fit(train[cols], y)
    iv = binner.iv_table()
    ctx.write_text("iv.csv", iv.to_csv(index=False))
    ctx.log_metrics({"columns": len(cols), "max_iv": float(iv["iv"].max())})
    return binner


@builtin("select_variables", inputs={"train": "table", "binner": "binner"}, outputs={"features": "json"},
         choices={"stepwise": (None, "forward", "backward", "both")})
def select_variables(ctx: NodeContext, train: pd.DataFrame, binner: Any, target: str, bad_value: Any = None,
                     min_iv: float = 0.02, max_corr: float = 0.7, max_vif: float = 10.0,
                     stepwise: str | None = None) -> list:
    """Keep variables by missing rate, IV, correlation, VIF and (optionally) stepwise regression."""
    from shipyard.risk.metrics import to_binary_target
    from shipyard.risk.selection import select_variables as select

    y = to_binary_target(train[target], bad=bad_value, field=target)
    columns = [str(c) for c in binner.feature_names_in_]
    result = select(train[columns], y, binner=binner, min_iv=min_iv, max_corr=max_corr, max_vif=max_vif,
                    stepwise=stepwise)
    ctx.write_text("selection.csv", result.table.to_csv(index=False))
    ctx.log_metric("selected", len(result.selected))
    return list(result.selected)


def _subset_binner(binner: Any, features: list, train: pd.DataFrame, y: Any) -> Any:
    """The binner's settings refitted on ``features`` only: the same bins, since binning is per column."""
    from sklearn.base import clone

    sub = clone(binner).set_params(columns=list(features), bad_value=None)
    return sub.fit(train[list(features)], y)


@builtin("train_scorecard", inputs={"train": "table", "binner": "binner", "features": "json"},
         outputs={"model": "model"}, optional=("features",))
def train_scorecard(ctx: NodeContext, train: pd.DataFrame, binner: Any, target: str, features: list | None = None,
                    bad_value: Any = None, pdo: float = 20.0, base_score: float = 600.0,
                    base_odds: float = 50.0) -> Scorecard:
    """A points scorecard: logistic regression on WOE, scaled by PDO / base score / base odds."""
    from shipyard.risk.metrics import to_binary_target
    from shipyard.risk.scorecard import Scorecard

    y = to_binary_target(train[target], bad=bad_value, field=target)
    cols = list(features) if features else [str(c) for c in binner.feature_names_in_]
    card = Scorecard(binner=_subset_binner(binner, cols, train, y), pdo=pdo, base_score=base_score,
                     base_odds=base_odds)
    card.fit(train[cols], y)
    ctx.write_text("points.csv", card.points_table().to_csv(index=False))
    ctx.log_metrics({"variables": len(cols), "base_points": card.base_points_})
    return card


def _estimator(algorithm: str, params: dict, seed: int) -> Any:
    options = dict(params or {})
    if algorithm == "lr":
        from sklearn.linear_model import LogisticRegression

        return LogisticRegression(**{"max_iter": 1000, **options})
    if algorithm == "tree":
        from sklearn.tree import DecisionTreeClassifier

        return DecisionTreeClassifier(**{"max_depth": 4, "min_samples_leaf": 0.02, "random_state": seed, **options})
    if algorithm == "xgboost":
        from xgboost import XGBClassifier

        # one thread: the same model whatever the machine, so a generated script reproduces it bit for bit
        return XGBClassifier(**{"n_estimators": 200, "max_depth": 3, "learning_rate": 0.05, "n_jobs": 1,
                                "random_state": seed, **options})
    if algorithm == "lightgbm":
        from lightgbm import LGBMClassifier

        return LGBMClassifier(**{"n_estimators": 200, "num_leaves": 15, "learning_rate": 0.05, "n_jobs": 1,
                                 "deterministic": True, "random_state": seed, "verbose": -1, **options})
    raise ValueError(f"algorithm {algorithm!r} is not known; use lr, tree, xgboost or lightgbm")


def _model_and_frame(algorithm: str, params: dict, seed: int, train: pd.DataFrame, target: str,
                     features: list | None, binner: Any, bad_value: Any) -> tuple[Any, pd.DataFrame, Any]:
    """An unfitted model (WOE step first when a binner is given) and its training columns."""
    from sklearn.pipeline import Pipeline

    from shipyard.risk.metrics import to_binary_target

    y = to_binary_target(train[target], bad=bad_value, field=target)
    if binner is not None:
        cols = list(features) if features else [str(c) for c in binner.feature_names_in_]
        woe = _subset_binner(binner, cols, train, y)
        model = Pipeline([("woe", woe), ("model", _estimator(algorithm, params, seed))])
        return model, train[cols], y
    cols = list(features) if features else [c for c in train.columns if c != target]
    X = train[cols]
    text = [c for c in cols if X[c].dtype.kind not in "biuf"]
    if text:
        raise ValueError(f"columns {text[:5]} are not numeric; connect a binner (WOE) or select numeric features")
    return _estimator(algorithm, params, seed), X, y


@builtin("train_model", inputs={"train": "table", "features": "json", "binner": "binner"},
         outputs={"model": "model"}, optional=("features", "binner"),
         choices={"algorithm": ALGORITHMS})
def train_model(ctx: NodeContext, train: pd.DataFrame, target: str, features: list | None = None,
                binner: Any = None, algorithm: str = "xgboost", params: dict | None = None, seed: int = 0,
                bad_value: Any = None) -> object:
    """Logistic regression, decision tree, XGBoost or LightGBM (on WOE values when a binner is connected)."""
    model, X, y = _model_and_frame(algorithm, params or {}, seed, train, target, features, binner, bad_value)
    model.fit(X, y)
    ctx.log_params({"algorithm": algorithm, **{k: v for k, v in (params or {}).items()}})
    return model


def _space(trial: Any, algorithm: str, space: dict | None) -> dict:
    """Suggest one point: the given space ({name: [low, high]} or {name: [choices...]}) or a default."""
    defaults = {
        "xgboost": {"max_depth": [2, 6], "learning_rate": [0.01, 0.3], "n_estimators": [50, 400],
                    "subsample": [0.6, 1.0], "min_child_weight": [1, 10]},
        "lightgbm": {"num_leaves": [4, 63], "learning_rate": [0.01, 0.3], "n_estimators": [50, 400],
                     "min_child_samples": [5, 50]},
        "lr": {"C": [0.001, 100.0]},
        "tree": {"max_depth": [2, 8], "min_samples_leaf": [5, 100]},
    }
    out = {}
    for name, bounds in (space or defaults[algorithm]).items():
        if len(bounds) == 2 and all(isinstance(b, int) and not isinstance(b, bool) for b in bounds):
            out[name] = trial.suggest_int(name, bounds[0], bounds[1])
        elif len(bounds) == 2 and all(isinstance(b, float | int) and not isinstance(b, bool) for b in bounds):
            out[name] = trial.suggest_float(name, float(bounds[0]), float(bounds[1]), log=bounds[0] > 0)
        else:
            out[name] = trial.suggest_categorical(name, list(bounds))
    return out


@builtin("tune", inputs={"train": "table", "features": "json", "binner": "binner"},
         outputs={"model": "model", "params": "json"}, optional=("features", "binner"),
         choices={"algorithm": ALGORITHMS})
def tune(ctx: NodeContext, train: pd.DataFrame, target: str, features: list | None = None, binner: Any = None,
         algorithm: str = "xgboost", n_trials: int = 20, folds: int = 3, space: dict | None = None, seed: int = 0,
         bad_value: Any = None) -> dict:
    """Optuna search of the model's hyper-parameters by cross-validated AUC, with median pruning across
    folds; the best point is refitted on all of train."""
    import numpy as np
    import optuna
    from sklearn.base import clone
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    _, X, y = _model_and_frame(algorithm, {}, seed, train, target, features, binner, bad_value)
    splits = list(StratifiedKFold(folds, shuffle=True, random_state=seed).split(X, y))

    def objective(trial: Any) -> float:
        point = _space(trial, algorithm, space)
        model, _, _ = _model_and_frame(algorithm, point, seed, train, target, features, binner, bad_value)
        scores = []
        for step, (fit_rows, val_rows) in enumerate(splits):
            fitted = clone(model).fit(X.iloc[fit_rows], y[fit_rows])
            scores.append(roc_auc_score(y[val_rows], fitted.predict_proba(X.iloc[val_rows])[:, 1]))
            trial.report(float(np.mean(scores)), step)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return float(np.mean(scores))

    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed),
                                pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=0))
    study.optimize(objective, n_trials=n_trials)
    pruned = sum(t.state == optuna.trial.TrialState.PRUNED for t in study.trials)
    best, _, _ = _model_and_frame(algorithm, study.best_params, seed, train, target, features, binner, bad_value)
    best.fit(X, y)
    ctx.log_metrics({"cv_auc": study.best_value, "trials": len(study.trials), "pruned": pruned})
    ctx.log_params(study.best_params)
    return {"model": best, "params": dict(study.best_params)}


def _pd(model: Any, frame: pd.DataFrame) -> Any:
    """Probability of bad for each row, whichever kind of model this is."""
    names = getattr(model, "feature_names_in_", None)
    X = frame[[str(c) for c in names]] if names is not None else frame
    return model.predict_proba(X)[:, 1]


@builtin("evaluate", inputs={"model": "model", "test": "table", "train": "table"}, outputs={"metrics": "json"},
         optional=("train",))
def evaluate(ctx: NodeContext, model: Any, test: pd.DataFrame, target: str, train: pd.DataFrame | None = None,
             bad_value: Any = None, bins: int = 10) -> dict:
    """Model report (KS, AUC, Gini, lift, PSI of train vs test): report.html, report.json and metrics."""
    from shipyard.risk.metrics import to_binary_target
    from shipyard.risk.report import ModelReport

    frames = {"train": train, "test": test} if train is not None else {"test": test}
    datasets = {name: (to_binary_target(f[target], bad=bad_value, field=target), _pd(model, f))
                for name, f in frames.items()}
    report = ModelReport(datasets, bins=bins, title=f"Model report: {ctx.node_id}")
    ctx.write_text("report.html", report.to_html())
    ctx.write_text("report.json", report.to_json())
    metrics = {}
    for name, summary in report.summary.items():
        for key in ("auc", "ks", "gini"):
            metrics[f"{name}_{key}"] = float(summary[key])
        if "psi_vs_train" in summary:
            metrics["score_psi"] = float(summary["psi_vs_train"])
    ctx.log_metrics(metrics)
    return metrics


@builtin("rule_mining", inputs={"train": "table", "features": "json"}, outputs={"rules": "json"},
         optional=("features",))
def rule_mining(ctx: NodeContext, train: pd.DataFrame, target: str, features: list | None = None,
                bad_value: Any = None, max_depth: int = 3, min_lift: float = 1.5, max_hit_rate: float = 0.1,
                max_rules: int = 10) -> dict:
    """Decision-tree rules, then a greedy rule set catching the most bads within a hit-rate budget."""
    from shipyard.risk.metrics import to_binary_target
    from shipyard.risk.rules import select_rules, tree_rules

    y = to_binary_target(train[target], bad=bad_value, field=target)
    cols = list(features) if features else [c for c in train.columns if c != target]
    candidates = tree_rules(train[cols], y, max_depth=max_depth, min_lift=min_lift)
    chosen = select_rules(candidates, train[cols], y, max_hit_rate=max_hit_rate, max_rules=max_rules)
    ctx.write_text("rules.csv", chosen.steps.to_csv(index=False))
    union = chosen.ruleset.stats(train[cols], y).iloc[-1]
    ctx.log_metrics({"rules": len(chosen.ruleset.rules), "hit_rate": float(union["hit_rate"]),
                     "recall": float(union["recall"])})
    return chosen.ruleset.to_spec()


@builtin("daily_report", inputs={"model": "model", "data": "table", "reference": "table"},
         outputs={"metrics": "json"})
def daily_report(ctx: NodeContext, model: Any, data: pd.DataFrame, reference: pd.DataFrame,
                 target: str | None = None, bad_value: Any = None, bins: int = 10) -> dict:
    """Score stability of ``data`` against ``reference`` (PSI of the score and of each input), with KS/AUC
    when ``data`` carries the target."""
    import numpy as np

    from shipyard.risk.metrics import psi, to_binary_target
    from shipyard.risk.report import ModelReport

    names = [str(c) for c in getattr(model, "feature_names_in_", [])] or [c for c in data.columns if c != target]
    ref_score, cur_score = _pd(model, reference), _pd(model, data)
    metrics = {"rows": float(len(data)), "score_psi": psi(ref_score, cur_score, bins),
               "mean_pd": float(np.mean(cur_score))}
    for name in names:
        try:
            metrics[f"psi_{name}"] = psi(reference[name], data[name], bins)
        except Exception:  # noqa: BLE001 - an all-missing or unsupported column has no PSI
            continue
    if target and target in data.columns and target in reference.columns:
        report = ModelReport({"reference": (to_binary_target(reference[target], bad=bad_value), ref_score),
                              "current": (to_binary_target(data[target], bad=bad_value), cur_score)}, bins=bins)
        ctx.write_text("report.html", report.to_html())
        metrics.update(auc=float(report.summary["current"]["auc"]), ks=float(report.summary["current"]["ks"]))
    ctx.log_metrics(metrics)
    return metrics
