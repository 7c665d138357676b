#!/usr/bin/env bash
# hugflow against the plain Ray Data script on a 16-core Linux machine: throughput.py's --marginal run, which
# times limit1 (the bare one-core decode+encode loop: cores x its rate is the machine's limit), hugflow and the
# plain Ray Data script at two sizes, interleaved, so that their fixed costs (Ray's start, imports) cancel out of
# the marginal rate. It says how much of a 16-core machine hugflow's conversion uses, which the 2-core figures in
# docs/DESIGN.md cannot.
#
#   benchmarks/device.sh OUT_DIR        # or: OUT=OUT_DIR benchmarks/device.sh
#
# Writes OUT_DIR/marginal.json (every figure), OUT_DIR/marginal.log (what it printed) and OUT_DIR/machine.txt.
# Needs the repository, Python 3.11+ and make; `make .venv/.installed` installs the project once (from the package
# index; nothing to do when .venv is installed). Not ffmpeg: --marginal runs limit1, hugflow and raydata, never the
# seed variant that needs it.
set -euo pipefail

out="${1:-${OUT:-}}"
if [[ -z "$out" ]]; then
    echo "usage: $0 OUT_DIR (or set OUT)" >&2
    exit 2
fi
mkdir -p "$out"
out="$(cd "$out" && pwd)"
cd "$(dirname "${BASH_SOURCE[0]}")/.."

make .venv/.installed
{ nproc; grep -m1 "model name" /proc/cpuinfo || true; .venv/bin/python --version; } > "$out/machine.txt"

# Sizes: 5 s clips at 16 kHz (the defaults, as in docs/DESIGN.md), 1,200 and 4,800 clips, 2 rounds (medians of
# two, as there). At about 500x realtime a core, limit1 over the 4,800 clips takes ~50 s a round on its one core,
# and the four syncs ~10 s of fixed costs each plus ~3 s for the 3,600 clips between the sizes (on 16 cores);
# generating the 6,000 clips takes ~40 s. About 4 minutes in all. Larger sizes would make the marginal rate less
# noisy, but limit1 grows 16 times as fast as a sync's marginal time and would not fit in 5 minutes.
.venv/bin/python benchmarks/throughput.py --marginal 1200 4800 --rounds 2 --json "$out/marginal.json" \
    2>&1 | tee "$out/marginal.log"
