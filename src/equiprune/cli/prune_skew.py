"""`equiprune prune skew`: label-free skewness pruning (SkewPrune)."""
from __future__ import annotations

import argparse

from .common import FINETUNE_LR, add_runtime_args, add_train_args, done, train_config_from_args

EPILOG = """\
examples:
  equiprune prune skew --run runs/base --out runs/skew                       # CNN: every conv layer
  equiprune prune skew --run runs/base --layers features.16 features.18 --out runs/skew
  equiprune prune skew --run runs/vit --out runs/vit-skew                    # ViT: patches + heads, frozen embedding
  equiprune prune skew --run runs/vit --vit-heads --freeze none --out runs/vit-heads
Components whose activation map is negatively skewed over the image (a broad,
skin-like response) are cut, with no skin-tone labels; then the model is
fine-tuned. metrics.json records the counts cut, MACs / parameters / latency
before and after, and the premise check (skewness against SNNL-Fair);
plots/ holds the skewness histogram and the skewness-vs-SNNL scatter.
Stopping the command and running it again resumes where it stopped.
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("skew", help="SkewPrune: cut negatively skewed (skin-like) filters, patches, heads",
                       description="Label-free pruning by activation skewness (Paxton et al. 2025).",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", required=True, help="run folder holding the model to prune")
    p.add_argument("--out", required=True, help="new run folder for the pruned model")
    g = p.add_argument_group("pruning")
    g.add_argument("--layers", nargs="+", default=["all"], metavar="LAYER",
                   help="CNN conv layers to prune: 'all' (default) or module paths such as features.18")
    g.add_argument("--threshold", type=float, default=0.0,
                   help="cut components whose median skewness is not above this (default 0)")
    g.add_argument("--aggregate", choices=["median", "mean"], default="median",
                   help="how per-image skewness is aggregated over images (default median)")
    g.add_argument("--relu", action="store_true", help="score the post-ReLU map instead of the raw map")
    g.add_argument("--no-after-bn", action="store_true",
                   help="score the conv output even when a BatchNorm follows it")
    g.add_argument("--keep-constant", action="store_true",
                   help="keep components whose map is constant on every image (default: cut them)")
    g.add_argument("--max-fraction", type=float, default=0.9,
                   help="cut at most this fraction of a layer / block (default 0.9; one always stays)")
    g.add_argument("--min-positions", type=int, default=4,
                   help="do not score maps with fewer spatial positions (default 4; with --layers all such "
                        "layers are skipped)")
    g.add_argument("--vit-patches", action="store_true", help="ViT: cut patch-embedding components")
    g.add_argument("--vit-heads", action="store_true", help="ViT: cut attention heads")
    g.add_argument("--head-query", choices=["cls", "mean"], default="cls",
                   help="head skewness from the CLS token's attention (default) or averaged over queries")
    g.add_argument("--freeze", choices=["auto", "none", "embed", "all-but-head"], default="auto",
                   help="fine-tuning: none, embed (freeze the ViT patch embedding), all-but-head (train the "
                        "classifier only); auto = embed for ViTs, none for CNNs")
    g.add_argument("--score-split", choices=["val", "train", "test"], default="val",
                   help="split the skewness is measured on (default val)")
    g.add_argument("--score-batch-size", type=int, default=128,
                   help="scoring batch size, also the SNNL batch of the premise check (default 128)")
    g.add_argument("--max-images", type=int, default=None, help="score at most this many images")
    g.add_argument("--no-premise", action="store_true", help="skip the SNNL-Fair premise check")
    g.add_argument("--no-latency", action="store_true", help="do not time the model in the cost report")
    add_train_args(p, epochs=2, prefix="finetune-", title="fine-tuning after the cut")
    add_runtime_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from .. import api
    from ..methods.skewprune import SkewPruneConfig

    ft = train_config_from_args(args, prefix="finetune-", seed=args.seed, device=args.device,
                                progress=not args.quiet, default_lr=FINETUNE_LR)
    layers = "all" if args.layers == ["all"] else list(args.layers)
    patches, heads = args.vit_patches, args.vit_heads
    if not patches and not heads:  # neither flag: both cuts
        patches = heads = True
    cfg = SkewPruneConfig(layers=layers, threshold=args.threshold, aggregate=args.aggregate, relu=args.relu,
                          after_bn=not args.no_after_bn, keep_constant=args.keep_constant,
                          max_fraction=args.max_fraction, min_positions=args.min_positions,
                          vit_patches=patches, vit_heads=heads,
                          head_query=args.head_query, freeze=args.freeze, score_split=args.score_split,
                          score_batch_size=args.score_batch_size, max_images=args.max_images,
                          premise=not args.no_premise, finetune=ft, latency=not args.no_latency,
                          seed=args.seed, progress=not args.quiet)
    result, plots = api.prune_skew(args.run, cfg, args.out)
    c, red = result.counts, result.cost["reduction_pct"]
    if result.kind == "vit":
        print(f"cut {c['patch_components_removed']} of {c['embed_dim_before']} patch-embedding components and "
              f"{c['heads_removed']} of {c['heads_before']} heads")
    else:
        print(f"cut {c['filters_removed']} of {c['filters_before']} filters ({100 * c['filters_fraction']:.1f}%)")
    change = lambda key: f"{-red[key]:+.1f}%" if red.get(key) == red.get(key) else "n/a"  # noqa: E731 (NaN)
    print(f"change vs the input model: MACs {change('macs')}, parameters {change('params')}, "
          f"latency {change('latency_ms')}; "
          f"val macro-F1 {result.val['start']['f1']:.4f} -> {result.val['finetuned']['f1']:.4f} "
          f"(fine-tuned, freeze={result.freeze})")
    for name, p in result.premise.items():
        print(f"premise {name}: Spearman(skewness, SNNL-Fair) {p['spearman']:+.3f} over {p['n']} components")
    done("run folder", args.out)
    if plots:
        done("plots", ", ".join(str(x) for x in plots))
    print(f"next: equiprune audit --run {args.out}")
    return 0
