"""Rule-set flavor: a :class:`shipyard.risk.rules.RuleSet` served as a model.

Saved as the rule set's declarative JSON spec (``ruleset.json``, no pickle), so it loads without
trust. The model's score is 1.0 when any rule hits the record and 0.0 otherwise (``classes`` =
``[0, 1]``, label 1 = flagged). ``predict`` evaluates the spec over a DataFrame with the same
vectorised code as batch evaluation; when every condition is numeric (or a null check) the NumPy
fast path ``predict_array`` evaluates the rules directly on the float matrix (NaN = missing).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from shipyard.errors import InvalidInput, NotFound
from shipyard.models.flavors.base import LoadOptions
from shipyard.models.loaded import LoadedModel

SPEC_FILE = "ruleset.json"


class RuleSetFlavor:
    name = "ruleset"
    pip_requirements: tuple[str, ...] = ("numpy", "pandas")

    def matches(self, model: Any) -> bool:
        return type(model).__module__ == "shipyard.risk.rules" and type(model).__name__ == "RuleSet"

    def feature_names(self, model: Any) -> list[str] | None:
        return list(model.features)

    def save(self, model: Any, path: Path, **_: Any) -> dict[str, Any]:
        spec = model.to_spec()
        (path / SPEC_FILE).write_text(json.dumps(spec, indent=2, sort_keys=False), encoding="utf-8")
        return {"data": SPEC_FILE, "spec_kind": spec["kind"], "spec_version": spec["version"],
                "n_rules": len(spec["rules"]), "features": list(model.features)}

    def load(self, path: Path, section: dict[str, Any], options: LoadOptions) -> LoadedModel:
        from shipyard.risk.rules import RuleSet

        file = str(section.get("data") or SPEC_FILE)
        target = path / file
        if not target.is_file():
            raise NotFound(
                f"rule-set spec {file!r} named in MLmodel is missing from {str(path)!r}; re-save the model",
                {"path": str(target), "file": file},
            )
        try:
            spec = json.loads(target.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise InvalidInput(f"{str(target)!r} is not valid JSON: {exc}", {"path": str(target)}) from exc
        rs = RuleSet.from_spec(spec)
        names = list(options.input_names) if options.input_names else rs.features

        def predict_frame(df: Any) -> np.ndarray:
            return rs.evaluate(df).astype(float)

        return LoadedModel(
            self.name,
            rs,
            predict_array=_compile_array(rs, names),
            predict_frame=predict_frame,
            classes=[0, 1],
            feature_names=names,
        )


def _compile_array(rs: Any, names: list[str]) -> Any:
    """A NumPy evaluator over columns in ``names`` order, or None if a condition is not numeric."""
    plan: list[list[tuple[int, str, float, bool]]] = []
    for rule in rs.rules:
        conds = []
        for c in rule.conditions:
            if c.feature not in names:
                return None
            if c.op in ("<", "<=", ">", ">=", "==", "!="):
                if isinstance(c.value, str) or c.value is None:
                    return None
                conds.append((names.index(c.feature), c.op, float(c.value), c.missing))
            elif c.op in ("is_null", "not_null"):
                conds.append((names.index(c.feature), c.op, 0.0, c.missing))
            else:
                return None
        plan.append(conds)

    def predict_array(X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=float)
        out = np.zeros(X.shape[0], dtype=bool)
        for conds in plan:
            hit = np.ones(X.shape[0], dtype=bool)
            for j, op, t, missing in conds:
                x = X[:, j]
                na = np.isnan(x)
                if op == "is_null":
                    m = na
                elif op == "not_null":
                    m = ~na
                else:
                    with np.errstate(invalid="ignore"):
                        m = {"<": x < t, "<=": x <= t, ">": x > t, ">=": x >= t,
                             "==": x == t, "!=": (x != t) & ~na}[op]
                    m = m | na if missing else m & ~na
                hit &= m
            out |= hit
        return out.astype(float)

    return predict_array


FLAVOR = RuleSetFlavor()
