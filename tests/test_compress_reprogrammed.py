"""`equiprune compress` refuses a reprogrammed run, as pruning does, and says what to do instead."""
from __future__ import annotations

import json
import re
from dataclasses import asdict

import pytest
import torch

from equiprune.cli import main
from equiprune.data import DataConfig, SynthDermConfig, load_splits
from equiprune.engine import RunDir, RunError
from equiprune.methods.compress import CompressError
from equiprune.methods.compress.order import order_study_from_run
from equiprune.methods.compress.sweep import CompressConfig, compress_from_run, run_compress_sweep
from equiprune.methods.reprogram import Trigger
from equiprune.methods.runs import child_config, open_run, save_run_model, start_child_run
from equiprune.methods.scp import SCPConfig
from equiprune.models import build_model, save_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def reprogrammed(tmp_path_factory):
    """An untrained base run on tiny synthderm and a reprogrammed child of it (trigger in model.pt)."""
    root = tmp_path_factory.mktemp("compress_reprogrammed")
    dc = DataConfig(name="synthderm", image_size=16, cache_dir=str(root / "cache"), progress=False,
                    synthderm=SynthDermConfig(n=240))
    arch = {"name": "resnet18", "num_classes": load_splits(dc).num_classes, "width": 0.0625, "image_size": 16}
    torch.manual_seed(0)
    base = RunDir(root / "base")
    base.write_config({"kind": "train", "data": asdict(dc), "arch": arch})
    save_checkpoint(base.model_path, build_model(**arch), arch)
    parent = open_run(base.path)
    repro = RunDir(root / "repro")
    repro.write_config(child_config(parent, "reprogram", {"trigger": "border"}))
    trigger = Trigger("border", image_size=16, size=2, generator=torch.Generator().manual_seed(0))
    save_run_model(repro, parent.model, arch, {"reprogram": trigger.payload()})
    return root, base.path, repro.path


def _cfg(**kw) -> CompressConfig:
    from equiprune.methods.audit import AuditConfig

    return CompressConfig(method="prune-global", sweep=["0.5"], audit=AuditConfig(n_boot=20, latency=False,
                                                                                   device="cpu"),
                          latency=False, progress=False, **kw)


def test_compress_of_a_reprogrammed_run_is_refused_before_writing(reprogrammed):
    root, base, repro = reprogrammed
    expected = (f"{repro} is a reprogrammed run (a trigger in front of a frozen model); compress its parent run "
                f"({base.resolve()}) instead, then reprogram the compressed run with `equiprune reprogram --run`.")
    with pytest.raises(RunError) as err:
        compress_from_run(repro, _cfg(), root / "cmp")
    assert str(err.value) == expected
    with pytest.raises(RunError, match="compress its parent run"):
        order_study_from_run(repro, _cfg(), SCPConfig(), root / "order")
    with pytest.raises(RunError, match="compress its parent run"):
        run_compress_sweep(open_run(repro), _cfg(), root / "api")
    # The wrapped model itself (Python API) is refused too.
    with pytest.raises(CompressError, match="reprogrammed model"):
        run_compress_sweep(open_run(repro).model, _cfg(), splits=open_run(base).splits())
    assert not any((root / d).exists() for d in ("cmp", "order", "api"))
    # Pruning says the same with its own verb (one rule for both).
    with pytest.raises(RunError, match=re.escape(f"prune its parent run ({base.resolve()}) instead, then "
                                                 "reprogram the pruned run")):
        start_child_run(repro, root / "pruned", kind="scp-snnl", settings={})


def test_cli_refuses_and_the_parent_compresses(reprogrammed, capsys):
    root, base, repro = reprogrammed
    common = ["--method", "prune-global", "--sweep", "0.5", "--n-boot", "20", "--no-latency", "--quiet",
              "--device", "cpu"]
    assert main(["compress", "--run", str(repro), "--out", str(root / "cli-repro"), *common]) == 2
    err = capsys.readouterr().err
    assert "reprogrammed run" in err and "compress its parent run" in err
    assert not (root / "cli-repro").exists()
    # What the message says to do works: the parent run compresses.
    assert main(["compress", "--run", str(base), "--out", str(root / "cli-base"), *common]) == 0
    config = json.loads((root / "cli-base" / "config.json").read_text())
    assert config["kind"] == "compress" and config["parent"] == str(base.resolve())
    assert (root / "cli-base" / "points" / "0.5" / "model.pt").exists()
