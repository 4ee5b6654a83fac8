"""Self-contained report pages (HTML with embedded PNGs, and Markdown with PNG files).

A page is a title plus a list of :class:`Section` (title, plain text, an HTML
fragment and its Markdown twin, images). Method modules add their own
sections either by passing them to :func:`write_run_report` or, so that they
survive a later ``equiprune audit`` rewriting the report, by storing them in
the run folder with :func:`add_report_section`.

The HTML has inline CSS, images as base64 ``data:`` URIs, no script and no
external URL: it opens from a file, offline, and can be mailed as one file.
"""
from __future__ import annotations

import base64
import html
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import pandas as pd

from ..data.atomic import atomic_write_bytes, atomic_write_text
from ..engine import RunDir, read_json, write_json
from ..metrics import FATE_CRITERIA, GAP_LABELS
from ..metrics.numbers import float_or_nan as _f  # one rule for stored numbers
from . import plots
from .scores import score_sections, tradeoff_findings
from .tables import (cost_frame, frame_to_html, frame_to_markdown, group_labels, make_table1, md_text,
                     row_from_audit)

__all__ = [
    "Image",
    "Section",
    "render_html",
    "render_markdown",
    "write_page",
    "run_report_sections",
    "write_run_report",
    "add_report_section",
    "load_report_sections",
    "explain",
    "SECTIONS_FILE",
    "data_uri",
]

SECTIONS_FILE = "report_sections.json"
PLOTS_DIR = "plots"


@dataclass
class Image:
    """A PNG with a caption; `name` is its file stem in the Markdown report's plots/ folder."""

    caption: str
    png: bytes
    name: str = ""


@dataclass
class Section:
    """One block of a report page.

    ``text``: plain text (escaped; blank lines separate paragraphs). ``html``: a
    trusted HTML fragment (e.g. a table); ``markdown``: what report.md shows in
    its place (the HTML itself when empty). ``images``: PNGs shown below.
    """

    title: str
    text: str = ""
    html: str = ""
    markdown: str = ""
    images: list[Image] = field(default_factory=list)


_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;color:#1d1d1f;
 margin:0;background:#fafafa;line-height:1.45}
main{max-width:1400px;margin:0 auto;padding:24px 20px 48px;background:#fff;min-height:100vh;box-sizing:border-box}
h1{font-size:1.55em;margin:0 0 4px} h2{font-size:1.15em;margin:30px 0 8px;padding-bottom:4px;
 border-bottom:1px solid #e3e3e3} .subtitle{color:#666;margin:0 0 12px}
p{margin:6px 0 10px;max-width:60em}
.scroll{overflow-x:auto}
table{border-collapse:collapse;font-size:.86em;margin:6px 0 12px}
th,td{border:1px solid #ddd;padding:4px 7px;text-align:right;white-space:nowrap}
thead th{background:#f2f4f7;text-align:center} tbody th{text-align:left;background:#fbfbfb}
td.best{background:#e7f5e9} td.best b{color:#0b6b22}
table.kv{width:100%} table.kv td{text-align:left;white-space:normal} table.kv th{width:11em}
table.table1{font-size:.74em} table.table1 td,table.table1 th{padding:2px 3px}
table.table1 .ci{font-size:.8em;letter-spacing:-.02em}
table.table1 tbody th{white-space:normal;max-width:8.5em;overflow-wrap:anywhere}
table.plain td{text-align:left} .ci{color:#666;font-size:.85em}
figure{margin:10px 0 18px} figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{color:#555;font-size:.88em}
.note{color:#555;font-size:.9em}
footer{margin-top:36px;color:#888;font-size:.8em}
"""


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "plot"


def _paragraphs(text: str) -> str:
    return "".join(f"<p>{html.escape(p.strip())}</p>" for p in re.split(r"\n\s*\n", text) if p.strip())


def data_uri(png: bytes) -> str:
    """A PNG as a base64 data: URI."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def render_html(title: str, sections: Sequence[Section], subtitle: str = "") -> str:
    """The whole page as one self-contained HTML string."""
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             '<meta name="viewport" content="width=device-width, initial-scale=1">',
             f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body><main>",
             f"<h1>{html.escape(title)}</h1>"]
    if subtitle:
        parts.append(f'<p class="subtitle">{html.escape(subtitle)}</p>')
    for s in sections:
        parts.append(f'<section id="{_slug(s.title)}"><h2>{html.escape(s.title)}</h2>')
        if s.text:
            parts.append(_paragraphs(s.text))
        if s.html:
            parts.append(f'<div class="scroll">{s.html}</div>')
        for im in s.images:
            parts.append(f'<figure><img src="{data_uri(im.png)}" alt="{html.escape(im.caption, quote=True)}">'
                         f"<figcaption>{html.escape(im.caption)}</figcaption></figure>")
        parts.append("</section>")
    parts.append("<footer>Made by equiprune. Self-contained page: no network access needed.</footer>")
    parts.append("</main></body></html>")
    return "\n".join(parts)


def render_markdown(title: str, sections: Sequence[Section], out_dir: str | Path, subtitle: str = "",
                    plots_dir: str = PLOTS_DIR) -> str:
    """The page as Markdown; PNGs are written to ``out_dir/plots_dir`` and linked relatively."""
    out_dir = Path(out_dir)
    lines = [f"# {md_text(title)}", ""]
    if subtitle:
        lines += [md_text(subtitle), ""]
    used: set[str] = set()
    for s in sections:
        lines += [f"## {md_text(s.title)}", ""]
        if s.text:
            lines += [md_text(s.text.strip()), ""]
        body = s.markdown or s.html
        if body:
            lines += [body.rstrip(), ""]
        for im in s.images:
            stem = _slug(im.name or f"{s.title}-{im.caption}")
            while stem in used:
                stem += "-1"
            used.add(stem)
            (out_dir / plots_dir).mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(out_dir / plots_dir / f"{stem}.png", im.png)
            caption = md_text(im.caption)
            lines += [f"![{caption}]({plots_dir}/{stem}.png)", "", f"*{caption}*", ""]
    return "\n".join(lines).rstrip() + "\n"


def write_page(out_dir: str | Path, stem: str, title: str, sections: Sequence[Section],
               subtitle: str = "") -> tuple[Path, Path]:
    """Write ``<stem>.html`` and ``<stem>.md`` (+ ``plots/*.png``) into `out_dir`."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    html_path, md_path = out_dir / f"{stem}.html", out_dir / f"{stem}.md"
    for path, text in ((html_path, render_html(title, sections, subtitle)),
                       (md_path, render_markdown(title, sections, out_dir, subtitle))):
        atomic_write_text(path, text)
    return html_path, md_path


# --------------------------------------------------------------- stored sections


def add_report_section(run_path: str | Path, title: str, text: str = "", html_fragment: str = "",
                       markdown: str = "", images: Sequence[tuple[str, bytes]] = ()) -> None:
    """Store a section in a run folder; every later report of that run shows it.

    A section with the same title replaces the old one. Images go to
    ``plots/section-<title>-<i>.png``. Use this from a method (SNNL score plots,
    FATE per iteration, ...) so that `equiprune audit` keeps the section.
    """
    rd = RunDir(run_path, create=False)
    f = rd.file(SECTIONS_FILE)
    stored = read_json(f) if f.exists() else []
    stored = [s for s in stored if s.get("title") != title]
    files = []
    for i, (caption, png) in enumerate(images):
        rel = f"{PLOTS_DIR}/section-{_slug(title)}-{i}.png"
        (rd.path / PLOTS_DIR).mkdir(exist_ok=True)
        atomic_write_bytes(rd.path / rel, png)
        files.append({"caption": caption, "file": rel})
    stored.append({"title": title, "text": text, "html": html_fragment, "markdown": markdown, "images": files})
    write_json(f, stored)


def load_report_sections(run_path: str | Path) -> list[Section]:
    """The sections stored by :func:`add_report_section` (images missing on disk are skipped)."""
    f = Path(run_path) / SECTIONS_FILE
    if not f.exists():
        return []
    out = []
    for s in read_json(f):
        images = [Image(im["caption"], (Path(run_path) / im["file"]).read_bytes(), Path(im["file"]).stem)
                  for im in s.get("images", []) if (Path(run_path) / im["file"]).exists()]
        out.append(Section(s.get("title", ""), s.get("text", ""), s.get("html", ""), s.get("markdown", ""), images))
    return out


# --------------------------------------------------------------------- run report


def _kv(pairs: Sequence[tuple[str, str]]) -> tuple[str, str]:
    """(html, markdown) of a two-column key/value table."""
    rows = "".join(f'<tr><th scope="row">{html.escape(k)}</th><td>{html.escape(v)}</td></tr>' for k, v in pairs)
    df = pd.DataFrame({"value": [v for _, v in pairs]}, index=[k for k, _ in pairs])
    return f'<table class="kv"><tbody>{rows}</tbody></table>', frame_to_markdown(df, index_name="")


def _settings_text(d: Any) -> str:
    if not isinstance(d, Mapping):
        return str(d)
    items = []
    for k, v in d.items():
        if v is None:  # unset options only add noise to the summary
            continue
        if isinstance(v, Mapping):
            items.append(f"{k}: ({_settings_text(v)})")
        elif isinstance(v, (list, tuple)) and len(v) > 8:
            items.append(f"{k}=[{len(v)} values]")
        else:
            items.append(f"{k}={v}")
    return ", ".join(items)


def _summary_pairs(run_path: Path, config: Mapping[str, Any], audit: Mapping[str, Any] | None) -> list[tuple[str, str]]:
    pairs = [("run folder", str(run_path.resolve())), ("kind", str(config.get("kind", "?")))]
    data = dict(config.get("data") or {})
    if data.get("name") not in (None, "synthderm"):
        data.pop("synthderm", None)   # the generator's settings say nothing about real data
    if data:
        pairs.append(("data", _settings_text(data)))
    coding = (audit or {}).get("group_coding") or config.get("group_coding")
    if coding:
        pairs.append(("group coding", str(coding)))
    arch = config.get("arch") or {}
    if arch:
        pairs.append(("model", _settings_text(arch)))
    if config.get("classes"):
        pairs.append(("classes", ", ".join(map(str, config["classes"]))))
    for key, label in (("train", "training"), ("settings", "method settings")):
        if config.get(key):
            pairs.append((label, _settings_text(config[key])))
    if config.get("checkpoint"):
        pairs.append(("checkpoint", str(config["checkpoint"])))
    if config.get("parent"):
        pairs.append(("parent run", str(config["parent"])))
    if config.get("lineage"):
        pairs.append(("lineage", " → ".join(str(p) for p in config["lineage"]) + " → this run"))
    if config.get("baseline"):
        pairs.append(("baseline (config.json)", str(config["baseline"])))
    if audit:
        st = audit.get("settings") or {}
        pairs.append(("audit", f"split={audit.get('split')}, {st.get('n_boot')} stratified bootstrap resamples, "
                               f"seed={st.get('seed')}, {int(round(100 * (1 - _f(st.get('alpha', 0.05)))))}% "
                               f"intervals, FATE lambda={st.get('fate_lambda')}"))
        base = audit.get("baseline")
        if base:
            where = f"{base.get('path')} (from {base.get('source')})" if base.get("path") else \
                "predictions passed to audit_model"
            pairs.append(("baseline used", where))
    return pairs


def _interval_text(iv: Mapping[str, Any] | None) -> str:
    if not iv:
        return ""
    return f"[{_f(iv.get('lo')):.3f}, {_f(iv.get('hi')):.3f}]"


def explain(audit: Mapping[str, Any], baseline_name: str = "the baseline") -> str:
    """A plain-language reading of an audit's numbers (paragraphs separated by blank lines)."""
    m = audit.get("metrics") or {}
    g0, g1 = (list(audit.get("group_names") or []) + ["group 0", "group 1"])[:2]
    level = int(round(100 * (1 - _f((audit.get("settings") or {}).get("alpha", 0.05)))))
    paras = []
    paras.append(
        f"On the {audit.get('split', 'test')} split ({int(_f(m.get('n')))} images: {int(_f(m.get('n_g0')))} "
        f"{g0}, {int(_f(m.get('n_g1')))} {g1}) the model's overall accuracy is {_f(m.get('acc')):.3f} "
        f"and its macro F1 {_f(m.get('f1')):.3f}.")
    sg = (audit.get("signed_gaps") or {}).get("f1")
    f0, f1v = _f(m.get("f1_g0")), _f(m.get("f1_g1"))
    if math.isfinite(f0) and math.isfinite(f1v):
        if f0 == f1v:
            s = f"Both groups have the same macro F1 ({f0:.3f})."
        else:
            low, high = (g0, g1) if f0 < f1v else (g1, g0)
            s = (f"The {low} group has the lower macro F1 ({min(f0, f1v):.3f} against {max(f0, f1v):.3f} "
                 f"for {high}).")
        if sg and math.isfinite(_f(sg.get("lo"))):
            lo, hi = _f(sg["lo"]), _f(sg["hi"])
            s += (f" The difference {g0} minus {g1} is {_f(sg.get('estimate')):+.3f}, {level}% interval "
                  f"[{lo:+.3f}, {hi:+.3f}], which ")
            if lo > 0 or hi < 0:
                s += "excludes 0: the gap is larger than what resampling the test images would produce by chance."
            else:
                s += ("includes 0: with this many images the data do not show a reliable F1 difference "
                      "between the groups.")
        paras.append(s)
    eodd = (audit.get("intervals") or {}).get("eodd") or {"estimate": m.get("eodd")}
    paras.append(
        f"The equalized-odds gap Eodd is {_f(eodd.get('estimate')):.3f} {_interval_text(eodd)}".rstrip()
        + f"; Eopp1 (true-positive rate gap) is {_f(m.get('eopp1')):.3f} and Eopp0 (true-negative rate gap) "
          f"{_f(m.get('eopp0')):.3f}. 0 would mean both groups have the same per-class error rates.")
    n_small = [(g, int(_f(m.get(k)))) for g, k in ((g0, "n_g0"), (g1, "n_g1")) if _f(m.get(k)) < 30]
    for g, n in n_small:
        paras.append(f"The {g} group has only {n} images in this split, so its numbers and every gap are "
                     "imprecise (wide intervals).")
    base = audit.get("baseline")
    paired = audit.get("paired") or {}
    if base and paired:
        pf, pe = paired.get("f1") or {}, paired.get("eodd") or {}
        s = (f"Compared with {baseline_name} on the same images (paired bootstrap), macro F1 changed by "
             f"{_f(pf.get('estimate')):+.3f} [{_f(pf.get('lo')):+.3f}, {_f(pf.get('hi')):+.3f}] and Eodd by "
             f"{_f(pe.get('estimate')):+.3f} [{_f(pe.get('lo')):+.3f}, {_f(pe.get('hi')):+.3f}].")
        if pe:
            if pe.get("excludes_zero"):
                s += (" The Eodd change is outside resampling noise: the model is "
                      + ("fairer" if _f(pe.get("estimate")) < 0 else "less fair") + " than the baseline on Eodd.")
            else:
                s += " The Eodd change is within resampling noise."
        fe = _f((audit.get("fate") or {}).get("fate_eodd"))
        if math.isfinite(fe):
            s += (f" FATE(Eodd) = {fe:+.3f}: "
                  + ("the relative fairness gain outweighs the relative accuracy change." if fe > 0 else
                     "the relative accuracy loss (or fairness loss) outweighs the gain." if fe < 0 else
                     "gain and loss balance."))
        paras.append(s)
        paras += tradeoff_findings(audit, "This model", baseline_name)
    mg = audit.get("multigroup")
    if mg and mg.get("gaps"):
        by = {r["metric"]: r for r in mg["gaps"]}
        parts = []
        if "f1" in by:
            r = by["f1"]
            parts.append(f"macro F1 ranges from {_f(r.get('value_b')):.3f} ({r.get('name_b')}) to "
                         f"{_f(r.get('value_a')):.3f} ({r.get('name_a')})")
        if "eodd" in by:
            r = by["eodd"]
            parts.append(f"the largest pairwise Eodd is {_f(r.get('gap')):.3f}, between {r.get('name_a')} and "
                         f"{r.get('name_b')}")
        if parts:
            paras.append(f"By {mg.get('column')}: " + "; ".join(parts) + " (no intervals for the multi-group audit).")
    return "\n\n".join(paras)


def paired_frame(audit: Mapping[str, Any]) -> pd.DataFrame | None:
    paired = audit.get("paired") or {}
    if not paired:
        return None
    keys = [("acc", "accuracy"), ("f1", "macro F1"), ("f1_g0", None), ("f1_g1", None),
            *((k, GAP_LABELS[k]) for k in ("f1_diff", *FATE_CRITERIA, "dp"))]
    g0, g1 = (list(audit.get("group_names") or []) + ["group 0", "group 1"])[:2]
    rows = {}
    for k, label in keys:
        p = paired.get(k)
        if not p:
            continue
        label = label or f"F1 {g0 if k.endswith('g0') else g1}"
        rows[label] = {"baseline": f"{_f(p['estimate_a']):.3f}", "this model": f"{_f(p['estimate_b']):.3f}",
                       "change": f"{_f(p['estimate']):+.3f}",
                       "interval": f"[{_f(p['lo']):+.3f}, {_f(p['hi']):+.3f}]",
                       "beyond noise": "yes" if p.get("excludes_zero") else "no"}
    df = pd.DataFrame.from_dict(rows, orient="index")
    df.index.name = "metric"
    return df


def format_paired_terminal(audit: Mapping[str, Any]) -> str:
    """The paired differences against the baseline as terminal text ('' when the audit has none)."""
    pf = paired_frame(audit)
    if pf is None:
        return ""
    return "paired bootstrap, this model minus the baseline on the same images:\n" + pf.to_string()


def _multigroup_frames(mg: Mapping[str, Any]) -> tuple[pd.DataFrame, pd.DataFrame]:
    t = pd.DataFrame(mg["table"])
    cols = [c for c in ("name", "n", "accuracy", "precision", "recall", "f1", "mean_tpr", "mean_tnr", "mean_fpr")
            if c in t.columns]
    t = t[cols].set_index("name")
    t = t.apply(lambda s: s.map(lambda v: f"{v:.3f}" if isinstance(v, float) else v))
    g = pd.DataFrame(mg["gaps"])
    g = g.assign(gap=g["gap"].map(lambda v: f"{v:.3f}"),
                 between=g["name_a"].astype(str) + " vs " + g["name_b"].astype(str))[["metric", "kind", "gap",
                                                                                      "between"]]
    return t, g.set_index("metric")


def skin_tone_section(st: Mapping[str, Any]) -> Section:
    """The audit's skin tone estimated from the pixels: ITA categories against the given group, flagged images."""
    conf = st.get("confusion") or {}
    frame = pd.DataFrame(conf.get("counts") or [], index=conf.get("rows"), columns=conf.get("columns"))
    frame.index.name = "given group"
    text = ("Skin tone estimated from each image's pixels (equiprune.data.skin_tone: median ITA over a skin mask "
            "taken from the image's border band, the lesion and dark, bright and blue-grey pixels left out). Rows: "
            "the group the data gives; columns: the six ITA categories.")
    fa = st.get("fitzpatrick_agreement")
    if fa and fa.get("n"):
        text += (f"\n\nAgainst the Fitzpatrick type in the data ({fa['n']} images): the ITA category equals the "
                 f"type for {100 * _f(fa['exact']):.1f}% and is within one category for "
                 f"{100 * _f(fa['within_one']):.1f}%.")
    flagged = list(st.get("flagged") or [])
    n_flagged = int(st.get("n_flagged") or 0)
    text += (f"\n\n{n_flagged} of {st.get('n')} images have too few skin pixels for an ITA and form the group "
             f"'unknown' (no number is made up for them)" + (": " + ", ".join(map(str, flagged[:30]))
                                                             + (" ..." if n_flagged > 30 else "") if flagged else "")
             + ".")
    return Section("Skin tone estimated from the pixels (ITA)", text=text, html=frame_to_html(frame),
                   markdown=frame_to_markdown(frame))


def run_report_sections(run_path: str | Path, split: str = "test",
                        extra_sections: Sequence[Section] = ()) -> tuple[str, str, list[Section]]:
    """(title, subtitle, sections) of a run folder's report, from config.json and metrics.json."""
    from ..methods.audit import audit_section_name

    rd = RunDir(run_path, create=False)
    config = rd.read_config() if rd.file(RunDir.CONFIG).exists() else {}
    metrics = rd.read_metrics()
    audit = metrics.get(audit_section_name(split))
    name = rd.path.resolve().name
    title = f"equiprune report: {name}"
    sections: list[Section] = []
    if audit:
        g = group_labels(audit)
        subtitle = (f"{config.get('kind', 'run')} run, audited on the {audit.get('split')} split; "
                    f"numbers are estimates with {int(round(100 * (1 - _f((audit.get('settings') or {}).get('alpha', 0.05)))))}% "
                    "bootstrap intervals.")
        base = audit.get("baseline")
        base_name = Path(base["path"]).name if base and base.get("path") else "baseline"
        sections.append(Section("What this means", text=explain(
            audit, f"the baseline ({base_name})" if base_name != "baseline" else "the baseline")))
        base_label = base_name if base_name == "baseline" else f"{base_name} (baseline)"
        rows = [row_from_audit(name, audit)]
        if base:
            rows.append(row_from_audit(base_label, {
                "metrics": base.get("metrics"), "intervals": base.get("intervals") or {}}))
        t1 = make_table1(rows, g)
        sections.append(Section(
            "Table 1: accuracy and fairness by group",
            text="Precision, recall and F1 are macro averages over classes within each group; Avg. is the mean "
                 "of the two groups and Diff. their absolute difference. Eopp0/Eopp1/Eodd are the papers' "
                 "fairness gaps (lower is fairer); FATE compares with the baseline (higher is better). "
                 "Best value per column in bold when there is something to compare.",
            html=t1.to_html(), markdown=t1.to_markdown()))
        sections += [Section(d["title"], d["text"], d["html"], d["markdown"], [Image(*im) for im in d["images"]])
                     for d in score_sections(audit)]
        pf = paired_frame(audit)
        if pf is not None:
            sections.append(Section("Change against the baseline (paired bootstrap)",
                                    html=frame_to_html(pf), markdown=frame_to_markdown(pf)))
        costs = {}
        if audit.get("cost"):
            costs[name] = audit["cost"]
        if base and base.get("cost"):
            costs[base_label] = base["cost"]
        if costs:
            cf = cost_frame(costs)
            sections.append(Section("Cost", text="MACs of one forward pass at the training image size, "
                                                 "parameters, serialized size and median latency of one image (batch 1) on the "
                                                 "audit's device, after 5 warm-up passes, over 30 passes in 3 "
                                                 "blocks, with its 10-90% range; marked unreliable when that "
                                                 "range or the blocks' medians spread by more than half the "
                                                 "median (other jobs' load, not the model, then decides it).",
                                    html=frame_to_html(cf), markdown=frame_to_markdown(cf)))
        images = [Image("Per-group precision, recall and F1, and the fairness gaps, with bootstrap whiskers",
                        plots.group_bars_png(audit), "group-metrics")]
        if (audit.get("confusion") or {}).get("counts"):
            images.append(Image("Confusion matrices by group, each row normalised to the true class",
                                plots.confusion_png(audit), "confusion"))
        sections.append(Section("Plots", images=images))
        mg = audit.get("multigroup")
        if mg:
            t, gaps = _multigroup_frames(mg)
            img = plots.multigroup_png(audit)
            sections.append(Section(
                f"Audit by {mg.get('column')} (equiprune extension)",
                text="Per-group numbers for every value of the column, and the worst gaps: max - min over groups "
                     "for the per-group numbers, the largest pairwise value for the paper gaps.",
                html=frame_to_html(t) + frame_to_html(gaps), markdown=frame_to_markdown(t) + "\n" +
                frame_to_markdown(gaps), images=[Image(f"Accuracy and F1 by {mg.get('column')}", img, "multigroup")]
                if img else []))
        if audit.get("skin_tone"):
            sections.append(skin_tone_section(audit["skin_tone"]))
    else:
        subtitle = "not audited yet: run `equiprune audit --run " + str(rd.path) + "` for the numbers."
    history = metrics.get("history") or []
    hp = plots.history_png(history) if history else None
    if hp:
        sections.append(Section("Training history", images=[Image("Per-epoch / per-iteration records of "
                                                                   "metrics.json", hp, "history")]))
    sections += load_report_sections(rd.path)
    sections += list(extra_sections)
    summary_html, summary_md = _kv(_summary_pairs(rd.path, config, audit))
    sections.insert(0, Section("Run", html=summary_html, markdown=summary_md))
    if metrics.get("training_warnings"):  # a model that learned nothing must not be read as audited evidence
        sections.insert(0, Section("Warning: training did not learn",
                                   text="\n\n".join(map(str, metrics["training_warnings"]))))
    warned = list((audit or {}).get("warnings") or [])
    if warned:  # above everything: a zero gap from a constant classifier is not fairness
        sections.insert(0, Section("Warning", text="\n\n".join(f"Warning: {w}" for w in warned)))
    notes = list((audit or {}).get("notes") or [])
    if notes:
        sections.append(Section("Notes", text="\n\n".join(notes)))
    return title, subtitle, sections


def write_run_report(run_path: str | Path, split: str = "test",
                     extra_sections: Sequence[Section] = ()) -> tuple[Path, Path]:
    """Write report.html and report.md (+ plots/) into a run folder; returns their paths."""
    title, subtitle, sections = run_report_sections(run_path, split, extra_sections)
    return write_page(run_path, "report", title, sections, subtitle)

