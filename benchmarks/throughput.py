"""End-to-end throughput of hugflow against the seed's way, a hand-rolled pool and the physical limit, in one run.

    python benchmarks/throughput.py                    # 2000 clips x 5 s, 16 kHz FLAC, 4 shards, 3 rounds
    python benchmarks/throughput.py --rate 48000 --seconds 10 --clips 500 --one-file
    python benchmarks/throughput.py --scale            # hugflow at 500 / 2000 / 8000 rows, row-group sizes, resume
    python benchmarks/throughput.py --scale --join     # the same, every sync joining the Ray at RAY_ADDRESS
    python benchmarks/throughput.py --row-groups 100 2000 10000 --clips 10000 --seconds 1
                                                       # only the row-group sweep: one file, peak RSS and rate
    python benchmarks/throughput.py --marginal 600 1800 --rounds 2
                                                       # hugflow and the plain Ray Data script at two sizes:
                                                       # marginal rate / limit, fixed seconds, end-to-end ratio
    python benchmarks/throughput.py --smoke            # seconds; what the test suite runs

The ``seed`` variant needs pydub and ffmpeg: ``pip install -e '.[bench]'`` and ``apt-get install ffmpeg``.

Variants, run interleaved (A B C D A B C D ...), each as its own process tree so that peak RSS and CPU are its own:

* ``limit1``: a bare single-process decode + encode loop over the same clips, same encoder settings, no files.
  The physical limit is cores x limit1.
* ``seed``: the seed's way: per row, pydub ``AudioSegment`` -> ffmpeg subprocess MP3 at 192k, one JSON per row,
  sequential.
* ``pool``: hugflow's codec over a ``multiprocessing`` pool of all cores, one task per row group, writing
  MP3 + JSON (what an engineer would hand-roll without Ray).
* ``hugflow``: ``hugflow local-sync`` of the same data as a local dataset in Hub layout, on an embedded Ray:
  files, ledger and manifests written. The wait for Ray's start-up (which runs beside the download and the row count)
  and its shut-down are reported apart and excluded from the rate.
* ``raydata``: the plain Ray Data script a user would write instead: ``read_parquet`` -> ``map_batches`` (hugflow's
  codec, MP3 and JSON written by the worker) -> count the rows, on ``ray.init()``. No ledger, no atomic writes, no
  resume, no manifests.

Rates are audio-seconds per wall-second of each process (interpreter start included). Excluded as start-up: Ray's
start-up and shut-down for hugflow, loading the clips into memory for limit1. Prints medians with min-max, the
ratios, peak RSS of each process tree, where hugflow's CPU time went (by process), and the output actor's busy
fraction; ``--json PATH`` writes every figure for comparison across commits.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import dataclasses
import io
import json
import multiprocessing
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))
from codec_throughput import bare, iter_clips  # noqa: E402

from hugflow_ray.codec import audio  # noqa: E402
from hugflow_ray.copies.ledger import Ledger  # noqa: E402
from hugflow_ray.core.encoding import EncoderSettings  # noqa: E402

PAGE = os.sysconf("SC_PAGE_SIZE")
TICK = os.sysconf("SC_CLK_TCK")
SAMPLE_SECONDS = 0.2
DEFAULT_VARIANTS = ("limit1", "seed", "pool", "hugflow")
# hugflow with HUGFLOW_METRICS=false: the cost of recording metrics is hugflow's rate over this one's; raydata: the
# plain Ray Data script (what --marginal compares end to end)
VARIANTS = (*DEFAULT_VARIANTS, "hugflow-nometrics", "raydata")
MARGINAL_CLIPS = (600, 1800)
SEED_BITRATE = "192k"
ROW_GROUP_ROWS = 100  # what the Hub's parquet export uses for audio datasets
SCALE_ROWS = (500, 2000, 8000)
SWEEP_ROW_GROUPS = (100, 2000, 10000)  # the Hub's export writes 100; other writers, thousands
JOIN = ("RAY_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN")  # what makes a sync join a running Ray (--join)
RESUME_DONE_FRACTION = 0.9


# ---------------------------------------------------------------------------------------------- the dataset


@dataclass(frozen=True)
class Data:
    """A synthetic dataset in Hub layout: ``root/data/train-*.parquet`` with the ``datasets`` Audio feature."""

    root: Path
    clips: int
    seconds: float
    rate: int

    @property
    def audio_seconds(self) -> float:
        return self.clips * self.seconds

    @property
    def files(self) -> list[Path]:
        return sorted((self.root / "data").glob("*.parquet"))


def phases_of(output: str) -> dict[str, float]:
    """A finished ``local-sync``'s ``seconds:`` line: its seconds by phase."""
    line = re.search(r"seconds: +(.*)", output)
    found = re.findall(r"([a-z][a-z -]*?) ([0-9.]+)(?:,|$)", line.group(1)) if line else []
    return {name: float(value) for name, value in found}


def add_data_arguments(parser: argparse.ArgumentParser, *, clips: int, shards: int = 8, rounds: int = 2) -> None:
    """The options of a benchmark that makes the synthetic dataset (:func:`make_data`) and runs it in rounds."""
    parser.add_argument("--clips", type=int, default=clips)
    parser.add_argument("--seconds", type=float, default=5.0, help="seconds per clip")
    parser.add_argument("--rate", type=int, default=16000, help="the clips' sample rate (Hz)")
    parser.add_argument("--shards", type=int, default=shards)
    parser.add_argument("--rounds", type=int, default=rounds)


def make_data(root: Path, *, clips: int, seconds: float, rate: int, shards: int, row_group_rows: int) -> Data:
    """Write (or reuse, when ``root`` already holds exactly this dataset) the deterministic dataset."""
    import datasets  # the real Audio feature metadata, as the Hub writes it

    recipe = {"clips": clips, "seconds": seconds, "rate": rate, "shards": shards, "row_group_rows": row_group_rows}
    marker = root / "recipe.json"
    if marker.is_file() and json.loads(marker.read_text()) == recipe:
        return Data(root, clips, seconds, rate)
    shutil.rmtree(root, ignore_errors=True)
    (root / "data").mkdir(parents=True)
    schema = datasets.Features({"audio": datasets.Audio(), "text": datasets.Value("string")}).arrow_schema
    per = -(-clips // shards)
    generated = iter_clips(clips, seconds, rate)
    for shard in range(shards):
        ids = range(shard * per, min(clips, (shard + 1) * per))
        rows = [{"audio": {"bytes": next(generated), "path": f"clip_{i:06d}.flac"}, "text": f"utterance {i}"}
                for i in ids]
        path = root / "data" / f"train-{shard:05d}-of-{shards:05d}.parquet"
        pq.write_table(pa.Table.from_pylist(rows, schema=schema), path, row_group_size=row_group_rows)
    marker.write_text(json.dumps(recipe))
    return Data(root, clips, seconds, rate)


# ------------------------------------------------------------------ the variants that run as children of this file


def child_limit1(data: Data, out: Path) -> dict[str, float]:
    start = time.perf_counter()
    clips = [c["bytes"] for f in data.files for c in pq.read_table(f, columns=["audio"]).column("audio").to_pylist()]
    loaded = time.perf_counter()
    settings = EncoderSettings()
    for clip in clips:
        bare(clip, settings)
    return {"startup_s": loaded - start}


def child_seed(data: Data, out: Path) -> dict[str, float]:
    from pydub import AudioSegment

    (out / "audio").mkdir(parents=True)
    (out / "json").mkdir()
    row_id = 0
    for path in data.files:
        for row in pq.read_table(path).to_pylist():
            segment = AudioSegment.from_file(io.BytesIO(row["audio"]["bytes"]))
            name = f"audio/{Path(row['audio']['path']).stem}.mp3"
            segment.set_channels(1).export(out / name, format="mp3", bitrate=SEED_BITRATE)
            document = {"row_id": row_id, "text": row["text"],
                        "audio": {"path": name, "duration": segment.duration_seconds}}
            (out / "json" / f"{row_id}.json").write_text(json.dumps(document))
            row_id += 1
    return {"startup_s": 0.0}


def _pool_task(task: tuple[str, int, int, str]) -> int:
    """Convert one row group and write its MP3 + JSON files (a pool worker)."""
    path, group, first_row_id, out = task
    settings = EncoderSettings()
    table = pq.ParquetFile(path).read_row_group(group)
    for offset, row in enumerate(table.to_pylist()):
        row_id = first_row_id + offset
        encoded = audio.convert(row["audio"], settings, row_id=row_id)
        name = f"audio/{Path(row['audio']['path']).stem}.mp3"
        Path(out, name).write_bytes(encoded.mp3)
        document = {"row_id": row_id, "text": row["text"], "audio": {"path": name, **encoded.facts.to_dict()}}
        Path(out, "json", f"{row_id}.json").write_text(json.dumps(document))
    return table.num_rows


def child_pool(data: Data, out: Path) -> dict[str, float]:
    (out / "audio").mkdir(parents=True)
    (out / "json").mkdir()
    tasks, row_id = [], 0
    for path in data.files:
        metadata = pq.ParquetFile(path).metadata
        for group in range(metadata.num_row_groups):
            tasks.append((str(path), group, row_id, str(out)))
            row_id += metadata.row_group(group).num_rows
    with multiprocessing.Pool(len(os.sched_getaffinity(0))) as pool:
        done = sum(pool.imap_unordered(_pool_task, tasks))
    assert done == data.clips
    return {"startup_s": 0.0}


def _raydata_batch(batch: pa.Table, out: str) -> dict[str, list[int]]:
    """The plain script's ``map_batches`` function: decode, encode, write the MP3 and its JSON from the worker."""
    settings = EncoderSettings()
    for row in batch.to_pylist():
        stem = Path(row["audio"]["path"]).stem
        encoded = audio.convert(row["audio"], settings)
        name = f"audio/{stem}.mp3"
        Path(out, name).write_bytes(encoded.mp3)
        document = {"text": row["text"], "audio": {"path": name, **encoded.facts.to_dict()}}
        Path(out, "json", f"{stem}.json").write_text(json.dumps(document))
    return {"rows": [batch.num_rows]}


def child_raydata(data: Data, out: Path) -> dict[str, float]:
    """What a user would write instead of adopting hugflow: Ray Data straight from the parquet files to MP3 + JSON
    written by the workers. No ledger, no atomic writes, no resume, no manifests."""
    import ray

    (out / "audio").mkdir(parents=True)
    (out / "json").mkdir()
    start = time.perf_counter()
    ray.init(log_to_driver=False)
    started = time.perf_counter() - start
    dataset = ray.data.read_parquet([str(f) for f in data.files]).map_batches(
        _raydata_batch, fn_kwargs={"out": str(out)}, batch_format="pyarrow")
    rows = sum(batch["rows"] for batch in dataset.iter_rows())
    assert rows == data.clips, rows
    stop = time.perf_counter()
    ray.shutdown()
    return {"startup_s": started + time.perf_counter() - stop}


CHILDREN: dict[str, Callable[[Data, Path], dict[str, float]]] = {
    "limit1": child_limit1, "seed": child_seed, "pool": child_pool, "raydata": child_raydata,
}


# ------------------------------------------------------------------------------ measuring a process tree


@dataclass
class TreeSample:
    """Peak RSS of a process tree (and which processes held it then), and CPU seconds per process (by the name Ray
    gives its workers)."""

    peak_rss: int = 0
    peak_by_process: dict[str, int] = field(default_factory=dict)
    cpu_ticks: dict[int, int] = field(default_factory=dict)
    titles: dict[int, collections.Counter[str]] = field(default_factory=dict)
    # Every process on the machine but this one, by what it was doing at each sample: a joined sync's workers and
    # the running Ray's daemons are not in the command's tree, and a worker's start (before Ray names it by its
    # task) is told apart from its work.
    machine_ticks: dict[int, int] | None = None
    machine_cpu: collections.Counter[str] = field(default_factory=collections.Counter)

    def observe(self, root: int, start: float) -> None:
        """One sample of the tree under ``root`` while :func:`measured` runs it (``start``: when it began)."""
        self.sample(root)

    def sample(self, root: int) -> None:
        parents: dict[int, int] = {}
        stats: dict[int, tuple[int, int]] = {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                stat = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
                pages = int(Path(f"/proc/{entry}/statm").read_text().split()[1])
            except (OSError, IndexError):
                continue
            parents[int(entry)] = int(stat[1])
            stats[int(entry)] = (pages * PAGE, int(stat[11]) + int(stat[12]))
        ticks = {pid: cpu for pid, (_, cpu) in stats.items() if pid != os.getpid()}
        if self.machine_ticks is not None:  # the first sample is the baseline
            for pid, total in ticks.items():
                if (used := total - self.machine_ticks.get(pid, 0)) > 0:
                    self.machine_cpu[_title(pid)] += used / TICK
        self.machine_ticks = ticks
        tree, stack = [], [root]
        while stack:
            pid = stack.pop()
            tree.append(pid)
            stack.extend(p for p, parent in parents.items() if parent == pid)
        latest = {}
        for pid in tree:
            if pid in stats:
                self.cpu_ticks[pid] = stats[pid][1]
                latest[pid] = _title(pid)
                self.titles.setdefault(pid, collections.Counter())[latest[pid]] += 1
        rss = sum(stats[p][0] for p in tree if p in stats)
        if rss > self.peak_rss:
            self.peak_rss = rss
            by_process: collections.Counter[str] = collections.Counter()
            for pid, title in latest.items():
                by_process[title] += stats[pid][0]
            self.peak_by_process = dict(by_process.most_common())

    def machine_cpu_by_process(self) -> dict[str, float]:
        return {title: seconds for title, seconds in self.machine_cpu.most_common() if seconds >= 0.01}

    def cpu_by_process(self) -> dict[str, float]:
        totals: collections.Counter[str] = collections.Counter()
        for pid, ticks in self.cpu_ticks.items():
            titles = self.titles[pid]
            busy = [t for t in titles if t != "ray::IDLE"]
            totals[max(busy, key=titles.__getitem__) if busy else "ray::IDLE"] += ticks / TICK
        return dict(totals.most_common())


def _title(pid: int) -> str:
    try:
        words = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return "?"
    first = words[0].decode(errors="replace")
    if first.startswith("ray::"):
        return first.split(" ")[0]
    name = Path(first).name
    if name.startswith("python"):
        script = next((w.decode() for w in words[1:] if w and not w.startswith(b"-")), "")
        return f"python {Path(script).name}" if script else name
    return name


@dataclass(frozen=True)
class Run:
    variant: str
    wall_s: float
    startup_s: float
    peak_rss: int
    cpu: dict[str, float]
    writer_busy: float | None
    phases: dict[str, float] = field(default_factory=dict)
    peak_by_process: dict[str, int] = field(default_factory=dict)
    machine_cpu: dict[str, float] = field(default_factory=dict)

    def rate(self, audio_seconds: float) -> float:
        return audio_seconds / (self.wall_s - self.startup_s)


def measured(command: list[str], env: dict[str, str] | None = None, *,
             tree: TreeSample | None = None) -> tuple[float, str, TreeSample]:
    """Run ``command``; its wall time, output, and the samples of its process tree (into ``tree`` when given: a
    subclass may sample more, through :meth:`TreeSample.observe`)."""
    tree = tree if tree is not None else TreeSample()
    start = time.perf_counter()
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            tree.observe(proc.pid, start)
            done.wait(SAMPLE_SECONDS)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    output, _ = proc.communicate()
    wall = time.perf_counter() - start
    done.set()
    sampler.join()
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{output[-3000:]}")
    return wall, output, tree


def run_variant(variant: str, data: Data, work: Path, joining: dict[str, str] | None = None) -> Run:
    out = work / f"out-{variant}"
    shutil.rmtree(out, ignore_errors=True)
    if variant == "hugflow-joined":
        assert joining is not None, "hugflow-joined needs a running Ray (--joined)"
        run = dataclasses.replace(run_hugflow(data, out, joining=joining), variant=variant)
    elif not variant.startswith("hugflow"):
        command = [sys.executable, __file__, "--child", variant, "--data", str(data.root), "--out", str(out),
                   "--clips", str(data.clips), "--seconds", str(data.seconds), "--rate", str(data.rate)]
        wall, output, tree = measured(command, env=own_ray_env())
        reported = json.loads(output.strip().splitlines()[-1])
        run = Run(variant, wall, reported["startup_s"], tree.peak_rss, tree.cpu_by_process(), None)
    else:
        run = run_hugflow(data, out, metrics=variant == "hugflow")
    shutil.rmtree(out, ignore_errors=True)
    return run


def own_ray_env() -> dict[str, str]:
    """This process's environment without what would make a child join a running Ray (``--join``'s): a child
    given it starts a Ray of its own."""
    return {name: value for name, value in os.environ.items() if name not in JOIN}


def hugflow_env(out: Path, *, metrics: bool = True) -> dict[str, str]:
    return {**own_ray_env(), "STORAGE_ROOT": str(out / "datasets"), "STATE_DIR": str(out / "state"),
            "PROCESSED_ROOT": str(out / "processed"), "HUGFLOW_METRICS": str(metrics).lower()}


def run_hugflow(data: Data, out: Path, *, metrics: bool = True, joining: dict[str, str] | None = None) -> Run:
    """``hugflow local-sync`` of ``data`` into ``out`` (kept: scale mode resumes from it); with ``joining``, the
    environment that points it at a running Ray instead of an embedded one."""
    request = out / "bench.yaml"
    request.parent.mkdir(parents=True, exist_ok=True)
    request.write_text(f"path: {data.root}\ndescription: benchmark\n")
    command = [sys.executable, "-m", "hugflow_ray", "local-sync", str(request)]
    wall, output, tree = measured(command, env={**hugflow_env(out, metrics=metrics), **(joining or {})})
    busy = re.search(r"output actor busy ([0-9.]+) %", output)
    line = re.search(r"seconds: +(.*)", output)
    phases = {name: float(value) for name, value in re.findall(r"([a-z][a-z -]*?) ([0-9.]+)(?:,|$)", line.group(1))} \
        if line else {}
    # Ray's start runs beside the download and row count: what it adds to the wall time is the wait for it
    ray_fixed = phases.get("waiting for the executor", 0.0) + phases.get("shut-down", 0.0)
    return Run("hugflow" if metrics else "hugflow-nometrics", wall, ray_fixed, tree.peak_rss, tree.cpu_by_process(),
               float(busy.group(1)) / 100 if busy else None, phases, tree.peak_by_process,
               tree.machine_cpu_by_process())


# ---------------------------------------------------------------------------------------------- reports


def spread(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def show(values: dict[str, float], unit: str = "") -> str:
    return f"{values['median']:8.2f}{unit} ({values['min']:.2f}-{values['max']:.2f})"


def compare(data: Data, variants: list[str], rounds: int, work: Path) -> dict[str, Any]:
    """The interleaved comparison; returns the figures."""
    cores = len(os.sched_getaffinity(0))
    runs: dict[str, list[Run]] = {v: [] for v in variants}
    for round_ in range(rounds):
        for variant in variants:
            run = run_variant(variant, data, work)
            runs[variant].append(run)
            print(f"  round {round_ + 1} {variant:8} {run.rate(data.audio_seconds):8.1f} x realtime "
                  f"({run.wall_s:.1f} s wall, {run.startup_s:.1f} s start-up)", flush=True)
    rates = {v: [r.rate(data.audio_seconds) * (cores if v == "limit1" else 1) for r in runs[v]] for v in variants}
    result: dict[str, Any] = {"cores": cores, "clips": data.clips, "clip_seconds": data.seconds, "rate_hz": data.rate,
                              "rounds": rounds, "x_realtime": {}, "peak_rss_mib": {}, "ratios": {}}
    print(f"\n{data.clips} clips x {data.seconds:g} s at {data.rate} Hz, {cores} cores, {rounds} rounds "
          "(x realtime: median (min-max); limit = cores x limit1)")
    for variant in variants:
        name = "limit" if variant == "limit1" else variant
        result["x_realtime"][name] = spread(rates[variant])
        result["peak_rss_mib"][variant] = spread([r.peak_rss / 2**20 for r in runs[variant]])
        print(f"  {name:8} {show(result['x_realtime'][name])}   peak RSS "
              f"{show(result['peak_rss_mib'][variant], ' MiB')}")
    if "hugflow" in variants:
        result["ray_startup_shutdown_s"] = spread([r.startup_s for r in runs["hugflow"]])
        result["hugflow_x_realtime_incl_ray_startup"] = spread([data.audio_seconds / r.wall_s for r in runs["hugflow"]])
        busy = [r.writer_busy for r in runs["hugflow"] if r.writer_busy is not None]
        if busy:
            result["output_actor_busy_fraction"] = spread(busy)
        for other in (v for v in variants if v != "hugflow"):
            name = "limit" if other == "limit1" else other
            per_round = [h / o for h, o in zip(rates["hugflow"], rates[other], strict=True)]
            result["ratios"][f"hugflow/{name}"] = spread(per_round)
            print(f"  hugflow/{name:6} {show(result['ratios'][f'hugflow/{name}'])}")
        counted = result["hugflow_x_realtime_incl_ray_startup"]
        print(f"  hugflow with Ray's start-up and shut-down counted {show(counted)}")
        print(f"  Ray start-up + shut-down {show(result['ray_startup_shutdown_s'], ' s')}"
              + (f", output actor busy {show(result['output_actor_busy_fraction'])}" if busy else ""))
        cpu = runs["hugflow"][len(runs["hugflow"]) // 2].cpu
        result["hugflow_cpu_s_by_process"] = cpu
        print("  hugflow CPU seconds by process (middle round): "
              + ", ".join(f"{name} {seconds:.1f}" for name, seconds in cpu.items() if seconds >= 0.05))
    return result


@contextlib.contextmanager
def running_ray() -> Iterator[dict[str, str]]:
    """One ``ray start --head`` on this host with every core and the storage resource, as an operator keeps one
    running; yields the environment that makes ``local-sync`` join it. Run under ``tests/in_own_network.sh``."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository: its tests/ray_nodes.py
    from tests.ray_nodes import NODE_ENV, alive_nodes, free_port, storage_head

    dashboard = free_port()
    with storage_head("--include-dashboard=true", "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard}") \
            as (address, head):
        head.wait_until(lambda: alive_nodes(f"http://127.0.0.1:{dashboard}") == 1, "the running Ray's dashboard")
        yield {**NODE_ENV, "RAY_ADDRESS": address}


def marginal(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """hugflow and the plain Ray Data script at two sizes, and the bare loop at the larger, interleaved: the marginal
    rate (fixed costs cancel) against the limit, the fixed seconds by phase, and the end-to-end ratio to the
    script. With ``--joined``, also hugflow joining a Ray that is already running: one it starts, or with ``--join``
    the Ray at RAY_ADDRESS."""
    if not args.joined:
        return _marginal(args, work, None)
    with contextlib.nullcontext(args.joining) if args.joining else running_ray() as joining:
        return _marginal(args, work, joining)


def _marginal(args: argparse.Namespace, work: Path, joining: dict[str, str] | None) -> dict[str, Any]:
    small, large = args.marginal
    cores = len(os.sched_getaffinity(0))
    cases = {clips: make_data(work / f"data-{clips}", clips=clips, seconds=args.seconds, rate=args.rate,
                              shards=args.shards, row_group_rows=ROW_GROUP_ROWS) for clips in (small, large)}
    compared = ("hugflow", "raydata", "hugflow-joined") if joining else ("hugflow", "raydata")
    plan = [("limit1", large)] + [(variant, clips) for clips in (small, large) for variant in compared]
    runs: dict[tuple[str, int], list[Run]] = {case: [] for case in plan}
    for round_ in range(args.rounds):
        for variant, clips in plan:
            run = run_variant(variant, cases[clips], work, joining)
            runs[variant, clips].append(run)
            print(f"  round {round_ + 1} {variant:8} {clips:6} clips {run.wall_s:6.1f} s wall", flush=True)
    audio_small, audio_large = (cases[c].audio_seconds for c in (small, large))
    limit = statistics.median(cores * r.rate(audio_large) for r in runs["limit1", large])
    result: dict[str, Any] = {"cores": cores, "clips": [small, large], "clip_seconds": args.seconds,
                              "rounds": args.rounds, "limit_x_realtime": limit}
    for variant in compared:
        walls = [(s_.wall_s, l_.wall_s) for s_, l_ in zip(runs[variant, small], runs[variant, large], strict=True)]
        rates = [(audio_large - audio_small) / (wl - ws) for ws, wl in walls]
        rate = statistics.median(rates)
        small_wall = statistics.median(ws for ws, _ in walls)
        marginal_small = audio_small / rate
        result[variant] = {"wall_s": {str(small): spread([w for w, _ in walls]),
                                      str(large): spread([w for _, w in walls])},
                           "marginal_x_realtime": rate, "marginal_over_limit": rate / limit,
                           "fixed_s": small_wall - marginal_small,
                           "small_over_its_marginal_time": small_wall / marginal_small}
        print(f"  {variant:8} marginal {rate:6.1f} x realtime = {rate / limit:.2f} x limit ({limit:.1f}); "
              f"{small} clips in {small_wall:.1f} s = {small_wall / marginal_small:.2f} x its marginal time "
              f"({small_wall - marginal_small:.1f} s fixed)")
    ratios = [r.wall_s / h.wall_s for h, r in zip(runs["hugflow", large], runs["raydata", large], strict=True)]
    result["hugflow_over_raydata_end_to_end"] = spread(ratios)
    print(f"  hugflow against the plain Ray Data script at {large} clips, end to end: "
          f"{show(result['hugflow_over_raydata_end_to_end'])} x as fast")
    result["hugflow_phases_s"], result["hugflow_cpu_s_outside_conversion"] = {}, {}
    for variant in (v for v in compared if v != "raydata"):
        middle = runs[variant, small][len(runs[variant, small]) // 2]
        result["hugflow_phases_s"]["small" if variant == "hugflow" else f"small, {variant}"] = middle.phases
        print(f"  {variant}'s seconds by phase at {small} clips (middle round): "
              + ", ".join(f"{name} {seconds:.1f}" for name, seconds in middle.phases.items()))
        cpu = outside_conversion(middle.machine_cpu)
        outside = sum(cpu.values())
        budget = 0.5 * audio_small / result[variant]["marginal_x_realtime"] * cores  # half its marginal time
        result["hugflow_cpu_s_outside_conversion"][variant] = {"total": outside, "by_process": cpu,
                                                               "budget_at_1_5x": budget}
        print(f"  {variant}'s CPU seconds on the machine outside its conversion tasks at {small} clips (middle "
              f"round): {outside:.1f}, where a sync within 1.5x its marginal time has {budget:.1f} on {cores} cores; "
              "by process: " + ", ".join(f"{name} {seconds:.2f}" for name, seconds in cpu.items() if seconds >= 0.05))
    return result


def outside_conversion(cpu: dict[str, float]) -> dict[str, float]:
    """CPU seconds by process outside the conversion tasks (Ray names them after the fused read and map): the
    driver, Ray's daemons, the workers' start (before Ray names them by a task: ``python default_worker.py``, then
    ``ray::IDLE``), the warm-up, Ray Data's actors and the output actor."""
    return {name: seconds for name, seconds in cpu.items() if "MapBatches" not in name}


def scale(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """hugflow at several sizes, over row groups of several sizes, and the cost of resuming a dataset that is 90 %
    done."""
    result: dict[str, Any] = {"sizes": {}}
    cases = [(f"{rows} rows", rows, args.shards, ROW_GROUP_ROWS) for rows in args.scale_rows]
    middle = args.scale_rows[len(args.scale_rows) // 2]
    for label, rows, shards, group in cases:
        data = make_data(work / f"data-{rows}-{shards}-{group}", clips=rows, seconds=args.seconds, rate=args.rate,
                         shards=shards, row_group_rows=group)
        runs = [run_variant(scaled(args), data, work, args.joining) for _ in range(args.rounds)]
        figures = {"x_realtime": spread([r.rate(data.audio_seconds) for r in runs]),
                   "peak_rss_mib": spread([r.peak_rss / 2**20 for r in runs]),
                   "peak_rss_mib_by_process": {name: rss / 2**20 for name, rss in runs[-1].peak_by_process.items()}}
        result["sizes"][label] = figures
        largest = ", ".join(f"{name} {rss:.0f}" for name, rss in list(figures["peak_rss_mib_by_process"].items())[:4])
        print(f"  {label:34} {show(figures['x_realtime'])} x realtime, peak RSS "
              f"{show(figures['peak_rss_mib'], ' MiB')} (at the peak, MiB: {largest})", flush=True)
    sizes = result["sizes"]
    first, last = (f"{r} rows" for r in (args.scale_rows[0], args.scale_rows[-1]))
    mid = f"{middle} rows"
    rss, rate = ({label: figures[key]["median"] for label, figures in sizes.items()}
                 for key in ("peak_rss_mib", "x_realtime"))
    result["rss_ratio_largest_over_middle"] = rss[last] / rss[mid]
    result["rate_ratio_largest_over_smallest"] = rate[last] / rate[first]
    print(f"  peak RSS {last} / {mid}: {result['rss_ratio_largest_over_middle']:.2f}; "
          f"rate {last} / {first}: {result['rate_ratio_largest_over_smallest']:.2f}")
    if args.sizes_only:
        return result
    args.row_groups = args.row_groups or list(SWEEP_ROW_GROUPS)
    args.clips = max(args.row_groups)
    result["row_groups"] = row_group_sweep(args, work)
    result["resume"] = resume_cost(args, work, middle)
    return result


def scaled(args: argparse.Namespace) -> str:
    """The variant the scale runs measure: hugflow with its embedded Ray, or (``--join``) joining a running one."""
    return "hugflow-joined" if args.joining else "hugflow"


def joining_env() -> dict[str, str]:
    """The environment that makes a sync join the Ray this process was pointed at (``--join``)."""
    if "RAY_ADDRESS" not in os.environ:
        raise SystemExit("--join needs RAY_ADDRESS (a running Ray: `ray start --head`)")
    return {name: os.environ[name] for name in JOIN if name in os.environ}


def row_group_sweep(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """hugflow over the same clips in one file, with row groups of each size, interleaved: peak RSS and rate."""
    cases = {group: make_data(work / f"data-groups-{group}", clips=args.clips, seconds=args.seconds, rate=args.rate,
                              shards=1, row_group_rows=group) for group in args.row_groups}
    runs: dict[int, list[Run]] = {group: [] for group in cases}
    for _ in range(args.rounds):
        for group, data in cases.items():
            runs[group].append(run_variant(scaled(args), data, work, args.joining))
    result: dict[str, Any] = {"clips": args.clips, "seconds": args.seconds, "groups": {}}
    for group, group_runs in runs.items():
        data = cases[group]
        figures = {"x_realtime": spread([r.rate(data.audio_seconds) for r in group_runs]),
                   "peak_rss_mib": spread([r.peak_rss / 2**20 for r in group_runs])}
        result["groups"][str(group)] = figures
        print(f"  row groups of {group:>6} rows: {show(figures['x_realtime'])} x realtime, peak RSS "
              f"{show(figures['peak_rss_mib'], ' MiB')}", flush=True)
    smallest, largest = (str(g) for g in (min(cases), max(cases)))
    groups = result["groups"]
    result["rss_ratio_largest_over_smallest"] = (groups[largest]["peak_rss_mib"]["median"] /
                                                 groups[smallest]["peak_rss_mib"]["median"])
    result["rate_ratio_largest_over_smallest"] = (groups[largest]["x_realtime"]["median"] /
                                                  groups[smallest]["x_realtime"]["median"])
    print(f"  row groups of {largest} against {smallest} rows: peak RSS x{result['rss_ratio_largest_over_smallest']:.2f}"
          f", rate x{result['rate_ratio_largest_over_smallest']:.2f}")
    return result


def resume_cost(args: argparse.Namespace, work: Path, rows: int) -> dict[str, float]:
    """Full sync, then drop the ledger parts of the last 10 % of rows and sync again: what does skipping cost?"""
    data = make_data(work / f"data-{rows}-{args.shards}-{ROW_GROUP_ROWS}", clips=rows, seconds=args.seconds,
                     rate=args.rate, shards=args.shards, row_group_rows=ROW_GROUP_ROWS)
    fulls, resumes, fractions = [], [], []
    for _ in range(args.rounds):
        out = work / "out-resume"
        shutil.rmtree(out, ignore_errors=True)
        full = run_hugflow(data, out, joining=args.joining)
        dataset = next((out / "datasets").iterdir())
        dropped = len(Ledger(dataset).drop_rows(range(int(rows * RESUME_DONE_FRACTION), rows)))
        (dataset / ".hugflow" / "status.json").unlink()
        resumed = run_hugflow(data, out, joining=args.joining)
        shutil.rmtree(out)
        fulls.append(full.wall_s - full.startup_s)
        resumes.append(resumed.wall_s - resumed.startup_s)
        fractions.append(dropped / rows)
    full_s, resume_s, todo = (statistics.median(x) for x in (fulls, resumes, fractions))
    figures = {"full_s": full_s, "resume_s": resume_s, "rows_left_fraction": todo,
               "skip_cost_fraction_of_full": (resume_s - todo * full_s) / full_s}
    print(f"  resume with {todo:.0%} of {rows} rows left: {resume_s:.1f} s against {full_s:.1f} s for all; "
          f"skipping the finished rows costs {figures['skip_cost_fraction_of_full']:.1%} of a full run")
    return figures


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rate", type=int, default=16000)
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--one-file", action="store_true", help="one parquet file (row groups of 100 rows)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--variants", default=",".join(DEFAULT_VARIANTS),
                        help=f"comma-separated, of {','.join(VARIANTS)}")
    parser.add_argument("--scale", action="store_true", help="hugflow at several sizes, one big file, and resume")
    parser.add_argument("--scale-rows", type=int, nargs="+", default=list(SCALE_ROWS))
    parser.add_argument("--sizes-only", action="store_true", help="with --scale: only the sizes, not the row-group "
                        "sweep and the resume")
    parser.add_argument("--row-groups", type=int, nargs="+", help="sweep row-group sizes (one file of --clips)")
    parser.add_argument("--marginal", type=int, nargs=2, metavar=("SMALL", "LARGE"),
                        help=f"hugflow and the plain Ray Data script at two sizes (e.g. {MARGINAL_CLIPS[0]} "
                        f"{MARGINAL_CLIPS[1]}): marginal rate, fixed seconds, end-to-end ratio")
    parser.add_argument("--joined", action="store_true", help="with --marginal: also hugflow joining a Ray already "
                        "running on this host (run under tests/in_own_network.sh)")
    parser.add_argument("--join", action="store_true", help="with --scale or --row-groups: every sync joins the Ray at "
                        "RAY_ADDRESS (yours, running) instead of starting its own; with --marginal --joined: the "
                        "joined syncs join it instead of a Ray the benchmark starts")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes and one round: that it runs, not figures")
    parser.add_argument("--work", type=Path, help="keep generated data here (reused when it matches)")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--child", choices=sorted(CHILDREN), help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        figures = CHILDREN[args.child](Data(args.data, args.clips, args.seconds, args.rate), args.out)
        print(json.dumps(figures))
        return figures
    if args.smoke:
        args.clips, args.seconds, args.rounds, args.scale_rows = 8, 0.5, 1, [4, 12]
        args.row_groups = [2, 8] if args.scale or args.row_groups else None
        args.marginal = [4, 8] if args.marginal else None
    args.joining = joining_env() if args.join else None
    variants = args.variants.split(",")
    if unknown := set(variants) - set(VARIANTS):
        parser.error(f"unknown variants {sorted(unknown)}; choose from {','.join(VARIANTS)}")
    if "seed" in variants and not (args.scale or args.row_groups or args.marginal) and not shutil.which("ffmpeg"):
        parser.error("the seed variant needs ffmpeg (apt-get install ffmpeg), or leave it out with --variants")
    with tempfile.TemporaryDirectory(prefix="hugflow-bench-") as tmp:
        work = args.work or Path(tmp)
        if args.scale:
            result = scale(args, work)
        elif args.marginal:
            result = marginal(args, work)
        elif args.row_groups:
            result = row_group_sweep(args, work)
        else:
            shards = 1 if args.one_file else args.shards
            data = make_data(work / "data", clips=args.clips, seconds=args.seconds, rate=args.rate, shards=shards,
                             row_group_rows=ROW_GROUP_ROWS)
            result = compare(data, variants, args.rounds, work)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
