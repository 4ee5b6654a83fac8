"""The comparison page renders in a real browser (headless Chromium): tables present, every image loads."""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from equiprune.engine import RunDir
from equiprune.methods.audit import AuditConfig, audit_model
from equiprune.report import compare_runs

pytestmark = pytest.mark.browser

CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)),
                None)

# Counts, once the page has loaded, the images that decoded to a non-empty bitmap
# and writes the counts into the DOM, where --dump-dom can read them. It is added
# to a copy of the page only: the page itself carries no script.
PROBE = """<script>
window.addEventListener('load', function () {
  var imgs = document.images, ok = 0;
  for (var i = 0; i < imgs.length; i++) { if (imgs[i].complete && imgs[i].naturalWidth > 0) ok++; }
  var d = document.createElement('div');
  d.id = 'probe'; d.setAttribute('data-total', imgs.length); d.setAttribute('data-loaded', ok);
  d.setAttribute('data-tables', document.querySelectorAll('table').length);
  var t1 = document.querySelectorAll('table.table1'), right = 0;
  for (var j = 0; j < t1.length; j++) { right = Math.max(right, t1[j].getBoundingClientRect().right); }
  d.setAttribute('data-table1', t1.length); d.setAttribute('data-right', Math.ceil(right));
  d.setAttribute('data-width', document.documentElement.clientWidth);
  document.body.appendChild(d);
});
</script>"""


class _Toy(torch.utils.data.Dataset):
    def __init__(self, n: int = 200, c: int = 3, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.labels = rng.integers(0, c, n)
        self.groups = (rng.random(n) < 0.35).astype(np.int64)
        self.classes, self.group_names = [f"c{i}" for i in range(c)], ["light", "dark"]
        self.centres = rng.normal(size=(c, 3))
        mean = self.centres[self.labels] * np.where(self.groups == 1, 0.4, 1.0)[:, None]
        self.x = torch.tensor(mean[:, :, None, None] + 2.0 * rng.normal(size=(n, 3, 4, 4)), dtype=torch.float32)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        return self.x[i], int(self.labels[i]), int(self.groups[i]), i


def _model(ds: _Toy, noise: float, seed: int) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    m = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 3))
    with torch.no_grad():
        m[2].weight.copy_(torch.tensor(ds.centres, dtype=torch.float32) + noise * torch.randn(3, 3, generator=g))
        m[2].bias.zero_()
    return m


def _run(root: Path, name: str, audit: dict, kind: str) -> Path:
    rd = RunDir(root / name)
    rd.write_config({"kind": kind, "data": {"name": "toy"}, "arch": {"name": "toy"}, "settings": {}})
    rd.set_section("audit", audit)
    return rd.path


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed (`apt-get install chromium`; "
                                             ".ci/run installs it)")
def test_comparison_page_renders_tables_and_images(tmp_path):
    """Thirteen runs (four methods x three seeds and their baseline): images decode, every row is there, and
    both Table 1s (per run, mean ± sd) end inside a 1,400 px window (issue 22's screenshot check)."""
    ds = _Toy()
    cfg = AuditConfig(n_boot=50, latency=False, device="cpu")
    base = audit_model(_model(ds, 1.0, 1), ds, cfg)
    runs = [_run(tmp_path, "base", base.to_dict(), "train")]
    names = [f"{m}-seed{s}" for m in ("scp-fairprune", "random", "l1", "finetune") for s in (0, 1, 2)]
    for i, name in enumerate(names):
        a = audit_model(_model(ds, 0.1 + 0.05 * i, 5 + i), ds, cfg, baseline=base.predictions)
        runs.append(_run(tmp_path, name, a.to_dict(), "scp"))
    res = compare_runs(runs, out_dir=tmp_path / "cmp")
    page = res.html_path.read_text()
    n_img = len(re.findall(r"<img\b", page))
    n_tables = page.count("<table")
    assert n_img >= 2 and n_tables >= 3

    probe = tmp_path / "cmp" / "probe.html"
    probe.write_text(page.replace("</body>", PROBE + "</body>"))
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-extensions",
           "--window-size=1400,1000", "--hide-scrollbars",
           f"--user-data-dir={tmp_path / 'profile'}", "--run-all-compositor-stages-before-draw",
           "--virtual-time-budget=10000", "--dump-dom", probe.as_uri()]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=90)
    except subprocess.TimeoutExpired:
        pytest.fail("headless Chromium did not finish within 90 s")
    dom = out.stdout
    assert "<table" in dom, f"Chromium produced no DOM (exit {out.returncode}): {out.stderr[-800:]}"
    m = re.search(r'<div id="probe" data-total="(\d+)" data-loaded="(\d+)" data-tables="(\d+)" '
                  r'data-table1="(\d+)" data-right="(\d+)" data-width="(\d+)"', dom)
    assert m, "the load probe did not run; rendered DOM tail: " + dom[-500:]
    total, loaded, tables, table1, right, width = map(int, m.groups())
    assert total == n_img and loaded == n_img, f"{loaded} of {total} images decoded"
    assert tables == n_tables
    # The Table 1 rows for every run made it into the rendered page.
    for name in ["base", *names]:
        assert re.search(rf'<th scope="row">{name}</th>', dom)
    assert 'class="best"' in dom
    assert table1 == 2 and width == 1400 and right <= width, f"Table 1 ends at {right} px in a {width} px window"
