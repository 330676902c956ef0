"""Applicant feature tables derived from the bundled German credit data (deterministic).

Each of the 1,000 applicants gets an id and an application time in the half-year before the
data is generated. Their profile and account
snapshots are recorded some days before applying; for a third of them a later snapshot (after the
application, with other values) exists too, which a point-in-time join must never use. Writes
``data/applicant_profile.parquet``, ``data/applicant_account.parquet`` and ``data/applications.parquet``
(the entity rows with the label) next to the ``features`` folder.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

DATA_DIR = Path(__file__).absolute().parent.parent / "data"
PROFILE = ["duration_in_month", "credit_amount", "installment_rate_in_percentage_of_disposable_income",
           "age_in_years", "number_of_existing_credits_at_this_bank",
           "number_of_people_being_liable_to_provide_maintenance_for", "present_residence_since"]
ACCOUNT = ["status_of_existing_checking_account", "credit_history", "purpose", "savings_account_and_bonds",
           "present_employment_since", "housing", "job"]


def ensure_data(folder: Path = DATA_DIR) -> Path:
    if (folder / "applications.parquet").exists():
        return folder
    with resources.files("shipyard.demo").joinpath("germancredit.csv").open() as handle:
        raw = pd.read_csv(handle)
    rng = np.random.default_rng(20240101)
    n = len(raw)
    ids = np.arange(1, n + 1, dtype=np.int64)
    # Applications over the 180 days up to 20 days ago, so the online store (TTL 365 days) serves them.
    anchor = pd.Timestamp.now(tz="UTC").normalize() - pd.Timedelta(days=200)
    applied = anchor + pd.to_timedelta(rng.integers(0, 180 * 24, n), unit="h")
    recorded = applied - pd.to_timedelta(rng.integers(1, 30 * 24, n), unit="h")
    later = rng.random(n) < 1 / 3
    folder.mkdir(parents=True, exist_ok=True)

    def snapshot(columns: list[str]) -> pd.DataFrame:
        base = raw[columns].copy()
        base.insert(0, "applicant_id", ids)
        base["event_timestamp"] = recorded
        future = base[later].copy()
        future["event_timestamp"] = applied[later] + pd.to_timedelta(rng.integers(1, 90, int(later.sum())), unit="D")
        for col in columns:
            if pd.api.types.is_numeric_dtype(future[col]):
                future[col] = future[col] * 10  # values that would leak the future if ever used
            else:
                future[col] = "changed later"
        return pd.concat([base, future], ignore_index=True)

    profile = snapshot(PROFILE)
    profile[PROFILE] = profile[PROFILE].astype("int64")
    snapshot(ACCOUNT).to_parquet(folder / "applicant_account.parquet", index=False)
    profile.to_parquet(folder / "applicant_profile.parquet", index=False)
    apps = pd.DataFrame({"applicant_id": ids, "event_timestamp": applied,
                         "bad": (raw["creditability"] == "bad").astype("int64")})
    apps.to_parquet(folder / "applications.parquet", index=False)
    return folder
