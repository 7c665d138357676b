"""An incremental re-sync against a full one: one of eight shards changed on the Hub, in one run.

    python benchmarks/incremental.py                      # 1600 clips x 5 s, 16 kHz FLAC, 8 shards; 2 rounds
    python benchmarks/incremental.py --rounds 3 --json incremental.json
    python benchmarks/incremental.py --join               # every sync joins the Ray at RAY_ADDRESS (yours, running)
    python benchmarks/incremental.py --join --clips 12800 --rounds 1
                                                          # where each sync's fixed seconds (imports, the plan's Hub
                                                          # calls, finalize) weigh little (docs/DESIGN.md, issue 25)
    python benchmarks/incremental.py --smoke              # tiny sizes, one round: what the test suite runs

The synthetic dataset (``make_data`` of benchmarks/throughput.py: parquet shards with the ``datasets`` Audio feature)
is committed as the Hub dataset ``bench/moving`` and served by olah on loopback (tests/hub_server.py). A second commit
rewrites one shard (its texts change: the file is another, its audio the same). The request names the branch
``bench``, which the benchmark moves between the two commits with git. Each round, the variants interleaved:

* ``prepare``: a fresh copy synced at the first commit (the copy the next variant updates; not compared);
* ``incremental``: the branch moved to the second commit and the same copy synced again: it converts the changed
  shard and takes the other rows over from the copy;
* ``full``: a fresh copy synced at the second commit, every row converted.

Each sync is ``hugflow local-sync`` in a child process with an embedded Ray (its start and end count, as for a user's
sync) unless ``--join``. Printed, round by round: the wall seconds of each, the CPU seconds of the sync's process tree
(embedded Ray: the whole sync), the ratios ``incremental / full`` (target <= 0.2) of both, the rows taken over and
converted, and whether the incremental copy is identical to the full one (every file; the suite's test checks the
ledger too). ``--json PATH`` writes every figure. Everything is written under one temporary directory, removed at the
end; olah is stopped by its process id, and nothing else is signalled.
"""

from __future__ import annotations

import argparse
import io
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent
REPOSITORY = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPOSITORY))  # the repository: its tests/hub_server.py
import throughput
from throughput import make_data, measured

from tests.helpers import digest_tree
from tests.hub_server import HubServer, make_dataset_repo

REPO_ID = "bench/moving"
BRANCH = "bench"
CARD = {"license": "cc-by-4.0"}
TARGET = 0.2  # incremental / full, one shard of eight changed
CHANGED = 3  # the shard the second commit rewrites
VARIANTS = ("prepare", "incremental", "full")


def revised(path: Path) -> bytes:
    """The shard with every text changed (the same audio): another file, with the same rows."""
    table = pq.read_table(path)
    texts = pa.array([f"{text} (revised)" for text in table.column("text").to_pylist()])
    buffer = io.BytesIO()
    pq.write_table(table.set_column(table.schema.get_field_index("text"), "text", texts), buffer,
                   row_group_size=throughput.ROW_GROUP_ROWS)
    return buffer.getvalue()


def sync(out: Path, endpoint: str, joining: dict[str, str] | None) -> dict[str, Any]:
    """``hugflow local-sync`` of the request for branch ``bench`` into ``out``: wall and CPU seconds, rows."""
    request = out / "moving.yaml"
    request.parent.mkdir(parents=True, exist_ok=True)
    request.write_text(f"hf_id: {REPO_ID}\nrevision: {BRANCH}\ndescription: incremental benchmark\n")
    env = {**throughput.hugflow_env(out), "HF_HOME": str(out / "hf"), "HF_ENDPOINT": endpoint, **(joining or {})}
    wall, output, tree = measured([sys.executable, "-m", "hugflow_ray", "local-sync", str(request)], env=env)
    completed = re.search(r": completed(?: with \d+ row errors)? \((\d+) rows", output)
    if completed is None:
        raise SystemExit(f"incremental.py: the sync did not complete:\n{output[-3000:]}")
    updated = re.search(r"updated: +from \w+ to \w+: ([\d,]+) rows of unchanged files taken over, ([\d,]+) converted",
                        output)
    return {"wall_s": wall, "cpu_s": sum(tree.cpu_by_process().values()), "rows": int(completed.group(1)),
            "phases": throughput.phases_of(output),
            "taken_over": int(updated.group(1).replace(",", "")) if updated else 0,
            "converted": int(updated.group(2).replace(",", "")) if updated else int(completed.group(1))}


def move(repo: Path, sha: str) -> None:
    subprocess.run(["git", "-C", str(repo), "branch", "--force", BRANCH, sha], check=True, capture_output=True)


def benchmark(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    data = make_data(work / "data", clips=args.clips, seconds=args.seconds, rate=args.rate, shards=args.shards,
                     row_group_rows=throughput.ROW_GROUP_ROWS)
    mirrors = work / "mirrors"
    files = {f"data/{path.name}": path.read_bytes() for path in data.files}
    first = make_dataset_repo(mirrors, REPO_ID, files, card=CARD, branch=BRANCH)
    changed = f"data/{data.files[CHANGED % len(data.files)].name}"
    second = make_dataset_repo(mirrors, REPO_ID, {changed: revised(data.files[CHANGED % len(data.files)])},
                               card=CARD)
    repo = mirrors / "datasets" / REPO_ID
    joining = throughput.joining_env() if args.join else None
    rounds: list[dict[str, Any]] = []
    with HubServer(work / "hub", mirrors_dir=mirrors) as server:
        for number in range(args.rounds):
            out = work / f"round-{number}"
            move(repo, first)
            prepared = sync(out / "mine", server.endpoint, joining)
            move(repo, second)
            incremental = sync(out / "mine", server.endpoint, joining)
            full = sync(out / "fresh", server.endpoint, joining)
            name = next(p for p in (out / "mine" / "datasets").iterdir() if not p.name.startswith("."))
            identical = digest_tree(name) == digest_tree(out / "fresh" / "datasets" / name.name)
            rounds.append({"prepare": prepared, "incremental": incremental, "full": full, "identical": identical,
                           "wall_ratio": incremental["wall_s"] / full["wall_s"],
                           "cpu_ratio": incremental["cpu_s"] / full["cpu_s"] if full["cpu_s"] else None})
            print(f"round {number + 1}: incremental {incremental['wall_s']:.1f} s ({incremental['cpu_s']:.1f} CPU s), "
                  f"full {full['wall_s']:.1f} s ({full['cpu_s']:.1f} CPU s): {rounds[-1]['wall_ratio']:.3f} of the "
                  f"wall time; {incremental['taken_over']} rows taken over, {incremental['converted']} converted; "
                  f"{'identical' if identical else 'DIFFERENT'} trees", flush=True)
            print(f"  incremental, seconds by phase: {incremental['phases']}", flush=True)
            shutil.rmtree(out)
    ratios = [r["wall_ratio"] for r in rounds]
    cpu = [r["cpu_ratio"] for r in rounds if r["cpu_ratio"] is not None]
    result = {
        "clips": args.clips, "seconds": args.seconds, "shards": args.shards, "rounds": rounds, "joined": args.join,
        "wall_ratio": {"median": statistics.median(ratios), "min": min(ratios), "max": max(ratios)},
        "cpu_ratio": {"median": statistics.median(cpu), "min": min(cpu), "max": max(cpu)} if cpu else None,
        "target": TARGET, "identical": all(r["identical"] for r in rounds),
    }
    print(f"incremental / full: wall {result['wall_ratio']['median']:.3f} (median of {len(ratios)}; target <= "
          f"{TARGET})" + (f", CPU {result['cpu_ratio']['median']:.3f}" if cpu and not args.join else ""))
    return result


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    throughput.add_data_arguments(parser, clips=1600)
    parser.add_argument("--join", action="store_true", help="join the Ray at RAY_ADDRESS instead of an embedded one")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes and one round: that it runs, not figures")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if args.smoke:
        args.clips, args.seconds, args.rounds = 16, 0.5, 1
    if min(args.clips, args.shards, args.rounds) < 1 or args.shards > args.clips or args.seconds <= 0:
        parser.error("--clips, --shards and --rounds must be at least 1, --shards at most --clips, --seconds > 0")
    with tempfile.TemporaryDirectory(prefix="hugflow-incremental-") as tmp:
        result = benchmark(args, Path(tmp))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
