"""Skin tone estimated from the pixels against synthderm's true skin type (exact and within one category).

Generates synthderm pools (default n=2000 at 64 px and 32 px, seed 0), estimates
each image's ITA (`equiprune.data.skin_tone`), and writes the agreement of the
six ITA categories with the true type, the confusion table, how well the
estimated ITA tracks the true one, the flagged images and the time per image
to benchmarks/results/skin_tone.json and .md.

    python benchmarks/bench_skin_tone.py [--n 2000] [--sizes 64 32]
    python benchmarks/bench_skin_tone.py --quick     # n=300, 32 px
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from equiprune.data.skin_tone import agreement, image_ita
from equiprune.data.synthderm import SynthDermConfig, generate_synthderm


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--sizes", type=int, nargs="+", default=[64, 32])
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    n, sizes = (300, [32]) if args.quick else (args.n, args.sizes)
    rows = []
    for size in sizes:
        pool = generate_synthderm(SynthDermConfig(n=n, image_size=size, seed=0))
        t = time.perf_counter()
        tone = image_ita(np.asarray(pool.images))
        per_image = (time.perf_counter() - t) / n
        true_ita = pool.meta["ita"].to_numpy()
        ok = ~tone.flagged
        agree = agreement(pool.meta["fitzpatrick"].to_numpy(), tone.category())
        rows.append({"n": n, "image_size": size, **agree, "ms_per_image": 1000 * per_image,
                     "ita_corr": float(np.corrcoef(true_ita[ok], tone.ita[ok])[0, 1]),
                     "ita_median_abs_error": float(np.median(np.abs(true_ita[ok] - tone.ita[ok]))),
                     "skin_fraction_mean": float(tone.skin_fraction.mean())})
    machine = f"{platform.machine()}, {torch.get_num_threads()} threads"
    res_dir = Path(__file__).parent / "results"
    stem = "skin_tone_quick" if args.quick else "skin_tone"
    (res_dir / f"{stem}.json").write_text(json.dumps({"machine": machine, "date": time.strftime("%Y-%m-%d"),
                                                      "rows": rows}, indent=2) + "\n")
    lines = [f"# Skin tone from pixels vs synthderm's true type ({machine}, {time.strftime('%Y-%m-%d')})", "",
             "| images | px | exact | within one | flagged | corr(ITA) | median abs. ITA error | skin share | "
             "ms / image |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['n']} | {r['image_size']} | {r['exact']:.3f} | {r['within_one']:.3f} | {r['flagged']} | "
                     f"{r['ita_corr']:.3f} | {r['ita_median_abs_error']:.2f}° | {r['skin_fraction_mean']:.2f} | "
                     f"{r['ms_per_image']:.1f} |")
    for r in rows:
        lines += ["", f"Confusion at {r['image_size']} px (rows: true type I–VI; columns: ITA category 1–6):", "",
                  "| true \\ ITA | 1 | 2 | 3 | 4 | 5 | 6 |", "|---|---|---|---|---|---|---|"]
        lines += [f"| {t + 1} | " + " | ".join(map(str, row)) + " |" for t, row in enumerate(r["confusion"])]
    (res_dir / f"{stem}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
