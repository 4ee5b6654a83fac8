import numpy as np
import pytest
import torch

from equiprune.engine import TrainConfig
from equiprune.methods.prune_loop import LoopConfig, PruneStep, channels_to_cut, run_prune_loop
from equiprune.methods.scp import SCPConfig, run_scp
from equiprune.models import build_model
from equiprune.scoring import Scorer
from conftest import TinyGroupDataset, TinySplits

ARCH = {"name": "vgg11", "num_classes": 3, "width": 0.125, "image_size": 32}


@pytest.fixture
def splits32():
    return TinySplits(TinyGroupDataset(160, size=32, seed=1), TinyGroupDataset(64, size=32, seed=2),
                      TinyGroupDataset(64, size=32, seed=3))


def _model():
    torch.manual_seed(0)
    return build_model(**ARCH)


def _ft(epochs=1):
    return TrainConfig(epochs=epochs, batch_size=32, lr=1e-4, optimizer="adam", select_on="last", progress=False)


def test_channels_to_cut():
    cfg = LoopConfig(ratio=0.02)
    assert channels_to_cut(64, cfg) == 2 and channels_to_cut(10, cfg) == 1
    assert channels_to_cut(3, LoopConfig(n=5)) == 2  # never all


def test_stops_at_max_iters_and_cuts_lowest(splits32):
    calls = []

    def score(model, layer):
        k = model.get_submodule(layer).out_channels
        calls.append(k)
        return np.arange(k, dtype=float)[::-1]  # the last channels score lowest

    cfg = LoopConfig(n=3, max_iters=2, th_acc=1.0, th_fair=-1.0, finetune=_ft(0), progress=False)
    res = run_prune_loop(_model(), splits32, cfg, score)
    assert calls == [64, 61]
    assert res.removed == [[61, 62, 63], [58, 59, 60]]
    assert "max_iters" in res.stop_reason and len(res.history) == 3
    assert res.history[-1]["channels"] == 58


def test_accuracy_rule_stops_and_excludes_iteration(splits32):
    cfg = LoopConfig(n=60, max_iters=5, th_acc=-1.0, th_fair=-1.0, finetune=_ft(0), progress=False)
    res = run_prune_loop(_model(), splits32, cfg, lambda m, l: np.zeros(m.get_submodule(l).out_channels))
    assert len(res.history) == 2 and "macro-F1" in res.stop_reason
    assert res.best_iter == 0 and not res.history[1]["eligible"]
    assert res.model.get_submodule(res.layer).out_channels == 64  # the unpruned model is returned


def test_fairness_rule(splits32):
    cfg = LoopConfig(n=2, max_iters=5, th_acc=1.0, th_fair=10.0, finetune=_ft(0), progress=False)
    res = run_prune_loop(_model(), splits32, cfg, lambda m, l: np.zeros(m.get_submodule(l).out_channels))
    assert len(res.history) == 2 and "fairness gain" in res.stop_reason


def test_a_start_model_without_gap_logs_fate_as_undefined(splits32):
    # A model that always predicts class 0 has Eodd 0 before and after any cut, so FATE divides by 0.
    model = _model()
    with torch.no_grad():
        model.classifier[-1].weight.zero_()
        model.classifier[-1].bias.copy_(torch.tensor([10.0, 0.0, 0.0]))
    lines = []
    cfg = LoopConfig(n=2, max_iters=2, th_acc=1.0, th_fair=-1.0, finetune=_ft(0), progress=False)
    res = run_prune_loop(model, splits32, cfg, lambda m, l: np.zeros(m.get_submodule(l).out_channels),
                         log=lines.append)
    assert res.history[0]["val_eodd"] == 0 and len(res.history) == 3
    assert all(np.isnan(r["fate"]) for r in res.history[1:]) and res.best_iter == 0
    assert "FATE undefined (the start model's val eodd is 0: no gap to reduce)" in lines[1]
    assert lines[-1].startswith("selected iteration 0, the start model: FATE undefined")
    assert "nan" not in " ".join(lines).lower()


def test_resume_continues_after_last_iteration(tmp_path, splits32):
    cfg = LoopConfig(n=2, max_iters=1, th_acc=1.0, th_fair=-1.0, finetune=_ft(1), progress=False)
    score = lambda m, l: np.arange(m.get_submodule(l).out_channels, dtype=float)  # noqa: E731
    run_prune_loop(_model(), splits32, cfg, score, run_dir=tmp_path, arch=ARCH)
    # "interrupted" after iteration 1: raise the budget and run the same folder again
    cfg2 = LoopConfig(n=2, max_iters=3, th_acc=1.0, th_fair=-1.0, finetune=_ft(1), progress=False)
    seen = []

    class Score2(Scorer):  # records the iterations the loop asks it to score
        def for_iteration(self, k):
            seen.append(k)
            return self

        def __call__(self, m, l):
            return score(m, l)
    score2 = Score2()
    res = run_prune_loop(_model(), splits32, cfg2, score2, run_dir=tmp_path, arch=ARCH)
    # the first run stopped at its max_iters and recorded it, so nothing more runs
    assert seen == [] and len(res.history) == 2
    # a run interrupted mid-way (no stop recorded) resumes at the next iteration
    import json
    mj = tmp_path / "metrics.json"
    data = json.loads(mj.read_text())
    data["history"][-1]["stop"] = None
    mj.write_text(json.dumps(data))
    res = run_prune_loop(_model(), splits32, cfg2, score2, run_dir=tmp_path, arch=ARCH)
    assert seen == [2, 3] and [r["iter"] for r in res.history] == [0, 1, 2, 3]
    assert res.history[3]["channels"] == 58


@pytest.mark.parametrize("scorer", ["snnl", "random", "l1", "none"])
def test_scp_and_controls_run(splits32, scorer):
    cfg = SCPConfig(scorer=scorer, n=4, max_iters=1, th_acc=1.0, th_fair=-1.0, finetune=_ft(1),
                    score_batch_size=32, progress=False)
    res = run_scp(_model(), splits32, cfg, arch=ARCH)
    cut = res.loop.removed[0]
    assert len(cut) == (0 if scorer == "none" else 4)
    if scorer == "snnl":
        # the channels cut are the lowest-scoring ones of the unpruned model
        assert set(cut) == set(np.argsort(res.scores_before, kind="stable")[:4].tolist())


def test_mask_mode_keeps_shape_and_zeroes(splits32):
    cfg = SCPConfig(scorer="l1", n=4, max_iters=1, th_acc=1.0, th_fair=-1.0, finetune=_ft(1), surgery="mask",
                    progress=False)
    model = _model()
    res = run_scp(model, splits32, cfg, arch=ARCH)
    conv = res.loop.model.get_submodule(res.loop.layer)
    assert conv.out_channels == 64
    cut = res.loop.removed[0]
    if res.loop.best_iter == 1:
        assert torch.all(conv.weight[cut] == 0)


def test_scp_run_folder_gets_iteration_and_score_plots(tmp_path, splits32):
    from equiprune.engine import RunDir
    from equiprune.report.prune_plots import save_prune_plots

    rd = RunDir(tmp_path / "scp")
    rd.write_config({"kind": "scp-snnl", "settings": {"fair_metric": "eodd"}})
    cfg = SCPConfig(scorer="snnl", n=4, max_iters=1, th_acc=1.0, th_fair=-1.0, finetune=_ft(0),
                    score_batch_size=32, progress=False)
    res = run_scp(_model(), splits32, cfg, run_dir=rd, arch=ARCH)
    rd.set_section("selection", {"best_iter": res.loop.best_iter})
    assert save_prune_plots(rd.path)
    import json
    sections = json.loads((rd.path / "report_sections.json").read_text())
    assert [sec["title"] for sec in sections] == ["Pruning iterations and SNNL-Fair scores"]
    assert "Premise check of the start model" in sections[0]["text"]
    pngs = sorted((rd.path / "plots").glob("section-*.png"))
    assert len(pngs) == 2 and all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
    snnl = json.loads((rd.path / "metrics.json").read_text())["snnl_scores"]
    assert len(snnl["before"]) == 64 and len(snnl["after"]) == 64 - 4 * res.loop.best_iter


def test_scp_scores_each_model_once_and_reuses_known_scores(tmp_path, splits32, monkeypatch):
    import equiprune.scoring.snnl as scp_mod  # the SNNL-Fair scorer's functions
    from equiprune.scoring import ScoringError

    calls = []
    real = scp_mod.snnl_fair_scores

    def counting(model, layer, *a, **k):
        calls.append(layer)
        return real(model, layer, *a, **k)

    real_null = scp_mod.snnl_null_check

    def counting_null(model, layer, *a, **k):
        calls.append("null:" + layer)
        return real_null(model, layer, *a, **k)

    monkeypatch.setattr(scp_mod, "snnl_fair_scores", counting)
    monkeypatch.setattr(scp_mod, "snnl_null_check", counting_null)
    cfg = SCPConfig(scorer="snnl", n=4, max_iters=2, th_acc=1.0, th_fair=-1.0, finetune=_ft(0),
                    score_batch_size=32, progress=False)
    res = run_scp(_model(), splits32, cfg, run_dir=tmp_path / "a", arch=ARCH)
    # before (= iteration 1, with the shuffled-group premise check in the same pass), iteration 2, after:
    # three passes, not four
    assert len(calls) == 3 and calls[0].startswith("null:")
    import json
    null = json.loads((tmp_path / "a" / "metrics.json").read_text())["snnl_scores"]["null"]
    assert len(null["null_scores"]) == cfg.null_draws and "channels of" in null["sentence"]
    assert set(res.loop.removed[0]) == set(np.argsort(res.scores_before, kind="stable")[:4].tolist())
    calls.clear()
    again = run_scp(_model(), splits32, cfg, run_dir=tmp_path / "a", arch=ARCH)  # finished: nothing to score
    assert calls == [] and np.array_equal(again.scores_after, res.scores_after)
    # a control given the baseline's scores scores only the final model
    ctl = SCPConfig(**{**cfg.__dict__, "scorer": "random"})
    out = run_scp(_model(), splits32, ctl, arch=ARCH, scores_before=res.scores_before)
    assert len(calls) == 1 and np.array_equal(out.scores_before, res.scores_before)
    with pytest.raises(ScoringError, match="output channels"):
        run_scp(_model(), splits32, ctl, arch=ARCH, scores_before=res.scores_before[:10])


@pytest.mark.parametrize("keep", [True, False])
def test_keep_zeros_preserves_an_unstructured_parents_zeros(splits32, tmp_path, keep):
    from equiprune.models import load_checkpoint

    model = _model()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():  # an unstructured-pruned parent: 40% of the first conv and first classifier layer
        for p in (model.features[0].weight, model.classifier[0].weight):
            p.mul_(torch.rand(p.shape, generator=g) > 0.4)
    zero_conv = model.features[0].weight == 0
    cfg = SCPConfig(scorer="l1", n=2, max_iters=1, th_acc=1.0, th_fair=-1.0, finetune=_ft(1), keep_zeros=keep,
                    progress=False)
    res = run_prune_loop(model, splits32, cfg, lambda m, layer: np.arange(64.0), run_dir=tmp_path, arch=ARCH)
    assert res.history[1]["removed"] == [0, 1]
    tuned, _, _ = load_checkpoint(tmp_path / "iterations" / "1" / "model.pt")  # after the cut and fine-tuning
    w = tuned.features[0].weight
    if keep:
        assert torch.all(w[zero_conv] == 0)
        # classifier[0] lost the input columns of the 2 cut channels; its other zeros are all still there
        assert int((tuned.classifier[0].weight == 0).sum()) > 0.35 * tuned.classifier[0].weight.numel()
    else:
        assert not torch.all(w[zero_conv] == 0)


def test_scp_on_an_unstructured_fairprune_run_keeps_its_zeros(runs, tmp_path):
    import json

    from equiprune.methods.fairprune import FairPruneConfig, fairprune_from_run
    from equiprune.methods.runs import open_run
    from equiprune.methods.scp import scp_from_run

    fp = tmp_path / "fp"
    fairprune_from_run(runs["base"], FairPruneConfig(pr=0.3, max_samples_per_group=8, batch_size=8, finetune=None,
                                                     progress=False), fp)
    from equiprune.methods.prune_loop import KEEPS_ZEROS
    assert open_run(fp).extra[KEEPS_ZEROS] is True
    (fp / "masks.pt").unlink()  # the flag in the checkpoint says so, not FairPrune's masks file
    parent = open_run(fp).model
    zero_first = parent.features[0].weight == 0
    assert zero_first.float().mean() > 0.1
    cfg = SCPConfig(scorer="random", n=2, max_iters=1, th_acc=1.0, th_fair=-10.0, finetune=_ft(1),
                    null_draws=0, progress=False)
    scp_from_run(fp, cfg, tmp_path / "scp")
    assert json.loads((tmp_path / "scp" / "config.json").read_text())["settings"]["keep_zeros"] is True
    from equiprune.models import load_checkpoint
    tuned, _, _ = load_checkpoint(tmp_path / "scp" / "iterations" / "1" / "model.pt")
    assert torch.all(tuned.features[0].weight[zero_first] == 0)


class _ZeroFilterStep(PruneStep):
    """A toy step: zero the weights of one more filter of the last conv per iteration (cut saved first)."""

    evaluate_cut = True

    def __init__(self):
        self.cuts = []

    def cut(self, model, k):
        self.cuts.append(k)
        with torch.no_grad():
            model.features[18].weight[k - 1].zero_()
        return model, {"zeroed": k}

    def describe(self, rec):
        return f"zeroed filter {rec['zeroed'] - 1}"


def test_a_custom_step_runs_in_the_loop_and_resumes_after_its_saved_cut(tmp_path, splits32):
    import json

    cfg = LoopConfig(max_iters=2, th_acc=1.0, th_fair=-1.0, finetune=_ft(0), progress=False, select="last")
    step = _ZeroFilterStep()
    res = run_prune_loop(_model(), splits32, cfg, step, run_dir=tmp_path, arch=ARCH)
    assert step.cuts == [1, 2] and res.best_iter == 2
    assert [(r["iter"], r.get("stage")) for r in res.history] == [
        (0, "start"), (1, "pruned"), (1, "finetuned"), (2, "pruned"), (2, "finetuned")]
    assert res.history[-1]["zeroed"] == 2 and (tmp_path / "iterations" / "2" / "cut.pt").exists()
    assert torch.all(res.model.features[18].weight[:2] == 0) and torch.any(res.model.features[18].weight[2] != 0)
    # Interrupted after iteration 2's cut was saved: the resumed loop fine-tunes it and does not cut again.
    mj = tmp_path / "metrics.json"
    data = json.loads(mj.read_text())
    data["history"] = data["history"][:-1]
    mj.write_text(json.dumps(data))
    again = _ZeroFilterStep()
    res2 = run_prune_loop(_model(), splits32, cfg, again, run_dir=tmp_path, arch=ARCH)
    assert again.cuts == [] and [r.get("stage") for r in res2.history][-2:] == ["pruned", "finetuned"]
    assert res2.history[-1]["zeroed"] == 2 and torch.all(res2.model.features[18].weight[:2] == 0)
