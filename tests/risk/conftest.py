from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

GERMAN = Path(__file__).resolve().parents[2] / "src" / "shipyard" / "demo" / "germancredit.csv"


@pytest.fixture(scope="session")
def german() -> tuple[pd.DataFrame, np.ndarray]:
    df = pd.read_csv(GERMAN)
    y = (df.pop("creditability") == "bad").to_numpy(dtype=np.int64)
    return df, y


def synthetic(n: int = 5000, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    x0 = rng.normal(size=n)
    x1 = rng.lognormal(size=n)
    x2 = rng.poisson(3, size=n).astype(float)
    cat = rng.choice(list("ABCDEFG"), size=n, p=[0.3, 0.2, 0.2, 0.1, 0.1, 0.095, 0.005])
    logit = -1.5 + 0.8 * x0 - 0.3 * np.log(x1) + 0.2 * x2 + (cat == "A") * 0.6
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    x0[rng.random(n) < 0.05] = np.nan
    return pd.DataFrame({"x0": x0, "x1": x1, "x2": x2, "cat": cat}), y
