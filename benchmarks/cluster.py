"""The same dataset through `hugflow submit` on a two-node loopback cluster and through `hugflow local-sync` on an
embedded Ray, in one run, with the blocks each node converted.

    python benchmarks/cluster.py                 # 1,500 clips of 4 s at 16 kHz; a few minutes
    python benchmarks/cluster.py --smoke         # 16 clips: that it runs, not figures
    python benchmarks/cluster.py --json out.json

The cluster is two `ray start` nodes on this host with one CPU each (tests/ray_nodes.py): a head with the
dashboard and job server that cannot see the storage node's files, and the storage node that holds the
``hugflow_storage`` resource and the dataset. The embedded Ray gets the same two CPUs. Each figure is end to end,
as a user waits for it: `hugflow submit` from submission to the job's end (job start-up included), `local-sync`
from its start to its exit (Ray start-up included). Run it as root inside `tests/in_own_network.sh` so that Ray
advertises 127.0.0.1.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

from throughput import make_data  # noqa: E402

from tests.ray_nodes import TOKEN, Cluster, two_node_cluster  # noqa: E402


def timed(command: list[str], env: dict[str, str]) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=3600)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command[2:4])} failed ({done.returncode}):\n{(done.stdout + done.stderr)[-3000:]}")
    return seconds, done.stdout + done.stderr


def settings_env(out: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    return {**env, "STORAGE_ROOT": str(out / "datasets"), "STATE_DIR": str(out / "state"),
            "PROCESSED_ROOT": str(out / "processed"), **extra}


def main(argv: list[str] | None = None, *, cluster: Cluster | None = None) -> dict[str, Any]:
    """Run it; ``cluster``: a two-node cluster already up (the test suite shares its own), else one is started."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=1500)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--smoke", action="store_true", help="16 short clips: that it runs, not figures")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    clips, seconds = (16, 0.5) if args.smoke else (args.clips, args.seconds)
    hugflow = [sys.executable, "-m", "hugflow_ray"]
    with contextlib.nullcontext(cluster) if cluster else two_node_cluster() as cluster:
        work = Path(tempfile.mkdtemp(dir=cluster.hidden))  # the storage node's disk; the head cannot see it
        data = make_data(work / "source", clips=clips, seconds=seconds, rate=16000, shards=2, row_group_rows=25)
        request = work / "bench.yaml"
        request.write_text(f"path: {data.root}\ndescription: cluster benchmark\n")
        embedded, _ = timed([*hugflow, "local-sync", str(request)], settings_env(work / "embedded"))
        submitted, output = timed([*hugflow, "submit", str(request)], settings_env(
            work / "job", RAY_ADDRESS=cluster.job_server, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=TOKEN))
    per_node = re.search(r"blocks converted per node: (.*)", output)
    blocks = dict(item.rsplit(" ", 1) for item in per_node.group(1).split(", ")) if per_node else {}
    result = {
        "clips": clips, "audio_seconds": data.audio_seconds,
        "embedded_seconds": round(embedded, 2), "submit_seconds": round(submitted, 2),
        "embedded_audio_s_per_s": round(data.audio_seconds / embedded, 1),
        "submit_audio_s_per_s": round(data.audio_seconds / submitted, 1),
        "submit_over_embedded_throughput": round(embedded / submitted, 3),
        "blocks_by_node": {node: int(count) for node, count in blocks.items()},
    }
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
