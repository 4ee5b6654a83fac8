"""The papers' model sizes: full-width VGG-11 and ResNet-18 at 224 px (ViT-B/16 forward only).

Per model, all in one process so the ratios hold on a shared machine:

* training images/s through the real data path (synthderm at 224 px,
  DataLoader, channels_last, mixed precision on CUDA) against bare
  forward+backward on one in-memory batch: their ratio says how much the
  data path costs;
* predict images/s (`engine.predict`, the path `audit` uses);
* SNNL-Fair seconds per 1,000 images at the last conv layer
  (`scoring.snnl_fair_scores`, the path `prune scp` uses);
* peak memory: CUDA's max allocated bytes, or on CPU the process's peak RSS
  (which includes everything the process ever held, torch itself too).

    python benchmarks/bench_scale.py --quick                 # CPU: a few batches (minutes)
    python benchmarks/bench_scale.py --device cuda           # the full set, for a GPU machine

Writes benchmarks/results/scale_<device>.json and .md with the machine and date.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import time
from pathlib import Path

import torch
from torch.utils.data import Subset

from equiprune.data import DataConfig, SynthDermConfig, load_splits
from equiprune.engine import make_loader, predict
from equiprune.engine.runtime import amp_dtype, autocast, loader_workers
from equiprune.models import build_model, last_conv_name
from equiprune.scoring.snnl import snnl_fair_scores

RESULTS = Path(__file__).parent / "results"


def _peak_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _train_rate(model, batches, device, steps: int) -> float:
    """Images/s of `steps` SGD steps over `batches` (an iterator of (x, y))."""
    opt = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)
    dtype = amp_dtype(device)
    scaler = torch.amp.GradScaler("cuda", enabled=dtype == torch.float16)
    model.train()
    n, t0 = 0, None
    for i, (x, y) in enumerate(batches):
        if i == 1:  # the first step (allocations, cuDNN autotune) is not timed
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0, n = time.perf_counter(), 0
        if i > steps:
            break
        x = x.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
        y = y.to(device, non_blocking=True)
        with autocast(device):
            loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        n += len(y)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return n / (time.perf_counter() - t0)


def bench_model(name: str, splits, device: torch.device, batch: int, steps: int, n_eval: int,
                forward_only: bool) -> dict:
    torch.manual_seed(0)
    model = build_model(name, splits.num_classes, 1.0, 224).to(device).to(memory_format=torch.channels_last)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    out: dict = {"model": name, "params_M": sum(p.numel() for p in model.parameters()) / 1e6}
    if not forward_only:
        x = torch.randn(batch, 3, 224, 224)
        y = torch.randint(0, splits.num_classes, (batch,))
        out["train_img_s_in_memory"] = _train_rate(model, ((x, y) for _ in range(steps + 1)), device, steps)
        loader = make_loader(splits.train, batch, shuffle=True, drop_last=True,
                             generator=torch.Generator().manual_seed(0),
                             num_workers=loader_workers(device, None))
        out["train_img_s_real_data"] = _train_rate(model, ((b[0], b[1]) for b in loader), device, steps)
        out["data_path_ratio"] = out["train_img_s_real_data"] / out["train_img_s_in_memory"]
    test = Subset(splits.test, range(min(n_eval, len(splits.test))))
    t0 = time.perf_counter()
    predict(model, test, batch_size=batch, device=device)
    out["predict_img_s"] = len(test) / (time.perf_counter() - t0)
    if not forward_only:
        layer = last_conv_name(model)
        t0 = time.perf_counter()
        snnl_fair_scores(model, layer, test, batch_size=batch, device=device, progress=False)
        used = (len(test) // batch) * batch
        out["snnl_layer"] = layer
        out["snnl_s_per_1000_images"] = (time.perf_counter() - t0) / used * 1000
    out["peak_memory_MB"] = _peak_bytes(device) / 2**20
    print(json.dumps(out), flush=True)
    return out


def _markdown(result: dict) -> str:
    rows = ["| model | params (M) | train img/s, real data | train img/s, in memory | ratio | predict img/s | "
            "SNNL-Fair s / 1000 img | peak memory (MB) |", "|---|---|---|---|---|---|---|---|"]
    f = lambda r, k, p=1: f"{r[k]:.{p}f}" if k in r else "-"  # noqa: E731
    for r in result["models"]:
        rows.append(f"| {r['model']} | {f(r, 'params_M')} | {f(r, 'train_img_s_real_data', 2)} | "
                    f"{f(r, 'train_img_s_in_memory', 2)} | {f(r, 'data_path_ratio', 2)} | {f(r, 'predict_img_s', 2)} | "
                    f"{f(r, 'snnl_s_per_1000_images', 0)} | {f(r, 'peak_memory_MB', 0)} |")
    s = result["settings"]
    return (f"# bench_scale: full-size models at 224 px ({result['device']})\n\n"
            f"{result['date']}, {result['machine']}, torch {result['torch']}, 1-minute load average "
            f"{result['load_average_1min'][0]} at the start and {result['load_average_1min'][1]} at the end "
            f"(a shared machine: absolute rates scale with the load, the ratio much less); batch {s['batch']}, "
            f"{s['steps']} timed training steps, {s['n_eval']} images for predict and SNNL-Fair; "
            f"command: `{s['command']}`.\n\n" + "\n".join(rows) + "\n\n"
            "Peak memory on CPU is the process's peak RSS (cumulative over the models, in run order); on CUDA "
            "the allocator's peak per model. ViT-B/16 is measured forward only.\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--quick", action="store_true", help="a few batches (the CPU setting)")
    ap.add_argument("--batch", type=int, default=None)
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--models", default="vgg11,resnet18,vit_b_16")
    args = ap.parse_args()
    device = torch.device(args.device)
    quick = args.quick or device.type == "cpu"
    batch = args.batch or (4 if quick else 64)
    steps = args.steps or (2 if quick else 50)
    n_eval = 4 * batch if quick else 2000
    n_images = max(200, 4 * (steps + 2) * batch) if quick else 6000
    load_before = os.getloadavg()[0]
    splits = load_splits(DataConfig(name="synthderm", image_size=224, progress=False,
                                    synthderm=SynthDermConfig(n=n_images)))
    models = [bench_model(m, splits, device, batch, steps, n_eval, forward_only=m.startswith("vit"))
              for m in args.models.split(",")]
    cmd = " ".join(["python benchmarks/bench_scale.py", "--quick" if args.quick else f"--device {args.device}",
                    *(f"--{k} {getattr(args, k)}" for k in ("batch", "steps") if getattr(args, k))])
    result = {"device": str(device), "date": dt.date.today().isoformat(),
              "machine": f"{platform.machine()}, {torch.get_num_threads()} threads"
                         + (f", {torch.cuda.get_device_name(device)}" if device.type == "cuda" else ""),
              "torch": torch.__version__,
              # other processes' load: absolute rates scale with it, the ratios much less
              "load_average_1min": [round(load_before, 1), round(os.getloadavg()[0], 1)],
              "settings": {"batch": batch, "steps": steps, "n_eval": n_eval, "synthderm_n": n_images,
                           "command": cmd},
              "models": models}
    RESULTS.mkdir(exist_ok=True)
    stem = RESULTS / f"scale_{device.type}"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    stem.with_suffix(".md").write_text(_markdown(result))
    print(_markdown(result))


if __name__ == "__main__":
    main()
