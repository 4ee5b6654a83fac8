"""`equiprune prune METHOD`: the pruning recipes, one sub-verb each."""
from __future__ import annotations

import argparse
import importlib

# method name → module in this package providing register(subparsers)
METHODS = {"scp": "prune_scp", "cut-response": "prune_cut_response", "fairprune": "prune_fairprune",
           "skew": "prune_skew"}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("prune", help="prune a trained model to make it fairer (scp, fairprune, obd, skew; "
                                     "cut-response checks SCP)",
                       description="Prune the model of a run folder into a new run folder. "
                                   "Methods: scp (Sensitive Channel Pruning, with its controls), "
                                   "cut-response (SCP's premise: the gap after cuts, before fine-tuning), "
                                   "fairprune and obd (Hessian saliency), skew (label-free skewness).")
    methods = p.add_subparsers(dest="method", metavar="METHOD")
    for name, module_name in METHODS.items():
        try:
            module = importlib.import_module(f".{module_name}", __package__)
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.endswith(module_name):
                continue
            raise
        module.register(methods)
    p.set_defaults(func=lambda args: p.print_help() or 1)
