"""End-to-end sync throughput against the physical limit, in one run.

    python benchmarks/sync_throughput.py [--clips 1000] [--seconds 5] [--rate 16000] [--shards 4]

* ``limit1``: a bare single-process decode + encode loop over the same clips (same encoder settings, no files);
  the limit is cores x limit1.
* ``hugflow``: ``hugflow local-sync`` of the same clips as a local dataset in Hub layout, in a subprocess on an
  embedded Ray: files, ledger, manifests written. Ray start-up is reported apart and excluded from the rate.

Reports audio-seconds per wall-second, the ratio hugflow/limit, and the peak RSS of the sync's whole process
tree (driver, Ray's daemons and workers), sampled from /proc.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import datasets
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))
from codec_throughput import bare, make_clips  # noqa: E402

from hugflow_ray.audio import EncoderSettings  # noqa: E402

PAGE = os.sysconf("SC_PAGE_SIZE")


def tree_rss(root: int) -> int:
    """Resident bytes of ``root`` and all its descendants."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            pages = int(Path(f"/proc/{entry}/statm").read_text().split()[1])
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
        rss[int(entry)] = pages * PAGE
    total, stack = 0, [root]
    while stack:
        pid = stack.pop()
        total += rss.get(pid, 0)
        stack.extend(children.get(pid, []))
    return total


def write_dataset(root: Path, clips: list[bytes], shards: int) -> None:
    features = datasets.Features({"audio": datasets.Audio(), "text": datasets.Value("string")})
    (root / "data").mkdir(parents=True)
    per = -(-len(clips) // shards)
    for s in range(shards):
        chunk = clips[s * per : (s + 1) * per]
        rows = [{"audio": {"bytes": c, "path": f"clip_{s * per + i}.flac"}, "text": f"row {s * per + i}"}
                for i, c in enumerate(chunk)]
        table = pa.Table.from_pylist(rows, schema=features.arrow_schema)
        pq.write_table(table, root / "data" / f"train-{s:05d}-of-{shards:05d}.parquet", row_group_size=64)


def run_sync(work: Path) -> tuple[float, float, int, str]:
    request = work / "requests" / "add" / "bench.yaml"
    request.parent.mkdir(parents=True)
    request.write_text("path: ../../source\ndescription: benchmark\n")
    env = {**os.environ, "STORAGE_ROOT": str(work / "out"), "STATE_DIR": str(work / "state"),
           "PROCESSED_ROOT": str(work / "processed")}
    env.pop("RAY_ADDRESS", None)
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "hugflow_ray", "local-sync", str(request)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, tree_rss(proc.pid))
            time.sleep(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, _ = proc.communicate()
    wall = time.perf_counter() - start
    done.set()
    sampler.join()
    if proc.returncode != 0:
        raise SystemExit(out[-3000:])
    startup = float(re.search(r"Ray start-up ([0-9.]+) s", out).group(1))  # type: ignore[union-attr]
    return wall, startup, peak, out


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rate", type=int, default=16000)
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    cores = len(os.sched_getaffinity(0))
    clips = make_clips(args.clips, args.seconds, args.rate)
    audio_seconds = args.clips * args.seconds
    settings = EncoderSettings()

    start = time.perf_counter()
    for clip in clips:
        bare(clip, settings)
    limit1 = audio_seconds / (time.perf_counter() - start)

    with tempfile.TemporaryDirectory(prefix="hugflow-bench-") as tmp:
        work = Path(tmp)
        write_dataset(work / "source", clips, args.shards)
        wall, startup, peak, _ = run_sync(work)
    rate = audio_seconds / (wall - startup)
    result = {
        "clips": args.clips, "clip_seconds": args.seconds, "rate_hz": args.rate, "cores": cores,
        "limit1_x_realtime": limit1, "limit_x_realtime": cores * limit1,
        "hugflow_x_realtime_excl_startup": rate, "hugflow_x_realtime_incl_startup": audio_seconds / wall,
        "ray_startup_s": startup, "wall_s": wall, "ratio_hugflow_over_limit": rate / (cores * limit1),
        "peak_rss_mib": peak / 2**20,
    }
    for key, value in result.items():
        print(f"{key:34} {value:.3f}" if isinstance(value, float) else f"{key:34} {value}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
