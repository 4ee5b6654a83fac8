"""Nothing silently wrong (issue 21): a busy, read-only or full output folder, a broken checkpoint,
a model whose fair-looking numbers mean nothing: each is refused or warned in one sentence."""
from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from equiprune.cli import main
from equiprune.data.atomic import WriteError, atomic_write
from equiprune.engine import RunDir
from equiprune.engine.runlock import LOCK_NAME
from equiprune.models import load_checkpoint, save_checkpoint

TINY = ["--data", "synthderm", "--synth-n", "400", "--image-size", "32", "--model", "vgg11", "--width", "0.125",
        "--optimizer", "adam", "--quiet"]
DATA = ["--data", "synthderm", "--synth-n", "400", "--quiet"]


def _cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "equiprune", *args]


@pytest.fixture(scope="module")
def base(tmp_path_factory, one_thread) -> Path:
    """One tiny trained run for the checkpoint cases."""
    out = tmp_path_factory.mktemp("base") / "run"
    assert main(["train", *TINY, "--epochs", "1", "--out", str(out)]) == 0
    assert not (out / LOCK_NAME).exists()  # a finished run gives its lock up, in-process callers included
    return out


def _last_linear(model: torch.nn.Module) -> str:
    return [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)][-1]


def _edited_checkpoint(base: Path, path: Path, edit) -> Path:
    model, arch, extra = load_checkpoint(base / "model.pt")
    with torch.no_grad():
        edit(model)
    save_checkpoint(path, model, arch, extra)
    return path


def _no_temp_files(folder: Path) -> list[str]:
    return [p.name for p in folder.rglob("*") if p.name.endswith(".tmp") or ".tmp." in p.name]


# ---------------------------------------------------------------- 1. one writer per run folder

def test_second_process_on_a_run_folder_is_refused_naming_the_holder(tmp_path, capsys):
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    first = subprocess.Popen(_cmd("train", *TINY, "--epochs", "50", "--out", str(out)), env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lock = out / LOCK_NAME
    deadline = time.time() + 240
    while time.time() < deadline and first.poll() is None and \
            not (lock.exists() and lock.read_text().startswith(f"{first.pid}\n")):
        time.sleep(0.1)
    try:
        assert first.poll() is None, first.stderr.read()
        second = subprocess.run(_cmd("train", *TINY, "--epochs", "50", "--lr", "0.0002", "--out", str(out)),
                                env=env, capture_output=True, text=True, timeout=300)
        assert second.returncode == 2
        assert f"process {first.pid}" in second.stderr and "Traceback" not in second.stderr
        assert "0.0002" not in (out / "config.json").read_text()  # the refused run wrote nothing
    finally:
        first.send_signal(signal.SIGKILL)  # a crash: the kernel drops the lock, no stale marker to clean
        first.wait()
    code = main(["train", *TINY, "--epochs", "50", "--lr", "0.0002", "--out", str(out)])  # after the crash
    err = capsys.readouterr().err
    assert code == 2 and "other settings" in err and "being written by" not in err


def test_lock_is_shared_within_a_process_and_released_with_its_run_dirs(tmp_path):
    rd = RunDir(tmp_path / "run")
    inner = RunDir(tmp_path / "run" / "iter_001")  # a folder inside a held one shares its lock
    assert (tmp_path / "run" / LOCK_NAME).exists() and not (tmp_path / "run" / "iter_001" / LOCK_NAME).exists()
    probe = [sys.executable, "-c", "import sys; from equiprune.engine import RunDir\n"
             "try:\n RunDir(sys.argv[1])\nexcept ValueError as e:\n print(e); sys.exit(3)", str(rd.path)]
    held = subprocess.run(probe, capture_output=True, text=True, timeout=120)
    assert held.returncode == 3 and f"process {os.getpid()}" in held.stdout
    del rd, inner
    assert not (tmp_path / "run" / LOCK_NAME).exists()
    again = RunDir(tmp_path / "run")  # a new flock in this process: would fail if the old one were still open
    assert (tmp_path / "run" / LOCK_NAME).read_text().startswith(f"{os.getpid()}\n")
    del again


def test_temp_names_are_unique_and_removed_on_failure(tmp_path):
    names = []
    for _ in range(2):
        atomic_write(tmp_path / "config.json", lambda tmp: (names.append(tmp), Path(tmp).write_text("{}")))
    assert names[0] != names[1] and all(not n.endswith("config.json.tmp") for n in names)

    def half_then_full(tmp):
        Path(tmp).write_bytes(b"\x89PNG half")
        raise OSError(errno.ENOSPC, "No space left on device")
    with pytest.raises(WriteError, match="disk is full.*group-metrics.png"):
        atomic_write(tmp_path / "group-metrics.png", half_then_full)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json"]


def test_numpy_writers_that_append_a_suffix_land_on_the_target(tmp_path):
    """np.savez / np.save append .npz / .npy to a name without it; the temporary name must already end so."""
    import numpy as np
    atomic_write(tmp_path / "cache.npz", lambda tmp: np.savez(tmp, a=np.arange(3)))
    atomic_write(tmp_path / "x.npy", lambda tmp: np.save(tmp, np.ones(2)))
    assert np.load(tmp_path / "cache.npz")["a"].tolist() == [0, 1, 2]
    assert np.load(tmp_path / "x.npy").tolist() == [1.0, 1.0]
    with pytest.raises(ValueError, match="numpy wrote"):   # another suffix: refused, not an empty file
        atomic_write(tmp_path / "c.cache", lambda tmp: np.savez(tmp, x=np.arange(2)))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache.npz", "x.npy"]


# ---------------------------------------------------------------- 2. broken models never look fair

def test_nan_checkpoint_stops_the_audit_naming_the_parameter(base, tmp_path, capsys):
    layer = _last_linear(load_checkpoint(base / "model.pt")[0])
    ckpt = _edited_checkpoint(base, tmp_path / "nan.pt",
                              lambda m: m.get_submodule(layer).bias.__setitem__(1, float("nan")))
    code = main(["audit", "--checkpoint", str(ckpt), *DATA, "--n-boot", "20", "--no-latency",
                 "--out", str(tmp_path / "a")])
    err = capsys.readouterr().err
    assert code == 2 and f"{layer}.bias (1 of" in err and "NaN/inf" in err and "Traceback" not in err
    assert not (tmp_path / "a" / "metrics.json").exists()  # no fair-looking numbers were stored


def test_overflow_without_a_bad_parameter_names_the_layer(base, tmp_path, capsys):
    def blow_up(m):
        conv = [mod for mod in m.modules() if isinstance(mod, torch.nn.Conv2d)][0]
        conv.weight.mul_(1e38)  # finite weights, infinite activations
    ckpt = _edited_checkpoint(base, tmp_path / "inf.pt", blow_up)
    code = main(["audit", "--checkpoint", str(ckpt), *DATA, "--n-boot", "20", "--no-latency",
                 "--out", str(tmp_path / "a")])
    err = capsys.readouterr().err
    assert code == 2 and "every parameter is finite" in err and "first non-finite output: layer" in err


def test_constant_classifier_is_warned_first_in_terminal_and_report(base, tmp_path, capsys):
    def constant(m):
        last = m.get_submodule(_last_linear(m))
        last.weight.zero_()
        last.bias.copy_(torch.arange(last.bias.numel(), 0, -1, dtype=last.bias.dtype))  # class 0 always
    ckpt = _edited_checkpoint(base, tmp_path / "const.pt", constant)
    out = tmp_path / "a"
    assert main(["audit", "--checkpoint", str(ckpt), *DATA, "--n-boot", "20", "--no-latency",
                 "--out", str(out)]) == 0
    stdout = capsys.readouterr().out
    assert stdout.startswith("WARNING: the model predicts one class")
    html = (out / "report.html").read_text()
    md = (out / "report.md").read_text()
    assert "predicts one class" in html and html.index("predicts one class") < html.index("Table 1")
    assert md.index("predicts one class") < md.index("Table 1")


def test_degenerate_warnings_only_for_degenerate_predictions():
    import numpy as np
    from equiprune.engine.health import degenerate_warnings

    y = np.array([0, 1, 2, 0, 1, 2])
    assert degenerate_warnings(np.array([0, 1, 2, 1, 1, 2]), ["a", "b", "c"], y) == []
    assert "one class (b)" in degenerate_warnings(np.ones(6, dtype=int), ["a", "b", "c"], y)[0]
    never = degenerate_warnings(np.array([0, 1, 0, 0, 1, 1]), ["a", "b", "c"], y)
    assert len(never) == 1 and "never predicts 1 of the 3 classes in this split (c)" in never[0]
    # a class absent from the split is not held against the model
    assert degenerate_warnings(np.array([0, 1, 0, 1]), ["a", "b", "c"], np.array([0, 1, 1, 0])) == []


# ---------------------------------------------------------------- 6. one sentence per failure

@pytest.mark.parametrize("size", [0, 3000])
def test_truncated_or_empty_checkpoint_is_one_sentence(base, tmp_path, capsys, size):
    run = tmp_path / "copy"
    shutil.copytree(base, run)
    data = (run / "model.pt").read_bytes()
    (run / "model.pt").write_bytes(data[:size])
    code = main(["audit", "--run", str(run), "--n-boot", "20", "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and str(run / "model.pt") in err and "Traceback" not in err
    assert ("empty (0 bytes)" if size == 0 else "truncated") in err and "again" in err
    assert len(err.strip().splitlines()) == 1


def test_debug_prints_the_traceback(tmp_path, capsys):
    (tmp_path / "bad.pt").write_bytes(b"")
    args = ["audit", "--checkpoint", str(tmp_path / "bad.pt"), *DATA, "--out", str(tmp_path / "a")]
    assert main(args) == 2
    with pytest.raises(ValueError, match="empty"):
        main(["--debug", *args])


def _umount(path: Path) -> None:
    import gc
    gc.collect()  # drop run folders (and their lock files) still referenced by a caught error
    subprocess.run(["umount", "-l", str(path)], check=False)


def _mount_tmpfs(path: Path, *options: str) -> None:
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", ",".join(("size=" + options[0],) + options[1:]),
                           "tmpfs", str(path)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")


@pytest.fixture
def small_disk(tmp_path):
    mnt = tmp_path / "disk"
    _mount_tmpfs(mnt, "48k")
    yield mnt
    _umount(mnt)


@pytest.fixture
def read_only_disk(tmp_path):
    mnt = tmp_path / "ro"
    _mount_tmpfs(mnt, "1m")
    subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True)
    yield mnt
    _umount(mnt)


def test_full_disk_is_one_sentence_and_leaves_no_temp_file(small_disk, capsys):
    out = small_disk / "run"
    code = main(["train", *TINY, "--epochs", "1", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and "disk is full" in err and str(out) in err and "Traceback" not in err
    assert _no_temp_files(small_disk) == []


def test_injected_enospc_in_torch_save_is_one_sentence(tmp_path, monkeypatch):
    import equiprune.models.checkpoint as ck

    def full(obj, path):
        with open(path, "wb") as fh:
            fh.write(b"PK half a zip")
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos") from \
            OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(ck, "save_file", full)
    model = torch.nn.Linear(2, 2)
    with pytest.raises(WriteError, match="disk is full: could not write .*model.pt"):
        ck.save_tensors(tmp_path / "model.pt", {"w": model.weight})
    assert list(tmp_path.iterdir()) == []


def test_read_only_output_folder_is_refused_before_any_data_is_read(read_only_disk, tmp_path, capsys):
    # the images do not exist: a writability check that came after reading them would report those instead
    csv = tmp_path / "meta.csv"
    csv.write_text("image,label,group\n" + "".join(f"x{i}.png,{i % 2},{i % 2}\n" for i in range(20)))
    code = main(["train", "--data", "csv", "--metadata", str(csv), "--root", str(tmp_path / "no-images"),
                 "--out", str(read_only_disk / "run"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "read-only" in err and str(read_only_disk / "run") in err and "Traceback" not in err


def test_audit_of_a_run_on_a_read_only_disk_is_one_sentence(base, tmp_path, capsys):
    mnt = tmp_path / "ro"
    _mount_tmpfs(mnt, "16m")
    try:
        (mnt / "run").mkdir()
        for name in ("config.json", "metrics.json", "model.pt"):
            shutil.copy(base / name, mnt / "run" / name)
        subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True)
        code = main(["audit", "--run", str(mnt / "run"), "--n-boot", "20", "--quiet"])
        err = capsys.readouterr().err
        assert code == 2 and "read-only" in err and str(mnt / "run") in err and "Traceback" not in err
    finally:
        _umount(mnt)


def test_injected_read_only_folder_in_run_dir(tmp_path, monkeypatch):
    import equiprune.engine.runlock as runlock

    real_open = os.open

    def ro_open(path, flags, *a):
        if str(path).endswith(LOCK_NAME):
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real_open(path, flags, *a)
    monkeypatch.setattr(runlock.os, "open", ro_open)
    with pytest.raises(WriteError, match="read-only"):
        RunDir(tmp_path / "run")

