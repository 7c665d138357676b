"""hugflow's own metrics, recorded where the work becomes durable and served by Ray on each node's metrics export port
(``ray start --metrics-export-port``) in Prometheus' text format, as ``ray_<name>`` (counters with ``_total``).

Each is tagged by dataset (the directory name); the rows and audio counters also by the node that converted them
(the first 12 hex digits of its Ray node id). The output writer records them once a block is durable, so they
equal the ledger; the driver sets the gauges. Recording costs a few calls per block, never one per row.
"""

from __future__ import annotations

from functools import cache

import pyarrow as pa
import pyarrow.compute as pc
from ray.util.metrics import Counter, Gauge

from hugflow_ray.core.records import RowColumn, RowStatus

NODE_DIGITS = 12


class Metrics:
    """The metrics of one process (each Ray worker makes its own; Ray adds them up per node)."""

    def __init__(self) -> None:
        self.rows_converted = Counter(
            "hugflow_rows_converted", "Rows converted to an MP3 and a JSON file (row errors not counted).",
            tag_keys=("dataset", "node"))
        self.audio_seconds = Counter(
            "hugflow_audio_seconds", "Seconds of source audio converted to MP3.", tag_keys=("dataset", "node"))
        self.row_errors = Counter(
            "hugflow_row_errors", "Rows recorded as row errors, by error code.", tag_keys=("dataset", "code"))
        self.mp3_bytes = Counter(
            "hugflow_mp3_written_bytes", "Bytes of MP3 files the output writer wrote.", tag_keys=("dataset",))
        self.writer_busy = Counter(
            "hugflow_output_busy_seconds", "Seconds the output writer spent writing blocks.", tag_keys=("dataset",))
        self.source_bytes = Counter(
            "hugflow_source_bytes", "Bytes of source files (downloaded now or already cached) a sync read.",
            tag_keys=("dataset",))
        self.rows_pending = Gauge(
            "hugflow_rows_pending", "Rows of the dataset not finished yet (neither converted nor a row error).",
            tag_keys=("dataset",))
        self.audio_rate = Gauge(
            "hugflow_audio_seconds_per_second", "Seconds of audio written per second of this run (the driver's "
            "view; core/throughput.py defines the rate).", tag_keys=("dataset",))


class _Unrecorded:
    """A counter or gauge that records nothing."""

    def inc(self, *args: object, **kwargs: object) -> None:
        return None

    def set(self, *args: object, **kwargs: object) -> None:
        return None


class NoMetrics:
    """``HUGFLOW_METRICS=false``: the same attributes as :class:`Metrics`, recording nothing."""

    def __getattr__(self, name: str) -> _Unrecorded:
        return _Unrecorded()


@cache
def metrics(enabled: bool = True) -> Metrics | NoMetrics:
    return Metrics() if enabled else NoMetrics()


def _converted(block: pa.Table) -> pa.ChunkedArray:
    return pc.equal(block.column(RowColumn.STATUS), RowStatus.OK.value)


def audio_seconds(block: pa.Table) -> float:
    """The seconds of source audio a converted block's rows hold (row errors hold none)."""
    return pc.sum(pc.if_else(_converted(block), block.column(RowColumn.DURATION), 0.0)).as_py() or 0.0


def count_written(block: pa.Table, dataset: str, node: str, seconds: float, *, enabled: bool = True) -> None:
    """A block the output writer has made durable (files, then its ledger part): its rows, audio seconds and row
    errors by code (so the counters equal the ledger), its MP3 bytes and the writer's seconds. ``node``: the node
    that converted it."""
    if not enabled:
        return
    m = metrics()
    ok = _converted(block)
    rows = pc.sum(ok).as_py() or 0
    tags = {"dataset": dataset, "node": node[:NODE_DIGITS]}
    if rows:
        m.rows_converted.inc(rows, tags)
        if (audio := audio_seconds(block)) > 0:
            m.audio_seconds.inc(audio, tags)
    if rows < block.num_rows:
        codes = pc.value_counts(pc.filter(block.column(RowColumn.ERROR_CODE), pc.invert(ok))).to_pylist()
        for entry in codes:
            m.row_errors.inc(entry["counts"], {"dataset": dataset, "code": entry["values"] or "unknown"})
    mp3 = pc.sum(pc.binary_length(block.column(RowColumn.MP3))).as_py() or 0
    if mp3:
        m.mp3_bytes.inc(mp3, {"dataset": dataset})
    if seconds > 0:
        m.writer_busy.inc(seconds, {"dataset": dataset})
