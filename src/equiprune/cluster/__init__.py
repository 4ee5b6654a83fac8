"""Fairness of clusterings of images or features, attacks on it, and defenses (thesis §3.1, §4.1).

* `metrics`: Balance, Entropy, balance and social-fairness costs, NMI, ARI,
  unsupervised accuracy, internal indices, post/pre ratios;
* `algorithms`: k-means, spectral, and the fair SFD, FSC and KFC;
* `attack`: the group-membership flip attack (RACOS, zoopt) and its random baseline;
* `cfc`: Consensus Fair Clustering, the defense;
* `antidote`: antidote points that make vanilla clustering fair (Algorithm 3);
* `antidote_kkt`: the same for sum-of-norms clustering through its KKT conditions (Algorithm 2, cvxpy);
* `spillover`: one-point spill-over poisoning of k-means / Ward (§2.2);
* `summarize`: SumBal, FVS-LP and proportional review sets (§3.2);
* `deep_data`, `deep_model`, `blackbox`, `deep_attack`: images read offline, a small DEC model, the
  query-counting black box, and the GAN evasion attack with adversarial retraining (§2.3);
* `transfer`: the attack sent to a clustering service behind a callable or a command (§2.4);
* `folders`, `deep_folders`: the run folders of `equiprune cluster ...`.
"""
from .algorithms import ALGORITHMS, FAIR, Clustering
from .antidote import AntidoteConfig, antidote
from .antidote_kkt import KKTAntidoteConfig, antidote_kkt
from .attack import FlipAttackConfig, flip_attack, ks_attack_vs_random
from .cfc import CFCConfig, cfc
from .folders import PointSource
from .metrics import balance, clustering_scores, entropy, social_cost

__all__ = ["ALGORITHMS", "AntidoteConfig", "CFCConfig", "Clustering", "FAIR", "FlipAttackConfig",
           "KKTAntidoteConfig", "PointSource", "antidote", "antidote_kkt", "balance", "cfc", "clustering_scores",
           "entropy", "flip_attack", "ks_attack_vs_random", "social_cost"]
