"""Pictures of a reprogramming run: the trigger, and the accuracy–fairness trade-off of a λ sweep."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ..data.atomic import atomic_write
from ..models.trigger import Trigger


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


@contextmanager
def _figure(path: str | Path, panels: int = 1, size: tuple[float, float] = (5.6, 4.2)) -> Iterator[tuple[Any, Any]]:
    """A figure of `panels` axes side by side (each `size` inches), written to `path` as a PNG on exit.

    The PNG is written to a temporary name and renamed, so an interrupted run
    never leaves a half-written picture behind.
    """
    plt = _pyplot()
    path = Path(path)
    fig, axes = plt.subplots(1, panels, figsize=(size[0] * panels, size[1]), squeeze=False)
    try:
        yield fig, axes[0]
        fig.tight_layout()
        atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=120, format="png"))
    finally:
        plt.close(fig)


def _show_image(ax: Any, image: np.ndarray, title: str) -> None:
    """An image panel: pixels as they are (no smoothing), a small title, no axes."""
    ax.imshow(image, interpolation="nearest")
    ax.set_title(title, fontsize=9)
    ax.axis("off")


def trigger_image(trigger: Trigger) -> np.ndarray:
    """The trigger as an H×W×3 image in [0, 1]: value v shown as (v + 1) / 2, grey outside the trigger."""
    with torch.no_grad():
        pat = trigger.pattern().detach().cpu()
        img = (pat + 1) / 2 * trigger.mask.cpu() + 0.5 * (1 - trigger.mask.cpu())
    img = img.clamp(0, 1).permute(1, 2, 0).numpy()
    return np.repeat(img, 3, axis=2) if img.shape[2] == 1 else img[..., :3]


def save_trigger_png(trigger: Trigger, path: str | Path, example: torch.Tensor | None = None) -> Path:
    """Write the trigger (and, given a normalised example image, that image with the trigger) as a PNG."""
    path = Path(path)
    with _figure(path, panels=1 if example is None else 2, size=(3.2, 3.4)) as (_, axes):
        _show_image(axes[0], trigger_image(trigger),
                    f"{trigger.kind} trigger ({trigger.size}px)\nvalue v shown as (v+1)/2")
        if example is not None:
            with torch.no_grad():
                x = example.unsqueeze(0).to(trigger.weight.device)
                pixels = trigger.apply_pixels(x * trigger.std + trigger.mean)[0].clamp(0, 1).cpu()
            _show_image(axes[1], pixels.permute(1, 2, 0).numpy(), "an input with the trigger")
    return path


def plot_tradeoff(rows: Sequence[dict[str, Any]], baseline: dict[str, Any], path: str | Path,
                  fair_metric: str = "eodd", title: str | None = None) -> Path:
    """Macro-F1 against the fairness gap, one point per λ, with bootstrap interval bars.

    Every row (and `baseline`) carries ``f1``, ``f1_lo``, ``f1_hi`` and the same
    for `fair_metric`; rows also ``lam`` and ``significant`` (the paired
    interval of the gap's change lies below 0), drawn filled.
    """
    path = Path(path)
    with _figure(path) as (fig, axes):
        _tradeoff_axes(fig, axes[0], rows, baseline, fair_metric, title)
    return path


def _tradeoff_axes(fig: Any, ax: Any, rows: Sequence[dict[str, Any]], baseline: dict[str, Any],
                   fair_metric: str, title: str | None) -> None:
    """Draw the trade-off of `plot_tradeoff` on `ax`."""

    def err(r: dict[str, Any], k: str) -> list[list[float]]:
        return [[max(0.0, r[k] - r[f"{k}_lo"])], [max(0.0, r[f"{k}_hi"] - r[k])]]

    ax.errorbar(baseline[fair_metric], baseline["f1"], xerr=err(baseline, fair_metric), yerr=err(baseline, "f1"),
                fmt="s", color="black", capsize=3, label="frozen model (no trigger)")
    xs = [r[fair_metric] for r in rows]
    ys = [r["f1"] for r in rows]
    ax.plot(xs, ys, "-", color="tab:blue", alpha=0.4)
    for r in rows:
        ax.errorbar(r[fair_metric], r["f1"], xerr=err(r, fair_metric), yerr=err(r, "f1"), fmt="o",
                    color="tab:blue", mfc="tab:blue" if r.get("significant") else "white", capsize=3)
    fig.canvas.draw()  # fixes the axis limits, so label positions can be compared in pixels
    placed: list[tuple[float, float]] = []
    for r in rows:
        # Move a label up until it clears the ones already placed (close λ give close points).
        px, py = ax.transData.transform((r[fair_metric], r["f1"]))
        dy = 4.0
        while any(abs(px - qx) < 45 and abs(py + dy - qy) < 11 for qx, qy in placed):
            dy += 11
        placed.append((px, py + dy))
        ax.annotate(f"λ={r['lam']:g}", (r[fair_metric], r["f1"]), textcoords="offset pixels", xytext=(5, dy),
                    fontsize=8)
    ax.set_xlabel(f"{fair_metric} (lower is fairer)")
    ax.set_ylabel("macro-F1")
    ax.set_title(title or "Fairness reprogramming: accuracy–fairness trade-off", fontsize=10)
    ax.plot([], [], "o", color="tab:blue", label=f"with trigger, per λ (filled: {fair_metric} reduced,\npaired 95% CI of the change below 0)")
    ax.legend(fontsize=7, loc="best")
    ax.grid(alpha=0.3)


def save_trigger_grid(triggers: Sequence[Trigger], titles: Sequence[str], path: str | Path) -> Path:
    """Several triggers side by side (e.g. one per λ of a sweep) in one PNG."""
    path = Path(path)
    with _figure(path, panels=max(1, len(triggers)), size=(2.6, 2.9)) as (fig, axes):
        for ax, t, title in zip(axes, triggers, titles):
            _show_image(ax, trigger_image(t), title)
        fig.suptitle("fairness triggers (value v shown as (v+1)/2)", fontsize=9)
    return path


def write_reprogram_pictures(result: Any) -> Path | None:
    """``trigger.png`` of a reprogramming run (the trigger, and beside it an example image behind it).

    `result` is a `ReprogramResult` (its run folder) or a `ReprogramRunResult`;
    returns None when the run has no folder.
    """
    res = getattr(result, "result", result)
    rd = res.run
    if rd is None:
        return None
    return save_trigger_png(res.trigger, rd.file("trigger.png"), example=res.example)


def write_sweep_pictures(sweep: Any) -> Path | None:
    """A λ sweep's ``tradeoff.png`` (macro-F1 against the gap, paired reductions marked) and ``trigger.png``
    (every λ's trigger), and each λ run's own ``trigger.png``; returns the trade-off plot's path."""
    for r in sweep.runs:
        write_reprogram_pictures(r)
    if sweep.run is None:
        return None
    crit, split = sweep.criterion, sweep.split
    plot_rows = [{**r, "significant": r.get(f"{crit}_reduced", False)} for r in sweep.rows]
    trigger_kind = sweep.runs[0].result.config.trigger if sweep.runs else ""
    sweep.plot = plot_tradeoff(plot_rows, sweep.baseline, sweep.run.file("tradeoff.png"), fair_metric=crit,
                               title=f"Fairness reprogramming ({trigger_kind}, {crit}) on the {split} split")
    save_trigger_grid([r.result.trigger for r in sweep.runs], [f"λ={r['lam']:g}" for r in sweep.rows],
                      sweep.run.file("trigger.png"))
    return sweep.plot

