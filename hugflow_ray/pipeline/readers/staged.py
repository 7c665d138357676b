"""Splits that are not parquet, read by hugflow-ray itself and staged as parquet, audio kept undecoded.

The ``datasets`` library resolves which files make a split; reading audio folders and WebDataset shards through it
needs torchcodec even with ``decode=False``, so the formats are read here (they are small): each split is written
once into ``.hugflow/staging/`` as parquet with audio as ``{"bytes", "path"}``, in the split's row order, and the
pipeline then reads it like any parquet split.

* ``audiofolder``: audio files (in the split's file order) joined by ``file_name`` with ``metadata.csv``,
  ``metadata.jsonl`` or ``metadata.parquet`` rows; the audio column is ``audio``.
* ``webdataset``: tar members grouped by key (the name up to its first dot); a column per extension, as
  ``datasets`` names them (``flac``, ``json``, ``txt``...); audio extensions hold ``{"bytes", "path"}``.
* ``arrow`` (IPC stream or file), ``csv``, ``json`` (JSON lines or an array): read with pyarrow.
"""

from __future__ import annotations

import json
import tarfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import pyarrow as pa
import pyarrow.csv
import pyarrow.ipc
import pyarrow.json
import pyarrow.parquet as pq

from hugflow_ray.errors import PlanError
from hugflow_ray.utils import atomic

STAGED_FORMATS = frozenset({"audiofolder", "webdataset", "arrow", "csv", "json"})
AUDIO_EXTENSIONS = frozenset({"wav", "flac", "mp3", "ogg", "opus", "m4a", "aac", "webm", "aiff", "aif", "au", "sph"})
METADATA_NAMES = ("metadata.csv", "metadata.jsonl", "metadata.parquet")
ROWS_PER_GROUP = 64
STAGED_FILE = "staged.parquet"


def stage(format: str, files: list[Path], names: list[str], staging_dir: Path) -> tuple[Path, dict[str, str]]:
    """Stage a split as one parquet file (reused when already there); returns it and its column kinds.

    Args:
        format: the reader ``datasets`` picked.
        files: the split's local files, in the split's order.
        names: the same files' repository (or relative) paths, recorded as audio ``path`` values.
        staging_dir: where the staged file goes (inside the dataset's ``.hugflow``).

    Returns:
        The staged file and column name -> kind (``Audio`` for audio columns, else the Arrow type).
    """
    target = staging_dir / STAGED_FILE
    rows = {"audiofolder": _audiofolder, "webdataset": _webdataset}.get(format)
    if not target.exists():
        staging_dir.mkdir(parents=True, exist_ok=True)
        table_rows = rows(files, names) if rows is not None else None
        table = _table_from_rows(table_rows) if table_rows is not None else _tabular(format, files)
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink, row_group_size=ROWS_PER_GROUP)
        atomic.write_bytes(target, sink.getvalue().to_pybytes())
    schema = pq.read_schema(target)
    return target, {field.name: _kind(field) for field in schema}


def _kind(field: pa.Field) -> str:
    if pa.types.is_struct(field.type) and {f.name for f in field.type} == {"bytes", "path"}:
        return "Audio"
    return str(field.type)


def _table_from_rows(rows: Iterator[dict[str, Any]]) -> pa.Table:
    records = list(rows)
    if not records:
        raise PlanError("the split holds no rows")
    columns: dict[str, None] = {}
    for record in records:
        columns.update(dict.fromkeys(record))
    return pa.Table.from_pylist([{name: r.get(name) for name in columns} for r in records])


def _audiofolder(files: list[Path], names: list[str]) -> Iterator[dict[str, Any]]:
    metadata: dict[str, dict[str, Any]] = {}
    for path, name in zip(files, names, strict=True):
        if PurePosixPath(name).name in METADATA_NAMES:
            base = PurePosixPath(name).parent
            for row in _metadata_rows(path):
                file_name = row.pop("file_name", None)
                if isinstance(file_name, str):
                    metadata[str(base / file_name)] = row
    audio = [(p, n) for p, n in zip(files, names, strict=True) if _extension(n) in AUDIO_EXTENSIONS]
    if not audio:
        raise PlanError("the audio folder holds no audio files")
    for path, name in audio:
        yield {"audio": {"bytes": path.read_bytes(), "path": name}, **metadata.get(name, {})}


def _metadata_rows(path: Path) -> list[dict[str, Any]]:
    if path.name.endswith(".csv"):
        return pyarrow.csv.read_csv(path).to_pylist()
    if path.name.endswith(".jsonl"):
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return pq.read_table(path).to_pylist()


def _webdataset(files: list[Path], names: list[str]) -> Iterator[dict[str, Any]]:
    for path in files:
        with tarfile.open(path, mode="r:*") as archive:
            key: str | None = None
            row: dict[str, Any] = {}
            for member in archive:
                if not member.isfile():
                    continue
                base = PurePosixPath(member.name)
                stem, _, extension = base.name.partition(".")
                member_key = str(base.parent / stem)
                extension = extension.lower()
                if key is not None and member_key != key:
                    yield row
                    row = {}
                key = member_key
                data = archive.extractfile(member)
                assert data is not None
                row["__key__"] = member_key
                row[extension] = _webdataset_value(extension, data.read(), member.name)
            if row:
                yield row


def _webdataset_value(extension: str, data: bytes, name: str) -> Any:
    if extension.rsplit(".", 1)[-1] in AUDIO_EXTENSIONS:
        return {"bytes": data, "path": name}
    if extension == "json":
        return json.loads(data)
    if extension in ("txt", "text", "cls", "transcript"):
        return data.decode("utf-8")
    return None  # other members (images, arrays) are not carried


def _tabular(format: str, files: list[Path]) -> pa.Table:
    tables = [_read_tabular(format, path) for path in files]
    return pa.concat_tables(tables, promote_options="default")


def _read_tabular(format: str, path: Path) -> pa.Table:
    if format == "csv":
        return pyarrow.csv.read_csv(path)
    if format == "json":
        text = path.read_bytes().lstrip()
        if text.startswith(b"["):
            return pa.Table.from_pylist(json.loads(text))
        return pyarrow.json.read_json(path)
    with path.open("rb") as f:
        try:
            return pyarrow.ipc.open_stream(f).read_all()
        except pa.ArrowInvalid:
            f.seek(0)
            return pyarrow.ipc.open_file(f).read_all()


def _extension(name: str) -> str:
    suffix = PurePosixPath(name).suffix
    return suffix[1:].lower() if suffix else ""
