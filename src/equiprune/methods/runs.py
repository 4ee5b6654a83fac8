"""Loading and writing run folders: the glue every method and CLI verb shares.

A run folder's config.json always holds `kind`, `data` (the DataConfig), and
`arch` (the build_model arguments); model.pt holds the (possibly pruned)
model. So any verb that takes `--run` can rebuild the model and the data.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, Callable

from torch import nn

from ..data import DataConfig, DataSplits, load_splits
from ..engine import RunDir, RunError
from ..models import input_size, load_checkpoint
from ..models.trigger import apply_reprogram_extra
from .. import surgery  # noqa: F401  (registers the module types pruned checkpoints may hold)


@dataclass
class LoadedRun:
    """A run folder opened for further work."""

    run: RunDir
    config: dict[str, Any]
    model: nn.Module
    arch: dict[str, Any]
    extra: dict[str, Any]
    data_config: DataConfig
    _splits: DataSplits | None = field(default=None, repr=False, compare=False)

    def splits(self) -> DataSplits:
        """The run's data, loaded once: a method's pre-folder check and the method itself share it."""
        if self._splits is None:
            self._splits = load_announced(self.data_config)
        return self._splits

    @property
    def image_size(self) -> int:
        """The input size the run's model is traced, costed and fed at (every verb asks here).

        `models.input_size` of the model and its recorded arch; a run whose arch
        records none falls back to its data settings' image size.
        """
        return input_size(self.arch, self.model, default=self.data_config.image_size)


_announced: set[str] = set()


def load_announced(data: DataConfig, two_groups: bool = False) -> DataSplits:
    """`load_splits`, then the group coding printed (`announce_group_coding`): how every verb loads its data.

    A verb on a run (`LoadedRun.splits`), `train`, `train --method` and
    `audit --checkpoint` all come through here, so every verb's first lines
    say which group is 0 and which is 1; `two_groups` refuses a column that
    does not give two groups, or two text values with no --group-map.
    """
    splits = load_splits(data, two_groups=two_groups)
    announce_group_coding(splits)
    return splits


def announce_group_coding(splits: DataSplits) -> None:
    """Print how the group column became groups 0 and 1, once per process (rank 0 only).

    Every verb loads its data through here or `train_from_config`, so the
    coding is on a verb's first lines; a compare or demo that loads the same
    data many times prints it once.
    """
    from ..engine import is_main_process
    line = getattr(splits, "group_coding", "")
    if line and line not in _announced and is_main_process():
        _announced.add(line)
        print(line, flush=True)


def data_config_from_dict(d: dict[str, Any]) -> DataConfig:
    """DataConfig from config.json, ignoring keys this version does not know."""
    known = {f.name for f in fields(DataConfig)}
    return DataConfig(**{k: v for k, v in d.items() if k in known})


def load_model_file(path: str | Path) -> tuple[nn.Module, dict[str, Any], dict[str, Any]]:
    """Load a model.pt written by any equiprune method: (model, arch, extra).

    Every module type a method may save is registered first, and the model of a
    reprogrammed checkpoint comes back behind its saved trigger.
    """
    from . import compress  # noqa: F401  (registers the quantized / factored module types)
    model, arch, extra = load_checkpoint(path)
    # A reprogrammed run: its model is the frozen model behind the saved trigger (models.trigger).
    return apply_reprogram_extra(model, extra), arch, extra


def open_run(path: str | Path) -> LoadedRun:
    """Open a finished run folder: its config, data settings and model."""
    rd = RunDir(path, create=False)
    cfg = rd.read_config()
    if not rd.model_path.exists():
        if cfg.get("kind") == "cut_response":
            raise RunError(f"{rd.path} is a cut-response folder (a diagnostic, it keeps no model); its results are "
                           f"in {rd.path / 'report.html'}. Pass the run it was made from ({cfg.get('parent')}).")
        raise RunError(f"{rd.path} has no {RunDir.MODEL}; did its run finish? Re-run its command to resume it.")
    if "data" not in cfg:
        raise RunError(f"{rd.path / RunDir.CONFIG} has no 'data' section; it was not written by equiprune")
    model, arch, extra = load_model_file(rd.model_path)
    return LoadedRun(run=rd, config=cfg, model=model, arch=arch, extra=extra,
                     data_config=data_config_from_dict(cfg["data"]))


def lineage(cfg: dict[str, Any]) -> list[str]:
    """Run folders this run descends from, oldest first (from `parent` links)."""
    return list(cfg.get("lineage", []))


def child_config(parent: LoadedRun, kind: str, settings: Any, **more: Any) -> dict[str, Any]:
    """config.json of a run made from `parent`: same data and arch (unless `more` gives one), new settings.

    Verbs create the folder with `start_child_run`; this builds the config of
    folders written inside it (a compress sweep's points, an order study's arms).
    """
    return {
        "kind": kind,
        "parent": str(parent.run.path.resolve()),
        "lineage": lineage(parent.config) + [str(parent.run.path.resolve())],
        "baseline": parent.config.get("baseline") or str(parent.run.path.resolve()),
        "data": asdict(parent.data_config),
        "arch": dict(parent.arch),
        "settings": asdict(settings) if hasattr(settings, "__dataclass_fields__") else settings,
        **more,
    }


def save_run_model(rd: RunDir, model: nn.Module, arch: dict[str, Any], extra: dict[str, Any] | None = None) -> Path:
    """Write the run's model.pt (weights_only-safe, pruned shapes recorded); rank 0 only under torchrun."""
    return rd.save_model(model, arch, extra)


def refuse_reprogrammed(run: LoadedRun, verb: str, made: str) -> None:
    """Raise RunError if `run` is a reprogrammed run, saying what to do instead.

    Its trigger was learned for exactly its frozen model, so a pruned or
    compressed copy would sit behind a trigger that no longer fits it. `verb`
    ("prune", "compress") names the refused step, `made` its result ("pruned").
    """
    if not run.extra.get("reprogram"):
        return
    parent = run.config.get("parent")
    where = f" ({parent})" if parent else ""
    raise RunError(f"{run.run.path} is a reprogrammed run (a trigger in front of a frozen model); {verb} its "
                   f"parent run{where} instead, then reprogram the {made} run with `equiprune reprogram --run`.")


def validate_settings(settings: Any) -> None:
    """`settings.validate()`, then that of every nested settings dataclass (the fine-tuning TrainConfig).

    A nested error names its field: ``finetune: training setting lr must be > 0``.
    """
    if hasattr(settings, "validate"):
        settings.validate()
    if not is_dataclass(settings):
        return
    for f in fields(settings):
        value = getattr(settings, f.name)
        if is_dataclass(value) and hasattr(value, "validate"):
            try:
                value.validate()
            except ValueError as exc:
                raise ValueError(f"{f.name}: {exc}") from exc


# Verbs whose result cannot sit behind a reprogrammed parent's trigger, and what each makes.
_REFUSES_REPROGRAMMED = {"prune": "pruned", "compress": "compressed", "mitigate": "mitigated"}


def start_child_run(parent: str | Path | LoadedRun, out: str | Path | RunDir, kind: str, settings: Any, *,
                    verb: str = "prune", check: Callable[[LoadedRun], None] | None = None,
                    **more: Any) -> tuple[LoadedRun, RunDir]:
    """Open the parent run and create (or resume) the child run folder `out`: every verb's one way to do it.

    `parent` is a run folder (or one already opened with `open_run`), `kind`
    the child's kind in config.json, `settings` the method's config (a
    dataclass or a dict); `more` adds top-level config.json entries (``method``
    label, ``lambdas``, an ``arch`` that differs from the parent's, ...), which
    the resume check compares like the settings.

    The child's config.json records the parent, the lineage and the vanilla
    baseline; re-running with the same settings resumes, other settings are an
    error, and `out` may not be the parent's folder. The settings (nested ones
    included, `validate_settings`), the refusal of a reprogrammed parent (for
    `verb` "prune" and "compress"; reprogramming refuses it in its own `check`)
    and `check(parent)` all run before the folder is created, so a mistyped
    option leaves no folder that a corrected command would then refuse as
    holding other settings.
    """
    validate_settings(settings)
    parent = parent if isinstance(parent, LoadedRun) else open_run(parent)
    if verb in _REFUSES_REPROGRAMMED:
        refuse_reprogrammed(parent, verb, _REFUSES_REPROGRAMMED[verb])
    if check is not None:
        check(parent)
    out_path = out.path if isinstance(out, RunDir) else Path(out)
    if out_path.resolve() == parent.run.path.resolve():
        raise RunError("--out must be a new folder, not the --run folder itself")
    rd = out if isinstance(out, RunDir) else RunDir(out)
    keys = ["kind", "parent", "data", "arch", "settings"]
    rd.check_or_write_config(child_config(parent, kind, settings, **more),
                             keys=keys + [k for k in more if k not in keys])
    return parent, rd
