"""Fair video summaries: FVS-LP against importance-only and random summaries, by SumBal and F1 (thesis §3.2).

FairVidSum (the thesis's 34 annotated videos) is not public here, so the
videos are synthetic (`cluster.summarize.synthetic_video`): shots of random
length, each showing a random subset of 3 people, 5 users' importance scores
that follow person 1's screen time plus noise, 15 % of the frames kept.
Methods, as Table 3.3's rows where one exists:

* Random — k frames drawn uniformly;
* Human — the top 15 % of frames by the users' mean importance (0/1 knapsack
  with unit costs), the thesis's "Human" row;
* FVS-LP (individual) — the thesis's LP (zero objective, presence
  proportions matched), rounded;
* FVS-LP + importance — the same constraints maximising total importance
  (ours).

F1 = mean over users of F_1 against each user's top 15 %; SumBal over the
individuals (1 = every person as often in the summary as in the video).

    python benchmarks/bench_summarize.py --quick   # 20 videos
    python benchmarks/bench_summarize.py           # 100 videos

Writes benchmarks/results/summarize_fvs_lp.{md,json}.
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from datetime import date
from pathlib import Path

import numpy as np

from equiprune.cluster.summarize import f_beta, fvs_lp, sumbal, synthetic_video

THESIS_33 = {"Random": (14.92, 0.8747), "Human": (68.91, 0.2773), "FVS-LP (individual)": (14.13, 0.9932)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    videos = 20 if args.quick else 100
    t0 = time.perf_counter()
    rows = []
    for seed in range(videos):
        v = synthetic_video(n=300, people=3, users=5, seed=seed)
        k = int(round(0.15 * len(v.features)))
        mean_score = v.user_scores.mean(0)
        picks = {"Random": np.sort(np.random.default_rng(seed).choice(len(mean_score), k, replace=False)),
                 "Human": np.sort(np.argsort(-mean_score, kind="stable")[:k]),
                 "FVS-LP (individual)": fvs_lp(v.presence, k),
                 "FVS-LP + importance (ours)": fvs_lp(v.presence, k, importance=mean_score)}
        for name, sel in picks.items():
            value, who = sumbal(sel, v.presence, v.groups)
            rows.append({"video": seed, "method": name, "frames": int(len(sel)), "k": k,
                         "f1": 100 * f_beta(sel, v.user_scores), "sumbal": value, "violator": who})
    lines = [f"# Fair summaries on synthetic videos: FVS-LP against SumBal and F1 ({date.today()}, "
             f"{platform.machine()}, {videos} videos of 300 frames, 3 people, 5 users, 15 % kept)", "",
             "Command: `python benchmarks/bench_summarize.py" + (" --quick`" if args.quick else "`"), "",
             "| method | F1 (mean ± sd over videos) | SumBal, individuals (mean ± sd) | min SumBal | frames / k | "
             "thesis Table 3.3 (FairVidSum): F1, SumBal individual |", "|---|---|---|---|---|---|"]
    for name in dict.fromkeys(r["method"] for r in rows):
        part = [r for r in rows if r["method"] == name]
        f1 = np.array([r["f1"] for r in part])
        sb = np.array([r["sumbal"] for r in part])
        size = np.mean([r["frames"] / r["k"] for r in part])
        ref = THESIS_33.get(name)
        lines.append(f"| {name} | {f1.mean():.2f} ± {f1.std():.2f} | {sb.mean():.4f} ± {sb.std():.4f} | "
                     f"{sb.min():.4f} | {size:.3f} | {f'{ref[0]}, {ref[1]}' if ref else '-'} |")
    lines += ["", f"Total {time.perf_counter() - t0:.1f} s."]
    out = Path(__file__).parent / "results"
    (out / "summarize_fvs_lp.md").write_text("\n".join(lines) + "\n")
    (out / "summarize_fvs_lp.json").write_text(json.dumps(rows, indent=1))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
