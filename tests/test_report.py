"""equiprune.report: Table 1 layout, exports, plots, self-contained pages, comparisons."""
from __future__ import annotations

import io
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image as PILImage
from torch import nn

from equiprune.engine import RunDir
from equiprune.metrics import group_fairness, paired_bootstrap
from equiprune.methods.audit import AuditConfig, audit_model
from equiprune.report import (
    Cell,
    TableRow,
    add_report_section,
    compare_runs,
    explain,
    format_cell,
    make_table1,
    read_table1_csv,
    row_from_audit,
    write_run_report,
)
from equiprune.report import plots
from equiprune.report.tables import TABLE1_COLUMNS, parse_markdown_table


# ----------------------------------------------------------------------------- fixtures


class ToyDataset(torch.utils.data.Dataset):
    """Images whose mean colour encodes the class, with weaker contrast for group 1."""

    def __init__(self, n: int = 240, c: int = 3, size: int = 8, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.labels = rng.integers(0, c, n).astype(np.int64)
        self.groups = (rng.random(n) < 0.35).astype(np.int64)
        self.classes = [f"class{i}" for i in range(c)]
        self.group_names = ["light", "dark"]
        self.centres = rng.normal(size=(c, 3))
        contrast = np.where(self.groups == 1, 0.4, 1.0)[:, None]
        mean = self.centres[self.labels] * contrast
        self.x = torch.tensor(mean[:, :, None, None] + 2.0 * rng.normal(size=(n, 3, size, size)),
                              dtype=torch.float32)
        self.meta = pd.DataFrame({"label": self.labels, "group": self.groups,
                                  "fitzpatrick": np.where(self.groups == 0, rng.integers(1, 4, n),
                                                          rng.integers(4, 7, n)),
                                  "sex": rng.choice(["female", "male"], n)})

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        return self.x[i], int(self.labels[i]), int(self.groups[i]), i


def toy_model(ds: ToyDataset, noise: float, seed: int) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    m = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, len(ds.classes)))
    with torch.no_grad():
        m[2].weight.copy_(torch.tensor(ds.centres, dtype=torch.float32)
                          + noise * torch.randn(len(ds.classes), 3, generator=g))
        m[2].bias.zero_()
    return m


@pytest.fixture(scope="module")
def toy() -> ToyDataset:
    return ToyDataset()


@pytest.fixture(scope="module")
def audits(toy):
    cfg = AuditConfig(n_boot=200, latency=False, device="cpu")
    base = audit_model(toy_model(toy, 1.0, 1), toy, cfg, image_size=8)
    mitig = audit_model(toy_model(toy, 0.2, 2), toy, cfg, baseline=base.predictions, image_size=8)
    return base, mitig


def make_run(root: Path, name: str, audit: dict, kind: str = "train", settings: dict | None = None,
             history: list | None = None) -> Path:
    rd = RunDir(root / name)
    rd.write_config({"kind": kind, "data": {"name": "toy", "image_size": 8, "seed": 0},
                     "arch": {"name": "toy", "num_classes": 3, "width": 1.0, "image_size": 8},
                     "settings": settings or {}})
    if history:
        rd.set_history(history)
    rd.set_section("audit", audit)
    return rd.path


# ----------------------------------------------------------------------------- Table 1


def _hand_rows() -> list[TableRow]:
    def c(v, lo=math.nan, hi=math.nan):
        return Cell(v, lo, hi)

    return [
        TableRow("A", {"precision_g0": c(0.80, 0.7, 0.9), "precision_diff": c(0.10), "eodd": c(0.05),
                       "fate_eodd": c(0.2), "f1_avg": c(0.7)}),
        TableRow("B", {"precision_g0": c(0.85), "precision_diff": c(0.02), "eodd": c(0.09),
                       "fate_eodd": c(-0.1), "f1_avg": c(0.7)}),
        TableRow("C", {"precision_g0": c(0.60), "precision_diff": c(0.30), "eodd": c(math.nan),
                       "f1_avg": c(0.6), "recall_g1": c(0.5)}),
    ]


def test_table1_marks_best_per_column_in_the_right_direction():
    t = make_table1(_hand_rows(), ("light", "dark"))
    best = t.best
    assert best.loc["B", "precision_g0"] and not best.loc["A", "precision_g0"]   # higher is better
    assert best.loc["B", "precision_diff"] and not best.loc["C", "precision_diff"]  # Diff.: lower is better
    assert best.loc["A", "eodd"] and not best.loc["B", "eodd"]                    # gaps: lower; NaN ignored
    assert best.loc["A", "fate_eodd"] and not best.loc["B", "fate_eodd"]          # FATE: higher
    assert best.loc["A", "f1_avg"] and best.loc["B", "f1_avg"] and not best.loc["C", "f1_avg"]  # ties
    assert not best["recall_g1"].any()  # a single value has nothing to be best against
    assert int(best.to_numpy().sum()) == 6
    # Column headers carry the group names and the papers' order.
    assert list(t.frame.columns[:4]) == [("Precision", "light"), ("Precision", "dark"), ("Precision", "Avg."),
                                         ("Precision", "Diff.")]
    assert [c[0] for c in t.frame.columns[12:]] == ["Eopp0", "FATE(Eopp0)", "Eopp1", "FATE(Eopp1)", "Eodd",
                                                    "FATE(Eodd)"]
    assert t.frame.loc["A", ("Precision", "light")] == "0.800 [0.70, 0.90]"
    assert t.frame.loc["C", ("Eodd", "")] == "—"


def test_format_cell_variants():
    assert format_cell(Cell(0.8123, 0.791, 0.8349)) == "0.812 [0.79, 0.83]"
    assert format_cell(Cell(0.5)) == "0.500"
    assert format_cell(Cell(0.5, sd=0.0123, n=3)) == "0.500 ± 0.012 (n=3)"
    assert format_cell(Cell(math.nan)) == "—" and format_cell(None) == "—"


def test_markdown_round_trip_keeps_cells_and_bold_marks():
    t = make_table1(_hand_rows(), ("light", "dark"))
    headers, rows = parse_markdown_table(t.to_markdown())
    assert headers[0] == "Model" and headers[1] == "Precision light" and headers[-1] == "FATE(Eodd)"
    assert len(headers) == 1 + len(TABLE1_COLUMNS) and [r[0] for r in rows] == ["A", "B", "C"]
    for i, r in enumerate(rows):
        for j, cell in enumerate(r[1:]):
            bold = cell.startswith("**") and cell.endswith("**")
            assert bold == bool(t.best.iat[i, j])
            assert cell.strip("*") == t.frame.iat[i, j]


def test_csv_round_trip_numbers_and_aggregates(tmp_path):
    t = make_table1(_hand_rows(), ("light", "dark"))
    path = tmp_path / "t.csv"
    t.to_csv(path)
    df = pd.read_csv(path)
    assert {"precision_g0", "precision_g0_lo", "precision_g0_hi"} <= set(df.columns)
    assert df.loc[df.name == "A", "precision_g0_lo"].item() == pytest.approx(0.7)
    back = read_table1_csv(path)
    pd.testing.assert_frame_equal(back.estimate, t.estimate)
    pd.testing.assert_frame_equal(back.lo, t.lo)
    pd.testing.assert_frame_equal(back.best, t.best)
    pd.testing.assert_frame_equal(back.frame, t.frame)
    agg = make_table1([TableRow("m", {"f1_avg": Cell(0.7, sd=0.05, n=3)}), TableRow("b", {"f1_avg": Cell(0.6)})])
    back = read_table1_csv(agg.to_csv())
    assert back.frame.loc["m", ("F1", "Avg.")] == "0.700 ± 0.050 (n=3)"
    assert back.best.loc["m", "f1_avg"]


def test_html_table_has_two_header_rows_and_best_class():
    t = make_table1(_hand_rows(), ("light", "dark"))
    h = t.to_html()
    assert h.count("<tr>") + h.count("<tr ") >= 5
    assert 'colspan="4">Precision<' in h and ">dark<" in h
    assert h.count('class="best"') == int(t.best.to_numpy().sum())


# ----------------------------------------------------------------------------- audit numbers


def test_audit_model_numbers_match_metrics(toy, audits):
    base, mitig = audits
    p = mitig.predictions
    ref = group_fairness(p.y_true, p.y_pred, p.groups).to_dict()
    assert mitig.metrics == ref
    assert all(mitig.intervals[k]["estimate"] == ref[k] for k in ref)
    assert mitig.intervals["f1"]["lo"] <= mitig.intervals["f1"]["hi"]
    bref = group_fairness(base.predictions.y_true, base.predictions.y_pred, base.predictions.groups).to_dict()
    for fc in ("eopp0", "eopp1", "eodd"):
        expected = (ref["f1"] - bref["f1"]) / bref["f1"] - (ref[fc] - bref[fc]) / bref[fc]
        assert mitig.fate[f"fate_{fc}"] == pytest.approx(expected, rel=1e-12)
        assert mitig.fate_intervals[f"fate_{fc}"]["estimate"] == pytest.approx(expected, rel=1e-12)
    pb = paired_bootstrap(p.y_true, base.predictions.y_pred, p.y_pred, p.groups, n_boot=200, seed=0)
    assert mitig.paired["eodd"]["estimate"] == pytest.approx(ref["eodd"] - bref["eodd"])
    assert mitig.paired["eodd"]["lo"] == pb["eodd"].lo
    # Confusion counts: per group, the diagonal over the total is that group's accuracy.
    conf = mitig.confusion
    assert conf.shape == (2, 3, 3) and conf.sum() == len(toy)
    for g in (0, 1):
        assert np.trace(conf[g]) / conf[g].sum() == pytest.approx(ref[f"acc_g{g}"])
    # The signed F1 gap is g0 - g1 of the per-group values, with an interval.
    assert mitig.signed_gaps["f1"]["estimate"] == pytest.approx(ref["f1_g0"] - ref["f1_g1"])
    assert base.fate == {} and base.paired == {}


def test_fate_interval_is_paired(toy, audits):
    """Auditing a model against its own predictions: every paired resample has FATE exactly 0."""
    base, _ = audits
    cfg = AuditConfig(n_boot=100, latency=False, device="cpu")
    same = audit_model(toy_model(toy, 1.0, 1), toy, cfg, baseline=base.predictions)
    for k, iv in same.fate_intervals.items():
        assert iv["estimate"] == 0.0 and iv["lo"] == 0.0 and iv["hi"] == 0.0, k
        assert same.paired["f1"]["excludes_zero"] is False


def test_multigroup_audit_by_intersection(toy):
    from equiprune.metrics import intersect_groups, multigroup_table

    cfg = AuditConfig(n_boot=20, latency=False, device="cpu", groups="fitzpatrick,sex")
    res = audit_model(toy_model(toy, 0.5, 3), toy, cfg)
    mg = res.multigroup
    assert mg["column"] == "fitzpatrick,sex"
    names = {r["name"] for r in mg["table"]}
    assert "type I & female" in names and "type VI & male" in names
    ig = intersect_groups(toy.meta.fitzpatrick.to_numpy(), toy.meta.sex.to_numpy())
    ref = multigroup_table(res.predictions.y_true, res.predictions.y_pred, ig.ids)
    assert sorted(r["f1"] for r in mg["table"]) == pytest.approx(sorted(ref["f1"]))
    # The paper metrics stay the default numbers.
    assert res.metrics["eodd"] == group_fairness(res.predictions.y_true, res.predictions.y_pred,
                                                 res.predictions.groups).eodd


def test_audit_model_errors(toy, audits):
    from equiprune.methods.audit import AuditError

    base, _ = audits
    short = type(base.predictions)(**{k: v[:-1] for k, v in base.predictions.to_dict().items()})
    with pytest.raises(AuditError, match="same items"):
        audit_model(toy_model(toy, 0.5, 3), toy, AuditConfig(n_boot=10, device="cpu"), baseline=short)
    with pytest.raises(AuditError, match="fitzpatrick"):
        audit_model(toy_model(toy, 0.5, 3), toy, AuditConfig(n_boot=10, device="cpu", groups="skin_colour"))
    with pytest.raises(AuditError, match="split"):
        AuditConfig(split="holdout").validate()


# ----------------------------------------------------------------------------- plots, pages


def _png_size(png: bytes) -> tuple[int, int]:
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    with PILImage.open(io.BytesIO(png)) as im:
        return im.size


def test_plots_are_pngs(audits):
    _, mitig = audits
    d = mitig.to_dict()
    w, h = _png_size(plots.group_bars_png(d))
    assert w > 300 and h > 150
    _png_size(plots.confusion_png(d))
    assert plots.history_png([]) is None
    hist = [{"epoch": e, "train_loss": 1.0 / e, "val_f1": 0.5 + 0.05 * e, "val_eodd": 0.1} for e in range(1, 5)]
    _png_size(plots.history_png(hist))
    assert plots.multigroup_png(d) is None


def test_explain_reads_the_interval_of_the_gap():
    audit = {"split": "test", "group_names": ["light", "dark"],
             "metrics": {"n": 100, "n_g0": 70, "n_g1": 30, "acc": 0.8, "f1": 0.7, "f1_g0": 0.75, "f1_g1": 0.6,
                         "eodd": 0.1, "eopp0": 0.05, "eopp1": 0.1},
             "signed_gaps": {"f1": {"estimate": 0.15, "lo": 0.05, "hi": 0.25}}}
    text = explain(audit)
    assert "The dark group has the lower macro F1" in text and "excludes 0" in text
    audit["signed_gaps"]["f1"] = {"estimate": 0.15, "lo": -0.05, "hi": 0.3}
    assert "includes 0" in explain(audit)
    audit["metrics"]["n_g1"] = 12
    assert "only 12 images" in explain(audit)


_EXTERNAL = re.compile(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", re.I)


def _assert_self_contained(html: str) -> None:
    assert not _EXTERNAL.search(html), "page refers to an external URL"
    assert "<script" not in html.lower()
    imgs = re.findall(r"<img\b[^>]*>", html)
    assert imgs, "no images"
    for tag in imgs:
        src = re.search(r'src="([^"]+)"', tag).group(1)
        assert src.startswith("data:image/png;base64,")


def test_run_report_is_self_contained_and_md_links_exist(tmp_path, audits):
    _, mitig = audits
    hist = [{"epoch": e, "train_loss": 1.0 / e, "val_f1": 0.5 + 0.05 * e} for e in range(1, 4)]
    run = make_run(tmp_path, "run", mitig.to_dict(), kind="scp", settings={"ratio": 0.02}, history=hist)
    add_report_section(run, "SNNL scores", text="Scores of the last conv layer.",
                       images=[("scores", plots.history_png(hist))])
    html_path, md_path = write_run_report(run)
    html = html_path.read_text()
    _assert_self_contained(html)
    assert "What this means" in html and "Table 1" in html and "SNNL scores" in html
    assert "ratio=0.02" in html  # method settings from config.json
    assert len(re.findall(r"<img\b", html)) == 5  # bars, confusion, history, stored section, reliability
    md = md_path.read_text()
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert len(links) == 5 and all((run / link).is_file() for link in links)
    # Rewriting the report keeps the stored section and replaces, not duplicates, it.
    add_report_section(run, "SNNL scores", text="updated")
    html = write_run_report(run)[0].read_text()
    assert html.count("SNNL scores</h2>") == 1 and "updated" in html


def test_compare_runs_groups_seeds_and_writes_files(tmp_path, toy, audits):
    base, _ = audits
    cfg = AuditConfig(n_boot=50, latency=False, device="cpu")
    b = make_run(tmp_path, "base", base.to_dict(), kind="train", settings={"seed": 0})
    runs = [b]
    for seed, noise in ((0, 0.2), (1, 0.3)):
        a = audit_model(toy_model(toy, noise, 10 + seed), toy, cfg, baseline=base.predictions)
        runs.append(make_run(tmp_path, f"scp-s{seed}", a.to_dict(), kind="scp", settings={"ratio": 0.1,
                                                                                           "seed": seed}))
    res = compare_runs(runs, out_dir=tmp_path / "cmp")
    assert res.table.names == ["base", "scp-s0", "scp-s1"]
    assert res.audited == []
    assert res.summary is not None and res.summary.names == ["train", "scp"]
    scp_f1 = [res.table.estimate.loc[n, "f1_avg"] for n in ("scp-s0", "scp-s1")]
    assert res.summary.estimate.loc["scp", "f1_avg"] == pytest.approx(np.mean(scp_f1))
    assert res.summary.sd.loc["scp", "f1_avg"] == pytest.approx(np.std(scp_f1, ddof=1))
    assert res.summary.n.loc["scp", "f1_avg"] == 2
    assert math.isnan(res.table.estimate.loc["base", "fate_eodd"])  # the baseline has no FATE
    best_eodd = res.table.estimate["eodd"].idxmin()
    assert res.table.best.loc[best_eodd, "eodd"] and res.table.best["eodd"].sum() == 1
    csv = pd.read_csv(res.csv_path)
    assert list(csv["name"]) == ["base", "scp-s0", "scp-s1"] and "eodd_lo" in csv and "run_dir" in csv
    assert res.summary_csv_path.is_file()
    html = res.html_path.read_text()
    _assert_self_contained(html)
    assert html.count("<table") >= 3 and "Mean ± spread" in html
    assert res.md_path.is_file() and (tmp_path / "cmp" / "plots").is_dir()
    # User names group runs: the same name twice is one method.
    res2 = compare_runs(runs, out_dir=tmp_path / "cmp2", names=["base", "scp", "scp"])
    assert res2.table.names == ["base", "scp (scp-s0)", "scp (scp-s1)"]
    assert res2.summary.names == ["base", "scp"]


def test_compare_runs_errors(tmp_path):
    from equiprune.engine import RunError

    with pytest.raises(RunError, match="not found"):
        compare_runs([tmp_path / "nope"])
    (tmp_path / "a").mkdir()
    with pytest.raises(RunError, match="one name per run"):
        compare_runs([tmp_path / "a"], names=["x", "y"])


def test_row_from_audit_reads_intervals_and_fate(audits):
    _, mitig = audits
    row = row_from_audit("m", mitig.to_dict())
    assert row.cells["f1_g1"].estimate == mitig.metrics["f1_g1"]
    assert row.cells["f1_g1"].lo == mitig.intervals["f1_g1"]["lo"]
    assert row.cells["fate_eodd"].estimate == mitig.fate["fate_eodd"]
    assert math.isfinite(row.cells["fate_eodd"].hi)


def test_cli_help_teaches_with_examples():
    import argparse

    from equiprune.cli import audit as audit_cli
    from equiprune.cli import report as report_cli

    parser = argparse.ArgumentParser(prog="equiprune")
    sub = parser.add_subparsers()
    audit_cli.register(sub)
    report_cli.register(sub)
    a = parser.parse_args(["audit", "--run", "r", "--groups", "fitzpatrick,sex", "--n-boot", "50"])
    assert a.run == "r" and a.groups == "fitzpatrick,sex" and a.n_boot == 50 and a.split == "test"
    r = parser.parse_args(["report", "r1", "r2", "--names", "a,b", "--out", "o"])
    assert r.runs == ["r1", "r2"] and r.names == "a,b"
    for verb in ("audit", "report"):
        text = sub.choices[verb].format_help()
        assert f"equiprune {verb} " in text and "examples:" in text


def test_run_summary_shows_the_generator_settings_only_for_synthderm():
    from equiprune.report.html import _summary_pairs

    synth = {"n": 6000, "dark_contrast": 0.45}
    real = dict(_summary_pairs(Path("r"), {"data": {"name": "csv", "group_column": "skin_type",
                                                    "synthderm": synth}}, None))
    assert "group_column=skin_type" in real["data"] and "dark_contrast" not in real["data"]
    generated = dict(_summary_pairs(Path("r"), {"data": {"name": "synthderm", "synthderm": synth}}, None))
    assert "synthderm: (n=6000, dark_contrast=0.45)" in generated["data"]
