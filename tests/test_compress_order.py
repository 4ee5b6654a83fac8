"""Order study: compress-then-SCP versus SCP-then-compress, every arm saved, audited and compared."""
from __future__ import annotations

import pandas as pd
import pytest
import torch
from conftest import TinyGroupDataset, TinySplits
from torch import nn

from equiprune.engine import RunDir, TrainConfig, fit
from equiprune.methods.audit import AuditConfig
from equiprune.methods.compress import CompressError
from equiprune.methods.compress.order import order_study
from equiprune.methods.compress.sweep import CompressConfig
from equiprune.methods.scp import SCPConfig
from equiprune.models import build_model, load_checkpoint
from equiprune.report.compress_report import write_order_outputs

SIZE = 32
ARCH = {"name": "resnet18", "num_classes": 3, "width": 0.125, "image_size": SIZE}


# Tiny models: one intra-op thread is faster than two fighting over shared cores.
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def splits() -> TinySplits:
    return TinySplits(TinyGroupDataset(128, size=SIZE, seed=1), TinyGroupDataset(48, size=SIZE, seed=2),
                      TinyGroupDataset(64, size=SIZE, seed=3))


@pytest.fixture(scope="module")
def model(splits) -> nn.Module:
    torch.manual_seed(0)
    m = build_model(**ARCH)
    return fit(m, splits, TrainConfig(epochs=1, batch_size=32, optimizer="adam", lr=3e-3, select_on="last",
                                      progress=False, device="cpu")).model.eval()


def _cfgs(method: str, sweep):
    ccfg = CompressConfig(method=method, sweep=list(sweep), audit=AuditConfig(n_boot=50, latency=False, device="cpu"),
                          latency=False, progress=False)
    ft = TrainConfig(epochs=0, device="cpu", progress=False)
    scp = SCPConfig(ratio=0.25, max_iters=1, th_acc=1.0, finetune=ft, progress=False)
    return ccfg, scp


def test_order_study_runs_both_orders_and_compares_them(model, splits, tmp_path):
    ccfg, scp = _cfgs("prune-structured", [0.5])
    res = write_order_outputs(order_study(model, ccfg, scp, tmp_path / "o", splits=splits, arch=ARCH))
    arms = {(r["point"], r["arm"]) for r in res.records}
    assert arms == {("-", "scp"), ("0.5", "compressed"), ("0.5", "compress_then_scp"), ("0.5", "scp_then_compress")}
    last = "layer4.1.conv2"  # SCP's default layer: the last conv
    base_channels = model.get_submodule(last).out_channels
    folders = {"compressed": "points/0.5/compressed", "compress_then_scp": "points/0.5/compress_then_scp",
               "scp": "scp", "scp_then_compress": "points/0.5/scp_then_compress"}
    channels, best = {}, {}
    for arm, folder in folders.items():
        m, _, extra = load_checkpoint(tmp_path / "o" / folder / "model.pt")
        channels[arm] = m.get_submodule(last).out_channels
        best[arm] = extra["compress"]["details"].get("best_iter")
        assert (tmp_path / "o" / folder / "config.json").is_file()
    # SCP's loop cut a quarter of the channels it was given, in both orders ...
    scp_hist = RunDir(tmp_path / "o" / "scp").read_metrics()["history"]
    a2_hist = RunDir(tmp_path / "o" / "points" / "0.5" / "compress_then_scp").read_metrics()["history"]
    assert len(scp_hist[1]["removed"]) == base_channels // 4
    assert len(a2_hist[1]["removed"]) == base_channels // 8
    # ... and each saved model is the iteration SCP selected; pruning halves the channels.
    assert channels["scp"] == base_channels - best["scp"] * base_channels // 4
    assert channels["compressed"] == base_channels // 2
    assert channels["compress_then_scp"] == base_channels // 2 - best["compress_then_scp"] * base_channels // 8
    assert channels["scp_then_compress"] == channels["scp"] // 2
    # The direct comparison is scp_then_compress minus compress_then_scp.
    by_arm = {r["arm"]: r for r in res.records}
    comp = res.comparison["0.5"]["eodd"]
    assert comp["estimate"] == pytest.approx(by_arm["scp_then_compress"]["metrics"]["eodd"]
                                             - by_arm["compress_then_scp"]["metrics"]["eodd"])
    table = pd.read_csv(tmp_path / "o" / "order_table.csv")
    assert list(table["arm"]) == ["uncompressed", "scp", "compressed", "compress_then_scp", "scp_then_compress"]
    md = (tmp_path / "o" / "order_table.md").read_text()
    assert "SCP → compress minus compress → SCP" in md and "| 0.5 |" in md
    # Resume: everything is done, nothing is recomputed and the records are the same.
    again = order_study(model, ccfg, scp, tmp_path / "o", splits=splits, arch=ARCH)
    assert len(RunDir(tmp_path / "o").read_metrics()["history"]) == 4
    assert again.comparison["0.5"]["eodd"]["estimate"] == pytest.approx(comp["estimate"])


def test_order_study_refuses_quantization(model, splits, tmp_path):
    ccfg, scp = _cfgs("quant", ["static"])
    with pytest.raises(CompressError, match="int8"):
        order_study(model, ccfg, scp, tmp_path / "q", splits=splits, arch=ARCH)
    assert not (tmp_path / "q").exists()
