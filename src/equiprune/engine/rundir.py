"""Run folders: config.json, metrics.json, model.pt, log.txt and resume state.

Every write is atomic (write to a uniquely named temporary file, then
rename) so that an interrupt never leaves a half-written JSON file or
checkpoint behind. A folder opened for writing is locked (`runlock`): one
process writes it at a time, a second one is refused with the holder's pid.

Under torchrun every rank holds a `RunDir` on the same folder; the writing
methods write on rank 0 only (`distributed.on_main`: barrier, write, result
or error broadcast), so they must be called by every rank, and a read after
a write sees the same file on every rank. `log` writes and prints on rank 0
only. Reading methods read on every rank.
"""
from __future__ import annotations

import json
import math
import time
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Iterator

from tqdm.auto import tqdm

from ..data.atomic import atomic_write_text, check_writable, write_error
from .distributed import is_main_process, on_main
from .runlock import RunLock, RunLockedError, lock_run_folder  # noqa: F401  (RunLockedError re-exported)


_LOG_PREFIX: ContextVar[str] = ContextVar("equiprune_log_prefix", default="")


@contextmanager
def log_prefix(name: str) -> Iterator[None]:
    """Inside the block, every line a run folder echoes starts with ``[name]``.

    A command that runs many methods one after another (`compare`) names the
    method and seed of each printed line, so no "iteration 2: ..." block is
    left without its run. log.txt itself is per run and keeps plain lines.
    """
    token = _LOG_PREFIX.set(name)
    try:
        yield
    finally:
        _LOG_PREFIX.reset(token)


class RunError(ValueError):
    """A run folder is missing, incomplete, or belongs to another configuration."""


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "item") and callable(obj.item) and getattr(obj, "ndim", 1) == 0:
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if hasattr(obj, "tolist"):
        return obj.tolist()
    return obj


# Settings that do not change results, so a resume may differ in them.
IGNORED_SETTINGS = ("progress", "decode_workers", "cache_dir", "device", "num_workers")


def _drop(obj: Any, keys: tuple[str, ...]) -> Any:
    if isinstance(obj, dict):
        return {k: _drop(v, keys) for k, v in obj.items() if k not in keys}
    if isinstance(obj, list):
        return [_drop(v, keys) for v in obj]
    return obj


def _same_settings(old: Any, new: Any) -> bool:
    """Equal settings, except that a field only one side has is not a difference.

    A field only one side has was added (or removed) by another equiprune
    version; a run made before a field existed resumes under the new version.
    """
    if isinstance(old, dict) and isinstance(new, dict):
        return all(_same_settings(old[k], new[k]) for k in old.keys() & new.keys())
    if isinstance(old, list) and isinstance(new, list):
        return len(old) == len(new) and all(_same_settings(a, b) for a, b in zip(old, new))
    return old == new


def settings_diff(old: Any, new: Any, prefix: str = "") -> list[str]:
    """``'train.lr: 0.001 -> 0.0002'`` for every leaf setting that differs (as `_same_settings` judges)."""
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[str] = []
        for k in [k for k in old if k in new]:
            out += settings_diff(old[k], new[k], f"{prefix}{k}.")
        return out
    if _same_settings(old, new):
        return []
    return [f"{prefix.rstrip('.') or 'value'}: {old!r} -> {new!r}"]


def describe_diff(old: Any, new: Any, limit: int = 6) -> str:
    """`settings_diff` joined for a message: at most `limit` fields, then how many more.

    The one place every "other settings" message is built (a resumed run
    folder, a baseline predicted on other data), so a changed ``--seed`` reads
    ``train.seed: 0 -> 1`` instead of two dumps of the whole config.
    """
    diff = settings_diff(old, new)
    more = f"; and {len(diff) - limit} more" if len(diff) > limit else ""
    return "; ".join(diff[:limit]) + more


def write_json(path: Path, data: Any) -> None:
    """Atomically write `data` as indented JSON (NaN/inf become null)."""
    atomic_write_text(path, json.dumps(_jsonable(data), indent=2, sort_keys=False) + "\n")


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text())


def claim_run_folder(path: str | Path) -> RunLock | None:
    """Before any data is decoded: lock `path` if it exists, else check that it can be created.

    So a second process on the folder, or a read-only output folder, is
    refused in a second rather than after the images are read. Keep the
    returned lock alive (a local variable) until the folder's `RunDir` exists.
    """
    path = Path(path)
    if path.is_dir():
        return RunDir(path, create=False).hold()._lock
    check_writable(path)
    return None


class RunDir:
    """One run folder. `RunDir(path)` creates it if needed and locks it for this process.

    The lock (`runlock.lock_run_folder`) lasts while this object, or another
    RunDir on the folder or a folder inside it, is alive in this process, or
    until `release()`; a second process is refused. `RunDir(path, create=False)` opens an existing
    folder for reading without locking it; `hold()` locks it for writing.
    """

    CONFIG = "config.json"
    METRICS = "metrics.json"
    MODEL = "model.pt"
    LOG = "log.txt"

    def __init__(self, path: str | Path, create: bool = True) -> None:
        self.path = Path(path)
        self._lock: RunLock | None = None
        if create:
            try:
                self.path.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise (write_error(self.path, exc) or exc) from exc
            self.hold()
        elif not self.path.is_dir():
            raise RunError(f"run folder {self.path} does not exist")

    def release(self) -> None:
        """Give up this process's lock on the folder (every RunDir of this process sharing it loses it).

        For a finished run whose RunDir lives on in a returned result, so
        that another process (`equiprune audit --run` from a shell while a
        notebook keeps the result) may write the folder.
        """
        lock, self._lock = self._lock, None
        if lock is not None:
            lock.release()

    def hold(self) -> "RunDir":
        """Lock the folder for this process's writes (rank 0 only; no-op if already held).

        Raises `RunLockedError` naming the pid of another process writing it,
        and `WriteError` if the folder is not writable.
        """
        if self._lock is None and is_main_process():
            try:
                self._lock = lock_run_folder(self.path)
            except OSError as exc:
                raise (write_error(self.path / "config.json", exc) or exc) from exc
        return self

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    def file(self, name: str) -> Path:
        return self.path / name

    @property
    def model_path(self) -> Path:
        return self.path / self.MODEL

    # config -------------------------------------------------------------
    def write_config(self, config: dict[str, Any]) -> None:
        on_main(write_json, self.file(self.CONFIG), config)

    def read_config(self) -> dict[str, Any]:
        f = self.file(self.CONFIG)
        if not f.exists():
            raise RunError(f"{self.path} has no {self.CONFIG}; is it an equiprune run folder?")
        return read_json(f)

    def check_or_write_config(self, config: dict[str, Any], keys: list[str] | None = None,
                              ignore: tuple[str, ...] = IGNORED_SETTINGS) -> bool:
        """Write `config`, or, if the folder already has one, check it matches.

        Returns True when the folder already held a matching config (a resume).
        `keys` restricts the comparison to the settings that change results;
        `ignore` names settings (at any depth) that never do (progress bars, caches).
        """
        return on_main(self._check_or_write_config, config, keys, ignore)

    def _check_or_write_config(self, config: dict[str, Any], keys: list[str] | None,
                               ignore: tuple[str, ...]) -> bool:
        f = self.file(self.CONFIG)
        new = _jsonable(config)
        if not f.exists():
            write_json(f, new)
            return False
        old = _drop(read_json(f), ignore)
        new = _drop(new, ignore)
        cmp_keys = keys if keys is not None else sorted(set(old) | set(new))
        detail = describe_diff({k: old.get(k) for k in cmp_keys}, {k: new.get(k) for k in cmp_keys})
        if detail:
            raise RunError(
                f"{self.path} holds a run with other settings ({detail}). "
                "Use a new --out folder, or delete this one to start over.")
        return True

    # metrics ------------------------------------------------------------
    # metrics.json is {"history": [one record per epoch / iteration], <section>: {...}}:
    # the history is the per-iteration evidence, sections hold final results
    # (e.g. "test", "audit") that later verbs add without touching the history.
    def read_metrics(self) -> dict[str, Any]:
        f = self.file(self.METRICS)
        data = read_json(f) if f.exists() else {}
        data.setdefault("history", [])
        return data

    def write_metrics(self, data: dict[str, Any]) -> None:
        on_main(write_json, self.file(self.METRICS), data)

    def _update_metrics(self, key: str, value: Any, append: bool = False) -> None:
        data = self.read_metrics()
        if append:
            data[key].append(value)
        else:
            data[key] = value
        write_json(self.file(self.METRICS), data)

    def append_history(self, record: dict[str, Any]) -> None:
        on_main(self._update_metrics, "history", record, append=True)

    def set_history(self, records: list[dict[str, Any]]) -> None:
        on_main(self._update_metrics, "history", list(records))

    def set_section(self, name: str, value: Any) -> None:
        on_main(self._update_metrics, name, value)

    # model ----------------------------------------------------------------
    def save_model(self, model: Any, arch: dict[str, Any], extra: dict[str, Any] | None = None,
                   name: str | None = None) -> Path:
        """Write `model` to model.pt (or `name`) with `equiprune.models.save_checkpoint`, on rank 0 only."""
        from ..models import save_checkpoint

        return on_main(save_checkpoint, self.file(name) if name else self.model_path, model, arch, extra)

    # log ----------------------------------------------------------------
    def log(self, message: str, echo: bool = True) -> None:
        """Append a time-stamped line to log.txt and print it (rank 0 only; not a collective)."""
        if not is_main_process():
            return
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        try:
            with open(self.file(self.LOG), "a") as fh:
                fh.write(f"[{stamp}] {message}\n")
        except OSError as exc:
            raise (write_error(self.file(self.LOG), exc) or exc) from exc
        if echo:
            prefix = _LOG_PREFIX.get()
            tqdm.write(f"[{prefix}] {message}" if prefix else message)
