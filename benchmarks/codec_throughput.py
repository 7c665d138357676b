"""Codec throughput against a bare LAME loop on the same clips, interleaved in one run.

    python benchmarks/codec_throughput.py [--clips 200] [--seconds 5] [--rates 16000 48000] [--rounds 3]

* ``bare``: soundfile decode -> int16 -> lameenc encode, nothing else (no checks, no tag, no resampling).
* ``codec``: :func:`hugflow_ray.codec.audio.convert` (typed checks, mixdown, rate/bitrate policy, gapless tag).

Both run in one process on one core, A B A B..., and report audio-seconds per wall-second (median, min-max)
and the ratio codec/bare. Prints a table and, with ``--json PATH``, writes the figures.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import lameenc
import numpy as np
import soundfile

from hugflow_ray.codec import audio
from hugflow_ray.core.encoding import EncoderSettings, legal_bitrate


def iter_clips(count: int, seconds: float, rate: int) -> Iterator[bytes]:
    """Deterministic speech-like clips (a gliding tone with noise and an envelope) as FLAC bytes."""
    rng = np.random.default_rng(rate)
    t = np.arange(int(seconds * rate)) / rate
    for i in range(count):
        pitch = 120 + 60 * np.sin(2 * np.pi * (0.3 + 0.01 * i) * t)
        voice = np.sin(2 * np.pi * np.cumsum(pitch) / rate) * (0.5 + 0.5 * np.sin(2 * np.pi * 2 * t))
        samples = (0.3 * voice + 0.02 * rng.standard_normal(t.size)).astype(np.float32)
        buffer = io.BytesIO()
        soundfile.write(buffer, samples, rate, format="FLAC")
        yield buffer.getvalue()


def make_clips(count: int, seconds: float, rate: int) -> list[bytes]:
    return list(iter_clips(count, seconds, rate))


def bare(clip: bytes, settings: EncoderSettings) -> bytes:
    samples, rate = soundfile.read(io.BytesIO(clip), dtype="int16")
    encoder = lameenc.Encoder()
    encoder.set_channels(1)
    encoder.set_in_sample_rate(rate)
    encoder.set_out_sample_rate(rate)
    encoder.set_bit_rate(legal_bitrate(settings.bitrate_kbps, rate))
    encoder.set_quality(settings.quality)
    return bytes(encoder.encode(samples.tobytes())) + bytes(encoder.flush())


def codec(clip: bytes, settings: EncoderSettings) -> bytes:
    return audio.convert({"bytes": clip, "path": None}, settings).mp3


def timed(run: Callable[[bytes, EncoderSettings], bytes], clips: list[bytes], settings: EncoderSettings,
          audio_seconds: float) -> float:
    start = time.perf_counter()
    for clip in clips:
        run(clip, settings)
    return audio_seconds / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rates", type=int, nargs="+", default=[16000, 48000])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quality", type=int, default=EncoderSettings().quality)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    settings = EncoderSettings(quality=args.quality)
    results: dict[str, dict[str, float]] = {}
    print(f"{args.clips} clips x {args.seconds:g} s, 192 kbps requested, LAME quality {args.quality}, one core")
    print(f"{'rate':>6} {'bare (x realtime)':>22} {'codec (x realtime)':>22} {'codec/bare':>11}")
    for rate in args.rates:
        clips = make_clips(args.clips, args.seconds, rate)
        total = args.clips * args.seconds
        runs: dict[str, list[float]] = {"bare": [], "codec": []}
        for _ in range(args.rounds):
            runs["bare"].append(timed(bare, clips, settings, total))
            runs["codec"].append(timed(codec, clips, settings, total))
        ratios = [c / b for b, c in zip(runs["bare"], runs["codec"], strict=True)]
        row = {
            "bare_median": statistics.median(runs["bare"]),
            "codec_median": statistics.median(runs["codec"]),
            "ratio_median": statistics.median(ratios),
            "ratio_min": min(ratios),
            "ratio_max": max(ratios),
        }
        results[str(rate)] = row

        def span(values: list[float]) -> str:
            return f"{statistics.median(values):7.1f} ({min(values):.0f}-{max(values):.0f})"

        print(f"{rate:>6} {span(runs['bare']):>22} {span(runs['codec']):>22} "
              f"{row['ratio_median']:>6.2f} ({row['ratio_min']:.2f}-{row['ratio_max']:.2f})")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
