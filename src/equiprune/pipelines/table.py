"""The papers' Table 1 in one call: every method on one baseline, audited, in one table.

`run_table` takes a baseline run folder (or trains one per seed on synthderm)
and runs, each into its own run folder under ``out``:

======================= ===================================================
``vanilla``             the baseline itself (no extra training)
``obd``                 Optimal Brain Damage (fairness-blind Hessian pruning)
``fairprune``           FairPrune (Wu et al., 2022)
``scp``                 Sensitive Channel Pruning (Kong et al., 2024)
``scp-fairprune``       SCP on top of the FairPrune model (a chain)
``random``, ``l1``      SCP's loop with random / smallest-L1 channels
``finetune``            SCP's loop cutting nothing: the extra training alone
======================= ===================================================

over several seeds (``<method>-seed<k>``; from scratch the vanilla model is
retrained per seed too, so the spread includes training noise). Finished runs
(those with a model.pt) are skipped, so an interrupted table resumes. Every
run is audited on the test split (`audit_run`), the Table 1 page is rendered
by `equiprune.report.compare_runs` (``out/compare/``), and this module adds
what a chain needs (``out/table.{md,html,csv}``): FATE of every run against
the vanilla baseline AND against its parent, which differ for SCP-FairPrune
(its parent is the FairPrune model), plus mean ± sd per method over seeds.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from ..data import DataConfig, SynthDermConfig
from ..engine import RunDir, TrainConfig, log_prefix, read_json, write_json
from ..metrics import (FATE_CRITERIA, GAP_LABELS, bootstrap_samples, fate_samples, fate_scores_or_undefined,
                       group_fairness)
from ..methods.audit import AuditConfig, audit_run, audit_section_name, predictions_name
from ..methods.paired_runs import check_same_items, run_predictions
from ..report import compare_runs, write_run_report
from ..report.against import against_text, paired_against
from ..report.html import Section, write_page
from ..scoring import null_check_text
from ..report.tables import frame_to_html, frame_to_markdown
from ..methods.fairprune import FairPruneConfig, fairprune_from_run
from ..methods.scp import SCPConfig, scp_from_run
from ..methods.skewprune import SkewPruneConfig, skewprune_from_run
from ..methods.train import ModelConfig, train_from_config
from ..methods.mitigate import methods as mitigation_methods, mitigate_from_run

__all__ = [
    "TABLE_METHODS",
    "ALL_METHODS",
    "MITIGATION_METHODS",
    "METHOD_NAMES",
    "PARENTS",
    "RUNNERS",
    "TableConfig",
    "TableError",
    "TableResult",
    "default_finetune_for_table",
    "fate_against",
    "run_table",
]

TABLE_METHODS: tuple[str, ...] = ("vanilla", "obd", "fairprune", "scp", "scp-fairprune", "random", "l1",
                                  "finetune", "skew")
METHOD_NAMES = {"vanilla": "Vanilla", "obd": "OBD", "fairprune": "FairPrune", "scp": "SCP",
                "scp-fairprune": "SCP-FairPrune", "random": "Random channels", "l1": "L1 channels",
                "finetune": "Fine-tune only", "skew": "SkewPrune"}
# Mitigation methods (`equiprune mitigate`), selectable with --methods; not in the default table
# (eleven more fine-tunings per seed). Each fine-tunes for the controls' whole budget: max_iters x
# the fine-tuning epochs of SCP's loop, so that "fine-tune only" is their like-for-like control.
MITIGATION_METHODS: tuple[str, ...] = tuple(mitigation_methods())
ALL_METHODS: tuple[str, ...] = TABLE_METHODS + MITIGATION_METHODS
METHOD_NAMES.update({name: spec.label for name, spec in mitigation_methods().items()})
# The run a method starts from; everything not listed starts from the vanilla model.
PARENTS = {"scp-fairprune": "fairprune"}
_SCORER = {"scp": "snnl", "scp-fairprune": "snnl", "random": "random", "l1": "l1", "finetune": "none"}
SETTINGS_FILE = "table_config.json"
# Settings that change what an existing sub-run means; seeds and methods may grow.
_CHECKED = ("base_run", "fairprune", "scp", "skew", "data", "model", "train", "retrain_per_seed")


class TableError(ValueError):
    """Bad table settings, or an output folder made with other settings."""


def default_finetune_for_table() -> TrainConfig:
    """One short fine-tuning pass (Adam, lr 1e-4), as the demo uses, shared by every method."""
    return TrainConfig(epochs=1, optimizer="adam", lr=1e-4, schedule="cosine", select_on="last")


def _default_skew() -> SkewPruneConfig:
    """SkewPrune with the table's fine-tuning; the premise check (extra SNNL pass) is left to `prune skew`."""
    return SkewPruneConfig(finetune=default_finetune_for_table(), premise=False, latency=False)


def default_scp_for_table() -> SCPConfig:
    """SCP in a table: cheaper than `prune scp` (every method runs over every seed); `compare` prints the difference."""
    return SCPConfig(ratio=0.05, max_iters=3, th_acc=0.05, th_fair=-1.0, finetune=default_finetune_for_table())


def _default_fairprune() -> FairPruneConfig:
    return FairPruneConfig(finetune=default_finetune_for_table())


def _default_data() -> DataConfig:
    return DataConfig(name="synthderm", image_size=64, seed=0, synthderm=SynthDermConfig(n=3000))


@dataclass
class TableConfig:
    """What the table runs.

    ``fairprune`` serves FairPrune and OBD (its ``method`` is set per row);
    ``scp`` serves SCP, SCP-FairPrune and the three controls (its ``scorer``
    is set per row). Every method's ``seed`` is replaced by the table seed.
    ``data``/``model``/``train`` are used only without a baseline run:
    synthderm is generated and one vanilla model trained per seed
    (``retrain_per_seed=False``: one vanilla model, trained with the first seed).
    """

    seeds: tuple[int, ...] = (0, 1, 2)
    methods: tuple[str, ...] = TABLE_METHODS
    fairprune: FairPruneConfig = field(default_factory=_default_fairprune)
    scp: SCPConfig = field(default_factory=default_scp_for_table)
    skew: SkewPruneConfig = field(default_factory=_default_skew)
    audit: AuditConfig = field(default_factory=AuditConfig)
    data: DataConfig = field(default_factory=_default_data)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=8, optimizer="adam", lr=1e-3))
    retrain_per_seed: bool = True
    reports: bool = True            # write report.html / report.md into every audited run folder
    columns: tuple[str, ...] | None = None  # an extra table of chosen numbers on the comparison page
    progress: bool = True

    def validate(self) -> None:
        """Raise TableError for unknown methods or empty seeds."""
        unknown = [m for m in self.methods if m not in ALL_METHODS]
        if unknown:
            raise TableError(f"unknown method(s) {unknown}; choose from {', '.join(ALL_METHODS)}")
        if not self.methods:
            raise TableError("no methods to run; give at least one of " + ", ".join(ALL_METHODS))
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise TableError(f"seeds must be a non-empty list of distinct integers, got {list(self.seeds)}")
        self.fairprune.validate()
        self.scp.validate()
        self.audit.validate()
        if self.columns:
            from ..report.scores import check_columns
            try:
                check_columns(self.columns)
            except ValueError as exc:
                raise TableError(str(exc)) from exc

    def ordered_methods(self) -> list[str]:
        """The requested methods in table order, plus the parents chains need."""
        wanted = set(self.methods) | {PARENTS[m] for m in self.methods if m in PARENTS}
        return [m for m in ALL_METHODS if m in wanted]


@dataclass
class TableResult:
    """Where everything is, and the numbers behind the table.

    ``frame``: one row per run (method, seed, run folder, parent, FATE vs the
    baseline and vs the parent with intervals). ``summary``: one row per
    method, mean and sd over seeds. ``comparison``: what compare_runs returned.
    """

    out: Path
    runs: dict[tuple[str, int], Path]
    frame: pd.DataFrame
    summary: pd.DataFrame
    comparison: Any
    csv_path: Path
    summary_csv_path: Path
    md_path: Path
    html_path: Path
    ran: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    #: paired differences of every run against `run_table(against=...)`, per seed (None without it)
    against: pd.DataFrame | None = None
    #: the premise check of every SCP run, one line each (`premise_lines`), printed with --quiet too
    premise: list[str] = field(default_factory=list)


# ----------------------------------------------------------------------------- runners

Runner = Callable[[Path, Path, int, TableConfig], None]


def _run_fairprune(method: str) -> Runner:
    def run(parent: Path, out: Path, seed: int, cfg: TableConfig) -> None:
        fairprune_from_run(parent, replace(cfg.fairprune, method=method, seed=seed, progress=cfg.progress), out)
    return run


def _run_skew(parent: Path, out: Path, seed: int, cfg: TableConfig) -> None:
    skewprune_from_run(parent, replace(cfg.skew, seed=seed, progress=cfg.progress), out)


def _run_scp(method: str) -> Runner:
    def run(parent: Path, out: Path, seed: int, cfg: TableConfig) -> None:
        scp_from_run(parent, replace(cfg.scp, scorer=_SCORER[method], seed=seed, progress=cfg.progress), out)
    return run


def mitigation_budget(cfg: TableConfig) -> TrainConfig:
    """The fine-tuning a mitigation method gets in the table: all of SCP's loop's (iterations x epochs)."""
    ft = cfg.scp.finetune
    return replace(ft, epochs=ft.epochs * cfg.scp.max_iters, progress=cfg.progress)


def _run_mitigation(method: str) -> Runner:
    def run(parent: Path, out: Path, seed: int, cfg: TableConfig) -> None:
        spec = mitigation_methods()[method]
        mitigate_from_run(parent, spec.config(finetune=mitigation_budget(cfg), seed=seed, progress=cfg.progress), out)
    return run


# method → function(parent run, output run, seed, config); replaceable (tests, new methods).
RUNNERS: dict[str, Runner] = {"obd": _run_fairprune("obd"), "fairprune": _run_fairprune("fairprune"),
                              "skew": _run_skew, **{m: _run_scp(m) for m in _SCORER},
                              **{m: _run_mitigation(m) for m in MITIGATION_METHODS}}


def _finished(path: Path) -> bool:
    return (path / RunDir.MODEL).exists()


def _check_settings(out: Path, cfg: TableConfig, base_run: Path | None) -> None:
    settings = {"base_run": str(base_run.resolve()) if base_run else None, "fairprune": asdict(cfg.fairprune),
                "scp": asdict(cfg.scp), "data": asdict(cfg.data) if base_run is None else None,
                "model": asdict(cfg.model) if base_run is None else None,
                "train": asdict(cfg.train) if base_run is None else None,
                "retrain_per_seed": cfg.retrain_per_seed}
    # Execution-only fields must not block a resume.
    for section in ("fairprune", "scp", "train"):
        for d in (settings[section], (settings[section] or {}).get("finetune") or {}):
            if isinstance(d, dict):
                for k in ("seed", "progress", "device"):
                    d.pop(k, None)
    if isinstance(settings["data"], dict):
        settings["data"].pop("progress", None)
    f = out / SETTINGS_FILE
    stored = read_json(f) if f.exists() else None
    settings = _roundtrip(settings)
    if stored is not None:
        diff = [k for k in _CHECKED if stored.get(k) != settings.get(k)]
        if diff:
            raise TableError(
                f"{out} holds a table made with other settings ({', '.join(diff)} differ); finished runs there "
                "would be reused. Use a new --out folder, or delete that one to start over.")
    write_json(f, {**settings, "seeds": sorted(set(cfg.seeds) | set((stored or {}).get("seeds", []))),
                   "methods": cfg.ordered_methods()})


def _roundtrip(value: Any) -> Any:
    """`value` as it reads back from JSON (tuples become lists), so stored and new settings compare equal."""
    return json.loads(json.dumps(value, default=str))


# ----------------------------------------------------------------------------- FATE against any reference


def fate_against(run: Path | str, reference: Path | str, cfg: AuditConfig | None = None,
                 num_classes: int | None = None) -> dict[str, dict[str, float]]:
    """FATE of `run` against `reference` from their stored test predictions, with bootstrap intervals.

    Both runs must have been audited on the same split (``predictions_<split>.csv``).
    The same stratified resamples are drawn for both models (`bootstrap_samples`
    draws indices from the groups and the seed only), as the audit does for FATE
    against the baseline. Returns ``fate_<criterion>`` → {estimate, lo, hi};
    the estimate is NaN (with no interval) when the reference has a zero gap.
    """
    cfg = cfg or AuditConfig()
    a, b = run_predictions(run, cfg.split), run_predictions(reference, cfg.split)
    check_same_items(a, b, run, reference)
    y, g = a["y_true"].to_numpy(), a["group"].to_numpy()
    pm, pb = a["y_pred"].to_numpy(), b["y_pred"].to_numpy()
    m = group_fairness(y, pm, g, num_classes=num_classes)
    r = group_fairness(y, pb, g, num_classes=num_classes)
    sm = bootstrap_samples(y, pm, g, n_boot=cfg.n_boot, seed=cfg.seed, num_classes=num_classes)
    sb = bootstrap_samples(y, pb, g, n_boot=cfg.n_boot, seed=cfg.seed, num_classes=num_classes)
    estimates, _ = fate_scores_or_undefined(m, r, lam=cfg.fate_lambda)
    out: dict[str, dict[str, float]] = {}
    for k, s in fate_samples(sm, sb, lam=cfg.fate_lambda).items():
        if estimates[k] is None:
            out[k] = {"estimate": math.nan, "lo": math.nan, "hi": math.nan}
            continue
        s = s[np.isfinite(s)]
        lo, hi = (np.percentile(s, [100 * cfg.alpha / 2, 100 * (1 - cfg.alpha / 2)]) if s.size
                  else (math.nan, math.nan))
        out[k] = {"estimate": float(estimates[k]), "lo": float(lo), "hi": float(hi)}
    return out


# ----------------------------------------------------------------------------- the pipeline


def _say(cfg: TableConfig, msg: str) -> None:
    if cfg.progress:
        from tqdm.auto import tqdm
        tqdm.write(msg)


def _vanilla_path(out: Path, seed: int, cfg: TableConfig, base_run: Path | None) -> Path:
    if base_run is not None:
        return base_run
    return out / (f"vanilla-seed{seed}" if cfg.retrain_per_seed else "vanilla")


def run_table(out: str | Path, cfg: TableConfig | None = None, base_run: str | Path | None = None,
              names: dict[str, str] | None = None, against: str | None = None) -> TableResult:
    """Run (or resume) every method of Table 1 over the seeds, audit each run, write the tables.

    Args:
        out: folder for all run folders (``<method>-seed<k>``) and the pages.
        cfg: TableConfig; defaults reproduce the demo's CPU-size settings.
        base_run: a trained baseline run folder; None trains one on ``cfg.data``.
        names: display names per method (default METHOD_NAMES).
    """
    cfg = cfg or TableConfig()
    cfg.validate()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    base = Path(base_run) if base_run is not None else None
    if base is not None and not _finished(base):
        raise TableError(f"baseline run {base} has no {RunDir.MODEL}; train it first (equiprune train --out {base})")
    _check_settings(out, cfg, base)
    label = {**METHOD_NAMES, **(names or {})}
    methods = cfg.ordered_methods()
    runs: dict[tuple[str, int], Path] = {}
    ran: list[Path] = []
    skipped: list[Path] = []
    notes: list[str] = []
    if "scp-fairprune" in methods and "fairprune" not in cfg.methods:
        notes.append("FairPrune was run too: SCP-FairPrune starts from its model.")

    for i, seed in enumerate(cfg.seeds):
        vanilla = _vanilla_path(out, seed, cfg, base)
        if base is None and not _finished(vanilla):
            _say(cfg, f"[table] training vanilla model (seed {seed}) into {vanilla}")
            train_seed = seed if cfg.retrain_per_seed else cfg.seeds[0]
            # progress is fixed: it is stored with the data settings, and a resume must match them
            data = replace(cfg.data, progress=False)
            with log_prefix(f"vanilla-seed{seed}"):
                train_from_config(data, cfg.model, replace(cfg.train, seed=train_seed, progress=cfg.progress),
                                  vanilla)
            ran.append(vanilla)
        elif base is None:
            skipped.append(vanilla)
        if (base is None and cfg.retrain_per_seed) or i == 0:
            runs[("vanilla", seed)] = vanilla
        for method in methods:
            if method == "vanilla":
                continue
            path = out / f"{method}-seed{seed}"
            # ordered_methods puts a chain's parent method first
            parent = runs[(PARENTS[method], seed)] if method in PARENTS else vanilla
            runs[(method, seed)] = path
            if _finished(path):
                skipped.append(path)
                continue
            _say(cfg, f"[table] {label[method]} (seed {seed}) into {path}")
            with log_prefix(f"{method}-seed{seed}"):  # every echoed line names its method and seed
                RUNNERS[method](parent, path, seed, cfg)
            ran.append(path)

    shown = {k: p for k, p in runs.items() if k[0] in cfg.methods}
    return _render(out, cfg, shown, label, ran, skipped, notes, against=against)


def _audit(path: Path, cfg: TableConfig) -> dict[str, Any]:
    section = audit_section_name(cfg.audit.split)
    audit = RunDir(path, create=False).read_metrics().get(section)
    if not audit or not (path / predictions_name(cfg.audit.split)).exists():
        _say(cfg, f"[table] auditing {path}")
        audit = audit_run(path, cfg.audit).to_dict()
        if cfg.reports:
            write_run_report(path, split=cfg.audit.split)
    return audit


def _cell(iv: dict[str, float] | None) -> tuple[float, float, float]:
    iv = iv or {}
    f = lambda v: float(v) if v is not None else math.nan  # noqa: E731
    return f(iv.get("estimate")), f(iv.get("lo")), f(iv.get("hi"))


SUMMARY_KEYS = ("acc", "f1", "f1_avg", "f1_diff", *FATE_CRITERIA)


def _against_pairs(runs: dict[tuple[str, int], Path], against: str) -> dict[Path, Path]:
    """Each run of the table -> its reference: the `against` method's run of the same seed, or a run folder."""
    if Path(against).is_dir():
        return {p: Path(against) for p in runs.values() if p.resolve() != Path(against).resolve()}
    if against not in {m for m, _ in runs}:
        raise TableError(f"--against {against!r} is neither a run folder nor a method of this table; give a folder "
                         f"or one of: {', '.join(sorted({m for m, _ in runs}))}")
    first = {m: p for (m, _s), p in sorted(runs.items(), key=lambda kv: kv[0][1], reverse=True)}
    return {p: runs.get((against, seed), first[against]) for (m, seed), p in runs.items()
            if m != against}


def _render(out: Path, cfg: TableConfig, runs: dict[tuple[str, int], Path], label: dict[str, str],
            ran: list[Path], skipped: list[Path], notes: list[str], against: str | None = None) -> TableResult:

    audits = {k: _audit(p, cfg) for k, p in runs.items()}
    order = list(runs)
    against_frame, extra = None, []
    if against:
        against_frame, skipped = paired_against(_against_pairs(runs, against), cfg.audit.split, cfg.audit.n_boot,
                                                cfg.audit.seed, cfg.audit.alpha)
        notes = notes + skipped
        extra = [Section(f"Paired differences against {against}", text=against_text(against, cfg.audit.alpha),
                         html=frame_to_html(against_frame), markdown=frame_to_markdown(against_frame))]
    comparison = compare_runs([runs[k] for k in order], out_dir=out / "compare",
                              names=[label[m] for m, _ in order], cfg=cfg.audit,
                              columns=list(cfg.columns) if cfg.columns else None, extra_sections=extra)
    rows = []
    for (method, seed), path in runs.items():
        config = RunDir(path, create=False).read_config()
        audit = audits[(method, seed)]
        n_cls = len(audit.get("classes") or []) if cfg.audit.full_classes else None
        baseline = config.get("baseline")
        parent = config.get("parent")
        row: dict[str, Any] = {"method": method, "name": label[method], "seed": seed, "run_dir": str(path),
                               "kind": config.get("kind", "train"), "parent": parent, "baseline": baseline}
        for k in SUMMARY_KEYS:
            row[k] = float((audit.get("metrics") or {}).get(k, math.nan))
        vs_cache: dict[str, dict[str, dict[str, float]]] = {}
        for which, ref in (("baseline", baseline), ("parent", parent)):
            if not ref or Path(ref).resolve() == path.resolve():
                vs = {}
            else:
                key = str(Path(ref).resolve())
                if key not in vs_cache:
                    vs_cache[key] = fate_against(path, Path(ref), cfg.audit, n_cls)
                vs = vs_cache[key]
            for fc in FATE_CRITERIA:
                est, lo, hi = _cell(vs.get(f"fate_{fc}"))
                row[f"fate_{fc}_vs_{which}"] = est
                row[f"fate_{fc}_vs_{which}_lo"] = lo
                row[f"fate_{fc}_vs_{which}_hi"] = hi
        fp = RunDir(path, create=False).read_metrics().get("fairprune") or {}
        row["privileged"] = fp.get("privileged")
        row["sparsity"] = fp.get("sparsity")
        rows.append(row)
    frame = pd.DataFrame(rows)
    summary = _summary(frame)
    csv_path, summary_csv = out / "table.csv", out / "table_summary.csv"
    frame.to_csv(csv_path, index=False, float_format="%.10g")
    summary.to_csv(summary_csv, index=False, float_format="%.10g")
    html_path, md_path = _write_pages(out, cfg, frame, summary, comparison, notes)
    return TableResult(out=out, runs=dict(runs), frame=frame, summary=summary, comparison=comparison,
                       csv_path=csv_path, summary_csv_path=summary_csv, md_path=md_path, html_path=html_path,
                       ran=ran, skipped=skipped, notes=notes + list(getattr(comparison, "notes", [])),
                       against=against_frame, premise=premise_lines(runs))


def premise_lines(runs: dict[tuple[str, int], Path]) -> list[str]:
    """The premise check (SNNL null check) of every SCP run of a table, for the terminal summary."""
    out = []
    for (method, seed), path in sorted(runs.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        if method not in ("scp", "scp-fairprune") or not (path / RunDir.METRICS).exists():
            continue
        null = (RunDir(path, create=False).read_metrics().get("snnl_scores") or {}).get("null")
        if null:
            out.append(f"premise check ({method}-seed{seed}): {null_check_text(null)}")
    return out


def _summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Mean, sd (ddof 1) and number of seeds per method for the headline numbers."""
    keys = list(SUMMARY_KEYS) + [f"fate_{fc}_vs_{w}" for w in ("baseline", "parent") for fc in FATE_CRITERIA]
    out = []
    for method, grp in frame.groupby("method", sort=False):
        rec: dict[str, Any] = {"method": method, "name": grp["name"].iloc[0], "n_seeds": len(grp)}
        for k in keys:
            v = grp[k].to_numpy(dtype=np.float64)
            v = v[np.isfinite(v)]
            rec[f"{k}_mean"] = float(v.mean()) if v.size else math.nan
            rec[f"{k}_sd"] = float(v.std(ddof=1)) if v.size > 1 else math.nan
        out.append(rec)
    return pd.DataFrame(out)


def _present(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value)) and str(value) != ""


def _fmt(est: float, lo: float = math.nan, hi: float = math.nan) -> str:
    if not math.isfinite(est):
        return "—"
    return f"{est:+.3f} [{lo:+.2f}, {hi:+.2f}]" if math.isfinite(lo) and math.isfinite(hi) else f"{est:+.3f}"


def _mean_sd(mean: float, sd: float, n: int, sign: bool = False) -> str:
    if not math.isfinite(mean):
        return "—"
    m = f"{mean:+.3f}" if sign else f"{mean:.3f}"
    return f"{m} ± {sd:.3f}" if math.isfinite(sd) else m + ("" if n <= 1 else " (one finite value)")


def _write_pages(out: Path, cfg: TableConfig, frame: pd.DataFrame, summary: pd.DataFrame, comparison: Any,
                 notes: list[str]) -> tuple[Path, Path]:

    def row_name(r: pd.Series) -> str:
        return f"{r['name']} (seed {r['seed']})" if frame["seed"].nunique() > 1 else str(r["name"])

    fate_rows = {}
    for _, r in frame.iterrows():
        if r["method"] == "vanilla":
            continue
        cells = {"parent": Path(str(r["parent"])).name if _present(r["parent"]) else "—"}
        for which, title in (("baseline", "vs vanilla"), ("parent", "vs parent")):
            for fc in FATE_CRITERIA:
                k = f"fate_{fc}_vs_{which}"
                cells[f"FATE({GAP_LABELS[fc]}) {title}"] = _fmt(r[k], r[k + "_lo"], r[k + "_hi"])
        fate_rows[row_name(r)] = cells
    sections = []
    runs_df = pd.DataFrame({"method": frame["name"].to_numpy(), "seed": frame["seed"].to_numpy(),
                            "folder": frame["run_dir"].to_numpy(),
                            "parent": [Path(str(p)).name if _present(p) else "—" for p in frame["parent"]]},
                           index=pd.Index([row_name(r) for _, r in frame.iterrows()], name="run"))
    sections.append(Section("Runs", text="Every method ran into its own run folder; SCP-FairPrune starts from the "
                            "FairPrune model of the same seed, every other method from the vanilla model.",
                            html=frame_to_html(runs_df), markdown=frame_to_markdown(runs_df)))
    table = comparison.table
    sections.append(Section("Table 1", text="Test split, bootstrap intervals; FATE against the vanilla baseline "
                            "of each chain; best value per column in bold.",
                            html=table.to_html(), markdown=table.to_markdown()))
    if fate_rows:
        fdf = pd.DataFrame.from_dict(fate_rows, orient="index")
        fdf.index.name = "run"
        sections.append(Section(
            "FATE against the vanilla baseline and against the parent",
            text="For a chain (SCP on top of FairPrune) the two differ: 'vs vanilla' measures the whole chain, "
                 "'vs parent' only the last step against the model it started from. For single-step methods the "
                 "parent is the vanilla model and the two columns agree.",
            html=frame_to_html(fdf), markdown=frame_to_markdown(fdf)))
    if (summary["n_seeds"] > 1).any():
        sdf = pd.DataFrame({
            "seeds": summary["n_seeds"].to_numpy(),
            **{lab: [_mean_sd(r[f"{k}_mean"], r[f"{k}_sd"], r["n_seeds"]) for _, r in summary.iterrows()]
               for k, lab in (("f1", "macro F1"), ("f1_diff", GAP_LABELS["f1_diff"]), ("eodd", GAP_LABELS["eodd"]))},
            **{lab: [_mean_sd(r[f"{k}_mean"], r[f"{k}_sd"], r["n_seeds"], sign=True) for _, r in summary.iterrows()]
               for k, lab in (("fate_eodd_vs_baseline", "FATE(Eodd) vs vanilla"),
                              ("fate_eodd_vs_parent", "FATE(Eodd) vs parent"))},
        }, index=pd.Index(summary["name"].to_numpy(), name="method"))
        sections.append(Section("Mean ± sd over seeds", text="The spread over seeds is training noise that the "
                                "per-run bootstrap intervals do not include; read a ranking from these rows.",
                                html=frame_to_html(sdf), markdown=frame_to_markdown(sdf)))
    privileged = frame.loc[frame["method"] == "fairprune", "privileged"].dropna().unique().tolist()
    facts = [f"Seeds: {', '.join(map(str, sorted(frame['seed'].unique())))}.",
             f"FairPrune: pr {cfg.fairprune.pr}, beta {cfg.fairprune.beta}, estimator {cfg.fairprune.estimator}"
             + (f", privileged group {', '.join(str(int(p)) for p in privileged)}" if privileged else "") + ".",
             "SCP and controls: " + (f"{cfg.scp.n} channels" if cfg.scp.n is not None else f"ratio {cfg.scp.ratio}")
             + f" per iteration, at most {cfg.scp.max_iters} iterations, layer {cfg.scp.layer or 'last conv'}.",
             "The full comparison page (with cost and plots) is compare/compare.html."]
    sections.append(Section("Settings and notes", text="\n\n".join(facts + notes)))
    return write_page(out, "table", "equiprune Table 1: fairness pruning methods compared", sections,
                      f"{len(frame)} runs audited on the {cfg.audit.split} split.")
