"""Issue 22: a new user's own CSV data on the first try (group coding, help texts, warnings, verdicts)."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from equiprune.cli import main


def _own_csv(root: Path, n: int = 240) -> list[str]:
    """A user's table: a text skin column light/dark, a train/val/test column, 3 classes of 32-px PNGs."""
    from PIL import Image

    rng = np.random.default_rng(0)
    (root / "imgs").mkdir(parents=True)
    rows = []
    for i in range(n):
        label, skin = i % 3, ("light", "light", "dark")[(i // 3) % 3]
        img = rng.integers(0, 60, (32, 32, 3)).astype(np.uint8)
        img[:, :, label] += 150                          # the class is the bright channel
        if skin == "dark":
            img //= 2
        Image.fromarray(img).save(root / "imgs" / f"im{i}.png")
        rows.append({"file": f"im{i}.png", "diagnosis": ("nevus", "melanoma", "bcc")[label], "skin": skin,
                     "part": ("train", "train", "train", "val", "test")[(i // 9) % 5]})
    pd.DataFrame(rows).to_csv(root / "table.csv", index=False)
    return ["--data", "csv", "--metadata", str(root / "table.csv"), "--root", str(root / "imgs"),
            "--image-column", "file", "--label-column", "diagnosis", "--group-column", "skin",
            "--split-column", "part", "--image-size", "32"]


def _train_own(data: list[str], out: Path) -> list[str]:
    """The README's first-try training on the user's CSV: the map the refusal asks for, the rate a range test picks."""
    return ["train", *data, "--group-map", "light=0", "dark=1", "--group-names", "light", "dark",
            "--model", "vgg11_bn", "--width", "0.125", "--epochs", "2", "--find-lr", "--batch-size", "16", "--quiet",
            "--out", str(out)]


@pytest.fixture(scope="module")
def own_run(tmp_path_factory, one_thread):
    """One trained run on the user's CSV, at the rate `train --find-lr` picks.

    240 images: SNNL-Fair scores 128-image batches of the 144 training images.
    """
    import contextlib
    import io

    root = tmp_path_factory.mktemp("own")
    data = _own_csv(root, n=240)
    out = root / "base"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(_train_own(data, out)) == 0
    (root / "train.txt").write_text(printed.getvalue())
    return root, data, out


@pytest.fixture(scope="module")
def own_audit(own_run):
    """`audit --run` of the user's run against a copy trained with another augmentation: (exit code, stdout)."""
    import contextlib
    import io
    import shutil

    import equiprune.methods.runs as runs

    root, data, out = own_run
    other = root / "no-augment"
    shutil.copytree(out, other)
    cfg = json.loads((other / "config.json").read_text())
    cfg["data"]["augment"] = "none"
    (other / "config.json").write_text(json.dumps(cfg))
    runs._announced.clear()
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = main(["audit", "--run", str(out), "--baseline", str(other), "--n-boot", "30", "--no-latency",
                     "--quiet"])
    return code, printed.getvalue()


# ----------------------------------------------------------------------------- 1. group coding

def test_a_two_valued_text_column_without_a_map_is_refused_with_the_map_to_pass(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("EQUIPRUNE_CACHE", str(tmp_path / "cache"))
    data, out = _own_csv(tmp_path, n=30), tmp_path / "run"
    assert main(["train", *data, "--width", "0.125", "--epochs", "1", "--quiet", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "two text values, 'dark' and 'light'" in err
    assert "--group-map dark=0 light=1 --group-names dark light" in err
    assert "--group-map light=0 dark=1" in err
    assert not out.exists() and not (tmp_path / "cache").exists()


def test_every_verb_prints_the_group_coding_first_and_the_report_shows_it(own_run, own_audit):
    root, _, out = own_run
    cfg = json.loads((out / "config.json").read_text())
    line = "groups: 0 = light (skin = light); 1 = dark (skin = dark) [--group-map]"
    assert cfg["group_coding"] == line
    assert (root / "train.txt").read_text().splitlines()[0] == line
    code, printed = own_audit
    assert code == 0 and printed.splitlines()[0] == line
    page = (out / "report.html").read_text()
    assert "group coding" in page and "0 = light (skin = light)" in page


def test_every_verb_loads_its_data_through_the_one_announcing_entry():
    """mitigate, stress-groups, influence, trim, cluster, ... print the coding because none calls load_splits itself."""
    import ast

    src = Path(__file__).resolve().parents[1] / "src" / "equiprune"
    callers = sorted(str(p.relative_to(src)) for p in src.rglob("*.py") if p.parts[-2] != "data"
                     and any(isinstance(n, ast.Call) and getattr(n.func, "id", getattr(n.func, "attr", None))
                             == "load_splits" for n in ast.walk(ast.parse(p.read_text()))))
    assert callers == ["methods/runs.py"], f"load data through methods.runs.load_announced, not in {callers}"


def test_standard_codings_are_named():
    from equiprune.data import DataConfig
    from equiprune.data.loaders import _coding_line, synthderm_coding

    line = synthderm_coding(DataConfig(name="synthderm")).describe()
    assert "synthderm's coding" in line and line.startswith("groups: 0 = light (I-III)")
    ita = _coding_line(DataConfig(name="synthderm", group_source="ita", ita_threshold=20), None)
    assert ita.startswith("groups: 0 = ITA > 20° (lighter); 1 = ITA ≤ 20° (darker) [estimated from the pixels")


# ----------------------------------------------------------------------------- 10. settings messages, baselines

def test_a_settings_mismatch_names_only_the_fields_that_differ(own_run, capsys):
    root, data, out = own_run
    assert main(_train_own(data, out) + ["--seed", "1"]) == 2
    err = capsys.readouterr().err
    assert "other settings (data.seed: 0 -> 1; train.seed: 0 -> 1). Use a new --out" in err and len(err) < 300


def test_augmentation_is_not_other_data_and_a_refused_baseline_leaves_no_folder(own_run, own_audit, tmp_path,
                                                                                 capsys):
    root, data, out = own_run
    assert own_audit[0] == 0          # the baseline differs in its training augmentation only
    other = root / "no-augment"
    cfg = json.loads((other / "config.json").read_text())
    cfg["data"]["image_size"] = 40     # other images: refused, naming the one differing field
    (other / "config.json").write_text(json.dumps(cfg))
    new = tmp_path / "checkpoint-audit"
    code = main(["audit", "--checkpoint", str(out / "model.pt"), *data, "--group-map", "light=0", "dark=1",
                 "--group-names", "light", "dark", "--baseline", str(other), "--n-boot", "30", "--quiet",
                 "--out", str(new)])
    err = capsys.readouterr().err
    cfg["data"]["image_size"] = 32
    (other / "config.json").write_text(json.dumps(cfg))
    assert code == 2 and "(baseline -> this run: image_size: 40 -> 32)" in err
    assert not new.exists()


# ----------------------------------------------------------------------------- 2. training that does not learn

def test_training_warnings_read_the_history():
    from equiprune.engine.train_health import prior_loss, training_warnings

    labels = np.repeat(np.arange(10), 10)
    assert prior_loss(labels) == pytest.approx(np.log(10))
    stuck = [{"train_loss": 2.31, "train_acc": 0.1, "val_acc": 0.1}, {"train_loss": 2.30, "train_acc": 0.1,
                                                                       "val_acc": 0.1}]
    w = training_warnings(stuck, labels, labels)
    assert len(w) == 2 and "did not fall" in w[0] and "ln 10 = 2.30" in w[0] and "--find-lr" in w[0]
    assert "at chance: 0.100 against 0.100" in w[1]
    learned = [{"train_loss": 2.0, "train_acc": 0.4, "val_acc": 0.5}, {"train_loss": 0.5, "train_acc": 0.95,
                                                                         "val_acc": 0.9}]
    assert training_warnings(learned, labels, labels) == []
    still = [{"train_loss": 1.8, "train_acc": 0.3, "val_acc": 0.3}, {"train_loss": 1.2, "train_acc": 0.6,
                                                                       "val_acc": 0.55}]
    assert "still falling" in training_warnings(still, labels, labels)[0]


def test_a_rate_that_learns_nothing_is_warned(own_run, tmp_path, capsys):
    root, data, _ = own_run
    args = [*data, "--group-map", "light=0", "dark=1", "--width", "0.125", "--quiet", "--batch-size", "32",
            "--max-rows", "60"]
    assert main(["train", *args, "--epochs", "1", "--lr", "1e-7", "--out", str(tmp_path / "slow")]) == 0
    out = capsys.readouterr().out
    assert "warning: the training loss did not fall" in out and "--find-lr" in out
    metrics = json.loads((tmp_path / "slow" / "metrics.json").read_text())
    assert "did not fall" in metrics["training_warnings"][0]
    from equiprune.report.html import write_run_report
    html_path, _ = write_run_report(tmp_path / "slow")
    assert "Warning: training did not learn" in html_path.read_text()


def test_find_lr_picks_a_rate_that_learns_and_a_rerun_keeps_it(own_run, capsys):
    root, data, run = own_run
    printed = (root / "train.txt").read_text()
    found = json.loads((run / "lr_find.json").read_text())
    lr = json.loads((run / "config.json").read_text())["train"]["lr"]
    assert lr == pytest.approx(found["suggestion"]) and 1e-5 < lr < 0.1
    assert f"learning-rate range test: lr {lr:.3g}" in printed and "did not fall" not in printed
    hist = json.loads((run / "metrics.json").read_text())["history"]
    assert hist[-1]["train_loss"] < 0.9 * np.log(3)
    stamp = (run / "lr_find.json").stat().st_mtime_ns
    # the same command resumes at the same rate instead of testing again (and names the augmentation it chose)
    assert main(_train_own(data, run)) == 0
    printed = capsys.readouterr().out
    assert f"learning-rate range test: lr {lr:.3g}" in printed
    assert (run / "lr_find.json").stat().st_mtime_ns == stamp
    assert ("augmentation (training images only): light = horizontal and vertical flips and a small random crop "
            "[--augment auto picks it for csv; --augment paper for the papers' recipe") in printed


# ----------------------------------------------------------------------------- 3-5. help, augmentation, audit output

def test_help_says_what_each_augmentation_preset_does_and_the_split_values(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "rotations up to 180 degrees" in text and "AutoAugment" in text and "cutout" in text
    assert "auto (default) = paper for fitzpatrick17k, isic2019 and ham10000, light for synthderm and csv" in text
    assert "with values train, val and test" in text and "split here 70/15/15" in text


def test_a_csv_dataset_gets_the_light_preset():
    from equiprune.data import DataConfig

    assert DataConfig(name="csv").augment_preset == "light"
    assert DataConfig(name="fitzpatrick17k").augment_preset == "paper"
    assert DataConfig(name="csv", augment="paper").augment_preset == "paper"


def test_audit_prints_per_group_accuracy_and_the_paired_differences_it_announces(own_run, own_audit):
    root, data, out = own_run
    code, printed = own_audit
    audit = json.loads((out / "metrics.json").read_text())["audit"]
    acc_row = next(line for line in printed.splitlines() if line.startswith("Accuracy"))
    assert f"{audit['metrics']['acc_g0']:.3f}" in acc_row and f"{audit['metrics']['acc_g1']:.3f}" in acc_row
    assert f"overall accuracy {audit['metrics']['acc']:.3f}" in printed
    assert "paired bootstrap, this model minus the baseline" in printed
    assert "Eodd" in printed.split("paired bootstrap")[1] and "+0.000" in printed.split("paired bootstrap")[1]


# ----------------------------------------------------------------------------- 6-7. cut response: verdicts, dead channels

def _cut_section(snnl, acc_snnl, premise_advice):
    """The issue's case: every lowest-SNNL cut above the uncut Eodd 0.10; one beats the random cuts at -0.12 acc."""
    rows = [{"k": 0, "choice": "none", "draw": 0, "eodd": 0.10, "acc": 0.80, "acc_g0": 0.85, "acc_g1": 0.70}]
    for k, e, a in zip((6, 13, 26, 51), snnl, acc_snnl):
        rows.append({"k": k, "choice": "snnl", "draw": 0, "eodd": e, "acc": a, "acc_g0": a, "acc_g1": a - 0.1})
        rows += [{"k": k, "choice": "random", "draw": d, "eodd": r, "acc": 0.79, "acc_g0": 0.84, "acc_g1": 0.69}
                 for d, r in enumerate((0.12, 0.14))]
    premise = {"separating": 112, "channels": 128, "expected": 1.3, "advice": premise_advice}
    return {"layer": "features.18", "channels": 128, "rows": rows, "group_names": ["light", "dark"],
            "fair_metric": "eodd", "split": "val", "premise": premise}


def test_a_costly_win_at_one_size_among_losses_is_mixed_and_agrees_with_the_premise_check():
    from equiprune.methods.cut_response import cut_response_findings

    advice = "most channels carry the groups: ... SCP's premise (a few sensitive channels) does not hold here"
    text = " ".join(cut_response_findings(_cut_section((0.15, 0.16, 0.15, 0.11), (0.80, 0.79, 0.75, 0.68), advice)))
    assert "carry part of the gap" not in text and "as SCP assumes" not in text
    assert "The evidence is mixed, not support" in text
    assert "51 channels: accuracy -0.120, gap still at or above the uncut model's" in text
    assert "at or above 0.100 at 4 of 4 sizes" in text
    assert "This agrees with the premise check of the same model (112 of 128 channels" in text
    assert "expected), which says that most channels carry the groups" in text   # a sentence, not "which most"
    # Clean wins at every size, each cheap: support; and the same premise check then disagrees, saying why.
    text = " ".join(cut_response_findings(_cut_section((0.05, 0.06, 0.05, 0.04), (0.80, 0.80, 0.79, 0.78), advice)))
    assert "carry part of the gap, as SCP assumes" in text and "This differs from the premise check" in text
    assert "trust it for this layer" in text
    text = " ".join(cut_response_findings(_cut_section((0.15, 0.16, 0.15, 0.13), (0.80, 0.8, 0.8, 0.8), "")))
    assert "premise does not hold" in text and "channels can separate the groups without causing the gap" in text


def test_dead_channels_are_found_counted_and_the_l1_control_cuts_live_ones(tiny_splits, one_thread):
    import torch
    from equiprune.methods.cut_response import CutResponseConfig, cut_response
    from equiprune.scoring import l1_channel_scores
    from equiprune.scoring.dead import dead_channels, live_first

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(),
                                torch.nn.Conv2d(8, 16, 3, padding=1), torch.nn.ReLU(),
                                torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(16, 3)).eval()
    layer = "2"
    conv = model.get_submodule(layer)
    with torch.no_grad():
        conv.weight[:3] = 0.0               # three all-zero filters: outputs = bias
        conv.bias[:3] = -0.1
        conv.weight[3] = -conv.weight[3].abs() * 1e-3   # small filter, live
    dead = dead_channels(model, layer, tiny_splits.train)
    assert dead[:3].all() and not dead[3]
    order = np.argsort(live_first(l1_channel_scores(model, layer), dead), kind="stable")
    assert set(order[:3].tolist()).isdisjoint({0, 1, 2}) and set(order[-3:].tolist()) == {0, 1, 2}
    res = cut_response(model, tiny_splits, CutResponseConfig(layer=layer, fractions=(0.2,), choices=("l1", "random"),
                                                             random_draws=2, score_batch_size=32, progress=False),
                       image_size=16)
    assert res.dead == int(dead.sum())
    l1 = next(r for r in res.rows if r["choice"] == "l1")
    assert l1["dead"] == 0                 # the L1 control cut live channels



# ----------------------------------------------------------------------------- 8-9. compare: defaults, labelled lines

def test_compare_says_where_its_scp_settings_differ_from_prune_scp_and_lists_skew(capsys):
    from equiprune.cli import build_parser
    from equiprune.cli.compare import scp_settings_difference

    args = build_parser().parse_args(["compare", "--out", "x"])
    line = scp_settings_difference(args)
    assert "--ratio 0.05 (prune scp: 0.02)" in line and "--max-iters 3 (prune scp: 5)" in line
    assert "--finetune-epochs 1 (prune scp: 2)" in line and "th-acc" not in line
    same = build_parser().parse_args(["compare", "--out", "x", "--ratio", "0.02", "--max-iters", "5",
                                      "--finetune-epochs", "2"])
    assert "use prune scp's ratio, iterations and fine-tuning" in scp_settings_difference(same)
    with pytest.raises(SystemExit):
        main(["compare", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "skew (label-free skewness pruning)" in text and "prune scp: 0.02" in text


def test_compare_names_method_and_seed_on_every_loop_line_and_prints_the_premise_check_when_quiet(own_run, tmp_path,
                                                                                                     capsys):
    root, data, base = own_run
    args = ["compare", "--run", str(base), "--methods", "vanilla", "scp", "--seeds", "0", "--max-iters", "1",
            "--n-boot", "20", "--no-latency", "--out", str(tmp_path / "table")]
    assert main(args) == 0
    printed = capsys.readouterr().out
    loop = [line for line in printed.splitlines() if "iteration" in line.lower()]
    assert loop and all(line.startswith("[scp-seed0] ") for line in loop)
    assert main(args + ["--quiet", "--against", "vanilla"]) == 0   # finished: nothing runs again
    printed = capsys.readouterr().out
    assert "premise check (scp-seed0): " in printed and "channels of" in printed
    # 10: paired intervals against a method of the table, in the terminal and on the page
    table = printed.split("paired differences against vanilla")[1]
    row = next(line for line in table.splitlines() if line.startswith("scp-seed0"))
    assert re.search(r"base\s+[+-]\d\.\d{3} \[[+-]\d\.\d{3}, [+-]\d\.\d{3}\]", row)
    assert "Paired differences against vanilla" in (tmp_path / "table" / "compare" / "compare.html").read_text()
    # ... and `report --against` a run folder
    assert main(["report", str(base), str(tmp_path / "table" / "scp-seed0"), "--against", str(base),
                 "--out", str(tmp_path / "page")]) == 0
    printed = capsys.readouterr().out
    assert "paired differences against" in printed and "scp-seed0" in printed.split("paired differences")[1]
    assert main(["report", str(base), str(tmp_path / "table" / "scp-seed0"), "--against", "random",
                 "--out", str(tmp_path / "page")]) == 2
    assert "neither a run folder nor a method among the runs" in capsys.readouterr().err


# ----------------------------------------------------------------------------- 13. reprogram's defaults

def test_reprogram_defaults_start_from_the_frozen_model_and_the_paper_is_one_flag_away():
    from equiprune.cli import build_parser
    from equiprune.methods.reprogram import ReprogramConfig

    d, paper = ReprogramConfig(), ReprogramConfig.paper()
    assert (d.shrink, d.init, d.select_on) == (False, "zero", "val_fate")
    assert (paper.shrink, paper.init, paper.lr_trigger, paper.select_on) == (True, "uniform", 1e-4, "val_min_acc")
    args = build_parser().parse_args(["reprogram", "--run", "r", "--out", "o", "--paper-settings", "--init", "zero"])
    assert args.paper_settings and args.init == "zero" and args.shrink is None


def _tiny_reprogram(tiny_splits, **kw):
    import torch
    from equiprune.methods.reprogram import ReprogramConfig, run_reprogram
    from equiprune.models import build_model

    torch.manual_seed(0)
    model = build_model("resnet18", 3, width=0.0625, image_size=16)
    cfg = ReprogramConfig(size=2, epochs=2, batch_size=32, device="cpu", progress=False, **kw)
    return model, run_reprogram(model, tiny_splits, cfg)


def test_when_no_trigger_beats_the_frozen_model_on_validation_the_frozen_model_is_kept(tiny_splits, one_thread):
    import torch

    model, res = _tiny_reprogram(tiny_splits, lr_trigger=1e-12)   # a trigger that cannot move: FATE 0 at best
    assert res.history[0]["epoch"] == 0 and all(r["val_fate"] <= 0 for r in res.history[1:])
    assert res.kept_frozen and res.best_epoch == 0 and res.model is model
    assert res.val == pytest.approx({k: v for k, v in res.frozen_val.items()})
    x = torch.stack([tiny_splits.test[i][0] for i in range(4)])
    assert torch.equal(res.model(x), model(x))


def test_a_trigger_that_beats_the_frozen_model_on_validation_is_kept(tiny_splits, monkeypatch, one_thread):
    import equiprune.methods.reprogram.core as core

    fates = iter([-0.2, 0.3])                      # epoch 1 worse than no trigger, epoch 2 better
    monkeypatch.setattr(core, "_fate_or_nan", lambda *a: next(fates))
    _, res = _tiny_reprogram(tiny_splits, lr_trigger=1e-2)
    assert not res.kept_frozen and res.best_epoch == 2 and isinstance(res.model, core.ReprogrammedModel)


# ----------------------------------------------------------------------------- 11. latency on a shared machine

def test_latency_reports_its_spread_and_is_marked_unreliable_when_it_is_large(monkeypatch):
    import torch
    import equiprune.models.cost as cost
    from equiprune.report.tables import cost_frame

    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
    steady = cost.Latency(median=1.0, p10=0.9, p90=1.2, block_medians=[1.0, 1.05, 0.98])
    noisy = cost.Latency(median=1.0, p10=0.7, p90=5.6, block_medians=[0.8, 1.0, 4.0])
    assert steady.reliable and not noisy.reliable and noisy.spread == pytest.approx(4.9)
    real = cost.latency_stats(model, 16, repeats=9, warmup=2)
    assert real.p10 <= real.median <= real.p90 and len(real.block_medians) == 3
    monkeypatch.setattr(cost, "latency_stats", lambda *a, **k: noisy)
    c = cost.model_cost(model, 16).to_dict()
    assert c["latency_reliable"] == 0.0 and c["latency_p90_ms"] == 5.6
    text = cost_frame({"m": c}).loc["m", "Latency (ms)"]
    assert text == "1 (0.7-5.6) unreliable: busy machine"
    monkeypatch.setattr(cost, "latency_stats", lambda *a, **k: steady)
    assert cost_frame({"m": cost.model_cost(model, 16).to_dict()}).loc["m", "Latency (ms)"] == "1 (0.9-1.2)"


# ----------------------------------------------------------------------------- 12. the comparison page

def _audited(root, name, audit, kind="scp"):
    from equiprune.engine import RunDir

    rd = RunDir(root / name)
    rd.write_config({"kind": kind, "data": {"name": "toy"}, "arch": {"name": "toy"}, "settings": {}})
    rd.set_section("audit", audit)
    return rd.path


def test_a_tie_with_the_baseline_is_said_and_the_tradeoff_plot_colours_methods_and_marks_seeds(tmp_path):
    from equiprune.methods.audit import AuditConfig, audit_model
    from equiprune.report import compare_runs
    from equiprune.report.plots import tradeoff_styles

    import torch
    from conftest import TinyGroupDataset

    ds = TinyGroupDataset(120, seed=4)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(2), torch.nn.Flatten(), torch.nn.Linear(12, 3))
    cfg = AuditConfig(n_boot=30, latency=False, device="cpu")
    base = audit_model(model, ds, cfg)
    same = audit_model(model, ds, cfg, baseline=base.predictions).to_dict()   # the same model: FATE 0
    runs = [_audited(tmp_path, "base", base.to_dict(), "train")]
    runs += [_audited(tmp_path, f"{m}-seed{s}", same) for m in ("scp", "random") for s in (0, 1)]
    page = compare_runs(runs, out_dir=tmp_path / "cmp").html_path.read_text()
    text = " ".join(page.split())
    assert "they equal its baseline" in text and "best FATE" not in text
    assert "runs tie" in text
    points = [{"name": f"{m}-seed{s}", "group": m, "seed": f"seed {s}"}
              for m in ("scp", "random", "l1", "finetune", "fairprune") for s in (0, 1, 2)]
    colours, markers = tradeoff_styles(points)
    assert len(colours) == 5 and len(set(colours.values())) == 5 and len(markers) == 3
    assert len(set(markers.values())) == 3


# The Table 1 width check (1,400 px in headless Chromium) is in test_report_browser.py, on its Chromium run.


def test_the_readme_cut_response_on_the_users_csv_ends_with_its_agreement_with_the_premise_check(own_run, tmp_path,
                                                                                                   capsys):
    root, data, base = own_run
    assert main(["prune", "cut-response", "--run", str(base), "--fractions", "0.1", "0.4", "--draws", "2",
                 "--quiet", "--out", str(tmp_path / "cuts")]) == 0
    printed = capsys.readouterr().out
    assert "premise check of the same model" in printed
    section = json.loads((tmp_path / "cuts" / "metrics.json").read_text())["cut_response"]
    assert section["premise"]["channels"] == section["channels"] and "dead" in section
    assert all("dead" in r for r in section["rows"] if r["k"] > 0)
