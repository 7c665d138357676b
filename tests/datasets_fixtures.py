"""Synthetic datasets for the pipeline tests: parquet with the real ``datasets`` Audio feature metadata."""

from __future__ import annotations

import io
import json
import tarfile
import zipfile
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tests.audio_fixtures import encoded, sine

HOSTILE_NAMES = ["../../x", "", "n" * 300, "a\x00b", "dup", "DUP", "dup", "ok_name"]


def parquet_bytes(records: list[dict[str, Any]], features: datasets.Features, *, row_group_size: int) -> bytes:
    table = pa.Table.from_pylist(records, schema=features.arrow_schema)
    buffer = io.BytesIO()
    pq.write_table(table, buffer, row_group_size=row_group_size)
    return buffer.getvalue()


def speech_records(count: int, *, start: int = 0, rate: int = 16000, seconds: float = 0.2,
                   names: list[str] | None = None) -> list[dict[str, Any]]:
    """Rows with FLAC audio, a transcript, a speaker, nested metadata and (optionally) ``audio_filename``."""
    records = []
    for i in range(start, start + count):
        row: dict[str, Any] = {
            "audio": {"bytes": encoded(sine(rate, seconds), rate), "path": f"clip_{i}.flac"},
            "text": f"utterance {i}",
            "speaker_id": i % 4,
            "meta": {"tags": ["a", "b"], "score": float(i) / 10},
        }
        if names is not None:
            row["audio_filename"] = names[(i - start) % len(names)]
        records.append(row)
    return records


def speech_features(*, with_names: bool = False) -> datasets.Features:
    columns: dict[str, Any] = {
        "audio": datasets.Audio(sampling_rate=16000),
        "text": datasets.Value("string"),
        "speaker_id": datasets.Value("int32"),
        "meta": {"tags": datasets.Sequence(datasets.Value("string")), "score": datasets.Value("float32")},
    }
    if with_names:
        columns["audio_filename"] = datasets.Value("string")
    return datasets.Features(columns)


def mixed_records() -> list[dict[str, Any]]:
    """Awkward real-world audio: rates MP3 cannot carry, stereo, 8 kHz, and corrupt rows."""
    nan = sine(16000, 0.2)
    nan[5, 0] = np.nan
    flac = encoded(sine(16000, 1.0), 16000)
    values = [
        {"bytes": encoded(sine(44100, 0.3, channels=2), 44100, format="WAV"), "path": "stereo.wav"},
        {"bytes": encoded(sine(48000, 0.3), 48000), "path": "fortyeight.flac"},
        {"bytes": encoded(sine(8000, 0.3), 8000), "path": "eight.flac"},
        {"bytes": encoded(sine(96000, 0.3), 96000, format="WAV"), "path": "ninetysix.wav"},
        {"bytes": np.random.default_rng(0).bytes(3000), "path": "random.flac"},
        {"bytes": encoded(nan, 16000, format="WAV", subtype="FLOAT"), "path": "nan.wav"},
        {"bytes": flac[: len(flac) // 2], "path": "truncated.flac"},
        {"bytes": None, "path": None},
    ]
    return [{"audio": v, "text": f"row {i}"} for i, v in enumerate(values)]


def mixed_features() -> datasets.Features:
    return datasets.Features({"audio": datasets.Audio(), "text": datasets.Value("string")})


def write_local_dataset(root: Path, shards: list[bytes]) -> Path:
    """A local directory in Hub layout: ``data/train-0000i-of-0000n.parquet``."""
    (root / "data").mkdir(parents=True, exist_ok=True)
    for i, shard in enumerate(shards):
        (root / "data" / f"train-{i:05d}-of-{len(shards):05d}.parquet").write_bytes(shard)
    return root


def audiofolder_files() -> dict[str, bytes]:
    """An audio folder: three clips (one without a metadata row) and a metadata.csv with an orphan row."""
    return {
        "data/train/a.flac": encoded(sine(16000, 0.3), 16000),
        "data/train/b.wav": encoded(sine(22050, 0.2, channels=2), 22050, format="WAV"),
        "data/train/c.flac": encoded(sine(8000, 0.25), 8000),
        "data/train/metadata.csv": b"file_name,text,speaker\na.flac,hello there,s1\nb.wav,general kenobi,s2\n"
                                   b"missing.flac,never read,s3\n",
    }


def tar_bytes(members: list[tuple[str, bytes]]) -> bytes:
    """An uncompressed tar of ``members`` (name, bytes), in memory, in that order."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def webdataset_files() -> dict[str, bytes]:
    """Two WebDataset shards: samples with a flac, a txt transcript and a json of metadata."""
    def shard(keys: list[str]) -> bytes:
        return tar_bytes([
            (f"{key}.{extension}", data) for n, key in enumerate(keys)
            for extension, data in [("flac", encoded(sine(16000, 0.2 + 0.05 * n), 16000)),
                                    ("txt", f"text of {key}".encode()),
                                    ("json", json.dumps({"speaker": key[-1], "quality": n}).encode())]])

    return {"train/shard-000.tar": shard(["s0", "s1"]), "train/shard-001.tar": shard(["s2"])}


def zip_bytes(files: dict[str, bytes]) -> bytes:
    """A zip archive of ``files`` (name -> bytes), in memory."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()
