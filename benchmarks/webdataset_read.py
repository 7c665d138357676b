"""Reading a WebDataset split through Ray Data: its own ``read_webdataset`` against hugflow's reader, in one run.

    python benchmarks/webdataset_read.py                 # 640 clips x 10 s, 16 kHz WAV (205 MB) in 8 shards, 3 rounds
    python benchmarks/webdataset_read.py --clips 2000 --seconds 30 --rounds 2 --json read.json
    python benchmarks/webdataset_read.py --smoke         # tiny, one round: what the test suite runs

The question the design had to answer (docs/DESIGN.md): should hugflow read WebDataset shards with Ray Data's
``read_webdataset`` rather than a Datasource of its own? This measures only the read, the part the two could share:
the same shards (``layout_memory.py``'s ``make_layouts``: ``clip_<i>.wav`` and ``clip_<i>.txt`` members), read by an
embedded Ray on this machine's cores, every block pulled through the driver's iterator and its rows counted. Each
variant is its own process tree (peak RSS and CPU sampled from ``/proc``, as ``throughput.py`` does), run
interleaved for ``--rounds``:

* ``raydata``: ``ray.data.read_webdataset(shards, decoder=None)`` (no decoding: the audio stays bytes, as hugflow
  needs it), one read task per shard as it plans them;
* ``hugflow``: hugflow's own ``SliceDatasource`` over the same shards, every part already opened at its
  ``PartGate`` (what the sync does once a shard is downloaded: its rows counted and its names decided), the slices
  ``units_per_part`` plans for this machine's cores, blocks of at most ``BLOCK_BYTES``.

Printed per variant: wall seconds (interpreter start to exit, Ray's start included in both), the read's own seconds
(from the first request for a block to the last block), peak RSS of the tree, rows, and the ratios hugflow/raydata
of read seconds and peak RSS taken round by round. What it cannot show, and the design reasons that decided it,
stay in docs/DESIGN.md: ``read_webdataset`` gives no row a position id, so it cannot drop finished rows before a
block is built or resume by row, and it cannot wait for a shard still downloading. ``--json PATH`` writes every
figure.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import throughput  # noqa: E402
from layout_memory import make_layouts  # noqa: E402

VARIANTS = ("raydata", "hugflow")
SMOKE = {"clips": 8, "seconds": 0.5, "shards": 2, "rounds": 1}


def child(variant: str, root: Path) -> dict[str, Any]:
    """In the measured child: read every row of the split under ``root`` with ``variant``; rows and seconds."""
    import numpy as np
    import ray

    shards = sorted(str(p) for p in (root / "train").glob("*.tar"))
    ray.init(num_cpus=None, include_dashboard=False, log_to_driver=False)
    started = time.perf_counter()
    if variant == "raydata":
        dataset = ray.data.read_webdataset(shards, decoder=None)
    else:
        from hugflow_ray.executors.ray_runner import PartGate, SliceDatasource
        from hugflow_ray.pipeline.readers.parts import cut_parts, iter_slice, open_part, split_shape, units_per_part
        from hugflow_ray.utils.machine import available_cpus

        parts, _ = cut_parts("webdataset", shards, [Path(s).stat().st_size for s in shards])
        shape, _ = split_shape("webdataset", "wav", [Path(shards[0])], [], [])
        gate = PartGate.remote()
        first = 0
        for part in parts:
            opened = open_part(part, shape, [Path(shards[part.index])], [shards[part.index]], first,
                               np.array([], dtype=np.int64))
            ray.get(gate.open.remote(opened))
            first += opened.rows
        units = units_per_part(parts, "webdataset", cpus=available_cpus())
        slices = [(p.index, u, n) for p, n in zip(parts, units, strict=True) for u in range(n)]
        dataset = ray.data.read_datasource(SliceDatasource(slices, gate, iter_slice), override_num_blocks=len(slices))
    rows = 0
    for batch in dataset.iter_batches(batch_size=None, batch_format="pyarrow"):
        rows += batch.num_rows
    return {"rows": rows, "read_s": time.perf_counter() - started}


def run(variant: str, root: Path) -> dict[str, Any]:
    command = [sys.executable, __file__, "--child", variant, "--data", str(root)]
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}  # an embedded Ray of its own
    wall, output, tree = throughput.measured(command, env)
    result = json.loads(output.strip().splitlines()[-1])
    cpu = sum(tree.cpu_by_process().values())
    return {**result, "wall_s": wall, "peak_rss_mib": tree.peak_rss / 2**20, "cpu_s": cpu}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=640)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--shards", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--work", type=Path, help="keep the generated shards here (reused when they match)")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--child", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.data)))
        return {}
    if args.smoke:
        vars(args).update(SMOKE)
    with tempfile.TemporaryDirectory(prefix="hugflow-wds-read-") as scratch:
        work = args.work or Path(scratch)
        layouts = make_layouts(work / "layouts", clips=args.clips, seconds=args.seconds, rate=16000,
                               shards=args.shards, format="wav")
        root = layouts.path("webdataset")
        size, _ = layouts.size("webdataset")
        print(f"{args.clips} clips x {args.seconds:g} s WAV in {args.shards} shards, {size / 1e6:.1f} MB; "
              f"{args.rounds} rounds, interleaved")
        runs: dict[str, list[dict[str, Any]]] = {v: [] for v in VARIANTS}
        for round_ in range(1, args.rounds + 1):
            for variant in VARIANTS:
                result = run(variant, root)
                if result["rows"] != args.clips:
                    raise SystemExit(f"{variant} read {result['rows']} rows of {args.clips}")
                runs[variant].append(result)
                print(f"  round {round_} {variant:8} read {result['read_s']:6.2f} s, wall {result['wall_s']:6.2f} s, "
                      f"peak RSS {result['peak_rss_mib']:7.0f} MiB, CPU {result['cpu_s']:6.1f} s")
    ratios = {key: [h[key] / r[key] for h, r in zip(runs["hugflow"], runs["raydata"], strict=True)]
              for key in ("read_s", "peak_rss_mib", "cpu_s")}
    summary = {key: {"median": statistics.median(v), "min": min(v), "max": max(v)} for key, v in ratios.items()}
    for key, figures in summary.items():
        print(f"  hugflow / raydata, {key}: {figures['median']:.2f} ({figures['min']:.2f}-{figures['max']:.2f})")
    result = {"clips": args.clips, "seconds": args.seconds, "shards": args.shards, "bytes": size, "runs": runs,
              "hugflow_over_raydata": summary}
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
