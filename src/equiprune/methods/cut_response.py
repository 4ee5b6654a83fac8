"""Cut response: what cutting a layer's channels does to the group gap before any fine-tuning.

SCP's premise is that the channels whose feature maps separate the sensitive
groups (lowest SNNL-Fair) carry the group gap, so that cutting them narrows it.
The SNNL premise check (`scoring.snnl_null_check`) only asks whether channels
separate the groups; this asks whether cutting them moves the gap. It cuts k
channels of one layer for growing k, chosen by lowest SNNL-Fair (what SCP
cuts), highest SNNL-Fair, smallest L1 norm and at random (several draws), and
evaluates each cut model with no fine-tuning, so extra training cannot be the
cause of any change. If SCP's choice narrows the gap no more than random cuts
do, the channel choice cannot be what an SCP run's result rests on; if it
costs the worse-served group more accuracy, the group-separating channels are
serving that group rather than causing its gap.

It evaluates on the validation split by default: the diagnostic informs how SCP
is set up (which layer, how much), so it must not look at the test split.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn
from tqdm.auto import tqdm

from ..data import scoring_dataset
from ..engine import RunDir
from ..metrics import GAP_LABELS, GAP_METRICS
from ..engine.distributed import progress_enabled
from ..engine.train import evaluate
from ..models import example_input, input_size
from ..scoring import ChannelScorer, FixedScores, L1Scorer, Negated, RandomScorer, SNNLFairScorer
from ..surgery import layer_out_channels, prune_channels
from .runs import start_child_run
from .scp import check_layer

CHOICES = ("snnl", "snnl_high", "l1", "random")
CHOICE_LABELS = {"snnl": "lowest SNNL-Fair (SCP)", "snnl_high": "highest SNNL-Fair", "l1": "smallest L1",
                 "random": "random"}
SECTION = "cut_response"


@dataclass
class CutResponseConfig:
    """Which layer, how many channels, chosen how, evaluated where."""

    layer: str | None = None                            # default: the last conv layer
    fractions: tuple[float, ...] = (0.05, 0.1, 0.2, 0.4)  # of the layer's channels, one cut per value
    choices: tuple[str, ...] = CHOICES
    random_draws: int = 5                               # random cuts per fraction: the spread SCP is set against
    split: str = "val"                                  # where the cut models are evaluated (never test by default)
    variant: str = "reference"                          # SNNL-Fair variant, as in SCPConfig
    score_split: str = "train"
    score_batch_size: int = 128
    fair_metric: str = "eodd"
    seed: int = 0
    progress: bool = True

    def __post_init__(self) -> None:
        self.fractions = tuple(float(f) for f in self.fractions)
        self.choices = tuple(self.choices)

    def validate(self) -> None:
        if not self.fractions or any(not 0 < f < 1 for f in self.fractions):
            raise ValueError(f"fractions must be numbers strictly between 0 and 1, got {list(self.fractions)}")
        bad = [c for c in self.choices if c not in CHOICES]
        if bad or not self.choices:
            raise ValueError(f"choices must be among {CHOICES}, got {list(self.choices)}")
        if "random" in self.choices and self.random_draws < 1:
            raise ValueError(f"random_draws must be >= 1 when 'random' is a choice, got {self.random_draws}")
        if self.split not in ("val", "test"):
            raise ValueError(f"split must be 'val' or 'test', got {self.split!r}")
        if self.variant not in ("reference", "paper"):
            raise ValueError(f"variant must be 'reference' or 'paper', got {self.variant!r}")
        if self.fair_metric not in GAP_METRICS:
            raise ValueError(f"fair_metric must be one of {', '.join(GAP_METRICS)}, got {self.fair_metric!r}")


@dataclass
class CutResponseResult:
    """One row per evaluated model (k = 0 is the uncut model) and what they say."""

    layer: str
    channels: int
    rows: list[dict[str, Any]]
    config: CutResponseConfig
    group_names: list[str] = field(default_factory=list)

    def uncut(self) -> dict[str, Any]:
        return next(r for r in self.rows if r["k"] == 0)

    def at(self, choice: str, k: int) -> list[dict[str, Any]]:
        return [r for r in self.rows if r["choice"] == choice and r["k"] == k]

    def cuts(self) -> list[int]:
        return sorted({r["k"] for r in self.rows if r["k"] > 0})

    def to_dict(self) -> dict[str, Any]:
        """The stored form (metrics.json section ``cut_response``), findings excluded."""
        return {"layer": self.layer, "channels": self.channels, "rows": self.rows, "group_names": self.group_names,
                "fair_metric": self.config.fair_metric, "split": self.config.split}

    def findings(self) -> list[str]:
        """Plain sentences: SCP's cut against the random cuts, and which group pays for it."""
        return cut_response_findings(self.to_dict())


def _cut_size(channels: int, fraction: float) -> int:
    return min(channels - 1, max(1, int(round(fraction * channels))))


def cut_counts(channels: int, fractions: tuple[float, ...]) -> list[int]:
    """Channels cut for each fraction (at least 1, never all, no repeats)."""
    return sorted({_cut_size(channels, f) for f in fractions})


def _scorers(cfg: CutResponseConfig, snnl: np.ndarray | None) -> dict[tuple[str, int], ChannelScorer]:
    """The scorer whose ascending order is the cut order, per (choice, draw); `snnl`: the layer's SNNL-Fair."""
    out: dict[tuple[str, int], ChannelScorer] = {}
    for choice in cfg.choices:
        if choice == "snnl":
            out[(choice, 0)] = FixedScores(snnl)
        elif choice == "snnl_high":
            out[(choice, 0)] = Negated(FixedScores(snnl))
        elif choice == "l1":
            out[(choice, 0)] = L1Scorer()
        else:
            for d in range(cfg.random_draws):
                out[(choice, d)] = RandomScorer(seed=cfg.seed, draw=d)
    return out


def _orders(model: nn.Module, layer: str, splits: Any, cfg: CutResponseConfig,
            snnl: np.ndarray | None) -> dict[tuple[str, int], np.ndarray]:
    """Scores whose ascending order is the cut order, per (choice, draw); SNNL-Fair is computed once."""
    if {"snnl", "snnl_high"} & set(cfg.choices) and snnl is None:
        snnl = SNNLFairScorer(scoring_dataset(splits, cfg.score_split), variant=cfg.variant,
                              batch_size=cfg.score_batch_size, progress=cfg.progress)(model, layer)
    return {key: np.asarray(scorer(model, layer), dtype=np.float64) for key, scorer in _scorers(cfg, snnl).items()}


def _row(metrics: dict[str, float], k: int, fraction: float, choice: str, draw: int) -> dict[str, Any]:
    return {"k": k, "fraction": fraction, "choice": choice, "draw": draw,
            **{key: float(v) for key, v in metrics.items()}}


def cut_response(model: nn.Module, splits: Any, cfg: CutResponseConfig, run_dir: str | Path | RunDir | None = None,
                 image_size: int | None = None, snnl_scores: np.ndarray | None = None) -> CutResponseResult:
    """Evaluate `model` with k channels of `cfg.layer` cut, for each k and each way of choosing them.

    `model` is not changed (each cut is made on a copy). With `run_dir`, every
    evaluated cut is saved as it finishes and a re-run skips what is stored.
    `snnl_scores`, the layer's SNNL-Fair scores if already known, saves a pass.
    `image_size` (for tracing the cuts) defaults to `models.input_size` of the model and data.
    """
    cfg.validate()
    image_size = image_size or input_size(None, model, splits)
    rd = run_dir if isinstance(run_dir, RunDir) or run_dir is None else RunDir(run_dir)
    layer = check_layer(model, cfg.layer)
    channels = layer_out_channels(model, layer)
    stored = (rd.read_metrics().get(SECTION) if rd is not None else None) or {}
    if stored.get("layer") != layer:
        stored = {}
    rows: list[dict[str, Any]] = list(stored.get("rows", []))
    if snnl_scores is None and stored.get("snnl_scores") is not None:
        snnl_scores = np.asarray(stored["snnl_scores"], dtype=np.float64)
    orders = _orders(model, layer, splits, cfg, snnl_scores)
    snnl = orders.get(("snnl", 0))
    if snnl is None and ("snnl_high", 0) in orders:
        snnl = -orders[("snnl_high", 0)]
    dataset = getattr(splits, cfg.split)
    group_names = list(getattr(dataset, "group_names", []))
    done = {(r["k"], r["choice"], r["draw"]) for r in rows}
    say = rd.log if rd is not None else (lambda m, echo=True: None)

    def save() -> None:
        if rd is not None:
            rd.set_section(SECTION, {"layer": layer, "channels": channels, "rows": rows, "group_names": group_names,
                                     "fair_metric": cfg.fair_metric, "split": cfg.split,
                                     "snnl_scores": None if snnl is None else snnl.tolist()})

    if (0, "none", 0) not in done:
        metrics, _ = evaluate(model.eval(), dataset)
        rows.append(_row(metrics, 0, 0.0, "none", 0))
        save()
    fraction_of = {_cut_size(channels, f): f for f in cfg.fractions}
    todo = [(k, choice, draw) for k in cut_counts(channels, cfg.fractions) for (choice, draw) in orders
            if (k, choice, draw) not in done]
    bar = tqdm(total=len(todo), desc="cut response", unit="cut", leave=False,
               disable=not progress_enabled(cfg.progress))
    for k, choice, draw in todo:
        cut_model = copy.deepcopy(model)
        idx = sorted(int(i) for i in np.argsort(orders[(choice, draw)], kind="stable")[:k])
        prune_channels(cut_model, layer, idx, example_inputs=example_input(image_size))
        metrics, _ = evaluate(cut_model.eval(), dataset)
        rows.append(_row(metrics, k, fraction_of[k], choice, draw))
        save()
        bar.update(1)
        say(f"cut {k} channels by {CHOICE_LABELS[choice]}" + (f" (draw {draw})" if choice == "random" else "")
            + f": {cfg.split} {cfg.fair_metric} {metrics[cfg.fair_metric]:.4f}, macro-F1 {metrics['f1']:.4f}",
            echo=False)
    bar.close()
    rows.sort(key=lambda r: (r["k"], CHOICES.index(r["choice"]) if r["choice"] in CHOICES else -1, r["draw"]))
    save()
    return CutResponseResult(layer=layer, channels=channels, rows=rows, config=cfg, group_names=group_names)


def cut_response_findings(section: dict[str, Any]) -> list[str]:
    """Sentences from a stored cut-response section (also what `CutResponseResult.findings` says).

    SCP's cut is set against the random cuts of the same size: below every
    draw, above every draw, or inside their range. The group with the lower
    accuracy before any cut is the worse-served one; the sentence says which
    group lost more accuracy when SCP's channels were cut.
    """
    rows = section.get("rows") or []
    metric = section.get("fair_metric", "eodd")
    base = next((r for r in rows if r["k"] == 0), None)
    snnl = {r["k"]: r for r in rows if r["choice"] == "snnl"}
    if base is None or not snnl:
        return []
    label = GAP_LABELS.get(metric, metric)
    layer, split = section.get("layer"), section.get("split", "val")
    below, above, inside = [], [], []
    for k, r in sorted(snnl.items()):
        rand = [x[metric] for x in rows if x["choice"] == "random" and x["k"] == k]
        if not rand:
            continue
        (below if r[metric] < min(rand) else above if r[metric] > max(rand) else inside).append(k)
    out = []
    n = len(below) + len(above) + len(inside)
    if n:
        draws = len([x for x in rows if x["choice"] == "random" and x["k"] == min(snnl)])
        where = lambda ks: f" ({', '.join(map(str, ks))} channels)" if ks else ""  # noqa: E731
        out.append(f"Cutting the lowest-SNNL-Fair channels of {layer} (what SCP cuts), with no fine-tuning, left "
                   f"a smaller {split} {label} than every one of {draws} random cuts of the same size at "
                   f"{len(below)} of {n} sizes{where(below)}, a larger one than all of them at {len(above)}"
                   f"{where(above)}, and one within their range at {len(inside)}; the uncut model's {label} is "
                   f"{base[metric]:.3f}.")
    names = list(section.get("group_names") or [])
    accs = {g: base.get(f"acc_g{g}") for g in range(len(names) or 2) if base.get(f"acc_g{g}") is not None}
    if len(accs) == 2:
        worse = min(accs, key=lambda g: accs[g])
        better = 1 - worse
        name = lambda g: names[g] if g < len(names) else f"group {g}"  # noqa: E731
        k = max(snnl)
        r = snnl[k]
        lost_w, lost_b = accs[worse] - r[f"acc_g{worse}"], accs[better] - r[f"acc_g{better}"]
        # Equal as printed (a model that predicts one class loses nothing anywhere): name no loser.
        alike = round(lost_w, 3) == round(lost_b, 3)
        who = ("both groups changed alike" if alike
               else f"the worse-served group ({name(worse)}) lost more" if lost_w > lost_b
               else f"the better-served group ({name(better)}) lost more")
        out.append(f"At the largest cut ({k} of {section.get('channels')} channels) accuracy changed by "
                   f"{r[f'acc_g{worse}'] - accs[worse]:+.3f} for {name(worse)} and "
                   f"{r[f'acc_g{better}'] - accs[better]:+.3f} for {name(better)}: {who}.")
        if lost_w > lost_b and not alike and not below:
            out.append("So on this model and layer the channels that separate the groups serve the worse-served "
                       "group more than they cause its gap: cutting them costs that group the most accuracy and "
                       "never narrows the gap below what random cuts do. SCP's premise does not hold here.")
        elif below and len(below) > len(above) and lost_b >= lost_w:
            out.append("So the group-separating channels carry part of the gap, as SCP assumes; whether the "
                       "narrower gap survives fine-tuning is what an SCP run and its controls measure.")
        elif not below and not above:
            out.append("So which channels are cut does not move the gap beyond chance here; an SCP result on this "
                       "layer will mostly reflect pruning as such and the extra fine-tuning, which its controls "
                       "measure.")
        else:
            out.append("The pattern is mixed across cut sizes; read the plot before choosing SCP's layer and ratio.")
    return out


def cut_response_from_run(run: str | Path, cfg: CutResponseConfig, out: str | Path,
                          snnl_scores: np.ndarray | None = None) -> CutResponseResult:
    """`equiprune prune cut-response`: the cut response of a run's model, written to the folder `out`.

    `out` gets config.json, metrics.json (section ``cut_response``, with the
    findings) and log.txt; no model is kept. Running again with the same
    settings resumes, other settings are an error. `snnl_scores`: the layer's
    SNNL-Fair scores if already known (an SCP run of the same model has them).
    """
    parent, rd = start_child_run(run, out, "cut_response", cfg, check=lambda r: check_layer(r.model, cfg.layer))
    result = cut_response(parent.model, parent.splits(), cfg, run_dir=rd,
                          image_size=parent.image_size, snnl_scores=snnl_scores)
    findings = result.findings()
    rd.set_section(SECTION, {**rd.read_metrics()[SECTION], "findings": findings})
    for line in findings:
        rd.log(line, echo=False)
    return result
