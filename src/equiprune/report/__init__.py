"""Run folders -> HTML/Markdown reports, PNG plots and comparison tables.

Nothing here computes a metric: everything is read from the ``audit`` sections
of metrics.json (written by :func:`equiprune.methods.audit.audit_run`).
"""
from .compare import ComparisonResult, RunEntry, compare_runs, method_key
from .html import (
    Image,
    Section,
    add_report_section,
    explain,
    load_report_sections,
    render_html,
    render_markdown,
    run_report_sections,
    write_page,
    write_run_report,
)
from .tables import (
    TABLE1_COLUMNS,
    Cell,
    Table1,
    TableRow,
    cost_frame,
    format_cell,
    format_terminal,
    make_table1,
    read_table1_csv,
    row_from_audit,
)

__all__ = [
    "ComparisonResult", "RunEntry", "compare_runs", "method_key",
    "Image", "Section", "add_report_section", "explain", "load_report_sections", "render_html",
    "render_markdown", "run_report_sections", "write_page", "write_run_report",
    "TABLE1_COLUMNS", "Cell", "Table1", "TableRow", "cost_frame", "format_cell", "format_terminal",
    "make_table1", "read_table1_csv", "row_from_audit",
]
