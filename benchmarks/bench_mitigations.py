"""What users pick instead of pruning: every mitigation method against SCP, FairPrune and the controls.

For each of three synthderm variants (the demo's default; without the
dark-skin contrast bias; the marker positive control of bench_demo.py) a
baseline is trained once, then every method below runs on it for seeds
0, 1, 2 through `equiprune.pipelines.table.run_table` (the `compare`
machinery: resumable run folders, every run audited on the test split):

- mitigations: every `equiprune mitigate` method, each fine-tuned for the
  pruning loop's whole budget (max_iters x fine-tuning epochs);
- pruning: SCP, FairPrune, and the controls random channels, L1 channels and
  fine-tune only (SCP's loop cutting nothing).

One table per dataset: test Eodd, Eopp1, macro-F1 and worst-group accuracy
(the lower of the two groups' accuracies) as mean over seeds, each method's
difference from vanilla and from its fine-tuning control (plain cross-entropy
fine-tuning for the same budget, `mitigate plain`, for a mitigation method;
SCP's loop cutting nothing for a pruning method) with a paired interval over
the seeds (mean ± t(0.975, n-1) · sd / √n of the per-seed differences), the
number of seeds on which the per-seed paired bootstrap of Eodd lies entirely
below 0, and the wall time per run.

    python benchmarks/bench_mitigations.py --quick      # 1,500 images, 32 px: what benchmarks/results/ holds
    python benchmarks/bench_mitigations.py              # the demo's data and baseline size (hours on 2 cores)

Results: benchmarks/results/mitigations[_quick].{json,md}; runs under --out.
"""
from __future__ import annotations

import argparse
import json
import math
import platform
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from scipy import stats

from equiprune.data import DataConfig, SynthDermConfig
from equiprune.engine import RunDir, TrainConfig
from equiprune.methods.audit import AuditConfig
from equiprune.methods.paired_runs import paired_runs
from equiprune.methods.train import ModelConfig, train_from_config
from equiprune.pipelines import table as tbl

PRUNING = ("scp", "fairprune", "random", "l1", "finetune")
METRICS = (("eodd", "Eodd", -1), ("eopp1", "Eopp1", -1), ("f1", "macro-F1", 1), ("worst_acc", "worst-group acc", 1))


def datasets(quick: bool) -> dict[str, tuple[SynthDermConfig, int]]:
    """name -> (generator settings, baseline epochs)."""
    n = 1500 if quick else 5000
    return {
        "default": (SynthDermConfig(n=n, dark_contrast=0.45), 6 if quick else 8),
        "no-contrast-bias": (SynthDermConfig(n=n, dark_contrast=1.0), 6 if quick else 8),
        "marker": (SynthDermConfig(n=n, group_cue="marker", light_contrast=0.35, dark_contrast=0.35,
                                   dark_class_priors=(0.40, 0.02, 0.20, 0.19, 0.19)), 8 if quick else 12),
    }


def _worst(metrics: dict) -> float:
    return min(float(metrics["acc_g0"]), float(metrics["acc_g1"]))


def _audit_metrics(path: Path) -> dict[str, float]:
    m = RunDir(path, create=False).read_metrics()["audit"]["metrics"]
    return {"eodd": float(m["eodd"]), "eopp1": float(m["eopp1"]), "f1": float(m["f1"]), "worst_acc": _worst(m)}


def seed_interval(diffs: list[float]) -> tuple[float, float, float]:
    """Mean of per-seed differences and its t interval (95%)."""
    d = np.asarray(diffs, dtype=float)
    if len(d) < 2:
        return float(d.mean()), math.nan, math.nan
    half = stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / math.sqrt(len(d))
    return float(d.mean()), float(d.mean() - half), float(d.mean() + half)


def run_dataset(name: str, synth: SynthDermConfig, epochs: int, out: Path, seeds: list[int], quick: bool,
                methods: list[str]) -> dict:
    image_size = 32 if quick else 64
    # The demo's split: val and test large enough for a few hundred dark-skin images each.
    data = DataConfig(name="synthderm", image_size=image_size, seed=0, val_fraction=0.2, test_fraction=0.25,
                      progress=False, synthderm=synth)
    base = out / name / "baseline"
    t0 = time.perf_counter()
    if not (base / "model.pt").exists():
        # Adam 1e-3 at 32 px (as bench_table.py trains), the train verb's 5e-4 at the demo's 64 px
        train_from_config(data, ModelConfig("vgg11", 0.25),
                          TrainConfig(epochs=epochs, optimizer="adam", lr=1e-3 if quick else 5e-4, progress=False),
                          base)
    base_seconds = time.perf_counter() - t0
    # A method whose start-model check refuses this baseline (FairAdaBN: VGG-11 has no batch norm) is left out.
    from equiprune.methods.mitigate import methods as mitigation_methods
    from equiprune.methods.runs import open_run
    skipped = {}
    for m in list(methods):
        spec = mitigation_methods().get(m)
        if spec is not None and spec.check is not None:
            try:
                spec.check(open_run(base).model)
            except ValueError as exc:
                skipped[m] = str(exc)
    methods = [m for m in methods if m not in skipped]
    ft = TrainConfig(epochs=1, optimizer="adam", lr=1e-4, schedule="cosine", select_on="last", progress=False)
    d = tbl.TableConfig()
    cfg = tbl.TableConfig(seeds=tuple(seeds), methods=tuple(["vanilla", *methods]),
                          scp=replace(d.scp, ratio=0.05, max_iters=2, finetune=ft, progress=False),
                          fairprune=replace(d.fairprune, finetune=ft, progress=False),
                          audit=AuditConfig(n_boot=300 if quick else 1000, latency=False),
                          reports=False, progress=False)
    times_file = out / name / "seconds.json"
    times = json.loads(times_file.read_text()) if times_file.exists() else {}

    def timed(method: str):
        inner = tbl.RUNNERS[method]

        def run(parent, path, seed, c):
            t = time.perf_counter()
            inner(parent, path, seed, c)
            times[f"{method}-seed{seed}"] = time.perf_counter() - t
            times_file.write_text(json.dumps(times, indent=1))
        return run

    saved = dict(tbl.RUNNERS)
    tbl.RUNNERS.update({m: timed(m) for m in methods})
    try:
        result = tbl.run_table(out / name / "table", cfg, base_run=base)
    finally:
        tbl.RUNNERS.clear()
        tbl.RUNNERS.update(saved)
    vanilla = _audit_metrics(base)
    rows = {}
    for m in methods:
        per_seed = {s: _audit_metrics(result.runs[(m, s)]) for s in seeds}
        row = {"label": tbl.METHOD_NAMES[m], "seconds": float(np.mean([times.get(f"{m}-seed{s}", math.nan)
                                                                         for s in seeds]))}
        # The fine-tuning control: plain cross-entropy fine-tuning for a mitigation method, SCP's loop cutting
        # nothing for a pruning method (each the same training as the method, without the method).
        ref = "plain" if m in tbl.MITIGATION_METHODS else "finetune"
        has_ref = m != ref and ref in methods
        row["reference"] = tbl.METHOD_NAMES[ref] if has_ref else None
        ref_runs = {s: _audit_metrics(result.runs[(ref, s)]) for s in seeds} if has_ref else {}
        for key, _, _ in METRICS:
            row[key] = float(np.mean([per_seed[s][key] for s in seeds]))
            row[f"{key}_vs_vanilla"] = seed_interval([per_seed[s][key] - vanilla[key] for s in seeds])
            if has_ref:
                row[f"{key}_vs_finetune"] = seed_interval([per_seed[s][key] - ref_runs[s][key] for s in seeds])
        row["eodd_boot_below_zero_vs_vanilla"] = sum(
            paired_runs(base, result.runs[(m, s)], cfg.audit)["eodd"].hi < 0 for s in seeds)
        if has_ref:
            row["eodd_boot_below_zero_vs_finetune"] = sum(
                paired_runs(result.runs[(ref, s)], result.runs[(m, s)], cfg.audit)["eodd"].hi < 0 for s in seeds)
        rows[m] = row
    return {"vanilla": vanilla, "baseline_seconds": base_seconds, "not_applicable": skipped, "baseline_epochs": epochs,
            "synthderm": {k: v for k, v in vars(synth).items()}, "image_size": image_size, "methods": rows}


def _iv(t) -> str:
    est, lo, hi = t
    return f"{est:+.3f} [{lo:+.3f}, {hi:+.3f}]" if math.isfinite(lo) else f"{est:+.3f}"


def verdicts(res: dict) -> list[str]:
    """Which methods narrow the Eodd gap beyond noise (seed interval below 0 against vanilla AND fine-tune only)."""
    out = []
    for m, r in res["methods"].items():
        v, f = r["eodd_vs_vanilla"], r.get("eodd_vs_finetune")
        beyond_v = math.isfinite(v[2]) and v[2] < 0
        beyond_f = f is not None and math.isfinite(f[2]) and f[2] < 0
        if beyond_v:
            cost = r["f1_vs_vanilla"][0]
            ref = r.get("reference") or "its fine-tuning control"
            out.append(f"{r['label']} narrows Eodd beyond noise against vanilla ({_iv(v)}), "
                       + (f"and against {ref} ({_iv(f)})" if beyond_f else f"but not against {ref} ({_iv(f)})"
                          if f is not None else "")
                       + f"; macro-F1 changes by {cost:+.3f}")
    return out or ["no method narrows Eodd beyond noise against vanilla (seed interval entirely below 0)"]


def markdown(name: str, res: dict, seeds: list[int]) -> list[str]:
    v = res["vanilla"]
    lines = [f"## {name}", "",
             f"Baseline (vanilla, {res['baseline_epochs']} epochs, {res['image_size']} px): Eodd {v['eodd']:.3f}, "
             f"Eopp1 {v['eopp1']:.3f}, macro-F1 {v['f1']:.3f}, worst-group accuracy {v['worst_acc']:.3f}. "
             f"Seeds {', '.join(map(str, seeds))}; differences are method − reference, mean over seeds "
             "[95% t interval over seeds]. Fine-tuning control: plain cross-entropy fine-tuning for the same "
             "budget (mitigation rows), SCP's loop cutting nothing (pruning rows).", ""]
    head = "| method | " + " | ".join(f"{lab} | Δ vs vanilla | Δ vs fine-tuning control" for _, lab, _ in METRICS)
    lines += [head + " | Eodd boot < 0 (vanilla / fine-tune) | s / run |",
              "|---" * (2 + 3 * len(METRICS) + 1) + "|"]
    for m, r in res["methods"].items():
        cells = []
        for key, _, _ in METRICS:
            vf = r.get(f"{key}_vs_finetune")
            cells += [f"{r[key]:.3f}", _iv(r[f"{key}_vs_vanilla"]), _iv(vf) if vf else "—"]
        boot = f"{r['eodd_boot_below_zero_vs_vanilla']}/{len(seeds)} / " + (
            f"{r['eodd_boot_below_zero_vs_finetune']}/{len(seeds)}" if "eodd_boot_below_zero_vs_finetune" in r
            else "—")
        lines.append(f"| {r['label']} | " + " | ".join(cells) + f" | {boot} | {r['seconds']:.0f} |")
    lines += [""] + [f"- {s}" for s in verdicts(res)]
    lines += [f"- {m}: not run ({why})" for m, why in res.get("not_applicable", {}).items()] + [""]
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="1,500 images at 32 px, shorter baselines")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--datasets", nargs="+", default=["default", "no-contrast-bias", "marker"])
    ap.add_argument("--methods", nargs="+", default=None, help="default: every mitigation method, SCP, FairPrune "
                                                               "and the controls")
    ap.add_argument("--out", default=None, help="runs folder (default runs/bench-mitigations[-quick])")
    args = ap.parse_args()
    methods = args.methods or list(tbl.MITIGATION_METHODS) + list(PRUNING)
    for control in ("plain", "finetune"):
        if control not in methods:
            methods.append(control)
    out = Path(args.out or ("runs/bench-mitigations-quick" if args.quick else "runs/bench-mitigations"))
    stem = "mitigations_quick" if args.quick else "mitigations"
    t0 = time.perf_counter()
    results = {}
    for name, (synth, epochs) in datasets(args.quick).items():
        if name in args.datasets:
            print(f"[bench] {name}", flush=True)
            results[name] = run_dataset(name, synth, epochs, out, args.seeds, args.quick, methods)
            write(results, time.perf_counter() - t0, args, stem)  # each dataset's table as soon as it is done


def write(results: dict, seconds: float, args: argparse.Namespace, stem: str) -> None:
    """One JSON per dataset (so datasets may run in separate processes), and one Markdown page over all of them."""
    machine = f"{platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}"
    res_dir = Path(__file__).parent / "results"
    res_dir.mkdir(exist_ok=True)
    for name, res in results.items():
        (res_dir / f"{stem}_{name}.json").write_text(json.dumps(
            {"date": time.strftime("%Y-%m-%d"), "machine": machine, "seconds": seconds, "seeds": args.seeds,
             "result": res}, indent=1, default=str) + "\n")
    lines = [f"# Mitigation methods against pruning and its controls ({'quick' if args.quick else 'full'})", "",
             "Command: `python benchmarks/bench_mitigations.py" + (" --quick" if args.quick else "") + "`; "
             "synthderm, VGG-11 x0.25; each dataset's machine, date and wall time below.", ""]
    for name in datasets(args.quick):
        f = res_dir / f"{stem}_{name}.json"
        if f.exists():
            d = json.loads(f.read_text())
            lines += [f"{d['date']}, {d['machine']}; {d['seconds'] / 60:.0f} min for this process "
                      "(resumed runs not re-run).", ""]
            lines += markdown(name, d["result"], d["seeds"])
    (res_dir / f"{stem}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
