"""The planted positive control: can SCP find and cut channels that are known to cause the gap?

Takes a trained baseline (default: the demo's settings, trained here if
missing), plants k group-detecting channels in its last conv layer that push
the minority group (dark skin) towards the most frequent class
(`equiprune.methods.planted`), then measures on the planted model:

1. recall of SNNL-Fair: how many planted channels are among its k lowest
   scores (and the same for L1; random would find k/C on average);
2. the cut response: the gap after cutting k, 10% and 20% of the layer with no
   fine-tuning, SCP's choice against every random draw;
3. `prune scp` against vanilla (the planted model) and its random / L1 /
   fine-tune-only controls over seeds, paired bootstrap on the test split
   (the demo's loop settings: 5% per iteration, at most 2 iterations, 1
   fine-tuning epoch of Adam 1e-4).

    python benchmarks/bench_planted.py                  # full: demo baseline, seeds 0 1 2
    python benchmarks/bench_planted.py --quick          # toy size (n=1500, 32 px, width 0.125), seeds 0 1

Results: benchmarks/results/planted[_quick].json and .md.
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from bench_demo import head_to_head_table

from equiprune import api
from equiprune.data import DataConfig, SynthDermConfig
from equiprune.engine import RunDir, TrainConfig, evaluate
from equiprune.methods.audit import AuditConfig
from equiprune.methods.cut_response import CutResponseConfig, cut_response_from_run
from equiprune.methods.planted import (PlantConfig, plant_channels, plant_from_run, plant_sentence,
                                       planted_recall)
from equiprune.methods.runs import open_run
from equiprune.methods.train import ModelConfig, train_from_config
from equiprune.pipelines.demo import DemoConfig, _findings, _selection_finding, scp_against_controls
from equiprune.methods.scp import scoring_dataset
from equiprune.scoring import l1_channel_scores, snnl_fair_scores


def baseline(out: Path, quick: bool) -> Path:
    """The demo's baseline (or a toy one with --quick), trained into out/baseline unless already there."""
    d = DemoConfig(progress=False)
    if quick:
        data = DataConfig(name="synthderm", image_size=32, seed=0, progress=False, val_fraction=0.2,
                          test_fraction=0.25, synthderm=SynthDermConfig(n=1500, dark_contrast=d.dark_contrast))
        model, train = ModelConfig("vgg11", 0.125), TrainConfig(epochs=4, optimizer="adam", lr=2e-3,
                                                                schedule="cosine", progress=False)
    else:
        data = DataConfig(name="synthderm", image_size=d.image_size, seed=0, progress=False,
                          val_fraction=d.val_fraction, test_fraction=d.test_fraction,
                          synthderm=SynthDermConfig(n=d.n, dark_contrast=d.dark_contrast))
        model, train = ModelConfig(d.model, d.width), TrainConfig(epochs=d.epochs, optimizer="adam", lr=5e-4,
                                                                  schedule="cosine", progress=False)
    train_from_config(data, model, train, out / "baseline")
    return out / "baseline"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="toy size (minutes), for checking the script")
    ap.add_argument("--seeds", type=int, nargs="+", default=None, help="fine-tuning seeds (default 0 1 2; quick 0 1)")
    ap.add_argument("--k", type=int, default=6, help="planted channels")
    ap.add_argument("--gap-increase", type=float, default=0.10, help="validation Eodd added by the plant")
    ap.add_argument("--draws", type=int, default=10, help="random cuts per size in the cut response")
    ap.add_argument("--out", default=None, help="run folders (default runs/bench-planted[-quick])")
    ap.add_argument("--sweep", type=float, nargs="*", default=None,
                    help="silent quantiles at which SNNL-Fair's recall is also measured (default 0.5 0.8 0.9 0.98; "
                         "quick: none): how sparse a detector may be before SNNL-Fair stops seeing it")
    args = ap.parse_args()
    seeds = tuple(args.seeds or ([0, 1] if args.quick else [0, 1, 2]))
    out = Path(args.out or ("runs/bench-planted-quick" if args.quick else "runs/bench-planted"))
    t0 = time.perf_counter()
    base = baseline(out, args.quick)
    audit_cfg = AuditConfig(n_boot=500)
    api.audit(base, audit_cfg)
    plant = plant_from_run(base, PlantConfig(k=args.k, gap_increase=args.gap_increase), out / "planted")
    planted = out / "planted"
    api.audit(planted, audit_cfg)
    run = open_run(planted)
    splits = run.splits()
    channels = run.model.get_submodule(plant.layer).weight.shape[0]

    # The cause is known: zeroing the planted channels must give back the beta-0 model's test numbers.
    ablated = open_run(planted).model
    with torch.no_grad():
        ablated.get_submodule(plant.layer).weight[plant.channels] = 0.0
        ablated.get_submodule(plant.layer).bias[plant.channels] = 0.0
    test_planted, _ = evaluate(run.model, splits.test)
    test_ablated, _ = evaluate(ablated, splits.test)
    test_original, _ = evaluate(open_run(base).model, splits.test)

    demo_cfg = DemoConfig(seeds=seeds, progress=False, n_boot=500)
    runs, heads, snnl, premise = scp_against_controls(planted, demo_cfg, out, audit_cfg)
    recall = {"snnl": planted_recall(snnl, plant.channels),
              "l1": planted_recall(l1_channel_scores(run.model, plant.layer), plant.channels),
              "random_expected": args.k / channels}
    cuts = cut_response_from_run(planted, CutResponseConfig(fractions=(args.k / channels, 0.1, 0.2),
                                                            random_draws=args.draws, progress=False),
                                 out / "cut-response", snnl_scores=np.asarray(snnl))
    below = []
    for k in cuts.cuts():
        scp_gap = cuts.at("snnl", k)[0]["eodd"]
        rand = [r["eodd"] for r in cuts.at("random", k)]
        below.append({"k": k, "scp_eodd": scp_gap, "random_min": min(rand), "random_max": max(rand),
                      "below_every_random": scp_gap < min(rand)})
    sweep = []
    for q in (args.sweep if args.sweep is not None else ([] if args.quick else [0.5, 0.8, 0.9, 0.98])):
        other = plant_channels(open_run(base).model, splits, PlantConfig(k=args.k, gap_increase=args.gap_increase,
                                                                           silent_quantile=q))
        row = {"silent_quantile": q, "firing": other.firing, "val_eodd": other.val["planted"]["eodd"],
               "reached": other.reached}
        for variant in ("reference", "paper"):
            sc = snnl_fair_scores(other.model, other.layer, scoring_dataset(splits, "train"), variant=variant,
                                  progress=False)
            row[variant] = planted_recall(sc, other.channels)
        sweep.append(row)
    findings = _findings(heads, seeds) + [_selection_finding(runs)] + ([premise] if premise else [])
    seconds = time.perf_counter() - t0
    result = {
        "quick": args.quick, "seeds": list(seeds), "seconds": seconds,
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads", "torch": torch.__version__,
        "date": time.strftime("%Y-%m-%d"), "plant": plant.to_dict(), "plant_sentence": plant_sentence(plant),
        "test": {"original": test_original, "planted": test_planted, "ablated": test_ablated},
        "recall": recall, "recall_by_sparsity": sweep, "cut_response": below, "cut_response_findings": cuts.findings(), "findings": findings,
        "head_to_head": [{"seed": h.seed, "other": h.other, "eodd": asdict(h.eodd), "f1": asdict(h.f1)}
                         for h in heads],
        "kept_iteration": {s: [(RunDir(p).read_metrics().get("selection") or {}).get("best_iter") for p in ps]
                           for s, ps in runs.items()},
    }
    res_dir = Path(__file__).parent / "results"
    res_dir.mkdir(exist_ok=True)
    stem = "planted_quick" if args.quick else "planted"
    (res_dir / f"{stem}.json").write_text(json.dumps(result, indent=2) + "\n")
    t = result["test"]
    r = recall["snnl"]
    lines = [f"# Planted positive control ({'quick, toy size' if args.quick else 'demo baseline'}; seeds "
             f"{', '.join(map(str, seeds))})", "",
             f"{seconds / 60:.1f} min on {result['machine']}, {result['date']} (resumed runs are not re-run).", "",
             f"- {plant_sentence(plant)}.",
             f"- Test Eodd: original {t['original']['eodd']:.3f}, planted {t['planted']['eodd']:.3f}, planted "
             f"channels zeroed {t['ablated']['eodd']:.3f}; test macro-F1 {t['original']['f1']:.3f} / "
             f"{t['planted']['f1']:.3f} / {t['ablated']['f1']:.3f}.",
             f"- SNNL-Fair recall of the planted channels among its {r['k']} lowest: **{r['recall']:.2f}** (ranks "
             f"{r['ranks']} of {r['of']}); L1: {recall['l1']['recall']:.2f}; random: {args.k / channels:.3f} "
             "expected.",
             "- Cut response (validation, no fine-tuning, " + str(args.draws) + " random draws): " + "; ".join(
                 f"{b['k']} channels: SCP {b['scp_eodd']:.3f} vs random {b['random_min']:.3f}–{b['random_max']:.3f}"
                 + (" (below every random cut)" if b["below_every_random"] else "") for b in below) + ".",
             *[f"- Planted with silent quantile {w['silent_quantile']}: the channels fire on "
               f"{100 * w['firing']['minority']:.0f}% of minority and {100 * w['firing']['other']:.0f}% of other "
               f"training images; SNNL-Fair recall {w['reference']['recall']:.2f} (ranks {w['reference']['ranks']}), "
               f"paper variant {w['paper']['recall']:.2f}." for w in sweep],
             *[f"- {f}" for f in findings], "", *head_to_head_table(heads)]
    (res_dir / f"{stem}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
