"""How long ``hugflow verify`` takes per GB, against a bare hashing loop over the same files, in one run.

    python benchmarks/verify.py [--gb 1.0] [--mp3-kb 96] [--rounds 3] [--cold] [--json PATH] [--root DIR]

Builds a copy the way a sync leaves it (``audio/<row>.mp3`` of ``--mp3-kb`` each: a 4 s clip at 192 kbps is
96 KB; ``json/<row>.json``; a ledger holding both checksums; a complete status) and times, A B A B...:

* ``verify``: :func:`hugflow_ray.copies.verify.verify` (ledger read, every file opened without following links
  and hashed on its thread pool, the unexpected-file walk);
* ``bare``: ``hashlib.file_digest`` over the same files in one thread, nothing else (what ``sha256sum`` does).

``--cold`` drops the page cache before each timing (root only), so the disk is read; otherwise the files are
in memory and the figure is the hashing and bookkeeping cost. Prints seconds per GB and the ratio verify/bare;
``--json`` writes them.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from hugflow_ray.copies.layout import StoreLayout
from hugflow_ray.copies.ledger import Ledger
from hugflow_ray.copies.status import write_status
from hugflow_ray.copies.verify import verify
from hugflow_ray.core.records import DatasetIdentity, DatasetState, DatasetStatus, RowRecord, RowStatus
from hugflow_ray.settings import load_settings

NAME = "bench__verify__split_train"
JSON_BYTES = 600
ROWS_PER_PART = 1000  # a sync writes one ledger part per block; blocks hold about this many short clips
DROP_CACHES = Path("/proc/sys/vm/drop_caches")


def build_copy(dataset_dir: Path, *, total_bytes: int, mp3_bytes: int) -> list[Path]:
    """A complete copy of ``total_bytes`` of MP3s and JSONs with its ledger; returns its files."""
    rows = max(1, total_bytes // (mp3_bytes + JSON_BYTES))
    (dataset_dir / "audio").mkdir(parents=True)
    (dataset_dir / "json").mkdir()
    ledger = Ledger(dataset_dir)
    ledger.open({"source": "benchmark"})
    files: list[Path] = []
    records: list[RowRecord] = []
    for row in range(rows):
        mp3, sidecar = os.urandom(mp3_bytes), json.dumps({"row_id": row, "pad": "x" * JSON_BYTES}).encode()
        audio, js = dataset_dir / "audio" / f"{row}.mp3", dataset_dir / "json" / f"{row}.json"
        audio.write_bytes(mp3)
        js.write_bytes(sidecar)
        files += [audio, js]
        records.append(RowRecord(row, RowStatus.OK, json_file=f"json/{row}.json", audio_file=f"audio/{row}.mp3",
                                 sha256=hashlib.sha256(mp3).hexdigest(), duration=4.0,
                                 json_sha256=hashlib.sha256(sidecar).hexdigest()))
        if len(records) == ROWS_PER_PART:
            ledger.append(records)
            records = []
    if records:
        ledger.append(records)
    identity = DatasetIdentity(name=dataset_dir.name, source="benchmark", sha=None, subset=None, split="train")
    write_status(dataset_dir, DatasetStatus(identity, DatasetState.COMPLETE, rows, rows_done=rows))
    return files


def bare(files: list[Path]) -> int:
    read = 0
    for path in files:
        with path.open("rb", buffering=0) as f:
            hashlib.file_digest(f, "sha256")
            read += f.tell()
    return read


def _drop_caches() -> None:
    os.sync()
    DROP_CACHES.write_text("3\n")


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gb", type=float, default=1.0, help="size of the copy in decimal GB")
    parser.add_argument("--mp3-kb", type=int, default=96)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cold", action="store_true", help="drop the page cache before each timing (root)")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--root", type=Path, help="where the copy is built (default: a temporary directory)")
    args = parser.parse_args(argv)
    if args.cold and not os.access(DROP_CACHES, os.W_OK):
        parser.error(f"--cold needs to write {DROP_CACHES} (run as root)")
    with tempfile.TemporaryDirectory(dir=args.root) as temp:
        root = Path(temp)
        settings = load_settings(storage_root=root / "datasets", state_dir=root / "state",
                                 processed_root=root / "processed")
        started = time.perf_counter()
        files = build_copy(settings.storage_root / NAME, total_bytes=int(args.gb * 1000**3),
                           mp3_bytes=args.mp3_kb * 1000)
        size = sum(p.stat().st_size for p in files)
        print(f"built {len(files):,} files, {size / 1000**3:.3f} GB in {time.perf_counter() - started:.1f} s",
              file=sys.stderr)

        def run_verify() -> int:
            report = verify(StoreLayout.of(settings), NAME)
            assert report.ok, report.lines()
            return report.bytes_checked

        variants: dict[str, Callable[[], int]] = {"verify": run_verify, "bare": lambda: bare(files)}
        seconds: dict[str, list[float]] = {name: [] for name in variants}
        for _ in range(args.rounds):
            for name, run in variants.items():
                if args.cold:
                    _drop_caches()
                started = time.perf_counter()
                read = run()
                seconds[name].append(time.perf_counter() - started)
                assert read == size, (name, read, size)
    gb = size / 1000**3
    results: dict[str, object] = {
        "files": len(files), "gb": round(gb, 4), "cold": args.cold, "cpus": os.cpu_count(),
        **{f"{name}_seconds_per_gb": round(statistics.median(s) / gb, 3) for name, s in seconds.items()},
        **{f"{name}_seconds": [round(x, 3) for x in s] for name, s in seconds.items()},
    }
    results["ratio_verify_to_bare"] = round(statistics.median(seconds["verify"]) / statistics.median(seconds["bare"]),
                                            3)
    print(f"{'variant':<8} {'s/GB (median)':>14} {'runs (s)':>30}")
    for name, s in seconds.items():
        print(f"{name:<8} {statistics.median(s) / gb:>14.2f} {' '.join(f'{x:.2f}' for x in s):>30}")
    print(f"verify / bare: {results['ratio_verify_to_bare']:.2f} ({'cold' if args.cold else 'warm'} page cache, "
          f"{len(files):,} files, {gb:.2f} GB)")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()
