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
from ..scoring import ChannelScorer, FixedScores, L1Scorer, Negated, RandomScorer, check_score_batch, snnl_null_check
from ..scoring.dead import LiveFirst, dead_channels
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
    premise: dict[str, Any] | None = None   # the SNNL premise check of the uncut model (SCP's, same pass)
    dead: int = 0                           # dead channels of the layer (`scoring.dead.dead_channels`)

    def uncut(self) -> dict[str, Any]:
        return next(r for r in self.rows if r["k"] == 0)

    def at(self, choice: str, k: int) -> list[dict[str, Any]]:
        return [r for r in self.rows if r["choice"] == choice and r["k"] == k]

    def cuts(self) -> list[int]:
        return sorted({r["k"] for r in self.rows if r["k"] > 0})

    def to_dict(self) -> dict[str, Any]:
        """The stored form (metrics.json section ``cut_response``), findings excluded."""
        return {"layer": self.layer, "channels": self.channels, "rows": self.rows, "group_names": self.group_names,
                "fair_metric": self.config.fair_metric, "split": self.config.split, "premise": self.premise,
                "dead": self.dead}

    def findings(self) -> list[str]:
        """Plain sentences: SCP's cut against the random cuts, and which group pays for it."""
        return cut_response_findings(self.to_dict())


def _cut_size(channels: int, fraction: float) -> int:
    return min(channels - 1, max(1, int(round(fraction * channels))))


def cut_counts(channels: int, fractions: tuple[float, ...]) -> list[int]:
    """Channels cut for each fraction (at least 1, never all, no repeats)."""
    return sorted({_cut_size(channels, f) for f in fractions})


def _premise(model: nn.Module, layer: str, splits: Any, cfg: CutResponseConfig) -> tuple[np.ndarray, dict[str, Any]]:
    """SNNL-Fair scores and the premise check of the same pass (`snnl_null_check`), as SCP runs it."""
    check = snnl_null_check(model, layer, scoring_dataset(splits, cfg.score_split), variant=cfg.variant,
                            batch_size=cfg.score_batch_size, progress=cfg.progress, draws=4, seed=cfg.seed)
    return check.scores, {"separating": check.separating, "channels": len(check.scores),
                          "expected": check.expected, "sentence": check.sentence(layer), "advice": check.advice()}


def _scorers(cfg: CutResponseConfig, snnl: np.ndarray | None, live_data: Any) -> dict[tuple[str, int], ChannelScorer]:
    """The scorer whose ascending order is the cut order, per (choice, draw); `snnl`: the layer's SNNL-Fair.

    The L1 cut takes live channels first (`LiveFirst` on `live_data`): the
    smallest filters are often dead, and cutting only those changes nothing.
    """
    out: dict[tuple[str, int], ChannelScorer] = {}
    for choice in cfg.choices:
        if choice == "snnl":
            out[(choice, 0)] = FixedScores(snnl)
        elif choice == "snnl_high":
            out[(choice, 0)] = Negated(FixedScores(snnl))
        elif choice == "l1":
            out[(choice, 0)] = LiveFirst(L1Scorer(), live_data)
        else:
            for d in range(cfg.random_draws):
                out[(choice, d)] = RandomScorer(seed=cfg.seed, draw=d)
    return out


def _orders(model: nn.Module, layer: str, splits: Any, cfg: CutResponseConfig,
            snnl: np.ndarray | None) -> dict[tuple[str, int], np.ndarray]:
    """Scores whose ascending order is the cut order, per (choice, draw); `snnl` must be given for SNNL choices."""
    live_data = scoring_dataset(splits, cfg.score_split)
    return {key: np.asarray(scorer(model, layer), dtype=np.float64)
            for key, scorer in _scorers(cfg, snnl, live_data).items()}


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
    premise = stored.get("premise")
    if {"snnl", "snnl_high"} & set(cfg.choices) and (snnl_scores is None or premise is None):
        snnl_scores, premise = _premise(model, layer, splits, cfg)
    snnl = None if snnl_scores is None else np.asarray(snnl_scores, dtype=np.float64)
    dead = dead_channels(model, layer, scoring_dataset(splits, cfg.score_split))
    orders = _orders(model, layer, splits, cfg, snnl)
    dataset = getattr(splits, cfg.split)
    group_names = list(getattr(dataset, "group_names", []))
    done = {(r["k"], r["choice"], r["draw"]) for r in rows}
    say = rd.log if rd is not None else (lambda m, echo=True: None)

    def save() -> None:
        if rd is not None:
            rd.set_section(SECTION, {"layer": layer, "channels": channels, "rows": rows, "group_names": group_names,
                                     "fair_metric": cfg.fair_metric, "split": cfg.split,
                                     "snnl_scores": None if snnl is None else snnl.tolist(), "premise": premise,
                                     "dead": int(dead.sum())})

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
        rows.append({**_row(metrics, k, fraction_of[k], choice, draw), "dead": int(dead[idx].sum())})
        save()
        bar.update(1)
        say(f"cut {k} channels by {CHOICE_LABELS[choice]}" + (f" (draw {draw})" if choice == "random" else "")
            + f": {cfg.split} {cfg.fair_metric} {metrics[cfg.fair_metric]:.4f}, macro-F1 {metrics['f1']:.4f}",
            echo=False)
    bar.close()
    rows.sort(key=lambda r: (r["k"], CHOICES.index(r["choice"]) if r["choice"] in CHOICES else -1, r["draw"]))
    save()
    return CutResponseResult(layer=layer, channels=channels, rows=rows, config=cfg, group_names=group_names,
                             premise=premise, dead=int(dead.sum()))


#: A cut that narrows the gap but costs more accuracy than this is not counted as a win for SCP's premise.
MAX_ACC_COST = 0.05


def _acc(row: dict[str, Any]) -> float:
    """A row's accuracy (older stored rows without it: the mean of the two groups')."""
    if row.get("acc") is not None:
        return float(row["acc"])
    return float(np.mean([row.get("acc_g0", np.nan), row.get("acc_g1", np.nan)]))


def _size_outcomes(rows: list[dict[str, Any]], metric: str, base: dict[str, Any]) -> dict[int, dict[str, Any]]:
    """Per cut size of the lowest-SNNL cut: where it falls against the random cuts and the uncut model.

    ``vs_random``: below / above every random draw, or inside; ``narrower``:
    its gap is below the uncut model's; ``cost``: accuracy lost against the
    uncut model; ``win``: below every random draw *and* the uncut model at a
    cost of at most `MAX_ACC_COST`.
    """
    out = {}
    for r in (x for x in rows if x["choice"] == "snnl"):
        rand = [x[metric] for x in rows if x["choice"] == "random" and x["k"] == r["k"]]
        vs = ("below" if r[metric] < min(rand) else "above" if r[metric] > max(rand) else "inside") if rand else None
        narrower = r[metric] < base[metric]
        cost = _acc(base) - _acc(r)
        out[r["k"]] = {"vs_random": vs, "narrower": narrower, "cost": cost,
                       "win": vs == "below" and narrower and cost <= MAX_ACC_COST}
    return dict(sorted(out.items()))


def _verdict(sizes: dict[int, dict[str, Any]]) -> str:
    """supports / does not hold / no effect / mixed, from the per-size outcomes (see `cut_response_findings`)."""
    n = len(sizes)
    wins = [k for k, o in sizes.items() if o["win"]]
    losses = [k for k, o in sizes.items() if o["vs_random"] == "above" or not o["narrower"]]
    if n and len(wins) > n / 2 and not losses:
        return "supports"
    if all(o["vs_random"] == "inside" for o in sizes.values()):
        return "no effect"
    if not any(o["vs_random"] == "below" for o in sizes.values()):
        return "does not hold"
    return "mixed"


def _premise_agreement(verdict: str, premise: dict[str, Any] | None) -> str:
    """Whether the cut response agrees with the SNNL premise check of the same model, and if not why."""
    if not premise:
        return ""
    check = (f"the premise check of the same model ({premise.get('separating')} of {premise.get('channels')} "
             f"channels separate the groups beyond chance, {float(premise.get('expected', 0)):.1f} expected)")
    holds = not premise.get("advice")
    if verdict == "supports" and holds:
        return f"This agrees with {check}: a few channels separate the groups, and cutting them narrows the gap."
    if verdict == "supports":
        return (f"This differs from {check}, which says that {premise.get('advice')}. The premise check only "
                "asks whether channels separate the groups; the cut response measures the gap itself, so trust it "
                "for this layer, and confirm with an SCP run against its random, L1 and fine-tune-only controls.")
    if holds:
        return (f"This differs from {check}, which finds the few separating channels SCP assumes: channels can "
                "separate the groups without causing the gap, and here cutting them does not narrow it.")
    return f"This agrees with {check}, which says that {premise.get('advice')}."


def cut_response_findings(section: dict[str, Any]) -> list[str]:
    """Sentences from a stored cut-response section (also what `CutResponseResult.findings` says).

    SCP's cut is set against the random cuts of the same size (below every
    draw, above every draw, or inside their range) and against the uncut
    model. The conclusion follows from those numbers: the premise is
    *supported* only when the lowest-SNNL cut beats every random cut and the
    uncut model at most sizes, each at an accuracy cost of at most
    `MAX_ACC_COST`, and never widens the gap at the others; it *does not
    hold* when it wins at no size; the rest is *mixed* (wins are listed with
    their cost). The last sentence says whether this agrees with the premise
    check of the same model, and why they may differ. Dead channels cut are
    counted, since a cut of dead channels changes nothing.
    """
    rows = section.get("rows") or []
    metric = section.get("fair_metric", "eodd")
    base = next((r for r in rows if r["k"] == 0), None)
    snnl = {r["k"]: r for r in rows if r["choice"] == "snnl"}
    if base is None or not snnl:
        return []
    label = GAP_LABELS.get(metric, metric)
    layer, split = section.get("layer"), section.get("split", "val")
    sizes = _size_outcomes(rows, metric, base)
    ranked = {v: [k for k, o in sizes.items() if o["vs_random"] == v] for v in ("below", "above", "inside")}
    out = []
    n = sum(len(v) for v in ranked.values())
    where = lambda ks: f" ({', '.join(map(str, ks))} channels)" if ks else ""  # noqa: E731
    if n:
        draws = len([x for x in rows if x["choice"] == "random" and x["k"] == min(snnl)])
        out.append(f"Cutting the lowest-SNNL-Fair channels of {layer} (what SCP cuts), with no fine-tuning, left "
                   f"a smaller {split} {label} than every one of {draws} random cuts of the same size at "
                   f"{len(ranked['below'])} of {n} sizes{where(ranked['below'])}, a larger one than all of them at "
                   f"{len(ranked['above'])}{where(ranked['above'])}, and one within their range at "
                   f"{len(ranked['inside'])}; the uncut model's {label} is {base[metric]:.3f}.")
    wider = [k for k, o in sizes.items() if not o["narrower"]]
    if wider:
        out.append(f"Against the uncut model, the lowest-SNNL cut left {label} at or above {base[metric]:.3f} at "
                   f"{len(wider)} of {len(sizes)} sizes{where(wider)}.")
    dead_rows = [r for r in rows if r.get("dead")]
    if dead_rows:
        parts = sorted({f"{CHOICE_LABELS.get(r['choice'], r['choice'])} {r['k']} channels: {r['dead']} dead"
                        for r in dead_rows if r["choice"] != "random"})
        n_rand = sum(1 for r in dead_rows if r["choice"] == "random")
        out.append(f"{section.get('dead', '?')} of {section.get('channels')} channels of {layer} are dead (no output "
                   "on the scoring images), so cutting them changes nothing; cuts that removed dead channels: "
                   + "; ".join(parts) + (f"; and {n_rand} random draws" if n_rand else "")
                   + ". The L1 control cuts live channels first.")
    names = list(section.get("group_names") or [])
    accs = {g: base.get(f"acc_g{g}") for g in range(len(names) or 2) if base.get(f"acc_g{g}") is not None}
    lost_w = lost_b = 0.0
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
    verdict = _verdict(sizes)
    wins = [k for k, o in sizes.items() if o["win"]]
    if verdict == "supports":
        out.append("So the group-separating channels carry part of the gap, as SCP assumes: their cut narrows it "
                   f"below the uncut model and every random cut at {len(wins)} of {len(sizes)} sizes, each at an "
                   f"accuracy cost of at most {MAX_ACC_COST:.2f}; whether that survives fine-tuning is what an SCP "
                   "run and its controls measure.")
    elif verdict == "no effect":
        out.append("So which channels are cut does not move the gap beyond chance here; an SCP result on this "
                   "layer will mostly reflect pruning as such and the extra fine-tuning, which its controls "
                   "measure.")
    elif verdict == "does not hold":
        serve = (" The channels that separate the groups serve the worse-served group more than they cause its "
                 "gap: cutting them costs that group the most accuracy." if lost_w > lost_b + 0.0005 else "")
        out.append("So SCP's premise does not hold here: at no size did the lowest-SNNL cut leave a smaller gap "
                   "than every random cut of the same size." + serve)
    else:
        beat = ranked["below"]
        detail = "; ".join(
            f"{k} channels: accuracy {-sizes[k]['cost']:+.3f}, gap "
            + ("below" if sizes[k]["narrower"] else "still at or above") + " the uncut model's" for k in beat)
        clean = (f"; {len(wins)} of them narrowed the gap below the uncut model at an accuracy cost of at most "
                 f"{MAX_ACC_COST:.2f}" if wins else f"; none of them narrowed the gap below the uncut model at an "
                 f"accuracy cost of at most {MAX_ACC_COST:.2f}")
        out.append(f"The evidence is mixed, not support for SCP's premise: the lowest-SNNL cut beat every random cut "
                   f"at {len(beat)} of {len(sizes)} sizes ({detail}){clean}"
                   + (f", and it left the gap at or above the uncut model's at {len(wider)}" if wider else "")
                   + "; read the plot before choosing SCP's layer and ratio.")
    agreement = _premise_agreement(verdict, section.get("premise"))
    if agreement:
        out.append(agreement)
    return out


def cut_response_from_run(run: str | Path, cfg: CutResponseConfig, out: str | Path,
                          snnl_scores: np.ndarray | None = None) -> CutResponseResult:
    """`equiprune prune cut-response`: the cut response of a run's model, written to the folder `out`.

    `out` gets config.json, metrics.json (section ``cut_response``, with the
    findings) and log.txt; no model is kept. Running again with the same
    settings resumes, other settings are an error. `snnl_scores`: the layer's
    SNNL-Fair scores if already known (an SCP run of the same model has them).
    """
    def check(parent: Any) -> None:
        check_layer(parent.model, cfg.layer)
        check_score_batch(len(scoring_dataset(parent.splits(), cfg.score_split)), cfg.score_batch_size)

    parent, rd = start_child_run(run, out, "cut_response", cfg, check=check)
    result = cut_response(parent.model, parent.splits(), cfg, run_dir=rd,
                          image_size=parent.image_size, snnl_scores=snnl_scores)
    findings = result.findings()
    rd.set_section(SECTION, {**rd.read_metrics()[SECTION], "findings": findings})
    for line in findings:
        rd.log(line, echo=False)
    return result
