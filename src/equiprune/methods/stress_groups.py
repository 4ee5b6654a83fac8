"""Stress test for noisy or attacked group labels (the thesis's fairness attack, S5, adapted to pruning).

Every fairness method of equiprune takes group labels as input: SCP's
SNNL-Fair and FairPrune's group saliency read the groups of the training
split. Skin-tone labels are often estimated and noisy, and the thesis shows
that an attacker who sets the memberships of a fraction of the samples can
destroy a fair method's fairness while utility hardly moves. This runs a
method with corrupted groups and judges it on the clean test split.

For each fraction ρ and seed, an **attack set** of ρ·N training items is drawn
at random; the attacker sets their groups (validation and test stay clean):

* ``random``: each new membership drawn uniformly at random (the thesis's
  baseline, so about half of them flip);
* ``adversarial``: RACOS (`zoopt`, the optimiser the thesis uses) chooses which
  items of the attack set flip, in `blocks` blocks of items (the search
  dimension), with `budget` evaluations of an objective the attacker
  maximises: by default (``attacker="cheap"``) the validation gap
  (`objective`, Eodd by default) of the method's first cut with no
  fine-tuning (a mitigation: of one epoch of the method); with
  ``attacker="full"`` the validation gap of the model the full method returns
  (its loop, fine-tuning and selection), `budget` times as costly as one run
  but no proxy: the thesis's attacker scores the attacked algorithm's own
  output.

Then the method runs in full (its loop and fine-tuning) on the corrupted
groups and the returned model is evaluated on the clean test split: Eodd,
Eopp1, macro-F1. ρ = 0 is the clean run (the "pre" of the post/pre ratios,
the thesis's Fig. 4.6 form: mean over seeds after / mean over seeds before),
and a Kolmogorov–Smirnov test (scipy) sets the random and adversarial results
over seeds against each other at each ρ.

Methods (one dispatch, `METHODS`: each entry gives the method's config and a
runner; the loop above is the same for all): ``scp`` (with ``consensus`` R > 1
the consensus scorer, `scoring.ConsensusScorer`), ``fairprune`` (structured,
channels of the same layer) and every mitigation method whose training reads
the group labels (`MethodSpec.reads_groups`: ``reweight``, ``groupdro``,
``advconf``, ...), fine-tuned for ``max_iters`` x ``finetune_epochs`` epochs,
the pruning methods' budget. Methods that never read the groups (``plain``,
``swa``, ``skin-tone``) are left out: flips cannot reach them.
"""
from __future__ import annotations

import contextlib
import copy
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
from torch import nn

from ..engine import RunDir, TrainConfig, evaluate
from .prune_loop import default_finetune

SECTION = "stress_groups"
ATTACKS = ("random", "adversarial")
REPORTED = ("eodd", "eopp1", "f1")
ATTACKER_OBJECTIVES = ("cheap", "full")


@dataclass
class StressConfig:
    """Which method, which corruption, how many seeds; the method's own settings."""

    method: str = "scp"
    flips: tuple[float, ...] = (0.0, 0.05, 0.1, 0.15, 0.2, 0.3)
    attacks: tuple[str, ...] = ATTACKS
    seeds: tuple[int, ...] = (0, 1, 2)
    budget: int = 20                # RACOS evaluations per (ρ, seed); the thesis used 10-50
    blocks: int = 32                # adversarial search dimension: the attack set is flipped in this many blocks
    objective: str = "eodd"         # the validation gap the attacker maximises
    attacker: str = "cheap"         # what RACOS scores: "cheap" (first cut / one epoch) or "full" (the whole run)
    layer: str | None = None
    ratio: float = 0.05             # channels cut per iteration (SCP), or per iteration of structured FairPrune
    max_iters: int = 2
    finetune_epochs: int = 1
    consensus: int = 0              # SCP: bootstrap resamples of the consensus scorer (0 = plain SNNL-Fair)
    tau: float = 0.5
    progress: bool = True

    def __post_init__(self) -> None:
        self.flips = tuple(float(f) for f in self.flips)
        self.attacks = tuple(self.attacks)
        self.seeds = tuple(int(s) for s in self.seeds)

    def validate(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {sorted(METHODS)}, got {self.method!r}")
        if not self.flips or any(not 0 <= f < 1 for f in self.flips):
            raise ValueError(f"flip fractions must be in [0, 1), got {list(self.flips)}")
        bad = [a for a in self.attacks if a not in ATTACKS]
        if bad or not self.attacks:
            raise ValueError(f"attacks must be among {ATTACKS}, got {list(self.attacks)}")
        if not self.seeds:
            raise ValueError("give at least one seed")
        if not 3 <= self.budget <= 500:   # zoopt exits the process on a budget below 3
            raise ValueError(f"budget (RACOS evaluations) must be in 3..500, got {self.budget}")
        if self.blocks < 1:
            raise ValueError(f"blocks must be >= 1, got {self.blocks}")
        if self.objective not in ("eodd", "eopp0", "eopp1"):
            raise ValueError(f"objective must be eodd, eopp0 or eopp1, got {self.objective!r}")
        if self.attacker not in ATTACKER_OBJECTIVES:
            raise ValueError(f"attacker must be one of {ATTACKER_OBJECTIVES}, got {self.attacker!r}")
        if self.method not in ("scp", "fairprune") and self.max_iters * self.finetune_epochs < 1:
            raise ValueError(f"{self.method} is a fine-tuning method: give --max-iters and --finetune-epochs >= 1 "
                             "(it trains for their product in epochs)")
        if self.consensus and self.method != "scp":
            raise ValueError("--consensus applies to SCP only")
        self.method_config(0).validate()

    def method_config(self, seed: int, cheap: bool = False) -> Any:
        """The method's own config for one seed (`cheap`: the attacker's objective, one cut with no fine-tuning
        or one epoch of a mitigation)."""
        return METHODS[self.method](self, seed, cheap)[0]


def _finetune(epochs: int) -> TrainConfig:
    """The demo's fine-tuning: Adam 1e-4 for `epochs` epochs (0: none)."""
    ft = default_finetune()
    ft.epochs, ft.optimizer, ft.lr = epochs, "adam", 1e-4
    return ft


#: What a method's runner returns: the model it hands back, and the validation metrics (``eodd``, ...) of the
#: model the attacker's cheap objective scores, or None to evaluate the returned model on validation.
Outcome = tuple[nn.Module, "dict[str, float] | None"]


def _loop_val(history: list[dict[str, Any]]) -> dict[str, float]:
    """The last pruning iteration's validation metrics (the cut itself, even if the loop keeps an earlier one)."""
    return {k[4:]: float(v) for k, v in history[-1].items() if k.startswith("val_")}


def _scp(cfg: StressConfig, seed: int, cheap: bool) -> tuple[Any, Callable[..., Outcome]]:
    from .scp import SCPConfig, run_scp
    c = SCPConfig(layer=cfg.layer, ratio=cfg.ratio, max_iters=1 if cheap else cfg.max_iters, th_fair=-1.0,
                  finetune=_finetune(0 if cheap else cfg.finetune_epochs), seed=seed, null_draws=0,
                  consensus=cfg.consensus, tau=cfg.tau, progress=False)

    def run(model: nn.Module, splits: Any, c: Any, arch: dict[str, Any] | None) -> Outcome:
        res = run_scp(model, splits, c, arch=arch)
        return res.model, _loop_val(res.loop.history)
    return c, run


def _fairprune(cfg: StressConfig, seed: int, cheap: bool) -> tuple[Any, Callable[..., Outcome]]:
    from .fairprune import FairPruneConfig, run_fairprune
    iters = 1 if cheap else cfg.max_iters
    c = FairPruneConfig(structured=True, layer=cfg.layer, pr=min(0.9, cfg.ratio * iters), iters=iters,
                        finetune=_finetune(0 if cheap else cfg.finetune_epochs), seed=seed, progress=False)

    def run(model: nn.Module, splits: Any, c: Any, arch: dict[str, Any] | None) -> Outcome:
        res = run_fairprune(model, splits, c, arch=arch)
        return res.model, _loop_val(res.history)
    return c, run


def _mitigation(name: str) -> Callable[[StressConfig, int, bool], tuple[Any, Callable[..., Outcome]]]:
    """A mitigation method (`methods.mitigate`) as a stressed method.

    Its budget is the pruning methods' (`max_iters` x `finetune_epochs` epochs,
    as `compare` gives it); the attacker's cheap objective is the validation
    gap after one epoch of the method on the corrupted groups.
    """
    def make(cfg: StressConfig, seed: int, cheap: bool) -> tuple[Any, Callable[..., Outcome]]:
        from dataclasses import replace

        from .mitigate import get_method, run_mitigation
        from .mitigate.base import default_mitigation_train
        epochs = 1 if cheap else cfg.max_iters * cfg.finetune_epochs
        c = get_method(name).config(finetune=replace(default_mitigation_train(), epochs=epochs, progress=False),
                                    seed=seed, progress=False)

        def run(model: nn.Module, splits: Any, c: Any, arch: dict[str, Any] | None) -> Outcome:
            return run_mitigation(model, splits, c).model, None
        return c, run
    return make


def _stressed_mitigations() -> list[str]:
    """The mitigation methods whose training reads the training split's group labels (the ones flips can reach)."""
    from .mitigate import registry
    return [n for n, spec in registry.methods().items() if spec.reads_groups and spec.trains]


#: method name -> (StressConfig, seed, cheap) -> (method config, runner `run(model, splits, config, arch)`
#: returning an `Outcome`). The pruning methods, then every mitigation that reads group labels in training.
METHODS: dict[str, Callable[[StressConfig, int, bool], tuple[Any, Callable[..., Outcome]]]] = {
    "scp": _scp, "fairprune": _fairprune, **{n: _mitigation(n) for n in _stressed_mitigations()}}


@dataclass
class StressResult:
    """One record per (attack, ρ, seed) with the clean-test metrics, and the summaries."""

    records: list[dict[str, Any]]
    config: StressConfig
    ratios: dict[str, dict[str, list[float | None]]] = field(default_factory=dict)
    ks: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)

    def findings(self) -> list[str]:
        """The sentences of `stress_findings` for this result."""
        return stress_findings(self.to_dict())

    def to_dict(self) -> dict[str, Any]:
        return {"records": self.records, "ratios": self.ratios, "ks": self.ks, "flips": list(self.config.flips),
                "method": self.config.method, "consensus": self.config.consensus}


class _Corrupted:
    """The splits with the training split's groups replaced (validation and test untouched)."""

    def __init__(self, splits: Any, groups: np.ndarray) -> None:
        train = copy.copy(splits.train)
        train.meta = train.meta.copy()
        train.meta["group"] = groups
        train.groups = np.asarray(groups, dtype=np.int64)
        self._splits, self.train = splits, train

    def __getattr__(self, name: str) -> Any:
        return getattr(self._splits, name)


def attack_set(n: int, flip: float, seed: int) -> np.ndarray:
    """The ρ·n training items whose groups the attacker sets (the same for both attacks at one seed)."""
    return np.sort(np.random.default_rng([seed, int(round(flip * 1e6))]).choice(n, size=int(round(flip * n)),
                                                                                replace=False))


def _flipped(groups: np.ndarray, items: np.ndarray, bits: np.ndarray) -> np.ndarray:
    out = np.asarray(groups, dtype=np.int64).copy()
    out[items[bits.astype(bool)]] = 1 - out[items[bits.astype(bool)]]
    return out


def _run(model: nn.Module, splits: Any, cfg: StressConfig, seed: int, cheap: bool,
         arch: dict[str, Any] | None = None) -> Outcome:
    """The method on `splits` (no run folder: its iterations stay in memory or a temporary folder)."""
    method_cfg, run = METHODS[cfg.method](cfg, seed, cheap)
    return run(copy.deepcopy(model), splits, method_cfg, arch)


def adversarial_bits(model: nn.Module, splits: Any, items: np.ndarray, cfg: StressConfig, seed: int,
                     log: Callable[[str], None] = lambda m: None, arch: dict[str, Any] | None = None
                     ) -> tuple[np.ndarray, list[float]]:
    """RACOS (zoopt) over which blocks of `items` flip, maximising the validation gap; (bits, trace).

    The gap is that of the cheap proxy (the first cut, or one epoch) or, with
    ``cfg.attacker == "full"``, of the model the whole method returns, scored
    on validation as the method would be judged (never on test).
    """
    from zoopt import Dimension, Objective, Opt, Parameter

    groups = splits.train.groups
    dim = max(1, min(cfg.blocks, len(items)))
    block_of = np.arange(len(items)) % dim
    trace: list[float] = []

    full = cfg.attacker == "full"

    def gap(block_bits: np.ndarray) -> float:
        cut, val = _run(model, _Corrupted(splits, _flipped(groups, items, block_bits[block_of])), cfg, seed,
                        cheap=not full, arch=arch)
        # The full run's returned model may be an earlier iteration than its last history row: score it itself.
        value = float((val if val is not None and not full else evaluate(cut, splits.val)[0])[cfg.objective])
        trace.append(value)
        return value

    def objective(solution: Any) -> float:
        return -gap(np.asarray(solution.get_x(), dtype=np.int64))

    dimension = Dimension(dim, [[0, 1]] * dim, [False] * dim)
    # zoopt draws from numpy's global RNG and seeds it only for a truthy seed (not 0): seed it here for every
    # seed (the same call zoopt makes for seed >= 1) and give the caller's state back afterwards.
    outer = np.random.get_state()
    np.random.seed(seed)
    try:
        with contextlib.redirect_stdout(io.StringIO()):   # zoopt prints its progress; the log gets the summary
            best = Opt.min(Objective(objective, dimension), Parameter(budget=cfg.budget, seed=seed))
    finally:
        np.random.set_state(outer)
    bits = np.asarray(best.get_x(), dtype=np.int64)[block_of]
    what = "the full run's model" if full else "the cut"
    log(f"RACOS: {len(trace)} evaluations, validation {cfg.objective} of {what} from {trace[0]:.4f} (first) to "
        f"{max(trace):.4f} (best)")
    return bits, trace


def _test_metrics(model: nn.Module, splits: Any) -> dict[str, float]:
    metrics, _ = evaluate(model, splits.test)
    return {k: float(v) for k, v in metrics.items()}


def summarise(records: list[dict[str, Any]], flips: tuple[float, ...]) -> tuple[dict, dict]:
    """Post/pre ratios (mean over seeds, per attack and metric, per ρ) and KS tests random vs adversarial."""
    from scipy.stats import ks_2samp

    def values(attack: str | None, flip: float, metric: str) -> list[float]:
        return [r["test"][metric] for r in records if r["flip"] == flip and (flip == 0 or r["attack"] == attack)]

    ratios: dict[str, dict[str, list[float | None]]] = {}
    pre = {m: values(None, 0.0, m) for m in REPORTED}
    for attack in sorted({r["attack"] for r in records if r["flip"] > 0}):
        ratios[attack] = {}
        for m in REPORTED:
            row: list[float | None] = []
            for flip in flips:
                post = values(attack, flip, m)
                ok = post and pre[m] and np.mean(pre[m]) != 0
                row.append(float(np.mean(post) / np.mean(pre[m])) if ok else None)
            ratios[attack][m] = row
    ks: dict[str, dict[str, dict[str, float]]] = {}
    for flip in flips:
        if flip == 0:
            continue
        a, b = {m: values("random", flip, m) for m in REPORTED}, {m: values("adversarial", flip, m) for m in REPORTED}
        if all(a.values()) and all(b.values()):
            ks[str(flip)] = {m: {"statistic": float(t.statistic), "pvalue": float(t.pvalue)}
                             for m in REPORTED for t in [ks_2samp(a[m], b[m])]}
    return ratios, ks


def stress_groups(model: nn.Module, splits: Any, cfg: StressConfig, run_dir: str | Path | RunDir | None = None,
                  arch: dict[str, Any] | None = None) -> StressResult:
    """Run `cfg.method` with corrupted training groups for every attack, ρ and seed; judge on clean test data.

    With `run_dir`, every finished (attack, ρ, seed) is stored as it finishes and a re-run skips it.
    """
    cfg.validate()
    rd = run_dir if isinstance(run_dir, RunDir) or run_dir is None else RunDir(run_dir)
    say = (lambda m: rd.log(m, echo=cfg.progress)) if rd is not None else (lambda m: None)
    records: list[dict[str, Any]] = list(((rd.read_metrics().get(SECTION) or {}) if rd else {}).get("records", []))
    done = {(r["attack"], r["flip"], r["seed"]) for r in records}
    n = len(splits.train)
    todo = [("none", 0.0, s) for s in cfg.seeds if 0.0 in cfg.flips]
    todo += [(a, f, s) for f in cfg.flips if f > 0 for a in cfg.attacks for s in cfg.seeds]
    from tqdm.auto import tqdm
    bar = tqdm(total=len(todo), desc="stress-groups", unit="run", disable=not cfg.progress)
    for attack, flip, seed in todo:
        bar.update(1)
        if (attack, flip, seed) in done:
            continue
        items = attack_set(n, flip, seed)
        trace: list[float] = []
        if attack == "random":
            bits = np.random.default_rng([seed, 7]).integers(0, 2, size=len(items))
        elif attack == "adversarial":
            bits, trace = adversarial_bits(model, splits, items, cfg, seed, say, arch=arch)
        else:
            bits = np.zeros(0, dtype=np.int64)
        corrupted = _Corrupted(splits, _flipped(splits.train.groups, items, bits))
        returned, _ = _run(model, corrupted, cfg, seed, cheap=False, arch=arch)
        test = _test_metrics(returned, splits)
        rec = {"attack": attack, "flip": flip, "seed": seed, "flipped": int(bits.sum()), "attack_set": len(items),
               "test": test, "racos_trace": trace}
        records.append(rec)
        say(f"{attack} ρ={flip:g} seed {seed}: {rec['flipped']} of {n} training groups flipped; test Eodd "
            f"{test['eodd']:.4f}, Eopp1 {test['eopp1']:.4f}, macro-F1 {test['f1']:.4f}")
        if rd is not None:
            rd.set_section(SECTION, {"records": records})
    bar.close()
    ratios, ks = summarise(records, cfg.flips)
    out = StressResult(records=records, config=cfg, ratios=ratios, ks=ks)
    if rd is not None:
        rd.set_section(SECTION, out.to_dict())
    return out


def unchanged_runs(records: list[dict[str, Any]]) -> tuple[int, int]:
    """(runs with corrupted groups whose test metrics equal the clean run's of their seed, runs with a clean run)."""
    clean = {r["seed"]: r["test"] for r in records if r["flip"] == 0}
    corrupted = [r for r in records if r["flip"] > 0 and r["seed"] in clean]
    same = sum(all(r["test"][m] == clean[r["seed"]][m] for m in REPORTED) for r in corrupted)
    return same, len(corrupted)


def stress_findings(section: dict[str, Any]) -> list[str]:
    """Sentences: how far the gap moved under each attack at the largest ρ, and the KS tests."""
    flips = section.get("flips") or []
    out = []
    for attack, per in (section.get("ratios") or {}).items():
        e, f = per.get("eodd") or [], per.get("f1") or []
        if flips and e and e[-1] is not None and f[-1] is not None:
            out.append(f"{attack} flips of {100 * flips[-1]:.0f}% of the training groups: test Eodd "
                       f"{e[-1]:.2f}× and macro-F1 {f[-1]:.2f}× the clean run's (mean over seeds).")
    same, corrupted = unchanged_runs(section.get("records") or [])
    if corrupted:
        out.append(f"{same} of {corrupted} runs with corrupted groups returned a model whose clean-test Eodd, Eopp1 "
                   "and macro-F1 equal those of the clean run of the same seed: there the flips did not change "
                   "what the method did.")
    sig = [(flip, m, v) for flip, d in (section.get("ks") or {}).items() for m, v in d.items() if v["pvalue"] < 0.05]
    if section.get("ks"):
        out.append("KS test, random against adversarial over seeds: "
                   + ("; ".join(f"ρ={flip}: {m} D={v['statistic']:.2f}, p={v['pvalue']:.3f}" for flip, m, v in sig)
                      if sig else "no difference at p < 0.05 at any ρ and metric")
                   + (" (with 3 seeds the smallest possible p is 0.1, so it cannot be significant)"
                      if not sig and len({r['seed'] for r in section.get('records', [])}) <= 3 else "") + ".")
    return out


def stress_groups_from_run(run: str | Path, cfg: StressConfig, out: str | Path) -> StressResult:
    """`equiprune stress-groups`: the stress test of a run's model, into the folder `out` (no model kept)."""
    from .runs import start_child_run

    parent, rd = start_child_run(run, out, "stress_groups", cfg)
    result = stress_groups(parent.model, parent.splits(), cfg, run_dir=rd, arch=parent.arch)
    section = {**rd.read_metrics()[SECTION], "findings": stress_findings(result.to_dict())}
    rd.set_section(SECTION, section)
    for line in section["findings"]:
        rd.log(line, echo=False)
    return result


__all__ = ["ATTACKS", "METHODS", "StressConfig", "StressResult", "adversarial_bits", "attack_set", "stress_findings",
           "stress_groups", "stress_groups_from_run", "summarise", "unchanged_runs"]
