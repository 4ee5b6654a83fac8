"""Which mitigation methods exist: one module each, listed once here.

Adding a method: write its module (see `base`), then add its module name to
`METHOD_MODULES`. A module exposes `SPECS`, a tuple of `MethodSpec` (usually
one; the adversarial module offers two variants).
"""
from __future__ import annotations

import importlib
from functools import lru_cache

from .base import MethodSpec, MitigationConfig

METHOD_MODULES: tuple[str, ...] = ("plain", "reweight", "groupdro", "adversarial", "domain_independent", "hsic", "fairadabn",
                                   "postprocess", "mfd", "swa", "fme", "me_fairprune",
                                   "skin_tone_augment")


@lru_cache(maxsize=None)
def methods() -> dict[str, MethodSpec]:
    """Every method by CLI name, in `METHOD_MODULES` order."""
    out: dict[str, MethodSpec] = {}
    for module_name in METHOD_MODULES:
        module = importlib.import_module(f".{module_name}", __package__)
        for spec in module.SPECS:
            if spec.name in out:
                raise RuntimeError(f"two mitigation methods are named {spec.name!r}")
            out[spec.name] = spec
    return out


def method_names() -> list[str]:
    return list(methods())


def get_method(name: str) -> MethodSpec:
    """The method called `name`; ValueError naming the valid ones."""
    try:
        return methods()[name]
    except KeyError:
        raise ValueError(f"unknown mitigation method {name!r}; choose one of {', '.join(methods())}") from None


def spec_for(cfg: MitigationConfig) -> MethodSpec:
    """The method whose config class `cfg` is."""
    for spec in methods().values():
        if type(cfg) is spec.config:
            return spec
    raise ValueError(f"{type(cfg).__name__} is not the config of a registered mitigation method")
