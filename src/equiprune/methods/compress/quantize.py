"""Int8 post-training quantization on CPU (dynamic, static, quantization-aware fine-tuning).

Path: `torch.ao.quantization` (PyTorch's own, deprecated in favour of torchao
but still shipped and working in torch 2.x; torchao is a compiled wheel and its
pt2e flow needs torch.compile/inductor for int8 speed on CPU). Its warnings are
silenced inside this module, never globally.

- dynamic: every `nn.Linear` becomes an int8 dynamic-quantized Linear
  (per-channel symmetric int8 weights, activations quantized on the fly). The
  right choice for ViTs; for CNNs only the classifier head changes.
- static: FX graph mode (`prepare_fx` / `convert_fx`) with the default qconfig
  of the backend (x86/fbgemm: per-channel weights, reduce_range activations;
  qnnpack: per-tensor). Conv+BN(+ReLU) and Linear(+ReLU) are fused, observers
  are calibrated on `calibration_size` un-augmented training images chosen with
  `calibration_seed`, and the graph runs int8 end to end between a quantize at
  its input and a dequantize at its output.
- qat: like static, but the observed model (fake quantization) is fine-tuned
  with `engine.fit` for `qat.epochs` epochs before conversion.

How static models are cut into graphs. The model's own forward is traced with
its top-level children as leaves (ResNet: conv1, bn1, ..., layer4, avgpool,
flatten, fc; VGG: features, avgpool, flatten, classifier). Each maximal chain
of consecutive top-level children that feed only each other (conv1 ... avgpool;
fc) becomes one quantized graph (`Int8Stage`) in place of the chain's first
child, and the other children of the chain are replaced by `Int8Absorbed`
(identity). The model class and its forward stay the same; between two stages
the activations are float (one dequantize/quantize per boundary: one boundary
for VGG and ResNet, at the flatten).

Saving and loading (no code is ever unpickled). A quantized model is saved by
`models.save_checkpoint` like any other: its state dict holds int8 tensors
(weights, scales, zero points) and its structure record holds, for each
`Int8Stage`, the recipe to rebuild the *empty* quantized graph: the arch
recipe, the chain's members, their (possibly pruned) float structure and
tensor shapes, the mode and the backend. On load, `Int8Stage.from_structure`
rebuilds the float chain, prepares and converts it the same way (one forward
of a fixed random batch stands in for calibration) and `load_state_dict` then
overwrites every scale, zero point and int8 weight with the saved ones, so a
reloaded model computes exactly what the saved one did. Dynamic Linear layers
are a registered subclass (`Int8DynamicLinear`). Quantized Linear weights are
stored as plain tensors (the legacy layout torch reads when a state dict has no
version metadata, which is what `load_checkpoint` gives it) instead of
torch's (weight, bias) tuple, which `save_checkpoint` cannot store.
Import `equiprune.methods.compress` before `load_checkpoint` so that these
module types are registered.
"""
from __future__ import annotations

import copy
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Subset

from ...engine import RunDir, TrainConfig, fit, make_loader
from ...models import build_model, example_input, input_size, model_structure, register_module_type, serialized_size
from .base import CompressError, CompressResult, copy_model, measure_cost, quiet_quantization

with quiet_quantization():
    import torch.ao.nn.quantized.dynamic as nnqd
    from torch.ao.nn.quantized.modules.linear import LinearPackedParams
    from torch.ao.quantization import (get_default_qat_qconfig_mapping, get_default_qconfig_mapping,
                                       per_channel_dynamic_qconfig)
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx, prepare_qat_fx

MODES = ("dynamic", "static", "qat")
BACKENDS = ("x86", "fbgemm", "qnnpack", "onednn")
_PACKED = "_packed_params."


def set_backend(backend: str) -> None:
    """Make `backend` torch's quantized engine (the kernels int8 modules run and pack for)."""
    engines = [e for e in torch.backends.quantized.supported_engines if e != "none"]
    if backend not in engines:
        raise CompressError(f"quantization backend {backend!r} is not available in this torch build; "
                            f"available: {', '.join(engines)}")
    if torch.backends.quantized.engine != backend:
        torch.backends.quantized.engine = backend


class _PlainPackedParams(LinearPackedParams):
    """Packed int8 Linear weights that save as plain `weight` / `bias` tensors of their parent.

    torch saves packed Linear weights as a (weight, bias) tuple plus a dtype
    entry, which `save_checkpoint` cannot store; the parent-level `weight` /
    `bias` layout is the one torch's quantized Linear reads from a state dict
    without version metadata (what `load_checkpoint` hands it), so loading
    needs no special code. A missing bias is stored as zeros (same output).
    """

    def _parent_prefix(self, prefix: str) -> str:
        if not prefix.endswith(_PACKED):
            raise CompressError(f"packed Linear parameters at an unexpected place ({prefix!r})")
        return prefix[: -len(_PACKED)]

    def _save_to_state_dict(self, destination: dict, prefix: str, keep_vars: bool) -> None:
        weight, bias = self._weight_bias()
        if bias is None:
            bias = torch.zeros(weight.shape[0], dtype=torch.float32)
        parent = self._parent_prefix(prefix)
        destination[parent + "weight"] = weight
        destination[parent + "bias"] = bias.detach()

    def _load_from_state_dict(self, state_dict: dict, prefix: str, local_metadata: dict, strict: bool,
                              missing_keys: list, unexpected_keys: list, error_msgs: list) -> None:
        parent = self._parent_prefix(prefix)
        # Legacy loads are relocated by the parent to `prefix + weight`; versioned
        # (in-process) state dicts leave them at the parent's prefix.
        for base in (prefix, parent):
            if base + "weight" in state_dict:
                self.set_weight_bias(state_dict.pop(base + "weight"), state_dict.pop(base + "bias", None))
                return
        if prefix + "_packed_params" in state_dict:  # torch's own tuple layout
            state_dict.pop(prefix + "dtype", None)
            self.set_weight_bias(*state_dict.pop(prefix + "_packed_params"))
            return
        missing_keys.append(parent + "weight")


def _plain_packed(module: nn.Module) -> nn.Module:
    """Make every quantized layer inside `module` saveable by `save_checkpoint`.

    LinearPackedParams become `_PlainPackedParams`; quantized convolutions
    without a bias get a zero bias (torch would save `None`, which a checkpoint
    cannot hold; adding zero changes no output).
    """
    for parent in list(module.modules()):
        child = getattr(parent, "_packed_params", None)
        if isinstance(child, LinearPackedParams) and not isinstance(child, _PlainPackedParams):
            new = _PlainPackedParams(dtype=child.dtype)
            new.set_weight_bias(*child._weight_bias())
            parent._packed_params = new
        elif type(parent).__module__.startswith(("torch.ao.nn.quantized.modules.conv",
                                                 "torch.ao.nn.intrinsic.quantized")) \
                and callable(getattr(parent, "bias", None)) and callable(getattr(parent, "set_weight_bias", None)):
            weight = parent.weight()
            if parent.bias() is None and weight.is_quantized:
                parent.set_weight_bias(weight, torch.zeros(weight.shape[0], dtype=torch.float32))
    return module


@register_module_type
class Int8DynamicLinear(nnqd.Linear):
    """torch's dynamic int8 Linear, saveable with `save_checkpoint` and rebuilt on load."""

    def __init__(self, in_features: int, out_features: int, bias_: bool = True, dtype: torch.dtype = torch.qint8
                 ) -> None:
        super().__init__(in_features, out_features, bias_, dtype=dtype)
        _plain_packed(self)

    def structure_attrs(self) -> dict[str, Any]:
        return {"q_bias": self.bias() is not None}

    @classmethod
    def from_structure(cls, attrs: dict[str, Any]) -> "Int8DynamicLinear":
        return cls(int(attrs["in_features"]), int(attrs["out_features"]), bool(attrs.get("q_bias", True)))

    def _load_from_state_dict(self, state_dict: dict, prefix: str, local_metadata: dict, strict: bool,
                              missing_keys: list, unexpected_keys: list, error_msgs: list) -> None:
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)
        # torch picks the activation rounding (reduce_range) from the state dict version,
        # which a checkpoint does not carry; keep the behaviour of a freshly quantized layer.
        self.version = 4


@register_module_type
class Int8Absorbed(nn.Identity):
    """Stands in for a top-level child whose computation moved into the preceding Int8Stage."""

    @classmethod
    def from_structure(cls, attrs: dict[str, Any]) -> "Int8Absorbed":
        return cls()


@register_module_type
class Int8Stage(nn.Module):
    """A statically quantized FX graph replacing a chain of top-level children (see module docstring)."""

    def __init__(self, body: nn.Module, recipe: dict[str, Any]) -> None:
        super().__init__()
        self.body = body
        self.recipe = recipe

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def structure_attrs(self) -> dict[str, Any]:
        return {"recipe": self.recipe}

    @classmethod
    def from_structure(cls, attrs: dict[str, Any]) -> "Int8Stage":
        return _rebuild_stage(attrs["recipe"])


@dataclass
class QuantConfig:
    """Settings of `quantize`.

    `mode`: dynamic | static | qat. `backend`: x86 (default), fbgemm, qnnpack
    or onednn. `calibration_size` un-augmented training images (drawn with
    `calibration_seed`) calibrate static/qat observers. `qat` is the
    fine-tuning of the qat mode (a small learning rate; epochs >= 1).
    """

    mode: str = "static"
    backend: str = "x86"
    calibration_size: int = 256
    calibration_seed: int = 0
    batch_size: int = 64
    qat: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=1, lr=1e-3, schedule="none"))
    latency: bool = True

    def validate(self) -> None:
        if self.mode not in MODES:
            raise CompressError(f"quantization mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.backend not in BACKENDS:
            raise CompressError(f"backend must be one of {', '.join(BACKENDS)}, got {self.backend!r}")
        if self.mode != "dynamic" and self.calibration_size < 1:
            raise CompressError("calibration_size must be >= 1 for static and qat quantization")
        if self.mode == "qat" and self.qat.epochs < 1:
            raise CompressError("qat mode needs at least one fine-tuning epoch (qat.epochs >= 1)")


# ---------------------------------------------------------------------------- dynamic


def quantize_dynamic_linear(model: nn.Module) -> tuple[nn.Module, list[str]]:
    """Replace every plain nn.Linear (in place) by an int8 dynamic Linear; returns the layer paths.

    The attention output projections of nn.MultiheadAttention are a Linear
    subclass that attention reads weights from directly, so they stay float.
    """
    names = [n for n, m in model.named_modules() if type(m) is nn.Linear]
    with quiet_quantization():
        for name in names:
            module = model.get_submodule(name)
            module.qconfig = per_channel_dynamic_qconfig
            q = Int8DynamicLinear.from_float(module)
            del module.qconfig
            parent_name, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent_name) if parent_name else model, child, q)
    return model, names


# ---------------------------------------------------------------------------- static


class _TopLevelTracer(torch.fx.Tracer):
    """Traces a model's own forward treating every top-level child as one opaque call."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return (module_qualified_name != "" and "." not in module_qualified_name) or \
            super().is_leaf_module(m, module_qualified_name)


def _has_weights(module: nn.Module) -> bool:
    return any(isinstance(m, (nn.Conv2d, nn.Linear)) for m in module.modules())


def plan_stages(model: nn.Module) -> list[list[str]]:
    """Chains of top-level children that can each become one quantized graph (see module docstring)."""
    try:
        graph = _TopLevelTracer().trace(model)
    except Exception as exc:  # data-dependent control flow in the model's forward
        raise CompressError(f"static quantization cannot trace this model's forward ({exc}); "
                            "use mode='dynamic'") from None
    calls: dict[str, int] = {}
    for node in graph.nodes:
        if node.op == "call_module":
            calls[node.target] = calls.get(node.target, 0) + 1
    chains: list[list[str]] = []
    prev = None
    for node in graph.nodes:
        is_child = node.op == "call_module" and calls[node.target] == 1
        if not is_child:
            prev = None
            continue
        linked = (prev is not None and len(node.args) == 1 and node.args[0] is prev and not node.kwargs
                  and len(prev.users) == 1)
        if linked:
            chains[-1].append(node.target)
        else:
            chains.append([node.target])
        prev = node
    stages = [c for c in chains if any(_has_weights(model.get_submodule(n)) for n in c)]
    if not stages:
        raise CompressError("no Conv2d/Linear layer of this model can be statically quantized")
    return stages


def _stage_input_shapes(model: nn.Module, stages: list[list[str]], image_size: int) -> list[list[int]]:
    shapes: dict[str, list[int]] = {}
    handles = []
    for members in stages:
        def hook(_m: nn.Module, args: tuple, name: str = members[0]) -> None:
            shapes[name] = [1, *args[0].shape[1:]]
        handles.append(model.get_submodule(members[0]).register_forward_pre_hook(hook))
    try:
        with torch.no_grad():
            model.eval()(example_input(image_size))
    finally:
        for h in handles:
            h.remove()
    return [shapes[m[0]] for m in stages]


def _chain(model: nn.Module, members: list[str]) -> nn.Sequential:
    return nn.Sequential(OrderedDict((n, model.get_submodule(n)) for n in members))


def _prepare(chain: nn.Sequential, mode: str, backend: str, example: torch.Tensor) -> nn.Module:
    with quiet_quantization():
        if mode == "qat":
            return prepare_qat_fx(chain.train(), get_default_qat_qconfig_mapping(backend), (example,))
        return prepare_fx(chain.eval(), get_default_qconfig_mapping(backend), (example,))


def _convert(prepared: nn.Module) -> nn.Module:
    with quiet_quantization():
        return _plain_packed(convert_fx(prepared.eval()))


def _stage_recipe(float_model: nn.Module, members: list[str], input_shape: list[int], mode: str, backend: str,
                  arch: dict[str, Any] | None) -> dict[str, Any]:
    def mine(path: str) -> bool:
        return path.split(".")[0] in members

    return {
        "arch": {k: arch[k] for k in ("name", "num_classes", "width", "image_size") if k in arch} if arch else None,
        "members": list(members),
        "float_structure": {p: r for p, r in model_structure(float_model).items() if p and mine(p)},
        "float_shapes": {k: [int(s) for s in v.shape] for k, v in float_model.state_dict().items() if mine(k)},
        "input_shape": [int(s) for s in input_shape],
        "mode": mode,
        "backend": backend,
    }


def _rebuild_stage(recipe: dict[str, Any]) -> Int8Stage:
    """An empty quantized graph of the same structure as the saved one (weights come from the state dict)."""
    from ...models.checkpoint import _apply_structure, _reshape_tensors

    if not recipe.get("arch"):
        raise CompressError("this quantized model was made without its arch recipe (build_model arguments), "
                            "so it cannot be rebuilt from a checkpoint; quantize it again with `arch=`")
    set_backend(recipe["backend"])
    model = build_model(**recipe["arch"])
    _apply_structure(model, recipe["float_structure"])
    _reshape_tensors(model, {k: torch.empty(s) for k, s in recipe["float_shapes"].items()})
    gen = torch.Generator().manual_seed(0)
    chain = _chain(model, recipe["members"])
    with torch.no_grad():  # finite stand-in values; the state dict replaces all of them
        for p in chain.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.01)
        for m in chain.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_var is not None:
                m.running_mean.zero_()
                m.running_var.fill_(1.0)
    example = torch.randn(recipe["input_shape"], generator=gen)
    # No calibration: uncalibrated observers give placeholder scales (and the histogram
    # search, the slow part of conversion, is skipped); load_state_dict replaces them.
    prepared = _prepare(chain, recipe["mode"], recipe["backend"], example)
    return Int8Stage(_convert(prepared), recipe)


def calibration_subset(splits: Any, size: int, seed: int) -> tuple[Any, list[int]]:
    """`size` items of the un-augmented training split drawn with `seed`, and their indices."""
    train = splits.train
    if hasattr(train, "with_transform") and getattr(splits, "test", None) is not None:
        train = train.with_transform(splits.test.transform)
    n = len(train)
    if n == 0:
        raise CompressError("the training split is empty; static quantization needs calibration images")
    idx = np.sort(np.random.default_rng(seed).choice(n, size=min(size, n), replace=False)).tolist()
    return Subset(train, idx), idx


def _static(float_model: nn.Module, splits: Any, cfg: QuantConfig, image_size: int, arch: dict[str, Any] | None,
            run_dir: str | Path | RunDir | None) -> tuple[nn.Module, dict[str, Any]]:
    if splits is None:
        raise CompressError(f"{cfg.mode} quantization calibrates on training images: pass the data splits")
    stages = plan_stages(float_model)
    shapes = _stage_input_shapes(float_model, stages, image_size)
    work = copy.deepcopy(float_model)
    prepared: list[nn.Module] = []
    for members, shape in zip(stages, shapes):
        chain = _chain(copy.deepcopy(float_model), members)
        p = _prepare(chain, cfg.mode, cfg.backend, torch.randn(shape))
        prepared.append(p)
        setattr(work, members[0], p)
        for n in members[1:]:
            setattr(work, n, Int8Absorbed())
    calib, idx = calibration_subset(splits, cfg.calibration_size, cfg.calibration_seed)
    history: list[dict[str, Any]] = []
    with quiet_quantization():
        if cfg.mode == "qat":
            # Observers start from the calibration batches, then fake-quantized fine-tuning.
            work.eval()
            with torch.no_grad():
                for x, *_ in make_loader(calib, cfg.batch_size):
                    work(x)
            res = fit(work, splits, cfg.qat, run_dir=run_dir, state_name="qat_state.pt")
            work, history = res.model.cpu(), res.history
        else:
            work.eval()
            with torch.no_grad():
                for x, *_ in make_loader(calib, cfg.batch_size):
                    work(x)
    qmodel = work
    for members, shape in zip(stages, shapes):
        p = qmodel.get_submodule(members[0])
        setattr(qmodel, members[0], Int8Stage(_convert(p), _stage_recipe(float_model, members, shape, cfg.mode,
                                                                          cfg.backend, arch)))
    details = {"stages": stages, "calibration_indices": idx, "calibration_size": len(idx),
               "qat_epochs": cfg.qat.epochs if cfg.mode == "qat" else 0, "qat_history": history}
    return qmodel.eval(), details


def int8_layers(model: nn.Module) -> list[str]:
    """Module paths of quantized (int8-weight) modules."""
    out = []
    for name, m in model.named_modules():
        if type(m).__module__.startswith(("torch.ao.nn.quantized", "torch.ao.nn.intrinsic.quantized")) \
                or isinstance(m, Int8DynamicLinear):
            w = getattr(m, "weight", None)
            if callable(w):
                try:
                    if w().dtype == torch.qint8:
                        out.append(name)
                except (RuntimeError, AttributeError):
                    pass
    return out


def quantize(model: nn.Module, splits: Any = None, cfg: QuantConfig | None = None,
             run_dir: str | Path | RunDir | None = None, arch: dict[str, Any] | None = None,
             image_size: int | None = None) -> CompressResult:
    """Int8-quantize a copy of `model` for CPU inference.

    `splits` is needed for static/qat (calibration images, QAT training);
    `arch` (the build_model recipe) is needed to save and reload a static/qat
    model. The returned cost takes MACs and parameter counts from the float
    model (same arithmetic, int8) and measures size and latency on the int8 one.
    """
    cfg = cfg or QuantConfig()
    cfg.validate()
    set_backend(cfg.backend)
    size = image_size or input_size(arch, model, splits)
    float_model = copy_model(model)
    if cfg.mode == "dynamic":
        qmodel, names = quantize_dynamic_linear(copy_model(model))
        if not names:
            raise CompressError("dynamic quantization found no nn.Linear layer to quantize")
        details: dict[str, Any] = {"layers": names}
    else:
        qmodel, details = _static(float_model, splits, cfg, size, arch, run_dir)
    qmodel.eval()
    with quiet_quantization():
        cost = measure_cost(qmodel, size, latency=cfg.latency, reference=float_model)
    details.update({"mode": cfg.mode, "backend": cfg.backend, "int8_layers": int8_layers(qmodel),
                    "float_size_bytes": serialized_size(float_model)})
    return CompressResult(model=qmodel, technique=f"quant-{cfg.mode}", param=cfg.mode, cost=cost, details=details,
                          arch=dict(arch) if arch else None)
