"""Peak memory of converting one long row: the codec decodes, resamples and encodes in chunks, so a row should cost
its source bytes and its MP3, not its decoded samples.

    .venv/bin/python benchmarks/row_memory.py --hours 2 --rate 16000

Each measurement runs in a fresh process (``ru_maxrss`` of that child); the baseline is the same process importing
the codec and reading the file without converting it.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile

MINUTE_CHUNK = 60

_CHILD = """
import json, resource, sys, time
from hugflow_ray.codec import audio
data = open(sys.argv[1], "rb").read()
started = time.perf_counter()
result = audio.convert(data) if sys.argv[2] == "convert" else None
seconds = time.perf_counter() - started
print(json.dumps({"peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "seconds": seconds,
                  "mp3_mib": len(result.mp3) / 2**20 if result else 0,
                  "duration_s": result.facts.duration if result else 0}))
"""


def make_flac(path: Path, hours: float, rate: int) -> None:
    """A speech-like FLAC written a minute at a time (noise under a slow envelope)."""
    rng = np.random.default_rng(0)
    with soundfile.SoundFile(path, "w", rate, 1, format="FLAC", subtype="PCM_16") as f:
        for _ in range(int(hours * 60)):
            t = np.arange(rate * MINUTE_CHUNK) / rate
            f.write((0.1 * rng.standard_normal(t.size) * np.abs(np.sin(2 * np.pi * 0.5 * t))).astype(np.float32))


def measure(path: Path, mode: str) -> dict[str, float]:
    out = subprocess.run([sys.executable, "-c", _CHILD, str(path), mode], check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hours", type=float, default=2.0)
    parser.add_argument("--rate", type=int, default=16000)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as work:
        flac = Path(work) / "long.flac"
        make_flac(flac, args.hours, args.rate)
        baseline, converted = measure(flac, "read"), measure(flac, "convert")
        source_mib = flac.stat().st_size / 2**20
    decoded_mib = args.hours * 3600 * args.rate * 4 / 2**20
    print(f"{args.hours:g} h at {args.rate} Hz mono FLAC; decoded float32 would be {decoded_mib:.0f} MiB")
    print(f"baseline (imports + file read): peak RSS {baseline['peak_rss_mib']:.0f} MiB")
    print(f"convert: peak RSS {converted['peak_rss_mib']:.0f} MiB, MP3 {converted['mp3_mib']:.0f} MiB, "
          f"{converted['seconds']:.1f} s, duration {converted['duration_s']:.0f} s")
    print(f"convert - baseline: {converted['peak_rss_mib'] - baseline['peak_rss_mib']:.0f} MiB"
          + f" (source file {source_mib:.0f} MiB, read in both)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
