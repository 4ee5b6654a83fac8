"""Training throughput through the real data path vs bare forward+backward on in-memory tensors.

Both are measured in the same process, one after the other, on the same model
and batch size, so the ratio is meaningful on a shared, noisy machine even
when the absolute numbers are not. Issue 2 asks for a ratio >= 0.8.

    python benchmarks/bench_throughput.py [--model vgg11 --width 0.25 --image-size 64 --steps 30]
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from equiprune.data import DataConfig, SynthDermConfig, load_splits
from equiprune.engine import TrainConfig, make_loader
from equiprune.models import build_model


def _steps(model, opt, batches, layout) -> int:
    n = 0
    for x, y in batches:
        x = x.contiguous(memory_format=layout)  # what `fit` does with every batch
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        n += len(y)
    return n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default="vgg11")
    ap.add_argument("--width", type=float, default=0.25)
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    splits = load_splits(DataConfig(name="synthderm", image_size=args.image_size,
                                    synthderm=SynthDermConfig(n=6000), progress=False))
    torch.manual_seed(0)
    model = build_model(args.model, splits.num_classes, args.width, args.image_size).train()
    # The layout and optimizer of `fit`'s defaults, on both sides.
    tc = TrainConfig()
    layout = torch.channels_last if tc.channels_last else torch.contiguous_format
    model.to(memory_format=layout)
    opt = torch.optim.Adam(model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
    loader = make_loader(splits.train, args.batch_size, shuffle=True, drop_last=True,
                         generator=torch.Generator().manual_seed(0))
    x = torch.randn(args.batch_size, 3, args.image_size, args.image_size)
    y = torch.randint(0, splits.num_classes, (args.batch_size,))
    _steps(model, opt, [(x, y)] * 3, layout)  # warm-up

    def real():
        it = iter(loader)
        return _steps(model, opt, ((b[0], b[1]) for _, b in zip(range(args.steps), it)), layout)

    def bare():
        return _steps(model, opt, [(x, y)] * args.steps, layout)

    rates = {"real": [], "bare": []}
    for _ in range(args.repeats):  # interleaved, so drifting machine load hits both alike
        for name, fn in (("bare", bare), ("real", real)):
            t0 = time.perf_counter()
            n = fn()
            rates[name].append(n / (time.perf_counter() - t0))
    best = {k: max(v) for k, v in rates.items()}
    result = {
        "model": args.model, "width": args.width, "image_size": args.image_size, "batch_size": args.batch_size,
        "images_per_s_real_loader": best["real"], "images_per_s_in_memory": best["bare"],
        "ratio": best["real"] / best["bare"], "layout": str(layout), "optimizer": "adam", "machine": f"{platform.machine()}, {torch.get_num_threads()} threads",
        "torch": torch.__version__,
    }
    out = Path(__file__).parent / "results" / "throughput.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
