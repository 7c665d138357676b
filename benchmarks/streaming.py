"""End-to-end sync of a Hub dataset over a throttled link: download and conversion, alone and together, in one run.

    python benchmarks/streaming.py                     # 1600 clips x 5 s, 16 kHz FLAC, 16 shards (190 MB), 2 rounds;
                                                       # the link's rate calibrated: download alone ~ conversion alone
    python benchmarks/streaming.py --rate-mbit 40 --rounds 3 --json streaming.json
    python benchmarks/streaming.py --clips 800 --shards 8   # half: each side ~20 s, where a sync's fixed seconds
                                                            # (imports, the plan's Hub calls, Ray's shut-down) show
    python benchmarks/streaming.py --throttle-all-loopback   # tbf on the whole loopback: Ray's own traffic too
    python benchmarks/streaming.py --smoke             # tiny sizes, one round; what the test suite runs

Needs root, ``unshare`` (util-linux) and ``tc`` and ``ip`` (iproute2): it runs itself again in a network namespace of
its own (``unshare --net``), whose loopback is the only network anything in the run touches, and refuses with one line
without them. There the synthetic dataset (``make_data`` of benchmarks/throughput.py: parquet shards with the
``datasets`` Audio feature) is committed to a git repository and served as the Hub dataset ``bench/speech`` by olah,
as tests/hub_server.py serves the test suite's. ``tc`` throttles what olah sends (its port: a ``u32`` filter to an
``htb`` class whose qdisc is a ``tbf``) to the link's rate; the rest of the loopback, Ray's own traffic among it,
stays unthrottled, as on a machine whose Hub link is its only slow one (``--throttle-all-loopback``: one ``tbf`` at
the loopback's root instead, which also slows Ray's start and its tasks).

Unless ``--rate-mbit`` is given the rate is calibrated first: one unthrottled download (olah's own ceiling and the
download's fixed seconds), one conversion alone (also the warm-up), then the rate at which the download alone takes as
long as the conversion alone. Then the variants run interleaved (A B C D A B C D ... for ``--rounds``), each its own
process tree (peak RSS and CPU sampled as benchmarks/throughput.py samples them), each in fresh directories and a fresh
``HF_HOME``, so that nothing is cached:

* ``download``: download alone: ``huggingface_hub.snapshot_download`` of the repository at its commit into an empty
  directory;
* ``convert``: conversion alone: ``hugflow local-sync`` of a ``path:`` request for the same parquet files, already
  local (embedded Ray: its start-up and shut-down count);
* ``hugflow``: end to end: ``hugflow local-sync`` of an ``hf_id: bench/speech`` request with ``HF_ENDPOINT`` at olah;
* ``snapshot+raydata``: what a user would do instead: ``snapshot_download``, then the plain Ray Data script
  (``child_raydata`` of benchmarks/throughput.py) on the downloaded files, timed as a whole.

Prints each variant's wall seconds (median (min-max)), peak RSS and olah's CPU seconds during it (olah shares the
cores), and the ratios, each taken round by round: ``hugflow / max(download, convert)`` (target <= 1.2: a sync that
streams, converting while it downloads; one that downloads and then converts is near their sum, also printed),
``(snapshot+raydata) / hugflow`` (target >= 1.5), and hugflow's seconds by phase. ``--json PATH`` writes every figure.
A sync that downloads and then converts lands below download + convert (``hugflow / (download + convert)``, printed
too), as Ray's start already runs beside its download. Olah itself serves about 15 MB/s at most on 2 cores and spends
about 5 CPU seconds per 100 MB at any rate; and as it ignores HTTP ``Range``, hugflow's plan downloads the first
shard whole to read its columns (``plan`` holds 1/shards of the download; the sync then takes that shard from the
Hub cache instead of downloading it again). Children run the ``hugflow_ray`` of the checkout this file is
in. Everything is written under one temporary directory, removed at the end even on failure; olah is stopped by its
process id, and nothing else is signalled.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPOSITORY = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPOSITORY))  # the repository: its tests/hub_server.py
import throughput
from throughput import Data, make_data, measured, phases_of, spread

from tests.hub_server import HubServer, make_dataset_repo

VARIANTS = ("download", "convert", "hugflow", "snapshot+raydata")
REPO_ID = "bench/speech"
CARD = {"license": "cc-by-4.0"}  # a licence the default policy lets in
ROW_GROUP_ROWS = throughput.ROW_GROUP_ROWS
SMOKE_RATE_MBIT = 100.0
TBF = "burst 256kb latency 50ms"
STREAMING_TARGET = 1.2  # hugflow / max(download, convert) once the sync streams
RAYDATA_TARGET = 1.5  # (snapshot+raydata) / hugflow
# What must not leak into a child from the caller: caches that would outlive a round, credentials, a Ray to join
UNSET = ("HF_DATASETS_CACHE", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_XET_CACHE", "HF_ASSETS_CACHE",
         "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_TOKEN_PATH",
         "RAY_ADDRESS", "RAY_AUTH_TOKEN", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy",
         "all_proxy", "STORAGE_ROOT", "STATE_DIR", "PROCESSED_ROOT", "HF_ENDPOINT", "MAX_CONCURRENT_DOWNLOADS")


# ------------------------------------------------------------------------------ the namespace and the link


def refusal() -> str | None:
    """Why this machine cannot run the benchmark (one line), or None."""
    if os.geteuid() != 0:
        return "needs root: it throttles a loopback link in a network namespace of its own (unshare --net, tc)"
    for tool, package in (("unshare", "util-linux"), ("tc", "iproute2"), ("ip", "iproute2")):
        if not shutil.which(tool):
            return f"needs {tool} ({package}) on PATH"
    if subprocess.run(["unshare", "--net", "true"], check=False, capture_output=True).returncode != 0:
        return "cannot make a network namespace here (unshare --net failed: a container without CAP_SYS_ADMIN?)"
    return None


def _run(*command: str) -> None:
    proc = subprocess.run(command, check=False, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"streaming.py: {' '.join(command)} failed: {proc.stderr.strip()}")


def _loopback_only() -> None:
    """Bring this namespace's loopback up, and make sure it is the only interface there is."""
    _run("ip", "link", "set", "lo", "up")
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True, check=True).stdout
    names = [line.split(":")[1].strip().split("@")[0] for line in links.splitlines() if line.strip()]
    if names != ["lo"]:
        raise SystemExit(f"streaming.py: expected only loopback in its own network namespace, found {names}")


class Link:
    """The Hub link: what olah sends from its port, throttled by ``tc`` to a rate (None: unthrottled)."""

    def __init__(self, port: int, *, whole_loopback: bool) -> None:
        self.port, self.whole_loopback = port, whole_loopback
        self.mbit: float | None = None
        self._htb = self._tbf = False

    def set(self, mbit: float | None) -> None:
        rate = f"{max(1, round(mbit * 1000))}kbit" if mbit else ""
        if self.whole_loopback:
            if mbit:
                _run("tc", "qdisc", "replace", "dev", "lo", "root", "tbf", "rate", rate, *TBF.split())
            elif self._tbf:
                _run("tc", "qdisc", "del", "dev", "lo", "root")
        else:
            if not self._htb:  # unclassified packets pass unshaped (htb's direct queue); olah's source port: 1:30
                _run("tc", "qdisc", "add", "dev", "lo", "root", "handle", "1:", "htb")
                _run("tc", "class", "add", "dev", "lo", "parent", "1:", "classid", "1:30", "htb", "rate", "10gbit",
                     "quantum", "200000")
                _run("tc", "filter", "add", "dev", "lo", "parent", "1:", "protocol", "ip", "prio", "1", "u32",
                     "match", "ip", "sport", str(self.port), "0xffff", "flowid", "1:30")
                self._htb = True
            if mbit:
                _run("tc", "qdisc", "replace", "dev", "lo", "parent", "1:30", "handle", "30:", "tbf", "rate", rate,
                     *TBF.split())
            elif self._tbf:
                _run("tc", "qdisc", "del", "dev", "lo", "parent", "1:30", "handle", "30:")
        self._tbf, self.mbit = bool(mbit), mbit


def _tree_cpu_seconds(pid: int) -> float:
    """CPU seconds of ``pid`` (with its reaped children) and its live children: olah and its ``git cat-file``s."""
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(entry) == pid:
            total += sum(int(v) for v in stat[11:15])
        elif int(stat[1]) == pid:
            total += int(stat[11]) + int(stat[12])
    return total / throughput.TICK


# ------------------------------------------------------------------ the variants that run as children of this file


def child_download(args: argparse.Namespace, out: Path | None = None) -> dict[str, float]:
    start = time.perf_counter()
    from huggingface_hub import snapshot_download

    out = out or args.out
    imported = time.perf_counter()
    snapshot_download(REPO_ID, repo_type="dataset", revision=args.sha, endpoint=args.endpoint, local_dir=out)
    files = sorted((out / "data").glob("*.parquet"))
    return {"imports_s": imported - start, "transfer_s": time.perf_counter() - imported,
            "bytes": sum(f.stat().st_size for f in files), "files": len(files)}


def child_snapshot_raydata(args: argparse.Namespace) -> dict[str, float]:
    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(throughput)  # its map_batches function, for workers that cannot import it
    downloaded = child_download(args, args.out / "snapshot")
    start = time.perf_counter()
    figures = throughput.child_raydata(Data(args.out / "snapshot", args.clips, args.seconds, args.rate),
                                       args.out / "converted")
    return {**downloaded, "raydata_s": time.perf_counter() - start, "ray_startup_shutdown_s": figures["startup_s"]}


CHILDREN = {"download": child_download, "snapshot+raydata": child_snapshot_raydata}


# ------------------------------------------------------------------------------ running a variant


@dataclass(frozen=True)
class Hub:
    server: HubServer
    sha: str
    link: Link


@dataclass(frozen=True)
class Run:
    variant: str
    wall_s: float
    peak_rss: int
    olah_cpu_s: float
    cpu: dict[str, float]
    figures: dict[str, float] = field(default_factory=dict)  # what the child reported
    phases: dict[str, float] = field(default_factory=dict)  # hugflow's seconds by phase


def _reported(output: str) -> dict[str, float]:
    """The JSON figures a child printed last (Ray may print after it)."""
    for line in reversed(output.strip().splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise SystemExit(f"streaming.py: a child printed no figures:\n{output[-3000:]}")


def run_variant(variant: str, data: Data, hub: Hub, work: Path) -> Run:
    out = work / f"out-{variant.replace('+', '-')}"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    olah = hub.server.process
    assert olah is not None
    cpu_before = _tree_cpu_seconds(olah.pid)
    figures: dict[str, float] = {}
    phases: dict[str, float] = {}
    if variant in CHILDREN:
        command = [sys.executable, __file__, "--child", variant, "--endpoint", hub.server.endpoint, "--sha", hub.sha,
                   "--out", str(out / "files"), "--clips", str(data.clips), "--seconds", str(data.seconds),
                   "--rate", str(data.rate)]
        wall, output, tree = measured(command, env={**os.environ, "HF_HOME": str(out / "hf")})
        figures = _reported(output)
        if figures["files"] != len(data.files) or figures["bytes"] != sum(f.stat().st_size for f in data.files):
            raise SystemExit(f"streaming.py: {variant} downloaded {figures}, not the repository's files")
    else:
        request = out / "bench.yaml"
        source = f"path: {data.root}" if variant == "convert" else f"hf_id: {REPO_ID}"
        request.write_text(f"{source}\ndescription: streaming benchmark\n")
        env = {**throughput.hugflow_env(out), "HF_HOME": str(out / "hf"), "HF_ENDPOINT": hub.server.endpoint}
        wall, output, tree = measured([sys.executable, "-m", "hugflow_ray", "local-sync", str(request)], env=env)
        if f"({data.clips} rows" not in output:
            raise SystemExit(f"streaming.py: {variant} did not sync all {data.clips} rows:\n{output[-3000:]}")
        phases = phases_of(output)
    run = Run(variant, wall, tree.peak_rss, _tree_cpu_seconds(olah.pid) - cpu_before, tree.cpu_by_process(),
              figures, phases)
    shutil.rmtree(out, ignore_errors=True)
    return run


# ------------------------------------------------------------------------------ the run, in its namespace


def serve(data: Data, root: Path) -> tuple[HubServer, str]:
    """Commit the dataset's files as the Hub repository ``bench/speech`` and start olah on it."""
    mirrors = root / "mirrors"
    files = {f"data/{path.name}": path.read_bytes() for path in data.files}
    sha = make_dataset_repo(mirrors, REPO_ID, files, card=CARD)
    return HubServer(root, mirrors_dir=mirrors).start(), sha


def calibrate(args: argparse.Namespace, data: Data, hub: Hub, work: Path) -> dict[str, Any]:
    """Olah's ceiling and the download's fixed seconds (one unthrottled download); unless ``--rate-mbit``, the
    conversion alone (the warm-up) and the rate at which the download alone takes as long."""
    size = sum(f.stat().st_size for f in data.files)
    hub.link.set(None)
    probe = run_variant("download", data, hub, work)
    transfer = probe.figures["transfer_s"]
    found: dict[str, Any] = {"olah_unthrottled_mb_s": size / transfer / 1e6,
                             "download_unthrottled_s": probe.wall_s, "download_fixed_s": probe.wall_s - transfer}
    print(f"  olah unthrottled: {found['olah_unthrottled_mb_s']:.1f} MB/s ({probe.wall_s:.1f} s for {size / 1e6:.1f}"
          f" MB, {found['download_fixed_s']:.1f} s of it fixed; olah CPU {probe.olah_cpu_s:.1f} s)", flush=True)
    if args.rate_mbit:
        found["rate_mbit"] = args.rate_mbit
        return found
    warmup = run_variant("convert", data, hub, work)
    found["convert_warmup_s"] = warmup.wall_s
    seconds = warmup.wall_s - found["download_fixed_s"]
    if seconds <= transfer * 1.1:
        found["rate_mbit"] = None
        print(f"  conversion alone {warmup.wall_s:.1f} s: olah alone is about as slow as that; the link stays "
              "unthrottled (try more clips)", flush=True)
    else:
        found["rate_mbit"] = size * 8 / seconds / 1e6
        print(f"  conversion alone {warmup.wall_s:.1f} s (warm-up): the link at {found['rate_mbit']:.1f} Mbit/s "
              f"({size / seconds / 1e6:.2f} MB/s) for a download of about as long", flush=True)
    return found


def benchmark(args: argparse.Namespace) -> dict[str, Any]:
    _loopback_only()
    for name in UNSET:
        os.environ.pop(name, None)
    os.environ.update(HF_HUB_DISABLE_TELEMETRY="1", HF_HUB_DISABLE_PROGRESS_BARS="1",
                      NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))  # clean up as on Ctrl-C
    with tempfile.TemporaryDirectory(prefix="hugflow-streaming-", ignore_cleanup_errors=True) as tmp:
        work = Path(tmp)
        os.environ["HF_HOME"] = str(work / "hf")  # nothing a child does by default lands in the caller's cache
        built = time.perf_counter()
        data = make_data(work / "data", clips=args.clips, seconds=args.seconds, rate=args.rate, shards=args.shards,
                         row_group_rows=ROW_GROUP_ROWS)
        server, sha = serve(data, work / "hub")
        try:
            hub = Hub(server, sha, Link(server.port or 0, whole_loopback=args.throttle_all_loopback))
            size = sum(f.stat().st_size for f in data.files)
            print(f"  dataset {data.clips} clips x {data.seconds:g} s in {len(data.files)} shards, {size / 1e6:.1f} MB,"
                  f" served by olah at {server.endpoint} ({time.perf_counter() - built:.1f} s to build and serve)",
                  flush=True)
            found = calibrate(args, data, hub, work)
            hub.link.set(found["rate_mbit"])
            runs: dict[str, list[Run]] = {v: [] for v in VARIANTS}
            for round_ in range(args.rounds):
                for variant in VARIANTS:
                    run = run_variant(variant, data, hub, work)
                    runs[variant].append(run)
                    print(f"  round {round_ + 1} {variant:16} {run.wall_s:7.1f} s wall", flush=True)
        finally:
            server.stop()
        return report(args, data, found, runs)


# ---------------------------------------------------------------------------------------------- reports


def show(values: dict[str, float], unit: str = "") -> str:
    return f"{values['median']:7.2f}{unit} ({values['min']:.2f}-{values['max']:.2f})"


def report(args: argparse.Namespace, data: Data, found: dict[str, Any], runs: dict[str, list[Run]]) -> dict[str, Any]:
    cores = len(os.sched_getaffinity(0))
    size = sum(f.stat().st_size for f in data.files)
    rate = found["rate_mbit"]
    result: dict[str, Any] = {
        "cores": cores, "clips": data.clips, "clip_seconds": data.seconds, "rate_hz": data.rate,
        "shards": len(data.files), "dataset_mb": size / 1e6, "rounds": args.rounds,
        "throttle": "loopback" if args.throttle_all_loopback else "olah", "link_mbit": rate,
        "link_calibrated": not args.rate_mbit, "calibration": found, "wall_s": {}, "walls_by_round": {},
        "peak_rss_mib": {}, "olah_cpu_s": {}, "ratios": {},
        "targets": {"hugflow/max(download,convert)": STREAMING_TARGET, "(snapshot+raydata)/hugflow": RAYDATA_TARGET},
    }
    link = f"{rate:.1f} Mbit/s ({'calibrated' if not args.rate_mbit else 'given'})" if rate else "unthrottled"
    print(f"\n{data.clips} clips x {data.seconds:g} s at {data.rate} Hz, {len(data.files)} shards, "
          f"{size / 1e6:.1f} MB; link {link}, olah unthrottled {found['olah_unthrottled_mb_s']:.1f} MB/s; "
          f"{cores} cores, {args.rounds} rounds (median (min-max))")
    for variant, variant_runs in runs.items():
        walls = [r.wall_s for r in variant_runs]
        result["walls_by_round"][variant] = walls
        result["wall_s"][variant] = spread(walls)
        result["peak_rss_mib"][variant] = spread([r.peak_rss / 2**20 for r in variant_runs])
        result["olah_cpu_s"][variant] = spread([r.olah_cpu_s for r in variant_runs])
        print(f"  {variant:16} {show(result['wall_s'][variant], ' s')}   peak RSS "
              f"{show(result['peak_rss_mib'][variant], ' MiB')}   olah CPU {show(result['olah_cpu_s'][variant], ' s')}")
    download = runs["download"]
    result["download_mb_s"] = spread([size / r.figures["transfer_s"] / 1e6 for r in download])
    print(f"  download's transfer {show(result['download_mb_s'], ' MB/s')}")
    rounds = list(zip(*(runs[v] for v in VARIANTS), strict=True))
    ratios = {
        "hugflow/max(download,convert)": [h.wall_s / max(d.wall_s, c.wall_s) for d, c, h, _ in rounds],
        "hugflow/(download+convert)": [h.wall_s / (d.wall_s + c.wall_s) for d, c, h, _ in rounds],
        "(snapshot+raydata)/hugflow": [s.wall_s / h.wall_s for _, _, h, s in rounds],
    }
    for name, values in ratios.items():
        result["ratios"][name] = spread(values)
        target = result["targets"].get(name)
        aim = f"   target {'<=' if name.startswith('hugflow/max') else '>='} {target}" if target else ""
        print(f"  {name:30} {show(result['ratios'][name])}{aim}")
    hugflow = runs["hugflow"]
    names = list(dict.fromkeys(name for r in hugflow for name in r.phases))
    result["hugflow_phases_s"] = {name: statistics.median(r.phases.get(name, 0.0) for r in hugflow) for name in names}
    if names:
        print("  hugflow's seconds by phase (median): "
              + ", ".join(f"{name} {seconds:.1f}" for name, seconds in result["hugflow_phases_s"].items()))
    convert = runs["convert"]
    result["convert_phases_s"] = {name: statistics.median(r.phases.get(name, 0.0) for r in convert)
                                  for name in dict.fromkeys(n for r in convert for n in r.phases)}
    result["hugflow_cpu_s_by_process"] = hugflow[len(hugflow) // 2].cpu
    print("  hugflow CPU seconds by process (middle round): "
          + ", ".join(f"{name} {seconds:.1f}" for name, seconds in result["hugflow_cpu_s_by_process"].items()
                      if seconds >= 0.05))
    both = runs["snapshot+raydata"]
    result["snapshot+raydata_parts_s"] = {
        "download": spread([r.figures["imports_s"] + r.figures["transfer_s"] for r in both]),
        "raydata": spread([r.figures["raydata_s"] for r in both]),
        "ray_startup_shutdown": spread([r.figures["ray_startup_shutdown_s"] for r in both]),
    }
    parts = result["snapshot+raydata_parts_s"]
    print(f"  snapshot+raydata: download {show(parts['download'], ' s')}, Ray Data script "
          f"{show(parts['raydata'], ' s')} (Ray start-up + shut-down {show(parts['ray_startup_shutdown'], ' s')})")
    return result


# ---------------------------------------------------------------------------------------------- main


def in_own_namespace(argv: list[str]) -> dict[str, Any]:
    """Run this file again with ``argv`` in a network namespace of its own; its figures."""
    if reason := refusal():
        raise SystemExit(f"streaming.py {reason}")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPOSITORY), os.environ.get("PYTHONPATH")]))}
    with tempfile.TemporaryDirectory(prefix="hugflow-streaming-result-") as tmp:
        result = Path(tmp) / "result.json"
        proc = subprocess.Popen(["unshare", "--net", sys.executable, __file__, "--in-namespace", "--result",
                                 str(result), *argv], env=env)
        try:
            code = proc.wait()
        except KeyboardInterrupt:
            proc.wait()  # it had the Ctrl-C too: it stops what it started and removes its files
            raise
        if code != 0:
            raise SystemExit(f"streaming.py: the run in its own network namespace failed (exit {code})")
        return json.loads(result.read_text())


def main(argv: list[str] | None = None) -> dict[str, Any]:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    # the default size: download and conversion alone about 35 s each on 2 cores, so that the ratio measures the
    # overlap, not the sync's fixed seconds (about 7 s more than snapshot_download's: docs/DESIGN.md)
    throughput.add_data_arguments(parser, clips=1600, shards=16)
    parser.add_argument("--rate-mbit", type=float, help="the link's rate; default: calibrated so that the download "
                        "alone takes as long as the conversion alone")
    parser.add_argument("--throttle-all-loopback", action="store_true", help="throttle the whole loopback (Ray's "
                        "own traffic too), not only what olah sends")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes and one round: that it runs, not figures")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--in-namespace", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--child", choices=sorted(CHILDREN), help=argparse.SUPPRESS)
    parser.add_argument("--endpoint", help=argparse.SUPPRESS)
    parser.add_argument("--sha", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        figures = CHILDREN[args.child](args)
        print(json.dumps(figures), flush=True)
        return figures
    if args.smoke:
        args.clips, args.seconds, args.shards, args.rounds = 8, 0.5, 2, 1
        args.rate_mbit = args.rate_mbit or SMOKE_RATE_MBIT
    if min(args.clips, args.shards, args.rounds) < 1 or args.shards > args.clips or args.seconds <= 0:
        parser.error("--clips, --shards and --rounds must be at least 1, --shards at most --clips, --seconds > 0")
    if args.rate_mbit is not None and args.rate_mbit <= 0:
        parser.error("--rate-mbit must be positive")
    if not args.in_namespace:
        result = in_own_namespace(argv)
        if args.json:
            args.json.write_text(json.dumps(result, indent=2))
        return result
    result = benchmark(args)
    if args.result:
        args.result.write_text(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
