"""Does the choice of channels matter? The cut response of the demo's baseline, with and without the contrast bias.

For each model, `equiprune prune cut-response` cuts 2.5-60% of the last conv
layer's channels with no fine-tuning, chosen by lowest SNNL-Fair (what SCP
cuts), highest SNNL-Fair, smallest L1 norm and at random (5 draws), and
evaluates every cut model on the validation split.

The models:
  * `demo`: the demo's baseline (runs/bench-demo/baseline from bench_demo.py,
    else runs/demo/baseline from `make demo`), synthderm with its default bias
    (lesion contrast 0.45 on dark skin, class-prior shift, 20% dark skin);
  * `no-contrast-bias`: the same recipe trained here on synthderm with the
    contrast bias removed (dark_contrast 1.0; prior shift and 20% dark skin
    kept), so the gap left is the one a model can learn from group membership.

    python benchmarks/bench_cut_response.py [--skip-train]

Writes benchmarks/results/cut_response.md/.json and cut_response_<model>.png;
run folders go to runs/bench-cut/ (an interrupted run resumes).
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

from demo_run import demo_baseline
from equiprune import api
from equiprune.data import DataConfig, SynthDermConfig
from equiprune.engine import TrainConfig
from equiprune.methods.cut_response import CutResponseConfig
from equiprune.methods.runs import open_run
from equiprune.pipelines.demo import DemoConfig
from equiprune.report.cut_response_report import cut_response_frame
from equiprune.report.tables import frame_to_markdown

FRACTIONS = (0.025, 0.05, 0.1, 0.2, 0.4, 0.6)


def _train_unbiased(out: Path) -> Path:
    """The demo's data and training recipe with the lesion-contrast bias removed (resumes if interrupted)."""
    d = DemoConfig()
    data = DataConfig(name="synthderm", image_size=d.image_size, seed=0, progress=False,
                      val_fraction=d.val_fraction, test_fraction=d.test_fraction,
                      synthderm=SynthDermConfig(n=d.n, dark_contrast=1.0))
    api.train(data, d.model, d.width, TrainConfig(epochs=d.epochs, optimizer="adam", lr=5e-4, schedule="cosine",
                                                  progress=False), out)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--skip-train", action="store_true", help="only the demo's baseline")
    ap.add_argument("--draws", type=int, default=5)
    args = ap.parse_args()
    t0 = time.time()
    models: dict[str, Path] = {}
    demo_base = demo_baseline()
    if demo_base is None:
        return 2
    models["demo"] = demo_base
    if not args.skip_train:
        models["no-contrast-bias"] = _train_unbiased(Path("runs/bench-cut/base-no-contrast-bias"))
    results = Path(__file__).parent / "results"
    results.mkdir(exist_ok=True)
    cfg = CutResponseConfig(fractions=FRACTIONS, random_draws=args.draws, progress=False)
    lines = ["# Cut response: the gap after cutting channels, before any fine-tuning", ""]
    stored = {}
    for name, run in models.items():
        out = Path("runs/bench-cut") / f"cuts-{name}"
        res = api.cut_response(run, cfg, out)
        shutil.copyfile(out / "plots" / "cut-response.png", results / f"cut_response_{name}.png")
        synth = open_run(run).config.get("data", {}).get("synthderm", {})
        section = res.to_dict()
        stored[name] = {"run": str(run), "synthderm": synth, **section, "findings": res.findings()}
        lines += [f"## {name}: {run}", "",
                  f"synthderm dark_contrast {synth.get('dark_contrast')}, dark_fraction {synth.get('dark_fraction')}; "
                  f"{res.layer} ({res.channels} channels); val split; random: mean over {args.draws} draws.", ""]
        lines += [f"- {f}" for f in res.findings()] + ["", frame_to_markdown(cut_response_frame(section)), "",
                                                        f"![cut response](cut_response_{name}.png)", ""]
        print(f"{name}:", *res.findings(), sep="\n  ", flush=True)
    seconds = round(time.time() - t0, 1)
    lines.insert(2, f"{seconds} s on this machine (2 shared CPU cores), including training when it ran.\n")
    (results / "cut_response.md").write_text("\n".join(lines) + "\n")
    (results / "cut_response.json").write_text(json.dumps({"seconds": seconds, "models": stored}, indent=2) + "\n")
    print(f"wrote {results / 'cut_response.md'} in {seconds} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
