"""The reprogramming pictures: panel layout, titles, PNG size, atomic writes, figures closed."""
from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("matplotlib")
import matplotlib.pyplot as plt  # noqa: E402
from PIL import Image  # noqa: E402

from equiprune.report import reprogram_plots as plots  # noqa: E402
from equiprune.models.trigger import Trigger  # noqa: E402


@pytest.fixture
def closed(monkeypatch) -> list:
    """Figures as plots.py closes them (still drawable), so their axes can be inspected."""
    seen: list = []
    real = plt.close

    def close(fig=None):
        seen.append(fig)
        real(fig)

    monkeypatch.setattr(plt, "close", close)
    return seen


def _trigger(seed: int) -> Trigger:
    return Trigger("border", image_size=16, size=3, generator=torch.Generator().manual_seed(seed))


def _png_size(path) -> tuple[int, int]:
    with Image.open(path) as im:
        return im.size


def test_trigger_png_with_example_has_two_image_panels(tmp_path, closed):
    t = _trigger(0)
    out = plots.save_trigger_png(t, tmp_path / "trigger.png", example=torch.zeros(3, 16, 16))
    assert out == tmp_path / "trigger.png" and sorted(p.name for p in tmp_path.iterdir()) == ["trigger.png"]
    assert _png_size(out) == (round(2 * 3.2 * 120), round(3.4 * 120))
    (fig,) = closed
    a, b = fig.axes
    assert a.get_title() == "border trigger (3px)\nvalue v shown as (v+1)/2"
    assert b.get_title() == "an input with the trigger"
    for ax in (a, b):
        assert not ax.axison and ax.images[0].get_interpolation() == "nearest"
    assert np.allclose(a.images[0].get_array(), plots.trigger_image(t))
    assert plt.get_fignums() == []


def test_trigger_grid_one_panel_per_trigger(tmp_path, closed):
    out = plots.save_trigger_grid([_trigger(i) for i in range(3)], ["λ=0", "λ=1", "λ=2"], tmp_path / "g.png")
    assert _png_size(out) == (round(3 * 2.6 * 120), round(2.9 * 120))
    (fig,) = closed
    assert [ax.get_title() for ax in fig.axes] == ["λ=0", "λ=1", "λ=2"]
    assert all(not ax.axison for ax in fig.axes)
    assert fig._suptitle.get_text().startswith("fairness triggers")


def test_tradeoff_plot_and_no_partial_file_on_error(tmp_path, closed):
    row = {"f1": 0.7, "f1_lo": 0.65, "f1_hi": 0.75, "eodd": 0.1, "eodd_lo": 0.05, "eodd_hi": 0.15}
    rows = [dict(row, lam=lam, significant=lam > 1) for lam in (0.5, 2.0)]
    out = plots.plot_tradeoff(rows, row, tmp_path / "tradeoff.png", title="t")
    assert _png_size(out) == (round(5.6 * 120), round(4.2 * 120))
    (fig,) = closed
    (ax,) = fig.axes
    assert ax.get_title() == "t" and ax.axison and ax.get_ylabel() == "macro-F1"
    assert [t.get_text() for t in ax.texts] == ["λ=0.5", "λ=2"]
    # A row missing a number fails while drawing: no PNG (nor temporary file), the figure is closed.
    with pytest.raises(KeyError):
        plots.plot_tradeoff([{"lam": 1.0}], row, tmp_path / "broken.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tradeoff.png"]
    assert len(closed) == 2 and plt.get_fignums() == []
