"""The Ray adapter: the only module that imports Ray.

A custom :class:`ray.data.Datasource` turns read units into read tasks (designed parallelism: one task per
unit, finished rows dropped before decode); ``map_batches`` converts rows on every core of every node; a
:class:`ray.data.Datasink` whose write tasks take no CPU hands each block to one ``OutputWriter`` actor, pinned to
the driver's node (the node that owns ``STORAGE_ROOT``), which writes files then the ledger.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import ray
from ray.data import Datasink, Datasource, ReadTask
from ray.data.block import Block, BlockMetadata
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from hugflow_ray.errors import SyncError
from hugflow_ray.output import DatasetWriter
from hugflow_ray.transform import ReadUnit, RowConverter, read_unit

log = logging.getLogger(__name__)

POLL_SECONDS = 0.5
ENCODE_CPUS = 1.0


def ensure_ray(address: str | None) -> tuple[bool, float]:
    """Connect to ``address`` (a running cluster) or start an embedded Ray; returns (started here, seconds)."""
    logging.getLogger("ray.data").setLevel(logging.ERROR)  # our progress file and bar report progress
    ray.data.DataContext.get_current().enable_progress_bars = False
    if ray.is_initialized():
        return False, 0.0
    start = time.perf_counter()
    if address:
        try:
            ray.init(address=address, log_to_driver=False)
        except ConnectionError as e:
            raise SyncError(
                f"cannot join the Ray cluster at RAY_ADDRESS={address}: {e}. Start it (`ray start --head`) or unset "
                "RAY_ADDRESS to use an embedded Ray."
            ) from e
    else:  # "local": always a new embedded Ray, never a cluster some earlier `ray start` left on this machine
        ray.init(address="local", include_dashboard=False, log_to_driver=False)
    return True, time.perf_counter() - start


class UnitDatasource(Datasource):
    """Reads the pending read units; each becomes one read task."""

    def __init__(self, units: list[tuple[ReadUnit, np.ndarray]], columns: list[str] | None) -> None:
        self._units = units
        self._columns = columns

    def estimate_inmemory_data_size(self) -> int | None:
        return None

    def get_read_tasks(
        self, parallelism: int, per_task_row_limit: int | None = None, data_context: Any = None
    ) -> list[ReadTask]:
        tasks = []
        for unit, finished in self._units:
            metadata = BlockMetadata(
                num_rows=unit.num_rows - len(finished), size_bytes=None, input_files=(unit.path,), exec_stats=None
            )
            tasks.append(ReadTask(_reader(unit, finished, self._columns), metadata))
        return tasks


def _reader(unit: ReadUnit, finished: np.ndarray, columns: list[str] | None) -> Callable[[], Iterable[Block]]:
    return lambda: [read_unit(unit, finished, columns)]


@ray.remote(num_cpus=0, max_concurrency=1)
class OutputWriter:
    """The one writer of a dataset directory."""

    def __init__(self, dataset_dir: str) -> None:
        self._writer = DatasetWriter(Path(dataset_dir))

    def write(self, block: pa.Table) -> int:
        return self._writer.write_batch(block)

    def counts(self) -> tuple[int, int]:
        return self._writer.rows_written, self._writer.errors_written


class ActorSink(Datasink[int]):
    """Hands every block to the writer actor; the write tasks themselves need no CPU."""

    def __init__(self, writer: Any) -> None:
        self._writer = writer

    @property
    def supports_distributed_writes(self) -> bool:
        return True

    def write(self, blocks: Iterable[Block], ctx: Any) -> int:
        return sum(ray.get(self._writer.write.remote(block)) for block in blocks)


@dataclass(frozen=True)
class RunResult:
    rows: int
    errors: int
    seconds: float


def run(
    units: list[tuple[ReadUnit, np.ndarray]],
    converter: RowConverter,
    dataset_dir: Path,
    *,
    columns: list[str] | None,
    on_progress: Callable[[int, int], None],
) -> RunResult:
    """Convert and write the pending units; calls ``on_progress(rows, errors)`` as the writer advances."""
    start = time.perf_counter()
    node = ray.get_runtime_context().get_node_id()
    writer = OutputWriter.options(
        scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=node, soft=False)
    ).remote(str(dataset_dir))
    dataset = ray.data.read_datasource(UnitDatasource(units, columns), override_num_blocks=len(units))
    dataset = dataset.map_batches(converter, batch_format="pyarrow", batch_size=None, num_cpus=ENCODE_CPUS)
    failure: list[BaseException] = []

    def execute() -> None:
        try:
            dataset.write_datasink(ActorSink(writer), ray_remote_args={"num_cpus": 0})
        except BaseException as e:  # re-raised in the driver's thread below
            failure.append(e)

    thread = threading.Thread(target=execute, name="hugflow-ray-write", daemon=True)
    thread.start()
    while thread.is_alive():
        thread.join(POLL_SECONDS)
        on_progress(*ray.get(writer.counts.remote()))
    rows, errors = ray.get(writer.counts.remote())
    on_progress(rows, errors)
    ray.kill(writer)
    if failure:
        raise failure[0]
    return RunResult(rows=rows, errors=errors, seconds=time.perf_counter() - start)
