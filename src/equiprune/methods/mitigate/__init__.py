"""Mitigation methods: what users pick instead of pruning, under the same budget and controls.

`equiprune mitigate METHOD --run RUN --out OUT` fine-tunes a run's model with
a method; `equiprune train --method METHOD` trains from scratch with it. Each
method is one module (its docstring names the paper and equation and says
whether the group is needed at inference); `base` holds the contract,
`registry` the list, `core` the runner.
"""
from .base import MethodSpec, Mitigation, MitigationConfig, default_mitigation_train
from .core import MitigationResult, mitigate_from_run, run_mitigation, train_with_method
from .registry import METHOD_MODULES, get_method, method_names, methods, spec_for

__all__ = ["METHOD_MODULES", "MethodSpec", "Mitigation", "MitigationConfig", "MitigationResult",
           "default_mitigation_train", "get_method", "method_names", "methods", "mitigate_from_run",
           "run_mitigation", "spec_for", "train_with_method"]
