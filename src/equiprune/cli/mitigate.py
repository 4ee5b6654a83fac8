"""`equiprune mitigate METHOD`: fine-tune a trained run with a bias-mitigation method."""
from __future__ import annotations

import argparse

from .common import FINETUNE_LR, add_runtime_args, add_train_args, done, train_config_from_args

EPILOG = """\
examples:
  equiprune mitigate groupdro --run runs/base --out runs/groupdro
  equiprune mitigate advref --run runs/base --lam 0.5 --out runs/advref
  equiprune mitigate postprocess --run runs/base --tolerance 0.02 --out runs/post
  equiprune prune scp --run runs/hsic --out runs/scp-hsic     # SCP on top of a method
  equiprune mitigate fme --run runs/base --threshold 0.9 --out runs/fme   # multi-exit, early exit at θ 0.9
The model of --run is fine-tuned with the method for the same budget as the
pruning verbs' fine-tuning at their defaults (10 epochs, Adam, lr 1e-4), so
the comparison with `prune scp --scorer none` (fine-tune only) is like for
like. Stop it at any time: the same command resumes from the last epoch.
"""


def register(sub: argparse._SubParsersAction) -> None:
    from ..methods.mitigate import methods
    from ..methods.mitigate.base import default_mitigation_train, method_fields

    listing = "\n".join(f"  {s.name:<19} {s.summary}" + ("  [needs the group at inference]"
                                                         if s.group_at_inference else "")
                        for s in methods().values())
    p = sub.add_parser("mitigate", help="fine-tune a run with a bias-mitigation method (GroupDRO, adversarial, ...)",
                       description="Fine-tune the model of a run folder with a bias-mitigation method into a new "
                                   "run folder.\n\nmethods:\n" + listing,
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    ms = p.add_subparsers(dest="method", metavar="METHOD")
    budget = default_mitigation_train()
    for spec in methods().values():
        m = ms.add_parser(spec.name, help=spec.summary, description=f"{spec.label}: {spec.summary}.\n"
                          f"Source: {spec.source}.\nGroup at inference: "
                          f"{'needed' if spec.group_at_inference else 'not needed'}.",
                          formatter_class=argparse.RawDescriptionHelpFormatter)
        m.add_argument("--run", required=True, help="run folder holding the model to start from")
        m.add_argument("--out", required=True, help="new run folder for the mitigated model")
        own = m.add_argument_group(spec.name)
        for f in method_fields(spec.config):
            kind = type(f.default) if f.default is not None else str
            own.add_argument(f"--{f.name.replace('_', '-')}", type=kind, default=f.default,
                             help=spec.config.HELP.get(f.name, f"default {f.default}"))
        if spec.trains:
            add_train_args(m, epochs=budget.epochs, title="fine-tuning", select_on=budget.select_on)
        add_runtime_args(m)
        m.set_defaults(func=run, spec_name=spec.name)
    p.set_defaults(func=lambda args: p.print_help() or 1)


def run(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from ..api import mitigate
    from ..methods.mitigate import get_method
    from ..methods.mitigate.base import config_from_options, method_fields

    spec = get_method(args.spec_name)
    own = {f.name: getattr(args, f.name) for f in method_fields(spec.config)}
    cfg = config_from_options(spec.config, own, seed=args.seed, progress=not args.quiet)
    if spec.trains:
        ft = train_config_from_args(args, seed=args.seed, device=args.device, progress=not args.quiet,
                                    default_lr=FINETUNE_LR)
        cfg = replace(cfg, finetune=ft)
    result = mitigate(args.run, cfg, args.out)
    t = result.test
    print(f"{spec.label}: test macro-F1 {t['f1']:.3f}, Eodd {t['eodd']:.3f}, accuracy {t['acc_g0']:.3f} / "
          f"{t['acc_g1']:.3f} by group")
    if spec.group_at_inference:
        print("this model needs each item's group at inference (equiprune's verbs pass it)")
    done("run folder", args.out)
    print(f"next: equiprune audit --run {args.out}")
    return 0
