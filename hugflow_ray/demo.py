"""``python -m hugflow_ray.demo``: the foundation at work, offline.

Validates the example requests (schema), then converts a handful of synthetic speech-like clips in the awkward
shapes real datasets hold (stereo 44.1 kHz, 96 kHz, 37.8 kHz, 8 kHz, int16 arrays, a corrupt file) and writes
the MP3s with a JSON of facts each under ``--out`` (default ``./demo``).
"""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

import numpy as np
import soundfile

from hugflow_ray import audio
from hugflow_ray.errors import AudioError
from hugflow_ray.spec import load_request

EXAMPLES = Path(__file__).resolve().parents[1] / "requests"


def _voice(rate: int, seconds: float, channels: int = 1) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    pitch = 140 + 40 * np.sin(2 * np.pi * 0.7 * t)
    voice = 0.3 * np.sin(2 * np.pi * np.cumsum(pitch) / rate) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))
    return np.stack([voice * (1 - 0.3 * k) for k in range(channels)], axis=1).astype(np.float32)


def _file(samples: np.ndarray, rate: int, fmt: str) -> bytes:
    buffer = io.BytesIO()
    soundfile.write(buffer, samples, rate, format=fmt)
    return buffer.getvalue()


def sample_rows() -> dict[str, object]:
    """Row audio values in the forms a dataset hands over."""
    flac = _file(_voice(16000, 2.0), 16000, "FLAC")
    return {
        "flac_16k": {"bytes": flac, "path": "utt_0001.flac"},
        "wav_stereo_44k": {"bytes": _file(_voice(44100, 1.5, 2), 44100, "WAV"), "path": "utt_0002.wav"},
        "wav_96k": _file(_voice(96000, 1.0), 96000, "WAV"),
        "flac_37k8": {"bytes": _file(_voice(37800, 1.0), 37800, "FLAC"), "path": None},
        "array_8k_int16": {"array": (_voice(8000, 1.0)[:, 0] * 32767).astype(np.int16), "sampling_rate": 8000},
        "truncated_flac": {"bytes": flac[: len(flac) // 2], "path": "utt_0006.flac"},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("demo"))
    args = parser.parse_args(argv)

    print("1. Example requests (schema):")
    for path in sorted(EXAMPLES.glob("*/*.yaml")):
        request = load_request(path)
        print(f"   valid {request.kind.value:6} {path.relative_to(EXAMPLES.parent)} -> {request.dataset.source}")

    print(f"\n2. Audio rows -> mono MP3 + facts, in {args.out}/:")
    args.out.mkdir(parents=True, exist_ok=True)
    for row_id, (name, value) in enumerate(sample_rows().items()):
        try:
            result = audio.convert(value, row_id=row_id)
        except AudioError as e:
            print(f"   row {row_id} {name:15} row error [{e.code}]: {e}")
            continue
        facts = result.facts
        (args.out / f"{name}.mp3").write_bytes(result.mp3)
        (args.out / f"{name}.json").write_text(json.dumps({"audio": f"{name}.mp3", **facts.to_dict()}, indent=2))
        print(
            f"   row {row_id} {name:15} {facts.source_sample_rate:>6} Hz x{facts.source_channels} -> "
            f"{facts.output_sample_rate:>5} Hz mono {facts.bitrate_kbps} kbps, {facts.duration:.2f} s, "
            f"{len(result.mp3)} bytes"
        )
    print(f"\nMP3s and JSONs: {args.out.resolve()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
