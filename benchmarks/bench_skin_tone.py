"""Skin tone estimated from the pixels against synthderm's true skin type (exact and within one category).

Generates synthderm pools (default n=2000 at 64 px and 32 px, seed 0), estimates
each image's ITA (`equiprune.data.skin_tone`), and writes the agreement of the
six ITA categories with the true type, the confusion table, how well the
estimated ITA tracks the true one, the flagged images and the time per image
to benchmarks/results/skin_tone.json and .md.

It then measures the same agreement through the CSV loader (`--group-source
ita` on a CSV + image folder): synthderm images (another seed) written as JPEG
files at quality 90 with a table of their true types, read back, decoded,
resized and estimated as a user's own data would be (`csv` rows of the results).

    python benchmarks/bench_skin_tone.py [--n 2000] [--sizes 64 32] [--csv-n 600]
    python benchmarks/bench_skin_tone.py --quick     # n=300, 32 px; CSV n=120
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


def csv_agreement(n: int, image_size: int, work: Path) -> dict:
    """Agreement of the ITA categories with the true type through the CSV loader (JPEG files, `--group-source ita`)."""
    import pandas as pd
    from PIL import Image

    from equiprune.data import DataConfig, load_splits
    from equiprune.data.skin_tone import skin_tone_summary

    pool = generate_synthderm(SynthDermConfig(n=n, image_size=image_size, seed=1))
    root = work / "imgs"
    root.mkdir(parents=True, exist_ok=True)
    for i, img in enumerate(np.asarray(pool.images)):
        Image.fromarray(img.transpose(1, 2, 0)).save(root / f"img{i}.jpg", quality=90)
    roman = ["I", "II", "III", "IV", "V", "VI"]
    folds = np.array(["train", "val", "test"])[np.arange(n) % 3]
    pd.DataFrame({"file": [f"img{i}.jpg" for i in range(n)], "diagnosis": pool.meta["class_name"],
                  "skin_type": [roman[t - 1] for t in pool.meta["fitzpatrick"]], "fitzpatrick": pool.meta["fitzpatrick"],
                  "fold": folds}).to_csv(work / "table.csv", index=False)
    splits = load_splits(DataConfig(name="csv", metadata=str(work / "table.csv"), root=str(root), image_column="file",
                                    label_column="diagnosis", group_column="skin_type", split_column="fold",
                                    group_source="ita", image_size=image_size, cache_dir=str(work / "cache"),
                                    progress=False))
    confusion, flagged = np.zeros((6, 6), dtype=np.int64), 0
    for ds in (splits.train, splits.val, splits.test):
        summary = skin_tone_summary(ds)
        confusion += np.asarray(summary["fitzpatrick_agreement"]["confusion"])
        flagged += summary["n_flagged"]
    total = confusion.sum()
    diff = np.abs(np.arange(6)[:, None] - np.arange(6)[None, :])
    return {"n": n, "image_size": image_size, "source": "JPEG q90, --group-source ita", "flagged": int(flagged),
            "exact": float(confusion[diff == 0].sum() / total), "within_one": float(confusion[diff <= 1].sum() / total),
            "confusion": confusion.tolist()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--sizes", type=int, nargs="+", default=[64, 32])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--csv-n", type=int, default=600)
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
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        csv_row = csv_agreement(120 if args.quick else args.csv_n, 64, Path(tmp))
    machine = f"{platform.machine()}, {torch.get_num_threads()} threads"
    res_dir = Path(__file__).parent / "results"
    stem = "skin_tone_quick" if args.quick else "skin_tone"
    (res_dir / f"{stem}.json").write_text(json.dumps({"machine": machine, "date": time.strftime("%Y-%m-%d"),
                                                      "rows": rows, "csv": csv_row}, indent=2) + "\n")
    lines = [f"# Skin tone from pixels vs synthderm's true type ({machine}, {time.strftime('%Y-%m-%d')})", "",
             "| images | px | exact | within one | flagged | corr(ITA) | median abs. ITA error | skin share | "
             "ms / image |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['n']} | {r['image_size']} | {r['exact']:.3f} | {r['within_one']:.3f} | {r['flagged']} | "
                     f"{r['ita_corr']:.3f} | {r['ita_median_abs_error']:.2f}° | {r['skin_fraction_mean']:.2f} | "
                     f"{r['ms_per_image']:.1f} |")
    lines += ["", f"Through the CSV loader ({csv_row['source']}; {csv_row['n']} synthderm images of seed 1 at "
              f"{csv_row['image_size']} px, types given in the table): exact **{csv_row['exact']:.3f}**, within one "
              f"**{csv_row['within_one']:.3f}**, {csv_row['flagged']} flagged.", "",
              "| true \\ ITA | 1 | 2 | 3 | 4 | 5 | 6 |", "|---|---|---|---|---|---|---|"]
    lines += [f"| {t + 1} | " + " | ".join(map(str, row)) + " |" for t, row in enumerate(csv_row["confusion"])]
    for r in rows:
        lines += ["", f"Confusion at {r['image_size']} px (rows: true type I–VI; columns: ITA category 1–6):", "",
                  "| true \\ ITA | 1 | 2 | 3 | 4 | 5 | 6 |", "|---|---|---|---|---|---|---|"]
        lines += [f"| {t + 1} | " + " | ".join(map(str, row)) + " |" for t, row in enumerate(r["confusion"])]
    (res_dir / f"{stem}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
