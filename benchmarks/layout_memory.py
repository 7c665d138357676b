"""Peak memory of ``hugflow local-sync`` over the same rows as parquet, WebDataset shards and an audio folder.

    python benchmarks/layout_memory.py                       # 2000 clips x 30 s, 16 kHz mono WAV (1.9 GB), 4 shards,
                                                       # 3 rounds
    python benchmarks/layout_memory.py --clips 320 --seconds 30 --rounds 1    # about 300 MB, minutes
    python benchmarks/layout_memory.py --format flac --shards 8 --work bench-data --json layouts.json
    python benchmarks/layout_memory.py --smoke               # 8 clips x 0.5 s, 1 round; what the test suite runs

The same clips (``--clips`` x ``--seconds`` at ``--rate``, mono, stored as ``--format`` WAV or FLAC bytes: the same
bytes in every layout) and the same transcripts (``utterance <i>``), written once as three local datasets:

* ``parquet``: the Hub's layout, ``data/train-0000i-of-0000n.parquet`` with the ``datasets`` Audio feature, row
  groups of 100 rows, as ``throughput.py``'s ``make_data`` writes it; the request names nothing.
* ``webdataset``: ``train/shard-0000i.tar``, ``--shards`` uncompressed tar shards of ``clip_<i>.wav`` (or ``.flac``)
  and ``clip_<i>.txt`` members; ``datasets`` reads a ``train/`` folder of tars as the webdataset split ``train``
  (no card needed). The request says ``audio_column: wav`` and ``text_column: txt`` (a column per extension).
* ``audiofolder``: ``data/train/clip_<i>.wav`` (or ``.flac``) and ``data/train/metadata.csv`` (``file_name,text``);
  the request names nothing.

Each sync is ``hugflow local-sync`` of a ``path:`` request on an embedded Ray, run interleaved (parquet, webdataset,
audiofolder, parquet, ... for ``--rounds``), each as its own process tree with an empty ``STORAGE_ROOT``,
``STATE_DIR`` and ``PROCESSED_ROOT`` (removed after it, once its manifest is checked to hold every row). For each
layout it prints the split's size on disk, the median (min-max) peak RSS of the whole process tree (the driver,
Ray's daemons and workers, summed from ``/proc`` every 0.2 s, as ``throughput.py`` measures it), the wall time
(interpreter start to exit), the CPU seconds of the tree and which processes held the most memory at the peak;
then webdataset/parquet and audiofolder/parquet of peak RSS, round by round, against the target of 1.25: reading a
split in place should cost about what reading parquet costs, not a staged copy's 3.3x. The CPU seconds other
processes on the machine used during each run are reported too: on a shared machine they say how noisy the wall
times are. ``--json PATH`` writes every figure. About 1.9 GB of each peak is Ray's own (an embedded Ray's daemons,
workers and actors: the smoke run's whole peak), so the ratios are of totals, not of what the reads hold. The
default size takes 2 to 3 minutes a sync on 2 free cores, about 25 minutes for 3 rounds, and writing the data (once
under ``--work``, reused when it matches) about 5 more.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import shutil
import statistics
import sys
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import soundfile

sys.path.insert(0, str(Path(__file__).resolve().parent))
from codec_throughput import iter_clips  # noqa: E402
from throughput import ROW_GROUP_ROWS, hugflow_env, measured, phases_of, show, spread  # noqa: E402

LAYOUTS = ("parquet", "webdataset", "audiofolder")
CLIPS = 2000
SECONDS = 30.0
RATE = 16000
SHARDS = 4
FORMATS = ("wav", "flac")
RSS_TARGET = 1.25  # peak RSS of a layout read in place over parquet's
SMOKE = {"clips": 8, "seconds": 0.5, "shards": 2, "rounds": 1}


# ---------------------------------------------------------------------------------------------- the datasets


@dataclass(frozen=True)
class Layouts:
    """The same rows as three local datasets under ``root``: ``parquet/``, ``webdataset/``, ``audiofolder/``."""

    root: Path
    clips: int
    seconds: float
    rate: int
    format: str
    shards: int

    def path(self, layout: str) -> Path:
        return self.root / layout

    def request(self, layout: str) -> str:
        """The ``local-sync`` request for ``layout`` (the path made absolute when the benchmark runs)."""
        columns = f"audio_column: {self.format}\ntext_column: txt\n" if layout == "webdataset" else ""
        return f"path: {self.path(layout).resolve()}\ndescription: layouts benchmark\n{columns}"

    def size(self, layout: str) -> tuple[int, int]:
        """Bytes and files of the split on disk (the audio folder's metadata.csv included)."""
        files = [p for p in self.path(layout).rglob("*") if p.is_file()]
        return sum(p.stat().st_size for p in files), len(files)


def make_layouts(root: Path, *, clips: int, seconds: float, rate: int, shards: int, format: str) -> Layouts:
    """Write (or reuse, when ``root`` already holds exactly these) the three datasets, one clip at a time."""
    import datasets  # the real Audio feature metadata, as the Hub writes it

    per = -(-clips // shards)
    shards = -(-clips // per)  # no empty shard
    recipe = {"clips": clips, "seconds": seconds, "rate": rate, "shards": shards, "format": format,
              "row_group_rows": ROW_GROUP_ROWS}
    marker = root / "recipe.json"
    layouts = Layouts(root, clips, seconds, rate, format, shards)
    if marker.is_file() and json.loads(marker.read_text()) == recipe:
        return layouts
    shutil.rmtree(root, ignore_errors=True)
    for folder in ("parquet/data", "webdataset/train", "audiofolder/data/train"):
        (root / folder).mkdir(parents=True)
    schema = datasets.Features({"audio": datasets.Audio(), "text": datasets.Value("string")}).arrow_schema
    metadata = [("file_name", "text")]
    generated = iter_clips(clips, seconds, rate)
    for shard in range(shards):
        parquet = root / "parquet" / "data" / f"train-{shard:05d}-of-{shards:05d}.parquet"
        shard_tar = root / "webdataset" / "train" / f"shard-{shard:05d}.tar"
        with pq.ParquetWriter(parquet, schema) as writer, tarfile.open(shard_tar, "w") as archive:
            group: list[dict[str, Any]] = []
            ids = range(shard * per, min(clips, (shard + 1) * per))
            for i in ids:
                clip, name, text = _encoded(next(generated), format), f"clip_{i:06d}.{format}", f"utterance {i}"
                group.append({"audio": {"bytes": clip, "path": name}, "text": text})
                if len(group) == ROW_GROUP_ROWS or i == ids[-1]:
                    writer.write_table(pa.Table.from_pylist(group, schema=schema))
                    group = []
                for member, data in ((name, clip), (f"clip_{i:06d}.txt", text.encode())):
                    info = tarfile.TarInfo(member)
                    info.size = len(data)
                    archive.addfile(info, io.BytesIO(data))
                (root / "audiofolder" / "data" / "train" / name).write_bytes(clip)
                metadata.append((name, text))
    with (root / "audiofolder" / "data" / "train" / "metadata.csv").open("w", newline="") as f:
        csv.writer(f).writerows(metadata)
    marker.write_text(json.dumps(recipe))
    return layouts


def _encoded(flac: bytes, format: str) -> bytes:
    """The clip as ``format``: the FLAC as it comes, or the same 16-bit samples as a WAV."""
    if format == "flac":
        return flac
    samples, rate = soundfile.read(io.BytesIO(flac), dtype="int16")
    buffer = io.BytesIO()
    soundfile.write(buffer, samples, rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


# ------------------------------------------------------------------------------------------------ one sync


@dataclass(frozen=True)
class Sync:
    layout: str
    wall_s: float
    peak_rss: int
    cpu_s: float
    ray_fixed_s: float  # the wait for Ray's start (beside the plan) and its shut-down
    other_cpu_s: float  # CPU seconds of the machine's other processes during the run
    phases: dict[str, float] = field(default_factory=dict)
    peak_by_process: dict[str, int] = field(default_factory=dict)


def run_sync(layouts: Layouts, layout: str, work: Path) -> Sync:
    """``hugflow local-sync`` of one layout into an empty ``work/out-<layout>``, removed afterwards."""
    out = work / f"out-{layout}"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    request = out / f"{layout}.yaml"
    request.write_text(layouts.request(layout))
    command = [sys.executable, "-m", "hugflow_ray", "local-sync", str(request)]
    wall, output, tree = measured(command, env=hugflow_env(out))
    manifests = list((out / "datasets").glob("*/manifest.jsonl"))
    rows = len(manifests[0].read_text().splitlines()) if len(manifests) == 1 else None
    if rows != layouts.clips:
        raise SystemExit(f"the {layout} sync wrote {rows} manifest rows of {layouts.clips}:\n{output[-3000:]}")
    shutil.rmtree(out)
    phases = phases_of(output)
    cpu = sum(tree.cpu_by_process().values())
    return Sync(layout, wall, tree.peak_rss, cpu,
                phases.get("waiting for the executor", 0.0) + phases.get("shut-down", 0.0),
                max(0.0, sum(tree.machine_cpu_by_process().values()) - cpu), phases, tree.peak_by_process)


# ---------------------------------------------------------------------------------------------- the report


def compare(layouts: Layouts, rounds: int, work: Path) -> dict[str, Any]:
    """The interleaved runs; returns the figures."""
    runs: dict[str, list[Sync]] = {layout: [] for layout in LAYOUTS}
    for round_ in range(rounds):
        for layout in LAYOUTS:
            run = run_sync(layouts, layout, work)
            runs[layout].append(run)
            print(f"  round {round_ + 1} {layout:11} peak RSS {run.peak_rss / 2**20:7.0f} MiB, "
                  f"{run.wall_s:6.1f} s wall, {run.cpu_s:6.1f} CPU s (others on the machine {run.other_cpu_s:.1f})",
                  flush=True)
    cores = len(os.sched_getaffinity(0))
    result: dict[str, Any] = {"cores": cores, "clips": layouts.clips, "clip_seconds": layouts.seconds,
                              "rate_hz": layouts.rate, "format": layouts.format, "shards": layouts.shards,
                              "rounds": rounds, "audio_seconds": layouts.clips * layouts.seconds, "layouts": {},
                              "rss_over_parquet": {}, "rss_target": RSS_TARGET}
    print(f"\n{layouts.clips} clips x {layouts.seconds:g} s at {layouts.rate} Hz mono {layouts.format.upper()}, "
          f"{layouts.shards} shards, {cores} cores, {rounds} rounds (median (min-max))")
    for layout, syncs in runs.items():
        size, files = layouts.size(layout)
        middle = sorted(syncs, key=lambda s: s.peak_rss)[len(syncs) // 2]
        figures = {"split_bytes": size, "split_files": files,
                   "peak_rss_mib": spread([s.peak_rss / 2**20 for s in syncs]),
                   "wall_s": spread([s.wall_s for s in syncs]), "cpu_s": spread([s.cpu_s for s in syncs]),
                   "ray_startup_shutdown_s": spread([s.ray_fixed_s for s in syncs]),
                   "other_processes_cpu_s": spread([s.other_cpu_s for s in syncs]),
                   "phases_s": middle.phases,
                   "peak_rss_mib_by_process": {name: rss / 2**20 for name, rss in middle.peak_by_process.items()}}
        result["layouts"][layout] = figures
        largest = ", ".join(f"{name} {rss:.0f}" for name, rss in list(figures["peak_rss_mib_by_process"].items())[:4])
        print(f"  {layout:11} {size / 1e6:9.1f} MB in {files:5} files; peak RSS "
              f"{show(figures['peak_rss_mib'], ' MiB')}, wall {show(figures['wall_s'], ' s')}, "
              f"CPU {show(figures['cpu_s'], ' s')}")
        print(f"  {'':11} at the median peak, MiB: {largest}")
    for layout in LAYOUTS[1:]:
        ratios = [s.peak_rss / p.peak_rss for p, s in zip(runs["parquet"], runs[layout], strict=True)]
        within = statistics.median(ratios) <= RSS_TARGET
        result["rss_over_parquet"][layout] = {**spread(ratios), "within_target": within}
        verdict = "within" if within else "OVER"
        print(f"  peak RSS {layout}/parquet {show(spread(ratios))}: {verdict} the target of {RSS_TARGET}")
    return result


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=CLIPS)
    parser.add_argument("--seconds", type=float, default=SECONDS, help="each clip's length")
    parser.add_argument("--rate", type=int, default=RATE)
    parser.add_argument("--shards", type=int, default=SHARDS, help="parquet files and tar shards")
    parser.add_argument("--format", choices=FORMATS, default=FORMATS[0], help="the clips' bytes in every layout")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes and one round: that it runs, not figures")
    parser.add_argument("--work", type=Path, help="keep generated data here (reused when it matches)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    if args.smoke:
        for name, value in SMOKE.items():
            setattr(args, name, value)
    with tempfile.TemporaryDirectory(prefix="hugflow-layouts-") as tmp:
        work = args.work or Path(tmp)
        layouts = make_layouts(work / "data", clips=args.clips, seconds=args.seconds, rate=args.rate,
                               shards=args.shards, format=args.format)
        result = compare(layouts, args.rounds, work)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
