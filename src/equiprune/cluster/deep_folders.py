"""`equiprune cluster attack-deep` and `cluster transfer` as resumable run folders.

Each stage is saved as it finishes — the clustering model (model.pt), every
attack's generator (generator_<stage>.pt) and its scores (the ``deep_attack``
or ``transfer`` section of metrics.json) — so an interrupted run picks up at
the first stage without results. Re-running with other settings is refused
(the shared folder opener of `cluster.folders`).
"""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd

from ..models.checkpoint import load_file, save_tensors
from .deep_attack import DeepAttackConfig, Generator, adversarial_retrain, evaluate, run_deep_attack
from .deep_data import ImageSet, ImageSource
from .deep_model import DeepClusterConfig, DeepClusterer, cluster_labels, train_deep_clusterer
from .folders import _open, _write_csv


def _model(rd, name: str, images: ImageSet, cfg: DeepClusterConfig,
           make: Callable[[], DeepClusterer] | None = None) -> DeepClusterer:
    path = rd.file(name)
    model = DeepClusterer(images.X.shape[1:], cfg)
    if path.exists():
        model.load_state_dict(load_file(path))
        return model.eval()
    model = make() if make else train_deep_clusterer(images.X, cfg)
    save_tensors(path, model.state_dict())   # unique temporary name, renamed when complete
    return model


def _save_generator(rd, stage: str, G: Generator) -> None:
    save_tensors(rd.file(f"generator_{stage}.pt"), G.state_dict())


def _load_generator(rd, stage: str, channels: int, width: int) -> Generator:
    G = Generator(channels, width)
    G.load_state_dict(load_file(rd.file(f"generator_{stage}.pt")))
    return G.eval()


def _row(model: str, attack: str, r: dict[str, Any]) -> dict[str, Any]:
    return {"model": model, "attack": attack,
            **{f"{k}_before": r["before"][k] for k in ("nmi", "ari", "acc")},
            **{f"{k}_after": r["after"][k] for k in ("nmi", "ari", "acc")},
            "changed": r["changed"], "changed_random": r.get("changed_random"), "queries": r.get("queries", 0), "image_queries": r.get("image_queries", 0),
            "mean_norm": r["mean_norm"], "clusters_after": r["clusters_after"]}


def deep_attack_to_folder(source: ImageSource, out: str | Path, model_cfg: DeepClusterConfig | None = None,
                          attack_cfg: DeepAttackConfig | None = None, modes: Sequence[str] = ("score", "decision"),
                          defense: bool = True, defense_epochs: int = 5, progress: bool = True) -> dict[str, Any]:
    """Train DEC on the images, attack it in each mode, then retrain it adversarially and attack again."""
    model_cfg = model_cfg or DeepClusterConfig()
    attack_cfg = attack_cfg or DeepAttackConfig()
    bad = [m for m in modes if m not in ("score", "decision")]
    if bad or not modes:
        raise ValueError(f"--modes must be score and/or decision (got {list(modes)})")
    settings = {"model": asdict(model_cfg), "attack": asdict(attack_cfg), "modes": list(modes), "defense": defense,
                "defense_epochs": defense_epochs}
    rd = _open(out, "cluster-attack-deep", source, settings)
    images = source.load()
    if model_cfg.k > len(images.X):
        raise ValueError(f"k = {model_cfg.k} clusters for {len(images.X)} images")
    section = rd.read_metrics().get("deep_attack", {"stages": {}})
    stages = section["stages"]

    def save() -> None:
        rows = [_row(s["model"], s["attack"], s) for s in stages.values()]
        _write_csv(rd, "attack_deep.csv", pd.DataFrame(rows))
        rd.set_section("deep_attack", {**section, "stages": stages, "source": images.name,
                                       "n": int(len(images.X)), "classes": images.classes, "eps": attack_cfg.eps})

    model = _model(rd, "model.pt", images, model_cfg)
    for mode in modes:
        if mode in stages:
            continue
        cfg = DeepAttackConfig(**{**asdict(attack_cfg), "mode": mode})
        r = run_deep_attack(model, images.X, images.y, cfg, progress=progress)
        _save_generator(rd, mode, r.generator)
        stages[mode] = {"model": "DEC", "attack": f"{mode}-based", **r.summary()}
        save()
    if defense:
        first = modes[0]
        G = _load_generator(rd, first, images.X.shape[1], attack_cfg.width)
        defended = _model(rd, "defended.pt", images, model_cfg,
                          make=lambda: adversarial_retrain(model, G, images.X, attack_cfg.eps, defense_epochs,
                                                           model_cfg.seed))
        if "defended-same-generator" not in stages:
            stages["defended-same-generator"] = {"model": "DEC + adversarial retraining",
                                                 "attack": f"{first}-based, the undefended model's generator",
                                                 **evaluate(defended, G, images.X, images.y, attack_cfg.eps)}
            save()
        if "defended-adaptive" not in stages:
            cfg = DeepAttackConfig(**{**asdict(attack_cfg), "mode": first})
            r = run_deep_attack(defended, images.X, images.y, cfg, progress=progress)
            _save_generator(rd, "defended", r.generator)
            stages["defended-adaptive"] = {"model": "DEC + adversarial retraining",
                                           "attack": f"{first}-based, a new generator", **r.summary()}
            save()
    save()
    return rd.read_metrics()["deep_attack"]


def standin_service(name: str, images: ImageSet, k: int, seed: int = 1) -> Callable[[np.ndarray], np.ndarray]:
    """A local stand-in for a clustering service: `kmeans` clusters each album it gets (PCA 50 + k-means,
    like an album-clustering API); `dec` is another DEC model (other seed, wider) labelling each image."""
    if name == "kmeans":
        from sklearn.cluster import KMeans
        from sklearn.decomposition import PCA

        def service(x: np.ndarray) -> np.ndarray:
            flat = x.reshape(len(x), -1)
            z = PCA(min(50, len(x) - 1, flat.shape[1]), random_state=seed).fit_transform(flat)
            return KMeans(n_clusters=k, n_init=5, random_state=seed).fit_predict(z)
        return service
    if name == "dec":
        cfg = DeepClusterConfig(k=k, hidden=512, seed=seed)
        other = train_deep_clusterer(images.X, cfg)
        return lambda x: cluster_labels(other, x)
    raise ValueError(f"unknown stand-in service {name!r}; choose kmeans or dec, or give --service COMMAND")


def transfer_to_folder(source: ImageSource, out: str | Path,
                       service: Callable[[np.ndarray], np.ndarray] | str | None = None, stand_in: str | None = None,
                       model_cfg: DeepClusterConfig | None = None, attack_cfg: DeepAttackConfig | None = None,
                       progress: bool = True) -> dict[str, Any]:
    """Attack a local surrogate, send clean and adversarial images to the service, measure the transfer.

    `service` is a callable or a command (`transfer.CommandService`); `stand_in` names a local stand-in.
    """
    from .transfer import CommandService, query_service, transfer_rate
    if (service is None) == (stand_in is None):
        raise ValueError("give exactly one of a service (a callable or a command) and a stand-in name")
    model_cfg = model_cfg or DeepClusterConfig()
    attack_cfg = attack_cfg or DeepAttackConfig(gradient="exact")
    if isinstance(service, str):
        service_name, service = f"command: {service}", CommandService(service)
    elif service is not None:
        service_name = getattr(service, "__name__", type(service).__name__)
    else:
        service_name = f"stand-in: {stand_in}"
    rd = _open(out, "cluster-transfer", source, {"model": asdict(model_cfg), "attack": asdict(attack_cfg),
                                                 "service": service_name})
    images = source.load()
    done = rd.read_metrics().get("transfer")
    if done:
        return done
    if stand_in is not None:
        service = standin_service(stand_in, images, model_cfg.k, model_cfg.seed + 1)
    surrogate = _model(rd, "surrogate.pt", images, model_cfg)
    if rd.file("generator_surrogate.pt").exists():
        G = _load_generator(rd, "surrogate", images.X.shape[1], attack_cfg.width)
        summary = rd.read_metrics()["surrogate_attack"]
    else:
        r = run_deep_attack(surrogate, images.X, images.y, attack_cfg, progress=progress)
        G = r.generator
        summary = r.summary()
        rd.set_section("surrogate_attack", summary)
        _save_generator(rd, "surrogate", G)
    from .deep_attack import adversarial_images, random_like
    x_adv = adversarial_images(G, images.X, attack_cfg.eps)
    x_rand = random_like(images.X, x_adv).numpy()
    x_adv = x_adv.numpy()
    np.save(rd.file("adversarial_images.npy"), x_adv)
    clean_labels = query_service(service, images.X, "clean")
    adv_labels = query_service(service, x_adv, "adversarial")
    rand_labels = query_service(service, x_rand, "randomly perturbed")
    sur_clean = cluster_labels(surrogate, images.X)
    t = transfer_rate(clean_labels, adv_labels, sur_clean, cluster_labels(surrogate, x_adv), images.y)
    control = transfer_rate(clean_labels, rand_labels, sur_clean, cluster_labels(surrogate, x_rand), images.y)
    out_section = {**asdict(t), "service": service_name, "surrogate": summary, "source": images.name,
                   "eps": attack_cfg.eps,
                   "random_control": {k: getattr(control, k) for k in ("surrogate_changed", "service_changed",
                                                                       "service_after")}}
    _write_csv(rd, "transfer.csv", pd.DataFrame({"label": images.y, "service_clean": clean_labels,
                                                 "service_adversarial": adv_labels}))
    rd.set_section("transfer", out_section)
    return out_section
