"""The one child-run entry (`start_child_run`) and the one input-size rule (`models.input_size`,
`LoadedRun.image_size`)."""
from __future__ import annotations

import json
from dataclasses import asdict, replace

import pytest
import torch

from equiprune.data import DataConfig, SynthDermConfig
from equiprune.engine import RunDir, RunError
from equiprune.methods.runs import open_run, start_child_run
from equiprune.models import DEFAULT_IMAGE_SIZE, build_model, input_size, save_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """An untrained run folder whose arch records 16 px while its data settings say 24 px."""
    root = tmp_path_factory.mktemp("child_run")
    dc = DataConfig(name="synthderm", image_size=24, cache_dir=str(root / "cache"), progress=False,
                    synthderm=SynthDermConfig(n=60))
    arch = {"name": "vgg11", "num_classes": 2, "width": 0.0625, "image_size": 16}
    rd = RunDir(root / "base")
    rd.write_config({"kind": "train", "data": asdict(dc), "arch": arch})
    torch.manual_seed(0)
    save_checkpoint(rd.model_path, build_model(**arch), arch)
    return root, rd.path


def test_input_size_rule_model_then_arch_then_data_then_default(tiny_splits):
    vit = build_model("vit_tiny", 2, width=0.25, image_size=32)
    assert input_size({"image_size": 16}, vit) == 32  # the ViT's patch grid fixes its size
    cnn = build_model("vgg11", 2, width=0.0625, image_size=32)
    assert input_size({"image_size": 48}, cnn, tiny_splits) == 48
    assert input_size(None, cnn, tiny_splits) == 16  # the conftest images are 16 px
    assert input_size({}, cnn, tiny_splits.val) == 16
    assert input_size(None, cnn) == DEFAULT_IMAGE_SIZE
    assert input_size(None, None, None, default=40) == 40


def test_loaded_run_image_size_prefers_the_recorded_arch(base):
    _, path = base
    run = open_run(path)
    assert run.image_size == 16
    bare = replace(run, arch={k: v for k, v in run.arch.items() if k != "image_size"})
    assert bare.image_size == 24  # nothing recorded: the data settings' size


def test_start_child_run_checks_before_writing_and_resumes_only_the_same_settings(base):
    root, path = base
    with pytest.raises(RunError, match="new folder"):
        start_child_run(path, path, "x", {"a": 1})

    def refuse(run):
        raise ValueError(f"no: {run.image_size}")

    with pytest.raises(ValueError, match="no: 16"):
        start_child_run(path, root / "refused", "x", {"a": 1}, check=refuse)
    assert not (root / "refused").exists()

    parent, rd = start_child_run(path, root / "child", "x", {"a": 1}, lambdas=[0.1, 0.2])
    cfg = json.loads((rd.path / "config.json").read_text())
    assert cfg["parent"] == str(path.resolve()) and cfg["baseline"] == str(path.resolve())
    assert cfg["lambdas"] == [0.1, 0.2] and cfg["kind"] == "x"
    # An opened parent is accepted as well, and the same settings resume.
    again_parent, again = start_child_run(parent, root / "child", "x", {"a": 1}, lambdas=[0.1, 0.2])
    assert again_parent is parent and again.path == rd.path
    with pytest.raises(RunError, match="other settings"):
        start_child_run(path, root / "child", "x", {"a": 2}, lambdas=[0.1, 0.2])
    with pytest.raises(RunError, match="lambdas"):  # extra config entries are compared as the settings are
        start_child_run(path, root / "child", "x", {"a": 1}, lambdas=[0.1])
