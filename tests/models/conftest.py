from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from shipyard.models import save_model


@pytest.fixture(scope="session")
def credit_data() -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(7)
    n = 400
    X = pd.DataFrame(
        {
            "age": rng.integers(18, 75, n).astype(float),
            "income": rng.lognormal(8, 0.5, n),
            "debt_ratio": rng.uniform(0, 1.5, n),
            "late_payments": rng.poisson(0.7, n).astype(float),
            "tenure": rng.normal(5, 2, n),
        }
    )
    logit = -1.0 + 1.8 * X.debt_ratio + 0.6 * X.late_payments - 0.02 * (X.age - 40) - 0.1 * X.tenure
    y = (rng.uniform(size=n) < 1 / (1 + np.exp(-logit))).astype(int)
    return X, y.to_numpy()


@pytest.fixture(scope="module")
def fitted(credit_data: tuple[pd.DataFrame, np.ndarray]) -> tuple[LogisticRegression, pd.DataFrame]:
    """A logistic regression on ``credit_data`` and its inputs."""
    X, y = credit_data
    return LogisticRegression(max_iter=500).fit(X, y), X


@pytest.fixture(scope="module")
def model_dir(fitted: tuple[LogisticRegression, pd.DataFrame], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``fitted`` saved as a model package with an 8-row input example."""
    clf, X = fitted
    return save_model(clf, tmp_path_factory.mktemp("saved") / "credit", input_example=X.head(8))
