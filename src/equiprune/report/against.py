"""Paired intervals of every run against one reference run or method (`report` / `compare --against`).

Whether a mitigation helped is read from the *paired* difference on the same
test images (README, "Note on intervals"), so a comparison page over SCP and
its controls needs "SCP minus random, per seed" with an interval, not only
each run's own interval. The reference is a run folder, or a method name
among the runs (``random``): each run ``<method>-seed<k>`` is then set
against ``<against>-seed<k>``, the control of the same seed.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Sequence

import pandas as pd

from ..engine import RunError
from ..methods.audit import AuditConfig, AuditError
from ..methods.paired_runs import paired_runs

#: The metrics of the paired table, with the labels shown.
AGAINST_METRICS = (("acc", "accuracy"), ("f1", "macro F1"), ("eodd", "Eodd"), ("eopp1", "Eopp1"))

_SEED = re.compile(r"-seed(\d+)$")


def resolve_against(paths: Sequence[Path], against: str) -> dict[Path, Path]:
    """Each run -> the run it is set against (a run is never set against itself).

    `against` is a run folder (every run is set against it), or a method
    name: the run named ``<against>-seed<k>`` for a run ending in
    ``-seed<k>``, else the run named `against`.
    """
    ref = Path(against)
    if ref.is_dir():
        return {p: ref for p in paths if p.resolve() != ref.resolve()}
    by_name = {p.name: p for p in paths}
    out = {}
    for p in paths:
        m = _SEED.search(p.name)
        target = (by_name.get(f"{against}-seed{m.group(1)}") if m else None) or by_name.get(against)
        if target is not None and target != p:
            out[p] = target
    if not out:
        methods = sorted({_SEED.sub("", p.name) for p in paths})
        raise RunError(f"--against {against!r} is neither a run folder nor a method among the runs; give a folder, "
                       f"or one of: {', '.join(methods)}")
    return out


def paired_against(pairs: dict[Path, Path], split: str = "test", n_boot: int = 1000, seed: int = 0,
                   alpha: float = 0.05) -> tuple[pd.DataFrame, list[str]]:
    """One row per run: each metric's difference (run minus reference) with its paired bootstrap interval.

    Returns the table and notes (pairs left out because they were not
    predicted on the same images).
    """
    cfg = AuditConfig(split=split, n_boot=n_boot, seed=seed, alpha=alpha)
    rows, notes = {}, []
    for run, ref in pairs.items():
        try:
            pb = paired_runs(ref, run, cfg)
        except AuditError as exc:
            notes.append(f"{run.name} against {ref.name}: left out; {exc}")
            continue
        row: dict[str, str] = {"against": ref.name}
        beyond = []
        for key, label in AGAINST_METRICS:
            p = pb[key]
            row[f"{label} change"] = f"{p.estimate:+.3f} [{p.lo:+.3f}, {p.hi:+.3f}]"
            if p.excludes_zero:
                beyond.append(label)
        row["beyond noise"] = ", ".join(beyond) or "none"
        rows[run.name] = row
    df = pd.DataFrame.from_dict(rows, orient="index")
    df.index.name = "run"
    return df, notes


def against_text(against: str, alpha: float = 0.05) -> str:
    """What the paired table shows, in words, for the page above it."""
    level = int(round(100 * (1 - alpha)))
    return (f"Each run minus {against} on the same {'' if Path(against).is_dir() else 'seed and '}test images, "
            f"with {level}% paired bootstrap intervals (the same resamples for both models). A change is beyond "
            "noise when its interval excludes 0; for Eodd and Eopp1 a negative change is a smaller gap.")
