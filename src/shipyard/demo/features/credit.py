"""German credit: the applicant entity, two feature views, an on-demand feature and the scoring service."""

from datetime import timedelta
from pathlib import Path

import pandas as pd
from _data import ensure_data

from shipyard.features import (
    Entity,
    FeatureService,
    FeatureView,
    Field,
    FileSource,
    Float64,
    Int64,
    OnDemandFeatureView,
    String,
)

# The data folder sits beside this project's features/ folder (passed explicitly: the helper module
# may already be imported from another project in the same process).
ensure_data(Path(__file__).absolute().parent.parent / "data")

applicant = Entity("applicant", join_keys=["applicant_id"], value_types="int64",
                   description="A person applying for credit.")

applicant_profile = FeatureView(
    "applicant_profile",
    entities=[applicant],
    fields=[
        Field("duration_in_month", Int64),
        Field("credit_amount", Int64),
        Field("installment_rate_in_percentage_of_disposable_income", Int64),
        Field("age_in_years", Int64),
        Field("number_of_existing_credits_at_this_bank", Int64),
        Field("number_of_people_being_liable_to_provide_maintenance_for", Int64),
        Field("present_residence_since", Int64),
    ],
    source=FileSource("data/applicant_profile.parquet"),
    timestamp_field="event_timestamp",
    ttl=timedelta(days=365),
    owner="risk-team",
    tags={"domain": "credit"},
    description="Numeric facts about the applicant and the requested credit.",
)

applicant_account = FeatureView(
    "applicant_account",
    entities=[applicant],
    fields=[Field(name, String) for name in (
        "status_of_existing_checking_account", "credit_history", "purpose", "savings_account_and_bonds",
        "present_employment_since", "housing", "job")],
    source=FileSource("data/applicant_account.parquet"),
    timestamp_field="event_timestamp",
    ttl=timedelta(days=365),
    owner="risk-team",
    tags={"domain": "credit"},
    description="Accounts, history and situation of the applicant (categorical).",
)


def monthly_burden(df: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({"monthly_amount": df["credit_amount"] / df["duration_in_month"]})


monthly = OnDemandFeatureView(
    "monthly",
    sources=[applicant_profile[["credit_amount", "duration_in_month"]]],
    fields=[Field("monthly_amount", Float64)],
    udf=monthly_burden,
    description="Credit amount per month of the loan.",
)

credit_scoring = FeatureService(
    "credit_scoring",
    [applicant_profile, applicant_account, monthly],
    description="Features of the German credit scorecard.",
    owner="risk-team",
)
