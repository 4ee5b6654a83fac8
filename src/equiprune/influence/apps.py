"""`equiprune influence-apps`: one scenario of §4.2.5 on a tabular data set, as a folder with results."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from ..engine import RunDir
from .folders import write_csv
from .scenarios import SCENARIOS
from .table import load_feature_table

# Thesis Table 4.5 (signed DP, accuracy); "before" is shared by both attacks.
THESIS_TABLE_4_5 = {
    "german": {"before": (0.117, 0.670), "RAA": (-0.029, 0.655), "RAA + trimming": (0.000, 0.650),
               "NRAA": (0.268, 0.665), "NRAA + trimming": (0.005, 0.650)},
    "compas": {"before": (-0.281, 0.652), "RAA": (-0.060, 0.630), "RAA + trimming": (-0.082, 0.643),
               "NRAA": (0.168, 0.652), "NRAA + trimming": (0.048, 0.654)},
}

_KEYS = {"poisoning": ["setting"], "evasion": ["model", "attacked_fraction"], "online": ["model", "batch"],
         "active": ["strategy", "round"]}


@dataclass
class AppsResult:
    scenario: str
    rows: pd.DataFrame
    summary: pd.DataFrame
    data_name: str


def load_xyg(dataset: str | None, features: str | None, label_column: str = "label", group_column: str = "group",
             group_map: dict[str, int] | None = None, max_rows: int | None = 5000, seed: int = 0
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    if dataset:
        from ..data.tabular import TABULAR
        X, y, g, _ = TABULAR[dataset]()
        X = X.to_numpy(dtype=float)
        name = dataset
    else:
        t = load_feature_table(features, label_column=label_column, group_column=group_column, group_map=group_map)
        X, y, g, name = t.X, t.y, t.g, Path(features).stem
    if max_rows is not None and len(y) > max_rows:
        keep = np.random.default_rng(seed).choice(len(y), max_rows, replace=False)
        X, y, g = X[keep], y[keep], g[keep]
    if set(np.unique(g).tolist()) != {0, 1}:
        raise ValueError(f"the scenarios compare two groups coded 0 and 1; {name} has {sorted(np.unique(g))}")
    return X, y, g, name


def summarise(scenario: str, rows: pd.DataFrame, data_name: str) -> pd.DataFrame:
    keys = _KEYS[scenario]
    vals = [c for c in ("dp", "acc", "removed", "poisoned_removed") if c in rows.columns]
    out = rows.groupby(keys, sort=False)[vals].agg(["mean", "std"])
    out.columns = [f"{a}_{b}" for a, b in out.columns]
    out = out.reset_index()
    if scenario == "poisoning" and data_name in THESIS_TABLE_4_5:
        ref = THESIS_TABLE_4_5[data_name]
        out["thesis_dp"] = [ref.get(s, (np.nan, np.nan))[0] for s in out["setting"]]
        out["thesis_acc"] = [ref.get(s, (np.nan, np.nan))[1] for s in out["setting"]]
    return out


def run_app(scenario: str, out: str | Path, dataset: str | None = None, features: str | None = None,
            seeds: Sequence[int] = (0, 1, 2), max_rows: int | None = 5000, **table_kw) -> AppsResult:
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}; choose from {', '.join(SCENARIOS)}")
    X, y, g, name = load_xyg(dataset, features, max_rows=max_rows, **table_kw)
    rd = RunDir(out)
    rd.check_or_write_config({"kind": f"influence-{scenario}", "dataset": dataset,
                              "features": str(Path(features).resolve()) if features else None,
                              "seeds": list(seeds), "max_rows": max_rows, **table_kw})
    rows = SCENARIOS[scenario](X, y, g, seeds=tuple(seeds))
    summary = summarise(scenario, rows, name)
    for fname, frame in (("results.csv", rows), ("summary.csv", summary)):
        write_csv(rd, fname, frame)
    rd.set_section("influence_apps", {"scenario": scenario, "data": name, "summary": summary.to_dict("records")})
    return AppsResult(scenario, rows, summary, name)
