"""The Ray executor: the only module that imports Ray.

A custom :class:`ray.data.Datasource` turns the slices of the split's parts into read tasks (designed parallelism:
one task per slice, finished rows dropped before decode), planned before any file is local. A read task waits at a
``PartGate`` actor until the driver opens its part (its files downloaded and verified, its rows counted: a thread
of the driver feeds the gate as the parts arrive), so conversion starts with the first part while the others
download. ``map_batches`` converts rows on every core of every node; the driver pulls the converted blocks and
hands each to one ``OutputWriter`` actor, which writes files then the ledger. Nothing that waits on the writer ever
holds a CPU an encoder could use.

The storage node is explicit: the node that owns ``STORAGE_ROOT`` declares a custom resource (``STORAGE_RESOURCE``,
``hugflow_storage`` by default; an embedded Ray declares it itself). The driver must run there, the output actor
asks for a share of it, and on a cluster of several nodes so do the read tasks (they open the downloaded files),
while conversion runs on every node. On one node the reads carry no such request, so Ray Data fuses each read
with its conversion into one task.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import ray
from ray.data import Datasource, ReadTask
from ray.data.block import Block, BlockMetadata

from hugflow_ray.core.records import RowColumn
from hugflow_ray.core.throughput import per_second
from hugflow_ray.errors import Interrupted, SyncError
from hugflow_ray.executors.base import (
    STORAGE_SHARE,
    BlockWriter,
    BlockWritten,
    Reads,
    ReadStep,
    RunResult,
    Steps,
    no_storage_node,
)
from hugflow_ray.executors.metrics import audio_seconds, count_written, metrics
from hugflow_ray.utils import failpoints

log = logging.getLogger(__name__)

ENCODE_CPUS = 1.0
MAX_WRITES_IN_FLIGHT = 2
NODE_KEY = b"hugflow_node"  # a converted block's schema metadata: the node that converted it
SETTLE_SECONDS = 120.0  # the longest an interrupted run waits for its writes in flight, and for Ray Data's threads
_RAY_DATA_THREADS = ("StreamingExecutor", "iter_threaded", "ray-data-metadata-prefetch")  # threads that end on close


def ensure_ray(address: str | None, storage_resource: str, *, dashboard_port: int | None = None) -> float:
    """Connect to ``address`` (a running cluster) or start an embedded Ray; returns the seconds it took.

    An embedded Ray declares ``storage_resource`` on its one node; a cluster must already have a node that does, and
    this driver must run on it. An embedded Ray's start-up includes one warm worker per CPU (Ray's own start, then
    the imports a conversion task needs), so that it is reported apart from the conversion rate.
    """
    logging.getLogger("ray.data").setLevel(logging.ERROR)  # our progress file and bar report progress
    ray.data.DataContext.get_current().enable_progress_bars = False
    if ray.is_initialized():
        return 0.0
    start = time.perf_counter()
    if _KEEPS_HANDLER not in _RAY_WORKER_LOG.filters:
        _RAY_WORKER_LOG.addFilter(_KEEPS_HANDLER)
    with _keeping_sigterm_handler():
        _init(address, storage_resource, dashboard_port)
    if address:
        check_storage_node(address, storage_resource)
    return time.perf_counter() - start


class _KeepsHandler(logging.Filter):
    """Started off the main thread (beside the sync's download), ray.init warns that it leaves the SIGTERM handler
    alone: what :func:`_keeping_sigterm_handler` does on the main thread, so not worth a warning."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "SIGTERM handler is not set" not in record.getMessage()


_KEEPS_HANDLER = _KeepsHandler()
_RAY_WORKER_LOG = logging.getLogger("ray._private.worker")


@contextmanager
def _keeping_sigterm_handler() -> Iterator[None]:
    """ray.init replaces the driver's SIGTERM handler with a bare exit; keep the one the program installed (the CLI
    turns SIGTERM into a clean interruption that records what was kept)."""
    main = threading.current_thread() is threading.main_thread()
    previous = signal.getsignal(signal.SIGTERM) if main else None
    try:
        yield
    finally:
        if callable(previous):
            signal.signal(signal.SIGTERM, previous)


def _init(address: str | None, storage_resource: str, dashboard_port: int | None) -> None:
    if address:
        try:
            ray.init(address=address, log_to_driver=False)
        except ConnectionError as e:
            raise SyncError(
                f"cannot join the Ray cluster at RAY_ADDRESS={address}: {e}. Start it (`ray start --head`) or unset "
                "RAY_ADDRESS to use an embedded Ray."
            ) from e
    else:  # "local": always a new embedded Ray, never a cluster some earlier `ray start` left on this machine
        dashboard = {"include_dashboard": False}
        if dashboard_port is not None:  # an operator watching this sync: the dashboard, and Ray Data's stats in it
            dashboard = {"include_dashboard": True, "dashboard_host": "127.0.0.1", "dashboard_port": dashboard_port}
        ray.init(address="local", log_to_driver=False, resources={storage_resource: 1}, **dashboard)
        cpus = int(ray.cluster_resources().get("CPU", 1))
        ray.get([_warm_worker.remote() for _ in range(cpus)])
        try:  # Ray Data's own actors (stats, autoscaling) start now, not mid-run
            ray.data.range(1).materialize()
        except Exception as e:  # noqa: BLE001 - a warm-up never fails a sync: the run starts them itself if need be
            # Seen once, in a process that had shut an earlier Ray down: Ray Data passed an object of that session.
            log.debug("Ray Data's warm-up failed (%s: %s); they start with the run", type(e).__name__, e)


def check_storage_node(address: str, storage_resource: str) -> None:
    """Refuse a cluster without a storage node, and a driver that does not run on it (it reads and writes
    ``STORAGE_ROOT``), each with the command that fixes it."""
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    storage = [n for n in nodes if n.get("Resources", {}).get(storage_resource, 0) > 0]
    if not storage:
        raise no_storage_node(address, storage_resource)
    here = ray.get_runtime_context().get_node_id()
    if here not in {n["NodeID"] for n in storage}:
        where = ", ".join(sorted(n.get("NodeManagerAddress", "?") for n in storage))
        raise SyncError(
            f"this driver runs on a node without the storage resource {storage_resource!r}; the storage node is "
            f"{where}. Run it there, or submit it as a Ray job (`hugflow submit`, RAY_ADDRESS=http://<head>:8265), "
            "which Ray places on the storage node"
        )


def _alive_nodes() -> int:
    return sum(1 for n in ray.nodes() if n.get("Alive"))


def shutdown() -> float:
    """Stop the Ray this process started or joined; returns the seconds it took (0 when none is running)."""
    if not ray.is_initialized():
        return 0.0
    start = time.perf_counter()
    _stop_autoscaler_monitor()
    ray.shutdown()
    return time.perf_counter() - start


def _stop_autoscaler_monitor() -> None:
    """Stop the autoscaler monitor of the Ray this process started (an embedded one; a joined Ray's processes are
    not this process's, and none is listed), before ``ray.shutdown``. One machine has nothing to scale, so it holds
    nothing to lose. Left to ``ray.shutdown``, it is stopped after the GCS: its SIGTERM handler then reports to a GCS
    that is gone, and Ray waits a second before it kills it. Ray's internals are read defensively: where they
    differ, ``ray.shutdown`` stops it as before."""
    try:
        from ray._private import ray_constants
        from ray._private.worker import _global_node

        monitors = _global_node.all_processes.get(ray_constants.PROCESS_TYPE_MONITOR, []) if _global_node else []
        processes = [info.process for info in monitors]
    except (ImportError, AttributeError) as e:
        log.debug("the embedded Ray's autoscaler monitor is left to ray.shutdown (%s)", e)
        return
    for process in processes:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=SETTLE_SECONDS)


@ray.remote(num_cpus=ENCODE_CPUS)
def _warm_worker() -> int:
    """Import what a conversion task needs, so the first blocks do not wait for the workers' imports."""
    import ray.data  # noqa: F401

    from hugflow_ray.codec import audio  # noqa: F401 - the audio libraries: what a conversion's imports cost

    return os.getpid()


class SliceDatasource(Datasource):
    """Reads the slices of the split's parts; each becomes one read task, which waits at the gate for its part and
    then streams its rows as blocks."""

    def __init__(self, slices: list[tuple[int, int, int]], gate: ray.actor.ActorHandle,
                 read: ReadStep) -> None:
        self._slices, self._gate, self._read = slices, gate, read

    def estimate_inmemory_data_size(self) -> int | None:
        return None

    def get_read_tasks(
        self, parallelism: int, per_task_row_limit: int | None = None, data_context: Any = None
    ) -> list[ReadTask]:
        metadata = BlockMetadata(num_rows=None, size_bytes=None, input_files=None, exec_stats=None)
        return [ReadTask(_reader(self._gate, self._read, *entry), metadata) for entry in self._slices]


def _reader(gate: ray.actor.ActorHandle, step: ReadStep, part: int, unit: int, units: int
            ) -> Callable[[], Iterable[Block]]:
    def read() -> Iterator[Block]:
        opened = ray.get(gate.wait.remote(part))
        if opened is not None:
            yield from step(opened, unit, units)

    return read


@ray.remote(num_cpus=0)
class PartGate:
    """Where read tasks wait for their part: the driver opens each part once its files are local (or fails them
    all, when a download or a count fails). A part stays open until the run ends: Ray Data may run a read task
    again (a retry, or to learn a block's schema), and a part let go after its slices' count would hang that one.

    It also tells the driver which parts read tasks wait for (:meth:`demanded`): Ray Data does not launch read tasks
    strictly in split order, so a task may wait for a part beyond the driver's window of downloads while the part
    that would free the window has a slice not yet launched. The driver fetches a demanded part whatever its window,
    so no wait depends on a task that cannot run; what Ray Data launches is bounded by its own concurrency.
    """

    def __init__(self) -> None:
        self._parts: dict[int, Any] = {}  # the opened parts, by index
        self._events: dict[int, asyncio.Event] = {}
        self._failed: str | None = None
        self._demand = -1  # the furthest part a read task has waited for
        self._demand_changed = asyncio.Event()
        self._closed = False

    def _event(self, part: int) -> asyncio.Event:
        return self._events.setdefault(part, asyncio.Event())

    async def open(self, part: Any) -> None:
        self._parts[part.index] = part
        self._event(part.index).set()

    async def fail(self, message: str) -> None:
        self._failed = message
        for event in self._events.values():
            event.set()
        await self.close()

    async def close(self) -> None:
        self._closed = True
        self._demand_changed.set()

    async def wait(self, part: int) -> Any:
        if part > self._demand:
            self._demand = part
            self._demand_changed.set()
        if self._failed is None:
            await self._event(part).wait()
        if self._failed is not None:
            raise SyncError(self._failed)
        return self._parts[part]

    async def demanded(self, after: int) -> int | None:
        """The furthest part a read task has waited for, once it is beyond ``after``; None once the run ended."""
        while self._demand <= after and not self._closed:
            self._demand_changed.clear()
            await self._demand_changed.wait()
        return None if self._closed else self._demand


class _Feeder:
    """The driver's thread that opens the parts at the gate as their files arrive; a failure (a download, a count)
    fails the gate, so the read tasks waiting there fail and the run stops with the failure's own error."""

    def __init__(self, reads: Reads, gate: ray.actor.ActorHandle) -> None:
        self._reads, self._gate = reads, gate
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._feed, name="hugflow-part-feeder", daemon=True)
        self._thread.start()
        self._demand = threading.Thread(target=self._follow_demand, name="hugflow-part-demand", daemon=True)
        self._demand.start()

    def _follow_demand(self) -> None:
        """Hand on the parts read tasks wait for (see :class:`PartGate`) until the run ends."""
        last = -1
        try:
            while (part := ray.get(self._gate.demanded.remote(last))) is not None:
                self._reads.demand(part)
                last = part
        except Exception:  # noqa: BLE001 - Ray is going down, or the gate was killed: the run ends anyway
            log.debug("stopped following the parts read tasks wait for", exc_info=True)

    def _feed(self) -> None:
        try:
            for part in self._reads.opened:
                ray.get(self._gate.open.remote(part))
        except BaseException as e:  # noqa: BLE001 - handed to the run's own thread, which raises it
            self.error = e
            try:
                ray.get(self._gate.fail.remote(f"{type(e).__name__}: {e}"))
            except Exception:  # Ray is going down: the run's thread raises the error itself
                log.debug("could not fail the part gate", exc_info=True)

    def stop(self) -> None:
        """Stop opening parts (no further download starts) and wait for the threads to end."""
        self._reads.cancel()
        try:
            ray.get(self._gate.close.remote(), timeout=SETTLE_SECONDS)
        except Exception:  # noqa: BLE001 - the gate is gone: its demand call fails, which ends that thread too
            log.debug("could not close the part gate", exc_info=True)
        self._thread.join(timeout=SETTLE_SECONDS)
        self._demand.join(timeout=SETTLE_SECONDS)


@ray.remote(num_cpus=0, max_concurrency=1)
class OutputWriter:
    """The one writer of a dataset directory; one block at a time, in the order the driver hands them over."""

    def __init__(self, dataset_dir: str, writer: Callable[[Path], BlockWriter], record_metrics: bool) -> None:
        self._writer = writer(Path(dataset_dir))
        self._dataset, self._record = Path(dataset_dir).name, record_metrics

    def write(self, block: pa.Table, rows: tuple[int, int] | None) -> Written:
        """Write a converted block (only ``rows``, start and end, when Ray Data hands over a slice of it)."""
        started = time.perf_counter()
        if rows is not None:
            block = block.slice(rows[0], rows[1] - rows[0])
        if block.num_rows == 0:  # a read task whose slice had no rows left: Ray Data hands on an empty block
            return Written(np.array([], dtype=np.int64), 0, 0.0, 0.0, node_of(block))
        _, errors = self._writer.write_batch(block)
        seconds = time.perf_counter() - started
        node = node_of(block)
        count_written(block, self._dataset, node, seconds, enabled=self._record)
        return Written(block.column(RowColumn.ROW_ID).to_numpy(), errors, seconds, audio_seconds(block), node)


@dataclass(frozen=True)
class Written:
    """A written block: its row ids and row errors, the seconds the write took, the seconds of audio it holds, and
    the node that converted it."""

    ids: np.ndarray
    errors: int
    seconds: float
    audio: float
    node: str


class _TaggedConverter:
    """The convert step, marking each converted block with the node that converted it."""

    def __init__(self, converter: Callable[[pa.Table], pa.Table]) -> None:
        self._converter = converter

    def __call__(self, batch: pa.Table) -> pa.Table:
        block = self._converter(batch)
        node = ray.get_runtime_context().get_node_id().encode()
        return block.replace_schema_metadata({**(block.schema.metadata or {}), NODE_KEY: node})


def node_of(block: pa.Table) -> str:
    """The node that converted ``block`` ("?" when it does not say)."""
    return (block.schema.metadata or {}).get(NODE_KEY, b"?").decode()


class RayExecutor:
    """The :class:`~hugflow_ray.executors.base.Executor` on Ray: an embedded one, or the cluster at ``address``."""

    def __init__(self, address: str | None, storage_resource: str, *, dashboard_port: int | None = None,
                 record_metrics: bool = True) -> None:
        self.address, self.storage_resource, self.dashboard_port = address, storage_resource, dashboard_port
        self.record_metrics = record_metrics

    def start(self) -> float:
        return ensure_ray(self.address, self.storage_resource, dashboard_port=self.dashboard_port)

    def run(self, reads: Reads, steps: Steps, dataset_dir: Path, *, on_progress: BlockWritten) -> RunResult:
        return run(reads, steps, dataset_dir, on_progress=on_progress, storage_resource=self.storage_resource,
                   record_metrics=self.record_metrics)


def run(
    reads: Reads,
    steps: Steps,
    dataset_dir: Path,
    *,
    on_progress: BlockWritten,
    storage_resource: str,
    record_metrics: bool = True,
) -> RunResult:
    """Convert and write the rows ``reads`` holds, its parts opened as they arrive; calls ``on_progress(rows,
    errors, ids)`` as blocks are written (totals so far, and the ids of the rows written since the last call).

    The driver pulls references to converted blocks from Ray Data and hands each to the output actor, with at most
    ``MAX_WRITES_IN_FLIGHT`` handed over and not yet written: the actor always has the next block waiting, and
    when it falls behind the driver stops pulling, so Ray Data's backpressure bounds the blocks in memory. A block
    goes from the converting worker to the actor through the object store once: the driver holds its reference,
    never its bytes.
    """
    start = time.perf_counter()
    on_storage = {storage_resource: STORAGE_SHARE}
    writer = OutputWriter.options(resources=on_storage).remote(str(dataset_dir), steps.writer, record_metrics)
    gate = PartGate.options(resources=on_storage).remote()
    meter = metrics(record_metrics)
    several_nodes = _alive_nodes() > 1
    # A dataset whose rows name their audio files (rather than hold the bytes) reads them while it converts: then
    # the conversion needs the storage node too.
    dataset = ray.data.read_datasource(SliceDatasource(reads.slices, gate, steps.read),
                                       override_num_blocks=len(reads.slices),
                                       resources=on_storage if several_nodes else None)
    dataset = dataset.map_batches(_TaggedConverter(steps.convert), batch_format="pyarrow", batch_size=None,
                                  num_cpus=ENCODE_CPUS,
                                  resources=on_storage if several_nodes and steps.convert_on_storage else None)
    rows = errors = 0
    writer_seconds = audio_total = 0.0
    in_flight: list[ray.ObjectRef] = []
    blocks_by_node: dict[str, int] = {}
    tags = {"dataset": dataset_dir.name}
    if reads.source_bytes:
        meter.source_bytes.inc(reads.source_bytes, tags)
    meter.rows_pending.set(reads.pending(), tags)

    def settle(wait_for: int) -> None:
        """Account for the finished writes, waiting until at least ``wait_for`` have finished."""
        nonlocal in_flight, rows, errors, writer_seconds, audio_total
        if not in_flight:
            return
        done, in_flight = ray.wait(in_flight, num_returns=wait_for or len(in_flight), timeout=None if wait_for else 0)
        if not done:
            return
        results: list[Written] = ray.get(done)
        for written in results:
            rows, errors = rows + len(written.ids), errors + written.errors
            writer_seconds, audio_total = writer_seconds + written.seconds, audio_total + written.audio
            if len(written.ids):
                blocks_by_node[written.node] = blocks_by_node.get(written.node, 0) + 1
        gauges()
        on_progress(rows, errors, np.concatenate([written.ids for written in results]))

    def gauges() -> None:
        """The driver's gauges, current (Ray drops a gauge's value a couple of report intervals after it was set)."""
        meter.rows_pending.set(reads.pending(), tags)
        meter.audio_rate.set(per_second(audio_total, time.perf_counter() - start) or 0.0, tags)

    feeder = _Feeder(reads, gate)
    bundles = dataset.iter_internal_ref_bundles()
    try:
        for bundle in bundles:
            for entry, part in zip(bundle.blocks, bundle.slices, strict=True):
                rows_of = None if part is None else (part.start_offset, part.end_offset)
                in_flight.append(writer.write.remote(entry.ref, rows_of))
                settle(max(0, len(in_flight) - MAX_WRITES_IN_FLIGHT + 1))
        settle(len(in_flight))
        gauges()  # the last blocks may have been written long before Ray Data's last (empty) read tasks ended
        failpoints.pause("all-written")
        feeder.stop()
    except BaseException as e:
        # Interrupted, or a block failed: Ray Data's execution stops, and the writes already handed over finish,
        # so that what the ledger keeps is settled when this returns (at most MAX_WRITES_IN_FLIGHT blocks).
        if isinstance(e, (KeyboardInterrupt, Interrupted)):
            # Ray Data cancels the tasks of the execution abandoned here, and Ray prints the failure of each as an
            # "Unhandled error" (where SIGINT is ignored, as in a background job's processes, cancelling a running
            # task fails with a TypeError). None is this run's to report: the interruption's one line says what was
            # kept, and the process is on its way out.
            os.environ["RAY_IGNORE_UNHANDLED_ERRORS"] = "1"
        del bundles  # Ray Data shuts its execution down when its iterator is dropped: now, while Ray is up
        feeder.stop()
        _stop_ray_data()
        if in_flight:
            ray.wait(in_flight, num_returns=len(in_flight), timeout=SETTLE_SECONDS)
        if feeder.error is not None and not isinstance(e, (KeyboardInterrupt, SystemExit)):
            raise feeder.error from None  # a download or a count failed: its own error, not the read task's
        raise
    finally:
        ray.kill(writer)
        ray.kill(gate)
    return RunResult(rows=rows, errors=errors, seconds=time.perf_counter() - start, writer_seconds=writer_seconds,
                     blocks_by_node=blocks_by_node)


def _stop_ray_data() -> None:
    """Wait until an abandoned execution's Ray Data threads have ended.

    Ray Data shuts an execution down when its bundle iterator fails or is garbage-collected (the iterator has no
    close()); one left alive past Ray's shut-down would shut itself down later, on collection, by starting a new
    Ray (its auto-init), and hang the exit. Its shut-down waits only 2 s for the scheduling thread: on a loaded
    machine that thread can still be scheduling when Ray itself shuts down, and a thread calling into a shut-down
    Ray makes its core worker end the whole process with exit status 1.
    """
    gc.collect()  # the iterator may sit in a reference cycle
    deadline = time.monotonic() + SETTLE_SECONDS
    for thread in threading.enumerate():
        if thread.name.startswith(_RAY_DATA_THREADS) and thread is not threading.current_thread():
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
