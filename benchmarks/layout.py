"""Whether a copy's ``json/`` needs shard directories at millions of rows: a flat directory against a sharded one.

    python benchmarks/layout.py                        # 100,000 and 1,000,000 files, 1 round, under /tmp
    python benchmarks/layout.py --files 100000 1000000 --rounds 3 --work /data/bench --json layout.json
    python benchmarks/layout.py --smoke                # 200 and 1,000 files, seconds; what the test suite runs

A copy keeps one JSON per row, ``json/<row_id>.json``, in one directory. For each N of ``--files`` this builds
N files of about ``FILE_BYTES`` bytes (the sidecar's shape: ``row_id``, ``text``, ``audio.path``, ``duration``) in
two layouts, interleaved (flat, sharded, flat, sharded... for ``--rounds``), each in an empty copy:

* ``flat``: ``json/<row>.json``, as hugflow writes today;
* ``sharded``: ``json/<row // per_shard:03d>/<row>.json``, ``--per-shard`` files (default 1,000) a directory.

and times, on each:

* ``create``: every file written to a temp name in its directory (``os.open``/``os.write``) and renamed over its
  name (``os.replace``), as hugflow's writer does; shard directories are made as they are reached. Without the
  writer's per-batch ``syncfs``: the figure is the directory cost, not the disk's flush;
* ``list``: a recursive ``os.scandir`` walk counting the files, after an untimed walk so the cache is warm;
* ``stat``: ``os.stat`` of ``--lookups`` random names (the same names in both layouts);
* ``read``: ``os.open`` + ``os.read`` + ``os.close`` of ``--lookups`` other random files;
* ``delete``: ``shutil.rmtree`` of ``json/``, which is also the clean-up.

Files just written are in the page cache, so every figure is the filesystem's in-memory cost (directory index,
dentry and inode caches), not the disk's. Prints a table, sharded/flat for each operation at each N, and how the
cost per file (per lookup for stat and read) grows from the smallest N to the largest; ``--json`` writes every
figure. The filesystem of the work directory (``/proc/mounts``, longest matching mount point) is reported with
them: the answer depends on it. Everything is written under a temporary directory in ``--work`` (default: under
the system's temporary directory), removed at the end even on failure.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from hugflow_ray.utils.atomic import TEMP_SUFFIX

FILES = (100_000, 1_000_000)
SMOKE_FILES = (200, 1_000)
PER_SHARD = 1_000
SMOKE_PER_SHARD = 100  # several shards even at smoke sizes, so the sharded walk is exercised
LOOKUPS = 10_000
SMOKE_LOOKUPS = 1_000
FILE_BYTES = 400
LAYOUTS = ("flat", "sharded")
OPERATIONS = ("create", "list", "stat", "read", "delete")
PER_LOOKUP = frozenset({"stat", "read"})  # costs per lookup; the others per file
SEED = 20240601
TEMPLATE = b'{"audio": {"duration": 0.5, "path": "audio/clip_%06d.mp3"}, "row_id": %d, "text": "%s"}\n'
FILLER = b"utterance of a synthetic speaker reading a sentence aloud, " * 8


def document(row: int) -> bytes:
    """Row ``row``'s JSON, padded to ``FILE_BYTES`` bytes with text."""
    bare = len(TEMPLATE % (row, row, b""))
    return TEMPLATE % (row, row, FILLER[: max(0, FILE_BYTES - bare)])


@dataclass(frozen=True)
class Layout:
    """Where row ``row``'s JSON lies under ``json_dir``: flat (``per_shard`` None) or in shard directories."""

    name: str
    json_dir: str
    per_shard: int | None
    width: int = 3

    def directory(self, row: int) -> str:
        if self.per_shard is None:
            return self.json_dir
        return f"{self.json_dir}/{row // self.per_shard:0{self.width}d}"

    def path(self, row: int) -> str:
        return f"{self.directory(row)}/{row}.json"


def make_layout(name: str, copy: Path, files: int, per_shard: int) -> Layout:
    if name == "flat":
        return Layout(name, str(copy / "json"), None)
    return Layout(name, str(copy / "json"), per_shard, width=max(3, len(str((files - 1) // per_shard))))


# --------------------------------------------------------------------------------------------- the operations


def create(layout: Layout, files: int) -> None:
    os.mkdir(layout.json_dir)
    for row in range(files):
        directory = layout.directory(row)
        if layout.per_shard is not None and row % layout.per_shard == 0:
            os.mkdir(directory)
        name = f"{row}.json"
        temp = f"{directory}/.{name}{TEMP_SUFFIX}"
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(fd, document(row))
        finally:
            os.close(fd)
        os.replace(temp, f"{directory}/{name}")


def count_files(directory: str) -> int:
    count = 0
    with os.scandir(directory) as entries:
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                count += count_files(entry.path)
            else:
                count += 1
    return count


def stat_all(paths: list[str]) -> None:
    for path in paths:
        os.stat(path)


def read_all(paths: list[str]) -> int:
    read = 0
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            read += len(os.read(fd, 65536))
        finally:
            os.close(fd)
    return read


def draw(rng: random.Random, files: int, lookups: int) -> list[int]:
    """``lookups`` random rows: distinct when there are enough of them."""
    return rng.sample(range(files), lookups) if files >= lookups else rng.choices(range(files), k=lookups)


def timed(run: Callable[[], object]) -> tuple[float, object]:
    started = time.perf_counter()
    value = run()
    return time.perf_counter() - started, value


def measure(layout: Layout, files: int, stat_rows: list[int], read_rows: list[int]) -> dict[str, float]:
    """Seconds of each operation on a fresh copy in ``layout``; the copy is gone when this returns."""
    seconds: dict[str, float] = {}
    seconds["create"], _ = timed(lambda: create(layout, files))
    assert count_files(layout.json_dir) == files  # and warms the cache for the timed walk
    seconds["list"], listed = timed(lambda: count_files(layout.json_dir))
    assert listed == files, (listed, files)
    stat_paths = [layout.path(row) for row in stat_rows]
    read_paths = [layout.path(row) for row in read_rows]
    seconds["stat"], _ = timed(lambda: stat_all(stat_paths))
    seconds["read"], read = timed(lambda: read_all(read_paths))
    assert read == sum(len(document(row)) for row in read_rows), read
    seconds["delete"], _ = timed(lambda: shutil.rmtree(layout.json_dir))
    return seconds


# ------------------------------------------------------------------------------------------- the work directory


def filesystem_of(path: Path) -> dict[str, str]:
    """The mount holding ``path`` (longest mount point that contains it; the last mounted when stacked)."""
    target = os.path.realpath(path)
    best: dict[str, str] = {"type": "unknown", "mount_point": "", "device": "", "options": ""}
    for line in Path("/proc/mounts").read_text().splitlines():
        fields = line.split()
        if len(fields) < 4:
            continue
        device, mount_point, fs_type, options = (_unescape(f) for f in fields[:4])
        inside = target == mount_point or target.startswith(mount_point.rstrip("/") + "/")
        if inside and len(mount_point) >= len(best["mount_point"]):
            best = {"type": fs_type, "mount_point": mount_point, "device": device, "options": options}
    return best


def _unescape(field: str) -> str:
    """``/proc/mounts`` writes space, tab, newline and backslash in names as octal escapes (``\\040``)."""
    for escaped, plain in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        field = field.replace(escaped, plain)
    return field


def check_room(parser: argparse.ArgumentParser, work: Path, files: int, per_shard: int) -> None:
    """Refuse to start when the largest copy cannot fit (inodes, or a block a file) on the work filesystem."""
    fs = os.statvfs(work)
    inodes = files + files // per_shard + 16
    space = files * max(fs.f_frsize, FILE_BYTES) * 2
    if fs.f_files and fs.f_favail < inodes:
        parser.error(f"{work} has {fs.f_favail:,} free inodes; {files:,} files need {inodes:,}")
    if fs.f_bavail * fs.f_frsize < space:
        parser.error(f"{work} has {fs.f_bavail * fs.f_frsize / 1e9:.1f} GB free; {files:,} files need "
                     f"about {space / 1e9:.1f} GB")


# ------------------------------------------------------------------------------------------------ the figures


def summarise(runs: list[float], items: int) -> dict[str, object]:
    median = statistics.median(runs)
    return {"seconds": round(median, 6), "runs": [round(x, 6) for x in runs],
            "us_per_item": round(median / items * 1e6, 4), "per_s": round(items / median, 1)}


def report(results: dict[str, object]) -> None:
    fs = results["filesystem"]
    assert isinstance(fs, dict)
    sizes = results["sizes"]
    assert isinstance(sizes, dict)
    lookups = results["lookups"]
    print(f"filesystem: {fs['type']} on {fs['mount_point']} ({fs['device']}, {fs['options']}); "
          f"{results['rounds']} round(s), {lookups:,} lookups, ~{FILE_BYTES} B a file, median seconds")
    header = (f"{'files':>10} {'layout':<8} {'shards':>6} {'create s':>9} {'files/s':>9} {'list s':>8} "
              f"{'stat s':>8} {'read s':>8} {'delete s':>9} {'files/s':>9}")
    print(header)
    for files, size in sizes.items():
        for name in LAYOUTS:
            ops = size[name]
            print(f"{int(files):>10,} {name:<8} {size['shards'] if name == 'sharded' else 0:>6} "
                  f"{ops['create']['seconds']:>9.3f} {ops['create']['per_s']:>9,.0f} {ops['list']['seconds']:>8.3f} "
                  f"{ops['stat']['seconds']:>8.3f} {ops['read']['seconds']:>8.3f} {ops['delete']['seconds']:>9.3f} "
                  f"{ops['delete']['per_s']:>9,.0f}")
    print("sharded / flat (median seconds; < 1: sharded is faster)")
    for files, size in sizes.items():
        ratios = size["ratio_sharded_to_flat"]
        print(f"{int(files):>10,}  " + "  ".join(f"{op} {ratios[op]:.2f}" for op in OPERATIONS))
    growth = results["growth"]
    assert isinstance(growth, dict)
    files_tried = results["files"]
    assert isinstance(files_tried, list)
    print(f"cost per file (per lookup for stat, read) in us, {files_tried[0]:,} files -> {files_tried[-1]:,} files "
          "(largest / smallest):")
    for name in LAYOUTS:
        print(f"{name:>10}  " + "  ".join(
            f"{op} {g['us_small']:.2f}->{g['us_large']:.2f} ({g['ratio']:.2f})" for op, g in growth[name].items()))
    print("listing, seconds per 1M entries: " + ", ".join(
        f"{name} {size[name]['list']['us_per_item']:.2f} at {int(files):,}"
        for files, size in sizes.items() for name in LAYOUTS))


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, nargs="+", default=list(FILES), help="numbers of files (rows) to try")
    parser.add_argument("--per-shard", type=int, default=PER_SHARD, help="files per shard directory")
    parser.add_argument("--lookups", type=int, default=LOOKUPS, help="random names to stat, and files to read")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes and one round: that it runs, not figures")
    parser.add_argument("--work", type=Path, help="where the copies are written (default: the system's temp dir)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    if args.smoke:
        args.files, args.per_shard, args.lookups, args.rounds = list(SMOKE_FILES), SMOKE_PER_SHARD, SMOKE_LOOKUPS, 1
    sizes = sorted(set(args.files))
    if sizes[0] < 1 or args.per_shard < 1 or args.lookups < 1 or args.rounds < 1:
        parser.error("--files, --per-shard, --lookups and --rounds must be positive")
    if args.work:
        args.work.mkdir(parents=True, exist_ok=True)
    check_room(parser, args.work or Path(tempfile.gettempdir()), sizes[-1], args.per_shard)
    rng = random.Random(SEED)
    runs: dict[int, dict[str, dict[str, list[float]]]] = {
        files: {name: {op: [] for op in OPERATIONS} for name in LAYOUTS} for files in sizes}
    with tempfile.TemporaryDirectory(prefix="hugflow-layout-", dir=args.work) as temp:
        work = Path(temp)
        filesystem = filesystem_of(work)
        for files in sizes:
            for round_ in range(args.rounds):
                stat_rows, read_rows = draw(rng, files, args.lookups), draw(rng, files, args.lookups)
                for name in LAYOUTS:
                    copy = work / f"{name}-{files}"
                    copy.mkdir()
                    try:
                        seconds = measure(make_layout(name, copy, files, args.per_shard), files, stat_rows, read_rows)
                    finally:
                        shutil.rmtree(copy, ignore_errors=True)
                    for op, s in seconds.items():
                        runs[files][name][op].append(s)
                    print(f"{name} {files:,} round {round_ + 1}: " + " ".join(f"{op} {s:.3f} s"
                                                                          for op, s in seconds.items()),
                          file=sys.stderr)
    results: dict[str, object] = {
        "filesystem": filesystem, "work": str(args.work or Path(tempfile.gettempdir())), "files": sizes,
        "per_shard": args.per_shard, "lookups": args.lookups, "rounds": args.rounds, "file_bytes": FILE_BYTES,
        "cpus": os.cpu_count(), "sizes": {},
    }
    by_size: dict[str, dict[str, object]] = {}
    for files in sizes:
        size: dict[str, object] = {
            name: {op: summarise(runs[files][name][op], args.lookups if op in PER_LOOKUP else files)
                   for op in OPERATIONS} for name in LAYOUTS}
        size["shards"] = -(-files // args.per_shard)
        size["ratio_sharded_to_flat"] = {
            op: round(statistics.median(runs[files]["sharded"][op]) / statistics.median(runs[files]["flat"][op]), 3)
            for op in OPERATIONS}
        by_size[str(files)] = size
    results["sizes"] = by_size
    growth: dict[str, dict[str, dict[str, float]]] = {name: {} for name in LAYOUTS}
    for name in LAYOUTS:
        for op in OPERATIONS:
            small, large = (statistics.median(runs[files][name][op]) / (args.lookups if op in PER_LOOKUP else files)
                            for files in (sizes[0], sizes[-1]))
            growth[name][op] = {"us_small": round(small * 1e6, 4), "us_large": round(large * 1e6, 4),
                                "ratio": round(large / small, 3)}
    results["growth"] = growth
    report(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
