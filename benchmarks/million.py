"""A million short rows through ``hugflow local-sync``: what the row count costs, and what grows with it.

    python benchmarks/million.py                       # 1,000,000 rows of 0.1 s at 8 kHz, one sync (~20 min on 2
                                                       # cores; about 12 GB and 2M inodes on disk)
    python benchmarks/million.py --rows 20000 --json million.json
    python benchmarks/million.py --rows-sweep 20000 80000
                                                       # every figure at each size, and its growth per row
    python benchmarks/million.py --smoke               # tens of seconds; what the test suite runs
    python benchmarks/million.py --smoke --rows-sweep  # the sweep at two tiny sizes (about a minute)

The rows are throughput.py's synthetic clips (``make_data``: parquet shards in Hub layout with the ``datasets``
Audio feature, FLAC bytes), short (``--seconds 0.1`` at ``--rate 8000``, MP3's lowest rate) so that the row count,
not the audio, is what the sync pays for: shards of ``--shard-rows`` (50,000) rows, row groups of 100 rows (what
the Hub's parquet export writes). Each size is generated once (kept with ``--work``; its seconds are reported
apart) and then, each command as its own process tree sampled from ``/proc`` every 0.2 s as throughput.py does:

* ``sync``: ``hugflow local-sync`` of a ``path:`` request on an embedded Ray (``RAY_ADDRESS`` unset): wall time,
  seconds by phase, rows per second of the convert phase, peak RSS of the whole tree and of each process alone
  (the driver, the output actor, the largest conversion worker, Ray's daemons), and the driver's RSS at the start,
  end and peak of each phase;
* ``ledger``: the copy's ``.hugflow/ledger/part-*.parquet`` files (count, bytes) and ``.hugflow/`` in all;
* ``output``: files and bytes by folder (``audio/``, ``json/``, the manifests, ``.hugflow/``), as written and as
  allocated on disk (small files take a block each);
* ``commands``: ``hugflow --version`` (interpreter and imports: every command's floor), ``hugflow status <name>``
  and ``hugflow verify <name>``: wall and peak RSS; ``hugflow remove`` at the end, which is also the clean-up;
* ``finalize``: in a fresh child process over the finished copy, steps of the sync's finalize: ``Ledger.summary``,
  ``write_manifests`` and the ``dataset_size`` walk (``status`` of an unfinished copy walks it too): seconds, and
  the child's RSS growth at the step's peak and after it (sampled every 5 ms);
* ``driver structures``: in the same child (tracemalloc for Python and NumPy objects, Arrow's pool for Arrow's),
  the driver-side structures the row count sizes, built with the sync's own classes over the finished copy: the
  ledger's summary (its finished ids: what a resume and the finalize read), the progress reporter fed every
  block's ids as the executor feeds it, and ``write_manifests``: bytes retained and peak. What else the driver
  holds shows in its RSS by phase (the sync's reading plan, Ray Data's state).

With ``--rows-sweep``, every figure at each size, then each one's growth per row between the smallest and the
largest size (bytes per row for memory and disk; what a million rows would add), and the sync's wall time
extrapolated linearly to ``--rows``. What may grow with the row count: the ledger and the output. Everything
else should stay flat. ``--json PATH`` writes every figure.
"""

from __future__ import annotations

import argparse
import collections
import gc
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))
import throughput  # noqa: E402
from throughput import ROW_GROUP_ROWS, TreeSample, hugflow_env, make_data  # noqa: E402

from hugflow_ray.copies import manifests, store
from hugflow_ray.copies.ledger import Ledger
from hugflow_ray.pipeline.progress import ProgressReporter
from hugflow_ray.settings import load_settings

ROWS = 1_000_000
SWEEP_ROWS = (20_000, 80_000)
SMOKE_ROWS = 48
SMOKE_SWEEP_ROWS = (32, 96)
SECONDS = 0.1
RATE = 8000  # MP3's lowest sample rate: the least audio work per row
SHARD_ROWS = 50_000  # rows a parquet file: 65 MB of these clips, an ordinary Hub shard
MiB = 2**20
# What a row needs on disk, to refuse a run that cannot fit: its source (~1.3 KB), an MP3 and a JSON of a block
# each, and its ledger and manifest lines; and two inodes.
ROOM_BYTES_PER_ROW = 12_000
ROOM_INODES_PER_ROW = 2.1
# The sync's phases in the order they run (``executor start`` runs beside download and ledger: not on the timeline)
PHASE_ORDER = ("interpreter and imports", "plan", "download", "ledger", "waiting for the executor", "convert",
               "finalize", "shut-down")
DRIVER = "python hugflow_ray"
OUTPUT_ACTOR = "ray::OutputWriter"
CONVERTER = "conversion worker"
IDLE = "idle worker"
IDLE_TITLES = frozenset({"ray::IDLE", "ray::_warm_worker", "python default_worker.py"})  # before Ray names a task


# ------------------------------------------------------------------------------ measuring a command's process tree


@dataclass
class Sample(TreeSample):
    """throughput.py's tree sample, plus each process's own peak RSS and the driver's (the tree's root) RSS over
    time."""

    peak_by_pid: dict[int, int] = field(default_factory=dict)
    root_timeline: list[tuple[float, int]] = field(default_factory=list)
    root: int = 0

    def observe(self, root: int, start: float) -> None:
        """One sample; the root's RSS is timed when it is read (a pass over ``/proc`` takes a while on a busy
        machine), in seconds since ``start``."""
        self.root = root
        seen = {pid: sum(counts.values()) for pid, counts in self.titles.items()}
        self.sample(root)
        for pid, counts in self.titles.items():
            if sum(counts.values()) == seen.get(pid, 0):
                continue  # not in the tree at this sample
            rss = _rss(pid)
            if rss > self.peak_by_pid.get(pid, 0):
                self.peak_by_pid[pid] = rss
            if pid == root:
                self.root_timeline.append((time.perf_counter() - start, rss))

    def peak_alone_by_role(self) -> dict[str, int]:
        """The largest peak of one process, by its role: the driver (the root), Ray's workers by what Ray named them
        at any sample (an output actor, a conversion worker, a Ray Data actor, else idle), and each daemon by
        its name."""
        peaks: dict[str, int] = {}
        for pid, rss in self.peak_by_pid.items():
            role = DRIVER if pid == self.root else _role(self.titles[pid])
            peaks[role] = max(peaks.get(role, 0), rss)
        return dict(sorted(peaks.items(), key=lambda item: -item[1]))


def _role(titles: collections.Counter[str]) -> str:
    if any(t.startswith(OUTPUT_ACTOR) for t in titles):
        return OUTPUT_ACTOR
    if any("MapBatches" in t for t in titles):
        return CONVERTER
    if actors := [t for t in titles if t.startswith("ray::_") and t.endswith("Actor")]:
        return max(actors, key=titles.__getitem__)
    if all(t in IDLE_TITLES for t in titles):
        return IDLE
    return max((t for t in titles if t not in IDLE_TITLES), key=titles.__getitem__)


def _rss(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, IndexError):
        return 0


def measured(command: list[str], env: dict[str, str]) -> tuple[float, str, Sample]:
    """Run ``command``; its wall time, output and the samples of its process tree (throughput.py's ``measured``,
    with the per-process peaks)."""
    wall, output, tree = throughput.measured(command, env, tree=Sample())
    assert isinstance(tree, Sample)
    return wall, output, tree


def hugflow(args: list[str], env: dict[str, str]) -> tuple[float, str, Sample]:
    return measured([sys.executable, "-m", "hugflow_ray", *args], env)


def command_figures(wall: float, tree: Sample) -> dict[str, float]:
    return {"wall_s": wall, "peak_rss_mib": tree.peak_rss / MiB, "driver_peak_rss_mib": tree.peak_by_pid.get(
        tree.root, 0) / MiB}


# ------------------------------------------------------------------------------------------------ one size


def run_size(args: argparse.Namespace, work: Path, rows: int) -> dict[str, Any]:
    """Generate ``rows`` rows, sync them, measure the copy and the commands on it, then remove it."""
    started = time.perf_counter()
    shards = max(1, -(-rows // args.shard_rows))
    data = make_data(work / f"data-{rows}", clips=rows, seconds=args.seconds, rate=args.rate, shards=shards,
                     row_group_rows=args.row_group_rows)
    result: dict[str, Any] = {
        "rows": rows, "clip_seconds": args.seconds, "rate_hz": args.rate, "shards": shards,
        "row_group_rows": args.row_group_rows, "cores": len(os.sched_getaffinity(0)),
        "data_s": time.perf_counter() - started, "source_bytes": sum(f.stat().st_size for f in data.files)}
    out = work / f"out-{rows}"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    env = hugflow_env(out)
    request = out / "million.yaml"
    request.write_text(f"path: {data.root}\ndescription: million-row benchmark\n")
    try:
        wall, output, tree = hugflow(["local-sync", str(request)], env)
        dataset_dir = next((out / "datasets").iterdir())
        result["sync"] = sync_figures(rows, wall, output, tree)
        result["ledger"] = ledger_figures(dataset_dir)
        result["output"] = output_figures(dataset_dir)
        commands: dict[str, Any] = {}
        for name, command in (("version", ["--version"]), ("status", ["status", dataset_dir.name]),
                              ("verify", ["verify", dataset_dir.name])):
            wall, output, tree = hugflow(command, env)
            commands[name] = command_figures(wall, tree)
            if name == "status" and f"{rows}/{rows}" not in output:
                raise SystemExit(f"hugflow status does not list {rows} rows done:\n{output}")
        result["commands"] = commands
        probe = subprocess.run([sys.executable, __file__, "--probe", str(dataset_dir), "--data", str(data.root)],
                               env=env, check=True, capture_output=True, text=True)
        result.update(json.loads(probe.stdout.strip().splitlines()[-1]))
        removal = out / "remove.yaml"
        removal.write_text(f"path: {data.root}\nreason: million-row benchmark done\n")
        wall, _, tree = hugflow(["remove", str(removal)], env)
        result["commands"]["remove"] = command_figures(wall, tree)
    finally:
        shutil.rmtree(out, ignore_errors=True)
    report_size(result)
    return result


def sync_figures(rows: int, wall: float, output: str, tree: Sample) -> dict[str, Any]:
    phases = throughput.phases_of(output)
    if f"({rows} rows" not in output:
        raise SystemExit(f"the sync did not report {rows} rows:\n{output[-3000:]}")
    alone = tree.peak_alone_by_role()
    daemons = {role: rss for role, rss in alone.items()
               if role not in (DRIVER, OUTPUT_ACTOR, CONVERTER, IDLE) and not role.startswith("ray::_")}
    return {
        "wall_s": wall, "phases_s": phases,
        "convert_rows_per_s": rows / phases["convert"] if phases.get("convert") else None,
        "peak_rss_mib": tree.peak_rss / MiB,
        "peak_rss_mib_at_the_peak_by_process": {t: rss / MiB for t, rss in tree.peak_by_process.items()},
        "peak_rss_mib_alone": {
            "driver": alone.get(DRIVER, 0) / MiB, "output actor": alone.get(OUTPUT_ACTOR, 0) / MiB,
            "largest conversion worker": alone.get(CONVERTER, 0) / MiB,
            "ray daemons (sum of their peaks)": sum(daemons.values()) / MiB},
        "peak_rss_mib_alone_by_process": {title: rss / MiB for title, rss in alone.items()},
        "driver_rss_mib_by_phase": by_phase(tree.root_timeline, phases),
    }


def by_phase(timeline: list[tuple[float, int]], phases: dict[str, float]) -> dict[str, dict[str, float]]:
    """The driver's RSS at the start and end of each phase, and its peak within it (phases laid end to end from
    the process's start, in the order they run; a sample every 0.2 s)."""
    result, at = {}, 0.0
    for name in (p for p in PHASE_ORDER if p in phases):
        start, end = at, at + phases[name]
        at = end
        first = [timeline[0][1]] if timeline else [0]
        before = [rss for t, rss in timeline if t <= start] or first
        until = [rss for t, rss in timeline if t <= end] or before
        inside = [rss for t, rss in timeline if start <= t <= end]
        result[name] = {"start_mib": before[-1] / MiB, "end_mib": until[-1] / MiB,
                        "peak_mib": max([before[-1], until[-1], *inside]) / MiB}
    return result


def ledger_figures(dataset_dir: Path) -> dict[str, Any]:
    parts = sorted((dataset_dir / ".hugflow" / "ledger").glob("part-*.parquet"))
    return {"parts": len(parts), "bytes": sum(p.stat().st_size for p in parts),
            "hugflow_dir_bytes": store.dataset_size(dataset_dir / ".hugflow")}


def output_figures(dataset_dir: Path) -> dict[str, Any]:
    """Files and bytes (as written, and as allocated on disk) of each top-level entry of the copy."""
    by_entry: dict[str, dict[str, int]] = {}
    for entry in os.scandir(dataset_dir):
        figures = by_entry.setdefault(entry.name, {"files": 0, "bytes": 0, "allocated_bytes": 0})
        pending_dirs = [entry.path] if entry.is_dir(follow_symlinks=False) else []
        if not pending_dirs:
            info = entry.stat(follow_symlinks=False)
            figures.update(files=1, bytes=info.st_size, allocated_bytes=info.st_blocks * 512)
        while pending_dirs:
            with os.scandir(pending_dirs.pop()) as inside:
                for item in inside:
                    if item.is_dir(follow_symlinks=False):
                        pending_dirs.append(item.path)
                        continue
                    info = item.stat(follow_symlinks=False)
                    figures["files"] += 1
                    figures["bytes"] += info.st_size
                    figures["allocated_bytes"] += info.st_blocks * 512
    totals = {key: sum(f[key] for f in by_entry.values()) for key in ("files", "bytes", "allocated_bytes")}
    return {**totals, "by_entry": dict(sorted(by_entry.items()))}


# ------------------------------------------------------------------- the finalize steps and the driver structures


def probe(dataset_dir: Path, data_root: Path) -> dict[str, Any]:
    """Run in a fresh child: the finalize steps over the finished copy (seconds, and this process's RSS growth at
    their peak and after them, sampled every 5 ms), then the driver-side structures."""
    files = sorted((data_root / "data").glob("*.parquet"))
    footers = [pq.ParquetFile(f).metadata for f in files]
    blocks = [m.row_group(g).num_rows for m in footers for g in range(m.num_row_groups)]  # a block a row group
    steps: dict[str, Callable[[], Any]] = {
        "ledger summary": lambda: Ledger(dataset_dir).summary(),
        "write_manifests": lambda: manifests.write_manifests(dataset_dir),
        "dataset_size walk": lambda: store.dataset_size(dataset_dir),
    }
    sink = pa.BufferOutputStream()  # Arrow's and parquet's first use (the driver's was at the ledger's open)
    pq.write_table(pa.table({"row_id": [0]}), sink)
    pq.read_table(pa.BufferReader(sink.getvalue()))
    finalize = {name: rss_step(step) for name, step in steps.items()}
    return {"finalize": finalize, "driver_structures": structures(dataset_dir, blocks)}


def rss_step(step: Callable[[], Any]) -> dict[str, float]:
    """``step()``'s seconds, and this process's RSS above what it was before: at the peak and after it."""
    gc.collect()
    before = peak = _rss(os.getpid())
    done = threading.Event()

    def watch() -> None:
        nonlocal peak
        while not done.wait(0.005):
            peak = max(peak, _rss(os.getpid()))

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    started = time.perf_counter()
    step()
    seconds = time.perf_counter() - started
    done.set()
    watcher.join()
    after = _rss(os.getpid())
    return {"s": seconds, "peak_rss_growth_mib": (max(peak, after) - before) / MiB,
            "rss_growth_after_mib": (after - before) / MiB}


def structures(dataset_dir: Path, blocks: list[int]) -> dict[str, dict[str, float]]:
    """Bytes retained and peak of the driver-side structures whose size is the row count, built with the sync's
    own classes over the finished copy: the ledger's summary (what a resume and the finalize read), the progress
    reporter fed the blocks' ids as the executor feeds it, and ``write_manifests``."""
    figures: dict[str, dict[str, float]] = {}
    tracemalloc.start()
    try:
        summary, figures["ledger summary (finished ids)"] = traced(lambda: Ledger(dataset_dir).summary())
        del summary
        with tempfile.TemporaryDirectory(prefix="hugflow-million-progress-") as state:
            _, figures["progress reporter (finished ids)"] = traced(lambda: fed_reporter(Path(state), blocks))
        _, figures["write_manifests (Python objects)"] = traced(lambda: manifests.write_manifests(dataset_dir))
    finally:
        tracemalloc.stop()
    return figures


def traced(build: Callable[[], Any]) -> tuple[Any, dict[str, float]]:
    """``build()``, with the bytes it leaves allocated (while its value is held) and its peak, both above what was
    allocated before: tracemalloc's (Python and NumPy) and Arrow's pool."""
    gc.collect()
    python, arrow = tracemalloc.get_traced_memory()[0], pa.total_allocated_bytes()
    tracemalloc.reset_peak()
    started = time.perf_counter()
    value = build()
    seconds = time.perf_counter() - started
    current, peak = tracemalloc.get_traced_memory()
    return value, {"retained_bytes": current - python, "peak_bytes": peak - python,
                   "arrow_retained_bytes": pa.total_allocated_bytes() - arrow, "seconds_traced": seconds}


def fed_reporter(state: Path, blocks: list[int]) -> ProgressReporter:
    """A progress reporter fed the ids of every block, in row order, as the executor feeds it as blocks are
    written."""
    settings = load_settings(storage_root=state / "datasets", state_dir=state / "state",
                             processed_root=state / "processed")
    total = sum(blocks)
    reporter = ProgressReporter(settings, "million", state / "datasets" / "million", total,
                                np.array([], dtype=np.int64), 0, None, False)
    rows = 0
    for block in blocks:
        reporter.update(rows + block, 0, np.arange(rows, rows + block, dtype=np.int64))
        rows += block
    return reporter


# ---------------------------------------------------------------------------------------------- reports


def report_size(r: dict[str, Any]) -> None:
    sync, out, ledger, cmd = r["sync"], r["output"], r["ledger"], r["commands"]
    alone = sync["peak_rss_mib_alone"]
    phases = sync["phases_s"]
    print(f"{r['rows']:,} rows of {r['clip_seconds']:g} s at {r['rate_hz']} Hz ({r['shards']} shards, row groups of "
          f"{r['row_group_rows']}, {r['cores']} cores; data made in {r['data_s']:.1f} s)")
    print(f"  sync {sync['wall_s']:.1f} s wall, convert {phases.get('convert', 0):.1f} s = "
          f"{sync['convert_rows_per_s'] or 0:,.0f} rows/s; by phase: "
          + ", ".join(f"{name} {s:.1f}" for name, s in phases.items()))
    print(f"  peak RSS: tree {sync['peak_rss_mib']:.0f} MiB; alone: " + ", ".join(f"{k} {v:.0f}" for k, v in
                                                                                 alone.items()) + " MiB")
    driver = sync["driver_rss_mib_by_phase"]
    print("  driver RSS by phase (start/peak/end MiB): " + ", ".join(
        f"{name} {f['start_mib']:.0f}/{f['peak_mib']:.0f}/{f['end_mib']:.0f}" for name, f in driver.items()))
    print(f"  ledger {ledger['parts']} parts, {ledger['bytes'] / MiB:.2f} MiB ({ledger['bytes'] / r['rows']:.0f} "
          f"B/row), .hugflow/ {ledger['hugflow_dir_bytes'] / MiB:.2f} MiB; output {out['files']:,} files, "
          f"{out['bytes'] / MiB:.1f} MiB written, {out['allocated_bytes'] / MiB:.1f} MiB on disk")
    print("  commands (wall s / peak RSS MiB): " + ", ".join(
        f"{name} {f['wall_s']:.1f}/{f['peak_rss_mib']:.0f}" for name, f in cmd.items()))
    print("  finalize steps (s, MiB of RSS at the peak / after): " + ", ".join(
        f"{name} {f['s']:.2f} s +{f['peak_rss_growth_mib']:.0f}/+{f['rss_growth_after_mib']:.0f}"
        for name, f in r["finalize"].items()))
    print("  driver structures (B/row: Python retained / peak, Arrow retained): " + ", ".join(
        f"{name} {f['retained_bytes'] / r['rows']:.0f}/{f['peak_bytes'] / r['rows']:.0f}, "
        f"{f['arrow_retained_bytes'] / r['rows']:.0f}" for name, f in r["driver_structures"].items()))


GROWTH = {  # what each figure is, and where it lies in a size's figures
    "sync wall s": ("s", ("sync", "wall_s")),
    "convert s": ("s", ("sync", "phases_s", "convert")),
    "finalize s": ("s", ("sync", "phases_s", "finalize")),
    "tree peak RSS": ("MiB", ("sync", "peak_rss_mib")),
    "driver peak RSS": ("MiB", ("sync", "peak_rss_mib_alone", "driver")),
    "driver RSS, convert end - start": ("MiB", ("sync", "driver_rss_mib_by_phase", "convert", "end_mib"),
                                        ("sync", "driver_rss_mib_by_phase", "convert", "start_mib")),
    "driver peak in finalize": ("MiB", ("sync", "driver_rss_mib_by_phase", "finalize", "peak_mib")),
    "output actor peak RSS": ("MiB", ("sync", "peak_rss_mib_alone", "output actor")),
    "largest worker peak RSS": ("MiB", ("sync", "peak_rss_mib_alone", "largest conversion worker")),
    "ray daemons peak RSS": ("MiB", ("sync", "peak_rss_mib_alone", "ray daemons (sum of their peaks)")),
    "ledger bytes": ("B", ("ledger", "bytes")),
    "output bytes on disk": ("B", ("output", "allocated_bytes")),
    "status s, over --version": ("s", ("commands", "status", "wall_s"), ("commands", "version", "wall_s")),
    "verify s, over --version": ("s", ("commands", "verify", "wall_s"), ("commands", "version", "wall_s")),
    "verify peak RSS": ("MiB", ("commands", "verify", "peak_rss_mib")),
    "remove s, over --version": ("s", ("commands", "remove", "wall_s"), ("commands", "version", "wall_s")),
    "write_manifests s": ("s", ("finalize", "write_manifests", "s")),
    "write_manifests peak RSS growth": ("MiB", ("finalize", "write_manifests", "peak_rss_growth_mib")),
}


def _at(figures: dict[str, Any], path: tuple[str, ...]) -> float:
    for key in path:
        figures = figures.get(key, 0.0) if isinstance(figures, dict) else 0.0
    return float(figures)  # type: ignore[arg-type]


def growth(sizes: list[dict[str, Any]], target_rows: int) -> dict[str, Any]:
    """Each figure's growth per row from the smallest size to the largest (bytes per row for memory and disk), and
    the sync's wall time extrapolated linearly to ``target_rows``."""
    small, large = sizes[0], sizes[-1]
    rows = large["rows"] - small["rows"]
    per_row: dict[str, dict[str, float]] = {}
    for name, (unit, *paths) in GROWTH.items():
        values = [_at(size, paths[0]) - (_at(size, paths[1]) if len(paths) > 1 else 0.0) for size in (small, large)]
        scale = {"MiB": MiB, "B": 1, "s": 1}[unit]
        per_row[name] = {"small": values[0], "large": values[1], "unit": unit,
                         ("bytes_per_row" if unit != "s" else "us_per_row"):
                         (values[1] - values[0]) * scale / rows * (1 if unit != "s" else 1e6)}
    for name in large["driver_structures"]:
        a, b = (size["driver_structures"][name] for size in (small, large))
        held = [f["retained_bytes"] + f["arrow_retained_bytes"] for f in (a, b)]
        per_row[f"structure: {name}"] = {
            "unit": "B", "small": held[0], "large": held[1], "bytes_per_row": (held[1] - held[0]) / rows,
            "peak_bytes_per_row": (b["peak_bytes"] - a["peak_bytes"]) / rows}
    wall = per_row["sync wall s"]
    fixed = wall["small"] - wall["us_per_row"] * 1e-6 * small["rows"]
    result = {"rows": [s["rows"] for s in sizes], "per_row": per_row, "fixed_s": fixed, "target_rows": target_rows,
              "extrapolated_sync_wall_s": fixed + wall["us_per_row"] * 1e-6 * target_rows,
              "extrapolated_data_s": large["data_s"] / large["rows"] * target_rows}
    print(f"\ngrowth per row, {small['rows']:,} -> {large['rows']:,} rows (x {target_rows:,} rows = what that many "
          "would add):")
    for name, f in per_row.items():
        if "us_per_row" in f:
            print(f"  {name:42} {f['small']:10.2f} -> {f['large']:10.2f} s   {f['us_per_row']:9.1f} us/row "
                  f"({f['us_per_row'] * target_rows / 1e6:,.0f} s)")
        else:
            shown = {"MiB": 1, "B": 1 / MiB}[f["unit"]]
            peak = f" (peak {f['peak_bytes_per_row']:.1f} B/row)" if "peak_bytes_per_row" in f else ""
            print(f"  {name:42} {f['small'] * shown:10.1f} -> {f['large'] * shown:10.1f} MiB "
                  f"{f['bytes_per_row']:9.1f} B/row ({f['bytes_per_row'] * target_rows / MiB:,.0f} MiB){peak}")
    print(f"  sync wall time extrapolated to {target_rows:,} rows: {result['extrapolated_sync_wall_s'] / 60:,.0f} min "
          f"({fixed:.1f} s fixed); generating their data: {result['extrapolated_data_s'] / 60:,.0f} min")
    return result


# ------------------------------------------------------------------------------------------------------- main


def check_room(parser: argparse.ArgumentParser, work: Path, rows: int) -> None:
    """Refuse to start a size that cannot fit on the work directory's filesystem."""
    fs = os.statvfs(work)
    if fs.f_files and fs.f_favail < rows * ROOM_INODES_PER_ROW:
        parser.error(f"{work} has {fs.f_favail:,} free inodes; {rows:,} rows need about "
                     f"{int(rows * ROOM_INODES_PER_ROW):,}")
    if fs.f_bavail * fs.f_frsize < rows * ROOM_BYTES_PER_ROW:
        parser.error(f"{work} has {fs.f_bavail * fs.f_frsize / 1e9:.1f} GB free; {rows:,} rows need about "
                     f"{rows * ROOM_BYTES_PER_ROW / 1e9:.1f} GB")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=ROWS)
    parser.add_argument("--rows-sweep", type=int, nargs="*", metavar="ROWS",
                        help=f"sync at each size and report growth per row (no sizes: {SWEEP_ROWS[0]} "
                        f"{SWEEP_ROWS[1]}); --rows is then the size the wall time is extrapolated to")
    parser.add_argument("--seconds", type=float, default=SECONDS)
    parser.add_argument("--rate", type=int, default=RATE)
    parser.add_argument("--shard-rows", type=int, default=SHARD_ROWS, help="rows a parquet file")
    parser.add_argument("--row-group-rows", type=int, default=ROW_GROUP_ROWS)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: that it runs, not figures")
    parser.add_argument("--work", type=Path, help="keep generated data here (reused when it matches)")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--probe", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.probe:
        figures = probe(args.probe, args.data)
        print(json.dumps(figures))
        return figures
    if args.smoke:
        args.rows, args.shard_rows, args.row_group_rows = SMOKE_ROWS, 24, 8
        if args.rows_sweep is not None:
            args.rows_sweep = list(SMOKE_SWEEP_ROWS)
    sweep = sorted(set(args.rows_sweep or SWEEP_ROWS)) if args.rows_sweep is not None else None
    if sweep is not None and len(sweep) < 2:
        parser.error("--rows-sweep needs two sizes at least")
    if min(sweep or [args.rows]) < 1 or args.shard_rows < 1 or args.row_group_rows < 1:
        parser.error("--rows, --rows-sweep, --shard-rows and --row-group-rows must be positive")
    if args.work:
        args.work.mkdir(parents=True, exist_ok=True)
    check_room(parser, args.work or Path(tempfile.gettempdir()), max(sweep or [args.rows]))
    with tempfile.TemporaryDirectory(prefix="hugflow-million-") as temp:
        work = args.work or Path(temp)
        if sweep is None:
            result = run_size(args, work, args.rows)
        else:
            sizes = [run_size(args, work, rows) for rows in sweep]
            result = {"sizes": {str(s["rows"]): s for s in sizes}, "growth": growth(sizes, args.rows)}
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
