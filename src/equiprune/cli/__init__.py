"""The `equiprune` command: one verb per job, each a thin layer over `equiprune.methods`."""
from __future__ import annotations

import argparse
import importlib
import os
import sys
import warnings

from .. import __version__

# Verb modules, in the order `--help` lists them; each has register(subparsers).
VERBS = ("demo", "train", "audit", "prune", "mitigate", "compress", "reprogram", "influence", "cluster",
         "summarize", "stress_groups", "report", "compare")

DESCRIPTION = """\
Audit and repair the demographic fairness of image classifiers.

A typical session (every verb writes a run folder; --run reads one):
  equiprune demo                                          # everything, on synthetic data
  equiprune train --data synthderm --model vgg11 --width 0.25 --out runs/base
  equiprune audit --run runs/base                         # per-group metrics + report.html
  equiprune prune scp --run runs/base --out runs/scp      # Sensitive Channel Pruning
  equiprune mitigate groupdro --run runs/base --out runs/dro  # what users pick instead of pruning
  equiprune report runs/base runs/scp                     # comparison page
Run `equiprune VERB --help` for each verb's options.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="equiprune", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"equiprune {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help="on an error, print the full Python traceback (for bug reports) instead of one sentence")
    sub = parser.add_subparsers(dest="verb", metavar="VERB")
    for verb in VERBS:
        try:
            module = importlib.import_module(f".{verb}", __name__)
        except ModuleNotFoundError as exc:  # a verb whose module is not in this build
            if exc.name and exc.name.startswith(__name__):
                continue
            raise
        module.register(sub)
    return parser


def _sentence(exc: BaseException) -> str:
    """The message of an expected error; an OS error from outside equiprune's writers as 'file: reason'."""
    if isinstance(exc, OSError) and exc.filename and exc.strerror:
        return f"{exc.filename}: {exc.strerror}"
    return str(exc)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; returns the exit status."""
    warnings.filterwarnings("ignore", category=UserWarning, module="torch.ao")
    os.environ.setdefault("PYTHONWARNINGS", "ignore::DeprecationWarning")
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--"]:  # `torchrun ... -m equiprune -- VERB ...` on Pythons that keep the "--"
        argv = argv[1:]
    if "--debug" in argv:  # a global option, accepted after the verb too
        argv = ["--debug"] + [a for a in argv if a != "--debug"]
    debug = "--debug" in argv or bool(os.environ.get("EQUIPRUNE_DEBUG"))
    parser = build_parser()
    args = parser.parse_args(argv)
    from ..engine.distributed import init_distributed, is_main_process
    init_distributed()
    if not getattr(args, "func", None):
        parser.print_help()
        return 1
    try:
        result = args.func(args)
    except KeyboardInterrupt:
        print("\ninterrupted: nothing finished is lost; run the same command again to resume.",
              file=sys.stderr)
        return 130
    except (ValueError, OSError) as exc:  # bad input, a busy / read-only / full output folder: one sentence
        if debug:
            raise
        if is_main_process():
            print(f"error: {_sentence(exc)}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - anything else is a bug: still one sentence unless --debug
        if debug:
            raise
        if is_main_process():
            print(f"error: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''} (unexpected; run "
                  "the same command with --debug for the traceback, and report it)", file=sys.stderr)
        return 1
    return int(result or 0)
