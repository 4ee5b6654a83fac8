"""`equiprune cluster ...` as run folders: load the points, run one job, write its tables.

Points come from a feature table (``--features``: CSV or NPZ; a group column
is required, a label column is used where present) or a run folder (``--run``:
the penultimate features of its model on one split's un-augmented images).
Every job writes config.json (re-running with other settings is refused),
metrics.json with its section, and a CSV; `report/cluster_report.py` renders
report.html from them.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from ..engine import RunDir
from ..influence.table import FeatureTableError, load_feature_table
from .algorithms import ALGORITHMS
from .antidote import AntidoteConfig, antidote
from .antidote_kkt import KKTAntidoteConfig, antidote_kkt
from .attack import FlipAttackConfig, flip_attack, ks_attack_vs_random
from .cfc import CFCConfig, cfc
from .metrics import clustering_scores, post_pre_ratio

ALL_ALGORITHMS = tuple(ALGORITHMS)  # cfc registers itself on import


@dataclass
class Points:
    X: np.ndarray
    groups: np.ndarray
    labels: np.ndarray | None
    group_names: list[str]
    source: str


@dataclass
class PointSource:
    run: str | None = None
    features: str | None = None
    split: str = "test"              # with --run: which split's images
    label_column: str = "label"
    group_column: str = "group"
    group_map: dict[str, int] | None = None
    max_points: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if (self.run is None) == (self.features is None):
            raise ValueError("give exactly one of --run RUN and --features TABLE")

    def describe(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("run", "features"):
            if d[k] is not None:
                d[k] = str(Path(d[k]).resolve())
        return d

    def load(self) -> Points:
        if self.run is not None:
            from ..influence.run_features import features_from_run
            t = features_from_run(self.run)
            m = t.mask(self.split)
            X, g, y, names, src = t.X[m], t.g[m], t.y[m], t.group_names, f"{self.run} ({self.split} split)"
        else:
            try:
                t = load_feature_table(self.features, label_column=self.label_column, group_column=self.group_column,
                                       split_column=None, group_map=self.group_map)
                y = t.y
            except FeatureTableError as exc:
                if f"no column {self.label_column!r}" not in str(exc):
                    raise
                df = pd.read_csv(self.features) if str(self.features).endswith(".csv") else None
                if df is None:
                    raise
                df = df.assign(**{"__nolabel__": 0})
                from ..influence.table import table_from_frame
                t = table_from_frame(df, "__nolabel__", self.group_column, None, group_map=self.group_map,
                                     source=str(self.features))
                y = None
            X, g, names, src = t.X, t.g, t.group_names, str(self.features)
        if not np.isfinite(X).all():
            row, col = np.argwhere(~np.isfinite(X))[0]
            raise ValueError(f"{src}: feature {col} of row {row} is NaN or infinite; drop or impute those rows first")
        if len(np.unique(g)) < 2:
            raise ValueError(f"{src}: the group column has one value; fairness of clusters compares groups")
        counts = np.bincount(g)
        if (counts[counts > 0] < 2).any():
            raise ValueError(f"{src}: a group has a single member; every group needs at least two points")
        if self.max_points is not None and len(X) > self.max_points:
            keep = np.sort(np.random.default_rng(self.seed).choice(len(X), self.max_points, replace=False))
            X, g, y = X[keep], g[keep], (None if y is None else y[keep])
        sd = X.std(0)
        X = (X - X.mean(0)) / np.where(sd > 0, sd, 1.0)   # standardised: distances weigh features alike
        return Points(X, g, y, list(names), src)


def _check_k(k: int, n: int) -> None:
    if k < 2:
        raise ValueError(f"--k must be at least 2 (got {k})")
    if k > n:
        raise ValueError(f"--k {k} is larger than the number of points ({n})")


def fit_algorithm(name: str, pts: Points, k: int, seed: int = 0, cfc_cfg: CFCConfig | None = None):
    if name == "cfc":  # the only algorithm with settings of its own
        return cfc(pts.X, pts.groups, k, seed, cfc_cfg)
    return ALGORITHMS[name](pts.X, pts.groups, k, seed)


def _open(out: str | Path, kind: str, source: PointSource, settings: dict[str, Any]) -> RunDir:
    """The output folder (a child of the run for a run source): influence's one opener, shared."""
    from ..influence.folders import _open as open_output
    return open_output(out, kind, source, settings)


def _write_csv(rd: RunDir, name: str, frame: pd.DataFrame) -> None:
    from ..influence.folders import write_csv  # atomic, under a unique temporary name
    write_csv(rd, name, frame)


def fit_to_folder(source: PointSource, algorithms: Sequence[str], k: int, out: str | Path, seed: int = 0,
                  cfc_cfg: CFCConfig | None = None) -> dict[str, dict[str, float]]:
    unknown = [a for a in algorithms if a not in ALL_ALGORITHMS]
    if unknown:
        raise ValueError(f"unknown algorithm(s) {unknown}; choose from {', '.join(ALL_ALGORITHMS)}")
    rd = _open(out, "cluster-fit", source, {"algorithms": list(algorithms), "k": k, "seed": seed,
                                           "cfc": asdict(cfc_cfg or CFCConfig())})
    pts = source.load()
    _check_k(k, len(pts.X))
    scores, labels = {}, {}
    for name in algorithms:
        c = fit_algorithm(name, pts, k, seed, cfc_cfg)
        labels[name] = c.labels
        scores[name] = clustering_scores(c.labels, pts.groups, pts.X, pts.labels)
    frame = pd.DataFrame({"group": np.asarray(pts.group_names)[pts.groups], **labels})
    _write_csv(rd, "clusters.csv", frame)
    rd.set_section("cluster_fit", {"k": k, "scores": scores, "source": pts.source, "n": int(len(pts.X))})
    return scores


def score_to_folder(source: PointSource, clusters_column: str, out: str | Path) -> dict[str, float]:
    """Score a clustering the user made elsewhere (a column of the feature table)."""
    rd = _open(out, "cluster-metrics", source, {"clusters_column": clusters_column})
    df = pd.read_csv(source.features)
    if clusters_column not in df.columns:
        raise ValueError(f"{source.features}: no column {clusters_column!r} (set --clusters-column)")
    pts = source.load()
    scores = clustering_scores(df[clusters_column].to_numpy(), pts.groups, pts.X, pts.labels)
    rd.set_section("cluster_fit", {"k": scores["clusters"], "scores": {clusters_column: scores},
                                   "source": pts.source, "n": int(len(pts.X))})
    return scores


def attack_to_folder(source: PointSource, algorithm: str, k: int, fractions: Sequence[float], seeds: Sequence[int],
                     budget: int, out: str | Path, objective: str = "balance",
                     progress: bool = True) -> pd.DataFrame:
    settings = {"algorithm": algorithm, "k": k, "fractions": list(fractions), "seeds": list(seeds),
                "budget": budget, "objective": objective}
    rd = _open(out, "cluster-attack", source, settings)
    pts = source.load()
    _check_k(k, len(pts.X))
    rows, ks = [], {}
    plan = [(f, s) for f in fractions for s in seeds]
    if progress:
        from tqdm import tqdm
        plan = tqdm(plan, desc=f"attack on {algorithm}", unit="run")
    results: dict[float, list] = {}
    for f, s in plan:
        r = flip_attack(pts.X, pts.groups, FlipAttackConfig(algorithm, k, f, budget, objective, s), y=pts.labels)
        results.setdefault(f, []).append(r)
        for kind, sc in (("pre", r.pre), ("attack", r.post), ("random", r.random)):
            rows.append({"fraction": f, "seed": s, "setting": kind, **sc})
    frame = pd.DataFrame(rows)
    for f, rs in results.items():
        ks[str(f)] = {m: ks_attack_vs_random(rs, m) for m in ("balance", "entropy")}
    mean = frame.groupby(["fraction", "setting"]).mean(numeric_only=True).drop(columns="seed")
    ratios = {}
    for f in results:
        pre = mean.loc[(f, "pre")].to_dict()
        ratios[str(f)] = {kind: post_pre_ratio(pre, mean.loc[(f, kind)].to_dict()) for kind in ("attack", "random")}
    _write_csv(rd, "attack.csv", frame)
    rd.set_section("cluster_attack", {**settings, "ks": ks, "post_pre": ratios, "source": pts.source,
                                      "n": int(len(pts.X))})
    return frame


def antidote_to_folder(source: PointSource, cfg: AntidoteConfig | KKTAntidoteConfig, out: str | Path) -> dict[str, Any]:
    """Algorithm 3 (RACOS, k-means / spectral) for an AntidoteConfig; Algorithm 2 (KKT, SON) for a KKTAntidoteConfig."""
    rd = _open(out, "cluster-antidote", source, {"algorithm": type(cfg).__name__, **asdict(cfg)})
    pts = source.load()
    if isinstance(cfg, KKTAntidoteConfig):
        res = antidote_kkt(pts.X, pts.groups, cfg)
        extra = {"clustering": f"sum-of-norms (lambda {cfg.lam:g}), Algorithm 2 (KKT)", "fairness_cost": "social",
                 "rounds": res.trace, "kkt_residuals": res.residuals}
    else:
        _check_k(cfg.k, len(pts.X))
        res = antidote(pts.X, pts.groups, cfg)
        extra = {"clustering": cfg.clustering, "fairness_cost": cfg.cost, "rounds": res.rounds}
    summary = {"alpha": res.alpha, "vanilla_cost": res.vanilla_cost, "cost": res.cost,
               "antidote_points": int(len(res.V)), "ratio": res.ratio, **extra, "source": pts.source,
               "n": int(len(pts.X))}
    np.save(rd.file("antidote.npy"), res.V)
    rd.set_section("cluster_antidote", summary)
    return summary


def spillover_to_folder(source: PointSource, out: str | Path, method: str = "ward", budget: int = 60,
                        seed: int = 0) -> dict[str, Any]:
    """The spill-over attack (thesis §2.2) on the points: who changes cluster when one point moves."""
    from .spillover import spillover_attack
    rd = _open(out, "cluster-spillover", source, {"method": method, "budget": budget, "seed": seed})
    pts = source.load()
    r = spillover_attack(pts.X, method, budget, seed)
    summary = {"method": method, "target": r.target, "spilled": r.spilled.tolist(), "misclustered": int(len(r.spilled)),
               "objective": r.delta, "target_depth": r.target_depth, "depth_quantile": r.depth_quantile,
               "evaluations": r.evaluations, "source": pts.source, "n": int(len(pts.X))}
    rd.set_section("cluster_spillover", summary)
    return summary


def summarize_to_folder(source: PointSource, k: int, out: str | Path, seed: int = 0) -> dict[str, Any]:
    """A review set of k items with the groups in proportion (`equiprune summarize`), against random and FVS-LP."""
    from .summarize import fvs_lp, representative_subset, sumbal
    rd = _open(out, "summarize", source, {"k": k, "seed": seed})
    pts = source.load()
    H = np.stack([(pts.groups == v).astype(float) for v in np.unique(pts.groups)], axis=1)
    chosen = representative_subset(pts.X, pts.groups, k, seed)
    rows = {"equiprune (proportional, central)": chosen, "FVS-LP": fvs_lp(H, k),
            "random": np.sort(np.random.default_rng(seed).choice(len(pts.X), k, replace=False))}
    table = []
    for name, sel in rows.items():
        value, who = sumbal(sel, H, pts.group_names)
        table.append({"method": name, "items": int(len(sel)), "sumbal": value, "violating group": who or "-"})
    ids = pd.DataFrame({"row": chosen, "group": np.asarray(pts.group_names)[pts.groups[chosen]]})
    _write_csv(rd, "summary.csv", ids)
    summary = {"k": k, "table": table, "source": pts.source, "n": int(len(pts.X))}
    rd.set_section("summarize", summary)
    return summary
