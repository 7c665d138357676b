"""Progress of a sync: the progress file under ``STATE_DIR/progress/`` and the reporter that keeps it current."""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from hugflow_ray.copies.layout import progress_path
from hugflow_ray.copies.ledger import Ledger, id_ranges
from hugflow_ray.core.records import DatasetState, Progress
from hugflow_ray.core.throughput import eta_seconds, per_second
from hugflow_ray.settings import Settings
from hugflow_ray.utils import atomic, failpoints
from hugflow_ray.utils.safe_paths import read_small

log = logging.getLogger(__name__)

MAX_PROGRESS_BYTES = 1 << 20  # a progress file is a few hundred bytes


def write_progress(state_dir: Path, progress: Progress) -> None:
    progress.touch()
    path = progress_path(state_dir, progress.dataset_name)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic.write_json(path, progress.to_dict())


def read_progress(state_dir: Path, dataset_name: str) -> Progress | None:
    """The dataset's progress file, or None when there is none or it cannot be read (derived state, rewritten by
    the next report; a damaged one is said in a warning)."""
    path = progress_path(state_dir, dataset_name)
    try:
        data = read_small(path, MAX_PROGRESS_BYTES)
        return Progress.from_dict(json.loads(data.decode("utf-8"))) if data is not None else None
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:  # UnsafePathError is a ValueError
        log.warning("the progress file %s cannot be read (%s); the next progress report rewrites it", path,
                    type(e).__name__)
        return None


ProgressCallback = Callable[[Progress], None]


class ProgressReporter:
    """Writes the progress file every ``PROGRESS_INTERVAL`` rows, calls the callback, draws a terminal bar.

    It keeps the finished row ids itself (the ledger's at the start, then the ids of each written block), so a
    progress update costs the same whether the ledger holds ten parts or ten thousand.
    """

    def __init__(self, settings: Settings, name: str, dataset_dir: Path, total: int, finished: np.ndarray,
                 earlier_errors: int, callback: ProgressCallback | None, bar: bool, *,
                 bytes_total: int | None = None) -> None:
        self.settings, self.name, self.dataset_dir = settings, name, dataset_dir
        self.total, self.resumed, self.earlier_errors = total, len(finished), earlier_errors
        self.finished = [finished]
        self.callback, self.bar = callback, bar and sys.stderr.isatty()
        self.started = time.perf_counter()
        self.last_reported = -1
        self.progress = Progress(dataset_name=name, status=DatasetState.SYNCING, rows_total=total,
                                 resumed_from=self.resumed, bytes_total=bytes_total)

    def downloaded(self, size: int) -> None:
        """Bytes of the source downloaded so far (written with the next report)."""
        self.progress.bytes_downloaded = size

    def update(self, new_rows: int, new_errors: int, written: np.ndarray | None = None, *, force: bool = False) -> None:
        if written is not None:
            self.finished.append(written)
        elapsed = max(time.perf_counter() - self.started, 1e-9)
        p = self.progress
        p.rows_total = self.total
        p.rows_new = new_rows
        p.rows_done = self.resumed + new_rows
        p.row_errors = self.earlier_errors + new_errors
        p.percent_complete = round(100.0 * p.rows_done / self.total, 2) if self.total else 100.0
        rate = per_second(new_rows, elapsed)
        eta = eta_seconds(self.total - p.rows_done, rate)
        if p.bytes_total and eta is not None:  # the download may be what ends last
            download = eta_seconds(p.bytes_total - p.bytes_downloaded, per_second(p.bytes_downloaded, elapsed))
            eta = max(eta, download) if download is not None else eta
        p.rows_per_second = round(rate, 2) if rate is not None else None
        p.eta_seconds = round(eta, 1) if eta is not None and rate is not None else None
        if self.bar:
            eta = f"{p.eta_seconds:.0f}s" if p.eta_seconds is not None else "?"
            print(f"\r{self.name[:40]}: {p.rows_done}/{self.total} rows {p.percent_complete:5.1f}% "
                  f"{p.rows_per_second or 0:.1f} rows/s ETA {eta}  ", end="", file=sys.stderr, flush=True)
        if force or new_rows - self.last_reported >= self.settings.progress_interval:
            self._emit()
            self.last_reported = new_rows
        if new_rows:
            failpoints.pause("rows-written")

    def stopped(self, finished: np.ndarray, row_errors: int) -> None:
        """Write the progress of an interrupted sync (still syncing, resumable) as the ledger has it: writes that
        were in flight when the signal came may have finished since the last update."""
        p = self.progress
        self.finished = [finished]
        p.rows_done, p.rows_new, p.row_errors = len(finished), len(finished) - self.resumed, row_errors
        p.percent_complete = round(100.0 * len(finished) / self.total, 2) if self.total else 100.0
        self._emit()
        if self.bar:
            print(file=sys.stderr)

    def finish(self, state: DatasetState) -> None:
        self.progress.status = state
        self._emit()
        if self.bar:
            print(file=sys.stderr)

    def _emit(self) -> None:
        self.finished = [np.unique(np.concatenate(self.finished))]
        self.progress.resume_data = {"ledger": str(Ledger(self.dataset_dir).parts),
                                     "finished_ranges": id_ranges(self.finished[0])}
        write_progress(self.settings.state_dir, self.progress)
        if self.callback is not None:
            self.callback(self.progress)
