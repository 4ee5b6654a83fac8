"""The black-box evasion attack on deep clustering and its transfer to a service (thesis §2.3–2.4)."""
from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from equiprune.cluster.blackbox import BlackBox, nes_gradient
from equiprune.cluster.deep_attack import DeepAttackConfig, attack_losses, project, train_generator
from equiprune.cluster.deep_model import DeepClusterConfig, train_deep_clusterer
from equiprune.cluster.transfer import CommandService, ServiceError, match_labels, query_service, transfer_rate


@pytest.fixture(scope="module")
def tiny():
    """24 two-class 8 x 8 images and a DEC model trained on them in a fraction of a second."""
    rng = np.random.default_rng(0)
    X = rng.uniform(0, 0.3, (24, 1, 8, 8)).astype(np.float32)
    X[12:, :, :4] += 0.6
    y = np.r_[np.zeros(12, int), np.ones(12, int)]
    model = train_deep_clusterer(X, DeepClusterConfig(k=2, hidden=16, latent=2, ae_epochs=2, dec_epochs=1,
                                                      batch_size=12))
    return X, y, model


def test_attack_loss_terms_equal_a_direct_computation():
    g = torch.Generator().manual_seed(1)
    ref = torch.softmax(torch.randn(5, 3, generator=g), 1)
    mem = torch.softmax(torch.randn(5, 3, generator=g), 1)
    delta = torch.randn(5, 1, 4, 4, generator=g)
    d_real, d_fake = torch.rand(5, generator=g), torch.rand(5, generator=g)
    t = attack_losses(ref, mem, delta, d_real, d_fake, eps=3.5, alpha_attack=2.0, alpha_constraint=0.5)
    r, m, dl = ref.numpy(), mem.numpy(), delta.numpy().reshape(5, -1)
    attack = np.mean([np.sqrt(((r[i] - m[i]) ** 2).sum()) for i in range(5)])
    constraint = np.mean([min(3.5 - np.sqrt((dl[i] ** 2).sum()), 0.0) for i in range(5)])
    gan = np.mean(np.log(d_real.numpy()) + np.log(1 - d_fake.numpy()))
    assert float(t["attack"]) == pytest.approx(attack, rel=1e-5)
    assert float(t["constraint"]) == pytest.approx(constraint, rel=1e-5) and constraint < 0
    assert float(t["gan"]) == pytest.approx(gan, rel=1e-4)
    assert float(t["objective"]) == pytest.approx(gan - 2.0 * attack - 0.5 * constraint, rel=1e-4)
    p = project(delta, 1.0)
    assert p.flatten(1).norm(dim=1).max() <= 1.0 + 1e-5


def test_nes_gradient_points_along_the_true_gradient():
    w = torch.randn(1, 1, 4, 4, generator=torch.Generator().manual_seed(2))
    box = BlackBox(lambda x: torch.stack([(x * w).flatten(1).sum(1), torch.zeros(len(x))], 1), k=2)
    x = torch.zeros(3, 1, 4, 4)
    ref = torch.zeros(3, 2) - 10.0          # distance = ||(s + 10, 10)||: increasing in s = <w, x>
    est = nes_gradient(box, x, ref, samples=200, sigma=1e-3, resolution=None)
    cos = torch.nn.functional.cosine_similarity(est.flatten(1), w.flatten(1).expand(3, -1), dim=1)
    assert (cos > 0.8).all()
    assert box.queries == 400 and box.images == 1200


def test_decision_based_attack_uses_only_labels(tiny):
    X, _, model = tiny
    seen = []

    def labels_only(x):
        out = model(x).argmax(1)
        seen.append(out)
        return out

    cfg = DeepAttackConfig(mode="decision", steps=2, batch_size=8, nes_samples=2, nes_resolution=None)
    box = BlackBox.from_labels(labels_only, k=2)
    _, hist_a = train_generator(box, X, cfg)
    assert seen and all(s.dtype == torch.int64 and s.dim() == 1 for s in seen)
    assert box.queries == 3 + 2 * (1 + 2 * 2)            # clean memberships in 3 batches, then 5 per step
    # memberships that differ but agree on the argmax give the same attack: only labels reach it
    sharper = BlackBox(lambda x: torch.softmax(50 * model(x), 1), k=2, mode="decision")
    _, hist_b = train_generator(sharper, X, cfg)
    assert [h["attack"] for h in hist_a] == [h["attack"] for h in hist_b]
    moved = [h["attack"] * 8 / np.sqrt(2) for h in hist_a]   # one-hot rows: each image adds 0 or sqrt(2)
    assert all(abs(v - round(v)) < 1e-5 for v in moved)
    with pytest.raises(ValueError, match="labels only"):
        BlackBox(labels_only, k=2, mode="score", labels_only=True)


def test_zero_budget_and_bad_modes_are_clear_errors():
    with pytest.raises(ValueError, match="budget eps must be positive"):
        DeepAttackConfig(eps=0)
    with pytest.raises(ValueError, match="score or decision"):
        DeepAttackConfig(mode="white")


def test_transfer_rate_on_a_stand_in_service():
    clean = np.array([0, 0, 1, 1, 2, 2])
    adv = np.array([5, 5, 7, 9, 9, 9])                 # renumbered: 5 -> 0, 7 -> 1, 9 -> 2; item 3 moved 1 -> 2
    assert match_labels(clean, adv).tolist() == [0, 0, 1, 2, 2, 2]
    sur_clean = np.array([0, 1, 0, 1, 0, 1])
    sur_adv = np.array([0, 0, 0, 0, 0, 1])             # the attack moved items 1 and 3 on the surrogate
    y = np.array([0, 0, 1, 1, 2, 2])
    t = transfer_rate(clean, adv, sur_clean, sur_adv, y)
    assert t.surrogate_changed == pytest.approx(2 / 6) and t.service_changed == pytest.approx(1 / 6)
    assert t.transfer_rate == pytest.approx(0.5)        # of items 1 and 3 only item 3 moved on the service
    assert t.service_before["acc"] == 1.0 and t.service_after["acc"] == pytest.approx(5 / 6)


def test_a_service_that_raises_or_miscounts_is_a_clear_error(tmp_path):
    images = np.zeros((4, 1, 2, 2), np.float32)

    def broken(x):
        raise ConnectionError("rate limit")

    with pytest.raises(ServiceError, match="raised on the clean images.*ConnectionError: rate limit"):
        query_service(broken, images, "clean")
    with pytest.raises(ServiceError, match="3 labels for 4"):
        query_service(lambda x: np.zeros(3, int), images, "adversarial")
    script = tmp_path / "svc.py"
    script.write_text("import sys, numpy as np\nx = np.load(sys.argv[1])\n"
                      "np.save(sys.argv[2], (x.reshape(len(x), -1).mean(1) > 0.5).astype('int64'))\n")
    images[2:] = 1.0
    svc = CommandService(f"{sys.executable} {script} {{input}} {{output}}")
    assert query_service(svc, images, "clean").tolist() == [0, 0, 1, 1]
    with pytest.raises(ServiceError, match="exited with 1"):
        query_service(CommandService(f"{sys.executable} -c 'raise SystemExit(1)' {{input}} {{output}}"), images, "x")
    with pytest.raises(ValueError, match="must name"):
        CommandService("my_service")


def test_cli_attack_deep_resumes_and_transfer_runs(tmp_path, capsys):
    from equiprune.cli import main
    common = ["--images", "synthderm", "--image-size", "16", "--n", "40", "--k", "3", "--ae-epochs", "1", "--dec-epochs", "1", "--steps", "2",
              "--quiet"]
    out = tmp_path / "deep"
    assert main(["cluster", "attack-deep", *common, "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "decision-based" in text and "adversarial retraining" in text
    stamp = (out / "model.pt").stat().st_mtime_ns, (out / "generator_score.pt").stat().st_mtime_ns
    assert main(["cluster", "attack-deep", *common, "--out", str(out)]) == 0          # finished stages are kept
    assert ((out / "model.pt").stat().st_mtime_ns, (out / "generator_score.pt").stat().st_mtime_ns) == stamp
    assert main(["cluster", "attack-deep", *common, "--eps", "0", "--out", str(tmp_path / "z")]) == 2
    assert "budget eps must be positive" in capsys.readouterr().err
    assert main(["cluster", "transfer", *common, "--service-stand-in", "kmeans", "--out", str(tmp_path / "t")]) == 0
    assert "transfer rate" in capsys.readouterr().out
    assert (tmp_path / "t" / "report.html").exists() and (out / "report.html").exists()


def test_cifar_and_stl_binary_releases_are_read_from_the_users_folder(tmp_path):
    from equiprune.cluster.deep_data import ImageSource
    rng = np.random.default_rng(0)
    rec = np.concatenate([np.array([[3], [7]], np.uint8), rng.integers(0, 256, (2, 3072), dtype=np.uint8)], 1)
    (tmp_path / "cifar-10-batches-bin").mkdir()
    rec.tofile(tmp_path / "cifar-10-batches-bin" / "test_batch.bin")
    im = ImageSource("cifar10", root=str(tmp_path), n=None).load()
    assert im.X.shape == (2, 3, 32, 32) and im.y.tolist() == [3, 7]
    assert im.X[1, 0, 0, 1] == pytest.approx(rec[1, 2] / 255)            # red plane first, row-major
    pixels = rng.integers(0, 256, (2, 3, 96, 96), dtype=np.uint8)
    pixels.transpose(0, 1, 3, 2).tofile(tmp_path / "test_X.bin")          # STL-10 stores columns first
    np.array([1, 10], np.uint8).tofile(tmp_path / "test_y.bin")
    stl = ImageSource("stl10", root=str(tmp_path), n=None).load()
    assert stl.y.tolist() == [0, 9] and np.allclose(stl.X * 255, pixels)
    (tmp_path / "py" / "cifar-10-batches-py").mkdir(parents=True)
    (tmp_path / "py" / "cifar-10-batches-py" / "data_batch_1").write_bytes(b"pickle")
    with pytest.raises(FileNotFoundError, match="python-pickle release, which is not read"):
        ImageSource("cifar10", root=str(tmp_path / "py"), n=None).load()
    with pytest.raises(ValueError, match="--root"):
        ImageSource("stl10")
