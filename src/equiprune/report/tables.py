"""The papers' Table 1 layout with 95% intervals, best cells marked; Markdown, HTML and CSV export.

Rows are models (or methods); columns are Precision / Recall / F1, each for the
two groups with their average ("Avg.") and absolute difference ("Diff."), then
Eopp0, FATE(Eopp0), Eopp1, FATE(Eopp1), Eodd, FATE(Eodd). Higher is better
for the accuracy numbers and FATE, lower for Diff. and the fairness gaps.

A cell holds an estimate with a bootstrap interval (``0.812 [0.79, 0.83]``) or,
for a group of runs that differ only by seed, the mean and standard deviation
over the runs (``0.812 ± 0.010 (n=3)``).
"""
from __future__ import annotations

import html
import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from ..data.atomic import atomic_write_text
from ..methods.audit import SMALL_GROUP
from ..metrics import FATE_CRITERIA, GAP_LABELS
from ..metrics.numbers import float_or_nan as _f  # one rule for stored numbers

__all__ = [
    "Cell",
    "TableRow",
    "Table1",
    "TABLE1_COLUMNS",
    "make_table1",
    "row_from_audit",
    "read_table1_csv",
    "parse_markdown_table",
    "frame_to_markdown",
    "frame_to_html",
    "cost_frame",
    "format_cell",
    "format_terminal",
]

MISSING = "—"


@dataclass(frozen=True)
class Column:
    """One Table 1 column: header (two levels), metric key, +1 if higher is better else -1."""

    top: str
    sub: str  # "g0" / "g1" are replaced by the group names
    key: str
    sense: int


def _build_columns() -> tuple[Column, ...]:
    cols: list[Column] = []
    for top, base in (("Precision", "precision"), ("Recall", "recall"), ("F1", "f1")):
        cols += [Column(top, "g0", f"{base}_g0", 1), Column(top, "g1", f"{base}_g1", 1),
                 Column(top, "Avg.", f"{base}_avg", 1), Column(top, "Diff.", f"{base}_diff", -1)]
    for fc in FATE_CRITERIA:
        label = GAP_LABELS[fc]
        cols += [Column(label, "", fc, -1), Column(f"FATE({label})", "", f"fate_{fc}", 1)]
    return tuple(cols)


TABLE1_COLUMNS: tuple[Column, ...] = _build_columns()
_KEYS = [c.key for c in TABLE1_COLUMNS]


@dataclass(frozen=True)
class Cell:
    """A number with an optional interval [lo, hi], or a mean with sd over n runs."""

    estimate: float
    lo: float = math.nan
    hi: float = math.nan
    sd: float = math.nan
    n: int = 1


@dataclass
class TableRow:
    """One row: a display name and cells by metric key (missing keys show as —)."""

    name: str
    cells: dict[str, Cell] = field(default_factory=dict)


def format_cell(cell: Cell | None, digits: int = 3, ci_digits: int = 2) -> str:
    """``0.812 [0.79, 0.83]``, ``0.812 ± 0.010 (n=3)``, ``0.812`` or — when missing."""
    if cell is None or not math.isfinite(cell.estimate):
        return MISSING
    est = f"{cell.estimate:.{digits}f}"
    if cell.n > 1:
        sd = f"{cell.sd:.{digits}f}" if math.isfinite(cell.sd) else "?"
        return f"{est} ± {sd} (n={cell.n})"
    if math.isfinite(cell.lo) and math.isfinite(cell.hi):
        return f"{est} [{cell.lo:.{ci_digits}f}, {cell.hi:.{ci_digits}f}]"
    return est


def row_from_audit(name: str, audit: Mapping[str, Any]) -> TableRow:
    """A TableRow from an audit dict (the ``audit`` section of metrics.json)."""
    cells: dict[str, Cell] = {}
    intervals = audit.get("intervals") or {}
    metrics = audit.get("metrics") or {}
    for key in _KEYS:
        if key.startswith("fate_"):
            continue
        iv = intervals.get(key)
        if iv is not None:
            cells[key] = Cell(_f(iv.get("estimate")), _f(iv.get("lo")), _f(iv.get("hi")))
        elif key in metrics:
            cells[key] = Cell(_f(metrics[key]))
    fate = audit.get("fate") or {}
    fate_iv = audit.get("fate_intervals") or {}
    for fc in FATE_CRITERIA:
        k = f"fate_{fc}"
        if k in fate_iv:
            iv = fate_iv[k]
            cells[k] = Cell(_f(iv.get("estimate")), _f(iv.get("lo")), _f(iv.get("hi")))
        elif fate.get(k) is not None:
            cells[k] = Cell(_f(fate[k]))
    return TableRow(name, cells)


def _best_mask(values: pd.DataFrame) -> pd.DataFrame:
    """True where a cell holds its column's best value (ties all marked; needs 2+ values)."""
    best = pd.DataFrame(False, index=values.index, columns=values.columns)
    for col in TABLE1_COLUMNS:
        v = values[col.key].to_numpy(dtype=np.float64)
        ok = np.isfinite(v)
        if ok.sum() < 2:
            continue
        target = np.nanmax(v) if col.sense > 0 else np.nanmin(v)
        best[col.key] = ok & np.isclose(v, target, rtol=0.0, atol=1e-12)
    return best


@dataclass
class Table1:
    """Table 1 of the papers: numeric frames (columns = metric keys) plus the formatted view.

    ``estimate``/``lo``/``hi``/``sd``/``n``: one row per model, one column per key of
    TABLE1_COLUMNS. ``best``: bool, the best cell per column. ``frame``: formatted
    strings with two-level column headers (group names filled in).
    """

    estimate: pd.DataFrame
    lo: pd.DataFrame
    hi: pd.DataFrame
    sd: pd.DataFrame
    n: pd.DataFrame
    best: pd.DataFrame
    frame: pd.DataFrame
    group_names: tuple[str, str]

    @property
    def names(self) -> list[str]:
        return [str(i) for i in self.estimate.index]

    def header(self, col: Column) -> tuple[str, str]:
        """(top, sub) header of a column with the group names filled in."""
        sub = {"g0": self.group_names[0], "g1": self.group_names[1]}.get(col.sub, col.sub)
        return col.top, sub

    def flat_header(self, col: Column) -> str:
        top, sub = self.header(col)
        return f"{top} {sub}" if sub else top

    def to_markdown(self) -> str:
        """GitHub Markdown table; best cells in bold."""
        headers = ["Model"] + [self.flat_header(c) for c in TABLE1_COLUMNS]
        rows = []
        for i, name in enumerate(self.names):
            cells = [str(name)]
            for j, col in enumerate(TABLE1_COLUMNS):
                text = self.frame.iat[i, j]
                cells.append(f"**{text}**" if self.best.iat[i, j] else text)
            rows.append(cells)
        return _markdown(headers, rows)

    def to_html(self, css_class: str = "table1") -> str:
        """HTML table with a two-row header; best cells have class ``best`` and are bold."""
        out = [f'<table class="{css_class}">', "<thead>", "<tr><th rowspan=\"2\">Model</th>"]
        tops: list[tuple[str, int, bool]] = []
        for col in TABLE1_COLUMNS:
            top, sub = self.header(col)
            if tops and tops[-1][0] == top and sub:
                tops[-1] = (top, tops[-1][1] + 1, True)
            else:
                tops.append((top, 1, bool(sub)))
        for top, span, has_sub in tops:
            if has_sub:
                out.append(f'<th colspan="{span}">{html.escape(top)}</th>')
            else:
                out.append(f'<th rowspan="2">{html.escape(top)}</th>')
        out.append("</tr><tr>")
        for col in TABLE1_COLUMNS:
            _, sub = self.header(col)
            if sub:
                out.append(f"<th>{html.escape(sub)}</th>")
        out.append("</tr>")
        out.append("</thead><tbody>")
        for i, name in enumerate(self.names):
            out.append(f"<tr><th scope=\"row\">{html.escape(str(name))}</th>")
            for j, _ in enumerate(TABLE1_COLUMNS):
                # Estimate on top, interval (or spread) below in small type: keeps the table narrow.
                main, _, rest = self.frame.iat[i, j].partition(" ")
                text = html.escape(main)
                if self.best.iat[i, j]:
                    text = f"<b>{text}</b>"
                if rest.startswith("± ") and " (n=" in rest:   # a spread over runs: two short lines, not one long
                    sd, _, n = rest[2:].partition(" (n=")
                    text += f'<br><span class="ci">±{html.escape(sd)}<br>n={html.escape(n.rstrip(")"))}</span>'
                elif rest:
                    text += f'<br><span class="ci">{html.escape(rest)}</span>'
                out.append(f'<td class="best">{text}</td>' if self.best.iat[i, j] else f"<td>{text}</td>")
            out.append("</tr>")
        out.append("</tbody></table>")
        return "".join(out)

    def to_csv(self, path: str | Path | None = None, extra: pd.DataFrame | None = None) -> str:
        """CSV, one row per model: name, group names, then per key its estimate, _lo, _hi
        (and _sd, _n when a row aggregates several runs), then `extra` columns.
        Written to `path` when given; the text is returned either way."""
        df = self.numeric_frame()
        if extra is not None:
            df = pd.concat([df.reset_index(drop=True), extra.reset_index(drop=True)], axis=1)
        text = df.to_csv(index=False, float_format="%.10g")
        if path is not None:
            atomic_write_text(path, text)
        return text

    def numeric_frame(self) -> pd.DataFrame:
        """The numbers behind the table as flat columns (what to_csv writes)."""
        data: dict[str, Any] = {"name": self.names,
                                "group_0": [self.group_names[0]] * len(self.names),
                                "group_1": [self.group_names[1]] * len(self.names)}
        aggregated = bool((self.n.to_numpy() > 1).any())
        for key in _KEYS:
            data[key] = self.estimate[key].to_numpy()
            data[f"{key}_lo"] = self.lo[key].to_numpy()
            data[f"{key}_hi"] = self.hi[key].to_numpy()
            if aggregated:
                data[f"{key}_sd"] = self.sd[key].to_numpy()
                data[f"{key}_n"] = self.n[key].to_numpy()
        return pd.DataFrame(data)


def make_table1(rows: Sequence[TableRow], group_names: Sequence[str] = ("g0", "g1"), digits: int = 3,
                ci_digits: int = 2) -> Table1:
    """Build Table 1 from rows; the best cell of every column is marked when 2+ rows have a value."""
    if len(group_names) != 2:
        raise ValueError(f"Table 1 compares two groups; got group names {list(group_names)}.")
    names = [r.name for r in rows]
    index = pd.Index(names, name="model")

    def grid(attr: str, default: float) -> pd.DataFrame:
        return pd.DataFrame([[getattr(r.cells[k], attr) if k in r.cells else default for k in _KEYS] for r in rows],
                            index=index, columns=_KEYS, dtype=np.float64)

    est, lo, hi, sd = grid("estimate", math.nan), grid("lo", math.nan), grid("hi", math.nan), grid("sd", math.nan)
    n = grid("n", 0).astype(np.int64)
    best = _best_mask(est)
    text = [[format_cell(r.cells.get(k), digits, ci_digits) for k in _KEYS] for r in rows]
    gn = (str(group_names[0]), str(group_names[1]))
    table = Table1(est, lo, hi, sd, n, best, pd.DataFrame(), gn)
    columns = pd.MultiIndex.from_tuples([table.header(c) for c in TABLE1_COLUMNS])
    table.frame = pd.DataFrame(text, index=index, columns=columns)
    return table


def read_table1_csv(path_or_text: str | Path, digits: int = 3, ci_digits: int = 2) -> Table1:
    """Rebuild a Table1 from the CSV written by ``Table1.to_csv`` (extra columns are ignored)."""
    src = str(path_or_text)
    if "\n" not in src and Path(src).exists():
        df = pd.read_csv(src)
    else:
        df = pd.read_csv(io.StringIO(src))
    missing = [c for c in ["name"] + _KEYS if c not in df.columns]
    if missing:
        raise ValueError(f"not a Table 1 CSV: columns {missing[:4]} are missing.")
    rows = []
    for _, r in df.iterrows():
        cells = {}
        for k in _KEYS:
            if not math.isfinite(_f(r[k])):
                continue
            n = int(r[f"{k}_n"]) if f"{k}_n" in df.columns and math.isfinite(_f(r[f"{k}_n"])) else 1
            cells[k] = Cell(_f(r[k]), _f(r[f"{k}_lo"]), _f(r[f"{k}_hi"]),
                            _f(r[f"{k}_sd"]) if f"{k}_sd" in df.columns else math.nan, n)
        rows.append(TableRow(str(r["name"]), cells))
    groups = (str(df["group_0"].iloc[0]), str(df["group_1"].iloc[0])) if "group_0" in df.columns and len(df) \
        else ("g0", "g1")
    return make_table1(rows, groups, digits, ci_digits)


# ------------------------------------------------------------------ generic frames


def md_text(text: Any) -> str:
    """User-given text for a Markdown page with every ``<`` escaped, since Markdown viewers render raw HTML
    (a group named ``<img src=x onerror=...>`` must stay text, as in the HTML report). A lone ``>``
    (``FATE > 0``) cannot open a tag and stays readable in the .md file."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;")


def _md_escape(text: str) -> str:
    return md_text(text).replace("|", "\\|").replace("\n", " ")


def _markdown(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(_md_escape(h) for h in headers) + " |",
             "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(_md_escape(c) for c in r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def parse_markdown_table(text: str) -> tuple[list[str], list[list[str]]]:
    """(headers, rows) of the first Markdown table in `text` (inverse of the writers here)."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip().startswith("|")]
    if len(lines) < 2:
        raise ValueError("no Markdown table found")

    def split(line: str) -> list[str]:
        body = line.strip()[1:-1]
        parts, cur, i = [], "", 0
        while i < len(body):
            if body[i] == "\\" and i + 1 < len(body) and body[i + 1] == "|":
                cur += "|"
                i += 2
                continue
            if body[i] == "|":
                parts.append(cur.strip())
                cur = ""
            else:
                cur += body[i]
            i += 1
        parts.append(cur.strip())
        return parts

    return split(lines[0]), [split(ln) for ln in lines[2:]]


def frame_to_markdown(df: pd.DataFrame, index_name: str | None = None) -> str:
    """A small DataFrame as a Markdown table (index as the first column)."""
    headers = [index_name or df.index.name or ""] + [str(c) for c in df.columns]
    rows = [[str(i)] + [str(v) for v in row] for i, row in zip(df.index, df.itertuples(index=False))]
    return _markdown(headers, rows)


def frame_to_html(df: pd.DataFrame, css_class: str = "plain", index_name: str | None = None) -> str:
    """A small DataFrame as an escaped HTML table (index as row headers)."""
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in [index_name or df.index.name or ""] + list(df.columns))
    body = "".join(
        f"<tr><th scope=\"row\">{html.escape(str(i))}</th>"
        + "".join(f"<td>{html.escape(str(v))}</td>" for v in row) + "</tr>"
        for i, row in zip(df.index, df.itertuples(index=False)))
    return f'<table class="{css_class}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _human(x: Any, unit: str = "", base: float = 1000.0) -> str:
    """1234567 -> '1.23 M' (decimal prefixes; `base` 1024 for bytes is not used: sizes are decimal)."""
    v = _f(x)
    if not math.isfinite(v):
        return MISSING
    for prefix, scale in (("G", base**3), ("M", base**2), ("K", base)):
        if abs(v) >= scale:
            return f"{v / scale:.3g} {prefix}{unit}".rstrip()
    return f"{v:.3g} {unit}".rstrip() if v != int(v) else f"{int(v)} {unit}".rstrip()


def _latency_text(c: Mapping[str, Any]) -> str:
    """``1.23 (1.10-1.41)``, marked ``unreliable`` when the spread was too large to compare models by it."""
    lat, lo, hi = _f(c.get("latency_ms")), _f(c.get("latency_p10_ms")), _f(c.get("latency_p90_ms"))
    if not math.isfinite(lat):
        return MISSING
    text = f"{lat:.3g}" + (f" ({lo:.3g}-{hi:.3g})" if math.isfinite(lo) and math.isfinite(hi) else "")
    return text + (" unreliable: busy machine" if _f(c.get("latency_reliable")) == 0.0 else "")


def cost_frame(costs: Mapping[str, Mapping[str, Any] | None]) -> pd.DataFrame:
    """Cost table (strings): MACs, parameters, non-zero parameters, size, latency (ms)."""
    rows = {}
    for name, c in costs.items():
        c = c or {}
        rows[name] = {
            "MACs": _human(c.get("macs")),
            "Params": _human(c.get("params")),
            "Non-zero params": _human(c.get("nonzero_params")),
            "Size": _human(c.get("size_bytes"), "B"),
            "Latency (ms)": _latency_text(c),
        }
    df = pd.DataFrame.from_dict(rows, orient="index")
    df.index.name = "Model"
    return df


# ------------------------------------------------------------------------ terminal


def _pad(rows: list[list[str]]) -> str:
    widths = [max(len(r[j]) for r in rows) for j in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


def group_labels(audit: Mapping[str, Any]) -> list[str]:
    """The two group names of an audit, each marked ``(n=11, small sample)`` when it has < SMALL_GROUP images."""
    names = (list(audit.get("group_names") or ["g0", "g1"]) + ["g0", "g1"])[:2]
    m = audit.get("metrics") or {}
    out = []
    for i, name in enumerate(names):
        n = _f(m.get(f"n_g{i}"))
        out.append(f"{name} (n={int(n)}, small sample)" if math.isfinite(n) and n < SMALL_GROUP else str(name))
    return out


def _audit_cell(audit: Mapping[str, Any], key: str) -> Cell | None:
    """An audit's number with its interval when it has one (``acc_gap`` = |acc_g0 - acc_g1|, signed gap's interval)."""
    if key == "acc_gap":
        sg = (audit.get("signed_gaps") or {}).get("acc")
        if sg:
            lo, hi = sorted((abs(_f(sg.get("lo"))), abs(_f(sg.get("hi")))))
            if _f(sg.get("lo")) <= 0 <= _f(sg.get("hi")):
                lo = 0.0
            return Cell(abs(_f(sg.get("estimate"))), lo, hi)
        m = audit.get("metrics") or {}
        return Cell(abs(_f(m.get("acc_g0")) - _f(m.get("acc_g1")))) if "acc_g0" in m else None
    iv = (audit.get("intervals") or {}).get(key)
    if iv is not None:
        return Cell(_f(iv.get("estimate")), _f(iv.get("lo")), _f(iv.get("hi")))
    m = audit.get("metrics") or {}
    return Cell(_f(m[key])) if key in m else None


def format_terminal(audit: Mapping[str, Any], digits: int = 3, ci_digits: int = 2) -> str:
    """Table 1 of one audit folded for a terminal: an accuracy block and a fairness block."""
    row = row_from_audit("model", audit).cells
    g0, g1 = (list(audit.get("group_names") or ["g0", "g1"]) + ["g0", "g1"])[:2]
    m = audit.get("metrics") or {}
    level = int(round(100 * (1 - float((audit.get("settings") or {}).get("alpha", 0.05)))))
    n_boot = (audit.get("settings") or {}).get("n_boot")
    lines = [f"{audit.get('split', 'test')} split: n={int(_f(m.get('n')))} ({g0} {int(_f(m.get('n_g0')))}, "
             f"{g1} {int(_f(m.get('n_g1')))}); {level}% bootstrap intervals"
             + (f" over {n_boot} resamples" if n_boot else "")]
    block = [[""] + group_labels(audit) + ["Avg.", "Diff."]]
    block.append(["Accuracy"] + [format_cell(_audit_cell(audit, k), digits, ci_digits) for k in ("acc_g0", "acc_g1")]
                 + [MISSING, format_cell(_audit_cell(audit, "acc_gap"), digits, ci_digits)])
    for label, base in (("Precision", "precision"), ("Recall", "recall"), ("F1", "f1")):
        block.append([label] + [format_cell(row.get(f"{base}_{s}"), digits, ci_digits)
                                for s in ("g0", "g1", "avg", "diff")])
    lines += ["", _pad(block), f"overall accuracy {format_cell(_audit_cell(audit, 'acc'), digits, ci_digits)}"]
    has_fate = bool(audit.get("baseline")) or any(k.startswith("fate_") for k in row)
    fair = [["", "gap"] + (["FATE vs baseline"] if has_fate else [])]
    for fc in FATE_CRITERIA:
        fair.append([GAP_LABELS[fc], format_cell(row.get(fc), digits, ci_digits)]
                    + ([format_cell(row.get(f"fate_{fc}"), digits, ci_digits)] if has_fate else []))
    lines += ["", _pad(fair)]
    return "\n".join(lines)
