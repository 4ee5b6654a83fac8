"""What a run read: the SHA-256 of each metadata table, so a changed table is noticed.

A run folder records these hashes (config.json ``tables``). Resuming a run
whose table changed would mix two datasets in one model, so it is refused;
auditing a run whose table changed since training is allowed (the images
may only have been renamed) but warned at the top of the report.
"""
from __future__ import annotations

from pathlib import Path

from .cache import file_sha256
from .config import DataConfig


def table_hashes(cfg: DataConfig) -> dict[str, str]:
    """Absolute path -> SHA-256 of every user-given metadata table of `cfg` (the shipped tables are not listed)."""
    if not cfg.metadata:
        return {}
    path = Path(cfg.metadata).expanduser().absolute()
    files = [path] if path.is_file() else sorted(p for p in path.glob("*.csv*") if p.is_file()) if path.is_dir() else []
    return {str(p): file_sha256(p) for p in files}


def changed_tables(recorded: dict[str, str] | None, current: dict[str, str]) -> list[str]:
    """Tables whose recorded hash differs from `current` (or that are gone)."""
    return [p for p, h in (recorded or {}).items() if current.get(p) != h]
