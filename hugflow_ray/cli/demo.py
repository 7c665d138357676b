"""``python -m hugflow_ray.cli.demo``: the whole job end to end, offline, on an embedded Ray.

Builds a small speech-like dataset in Hub layout (parquet shards with the ``datasets`` Audio feature: 16 kHz
FLAC, stereo 44.1 kHz WAV, 96 kHz, 8 kHz, one corrupt row), writes an add request for it, syncs it, and prints
where the MP3s, JSONs and manifest are. Everything goes under ``--out`` (default ``./demo``).
"""

from __future__ import annotations

import argparse
import io
import logging
from pathlib import Path

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import soundfile

from hugflow_ray.copies.layout import StoreLayout
from hugflow_ray.copies.store import status
from hugflow_ray.pipeline.sync import sync
from hugflow_ray.settings import load_settings

ROWS_PER_SHARD = 12
SHARDS = 2
WORDS = ["hello", "world", "speech", "dataset", "audio", "model", "train", "voice"]


def _voice(rate: int, seconds: float, channels: int, seed: int) -> np.ndarray:
    """A speech-like signal: a gliding pitch with harmonics, syllable envelope and a little noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(rate * seconds)) / rate
    pitch = 110 + 40 * seed % 90 + 30 * np.sin(2 * np.pi * 0.8 * t)
    phase = 2 * np.pi * np.cumsum(pitch) / rate
    voice = sum(np.sin(k * phase) / k for k in (1, 2, 3)) * np.clip(np.sin(2 * np.pi * 3.5 * t), 0, None)
    mono = 0.25 * voice + 0.01 * rng.standard_normal(t.size)
    return np.stack([mono * (1 - 0.2 * c) for c in range(channels)], axis=1).astype(np.float32)


def _audio_file(samples: np.ndarray, rate: int, fmt: str) -> bytes:
    buffer = io.BytesIO()
    soundfile.write(buffer, samples, rate, format=fmt)
    return buffer.getvalue()


def build_dataset(root: Path) -> Path:
    """Write the demo dataset as ``root/data/train-0000i-of-0000n.parquet``; returns ``root``."""
    features = datasets.Features(
        {"audio": datasets.Audio(), "text": datasets.Value("string"), "speaker_id": datasets.Value("int32")}
    )
    shapes = [(16000, 1, "FLAC"), (44100, 2, "WAV"), (96000, 1, "WAV"), (8000, 1, "FLAC")]
    (root / "data").mkdir(parents=True, exist_ok=True)
    for shard in range(SHARDS):
        records = []
        for i in range(ROWS_PER_SHARD):
            row = shard * ROWS_PER_SHARD + i
            rate, channels, fmt = shapes[row % len(shapes)]
            data = _audio_file(_voice(rate, 1.0 + 0.25 * (row % 3), channels, row), rate, fmt)
            if row == 5:
                data = data[: len(data) // 3]  # a corrupt row: recorded as a row error, not fatal
            words = " ".join(WORDS[(row + k) % len(WORDS)] for k in range(3))
            records.append({"audio": {"bytes": data, "path": f"utt_{row:04d}.{fmt.lower()}"}, "text": words,
                            "speaker_id": row % 3})
        table = pa.Table.from_pylist(records, schema=features.arrow_schema)
        pq.write_table(table, root / "data" / f"train-{shard:05d}-of-{SHARDS:05d}.parquet", row_group_size=4)
    return root


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("demo"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    out = args.out.resolve()

    source = build_dataset(out / "source")
    request = out / "requests" / "add" / "demo_speech.yaml"
    request.parent.mkdir(parents=True, exist_ok=True)
    request.write_text("path: ../../source\ndescription: Synthetic speech-like rows for the hugflow-ray demo.\n")
    print(f"1. Built {SHARDS * ROWS_PER_SHARD} rows in {source} and the request {request}")

    settings = load_settings(storage_root=out / "datasets", state_dir=out / ".hugflow-state",
                             processed_root=out / "processed", max_row_error_rate=0.1)
    print("2. Syncing on an embedded Ray (first start takes a few seconds)...")
    report = sync(request, settings, progress_bar=True)
    note = f" with {report.row_errors} row errors" if report.row_errors else ""
    print(f"   {report.dataset_name}: {report.state}{note}, {report.rows_done} rows in {report.seconds:.1f} s "
          f"(Ray start-up {report.ray_startup_seconds:.1f} s)")
    print("3. Output:")
    print(f"   MP3s:     {report.dataset_dir / 'audio'}")
    print(f"   JSONs:    {report.dataset_dir / 'json'}")
    print(f"   manifest: {report.manifest}")
    print(f"   linked:   {StoreLayout.of(settings).processed_link(report.dataset_name)}")
    for row in status(StoreLayout.of(settings)):
        print(f"   status:   {row.state}, {row.rows_done}/{row.rows_total} rows, {row.row_errors} row errors")
    print(f"Run again to see a resume that finds nothing to do; `STORAGE_ROOT={settings.storage_root} hugflow "
          "status` lists it.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
