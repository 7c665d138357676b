"""Every layout read in place, a part at a time: the unit of download, of counting and of reading.

A *part* is what becomes local at once and is read on its own: one parquet file, one WebDataset shard (``.tar``,
``.tar.gz``), one arrow, CSV or JSON file, or a run of ``AUDIOFOLDER_PART_FILES`` audio files of an audio folder.
A sync opens the parts in split order as their files arrive: opening counts a part's rows (which fixes the row ids
of the next part: ids are positions in the split) and finds which MP3 names its rows share. A part is then read as
``units`` slices of its rows, each a stream of blocks of at most ``BLOCK_BYTES`` of source (one row at least), with
a ``row_id`` column first and the finished rows (from the ledger) dropped before any decode. Nothing is staged and
nothing holds a whole split: what a read holds is one block.

Names are decided within a part, so a part's MP3 names never wait for rows of other parts (see
:func:`hugflow_ray.core.naming.mp3_path`).

* ``parquet``: row groups read a few rows at a time through a small buffer (never a whole column chunk).
* ``webdataset``: tar members grouped by key (the name up to its first dot), a column per extension as ``datasets``
  names them; the columns are those of the split's first shard. Audio extensions hold ``{"bytes", "path"}``; a
  ``json`` member is carried as its text (the converter parses it, so a row's JSON never depends on its block).
  A slice of an uncompressed shard seeks past the members before it; a compressed shard is read as one slice.
* ``audiofolder``: audio files (in the split's file order) joined by ``file_name`` with the rows of
  ``metadata.csv``, ``metadata.jsonl`` or ``metadata.parquet`` (read once, before the first part).
* ``arrow`` (IPC stream or file), ``csv``, ``json`` (JSON lines or an array): a file is read whole, as one slice.
"""

from __future__ import annotations

import dataclasses
import json
import math
import tarfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv
import pyarrow.ipc
import pyarrow.json
import pyarrow.parquet as pq

from hugflow_ray.copies.batches import read_parquet
from hugflow_ray.core import naming
from hugflow_ray.core.records import RowColumn
from hugflow_ray.errors import PlanError

PART = "__part__"  # the part a row comes from: its MP3's folder
MP3_NAME = "__mp3_name__"  # the row's MP3 basename, decided with the names of its whole part
BLOCK_BYTES = 64 * 1024 * 1024  # source bytes per block a read hands on (the memory a block in flight costs)
STREAM_BUFFER_BYTES = 1024 * 1024  # a column chunk is read through a buffer of this size, not loaded whole
SKIP_BATCH_ROWS = 64  # rows decoded at a time while passing over the rows before a slice
NAME_BATCH_ROWS = 65536  # rows of name columns read at a time
AUDIOFOLDER_PART_FILES = 256  # audio files of an audio folder per part
UNITS_PER_CPU = 4
MIN_UNIT_BYTES = 1024  # slices are not cut smaller than this
FORMATS = frozenset({"parquet", "audiofolder", "webdataset", "arrow", "csv", "json"})
SLICED_FORMATS = frozenset({"parquet", "webdataset"})  # a part of these is read as several slices
AUDIO_EXTENSIONS = frozenset({"wav", "flac", "mp3", "ogg", "opus", "m4a", "aac", "webm", "aiff", "aif", "au", "sph"})
TEXT_EXTENSIONS = frozenset({"txt", "text", "cls", "transcript"})
METADATA_NAMES = ("metadata.csv", "metadata.jsonl", "metadata.parquet")
AUDIO_TYPE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])


@dataclass(frozen=True)
class Part:
    """A part as planned, before any download: which of the plan's files it is made of, and their bytes."""

    index: int
    files: tuple[int, ...]
    size: int | None
    rows: int | None = None  # known before the download (an audio folder: one row per audio file)


@dataclass(frozen=True)
class SplitShape:
    """What reading a split needs besides its parts: the format, the columns, the audio folder's metadata."""

    format: str
    audio_column: str | None
    columns: tuple[str, ...] = ()  # a WebDataset's columns (from its first shard)
    metadata: pa.Table | None = None  # an audio folder's metadata rows, with their ``file_name``
    metadata_index: dict[str, int] = field(default_factory=dict)  # audio file's repository path -> metadata row


@dataclass(frozen=True)
class OpenedPart:
    """A part whose files are local and whose rows are counted: everything a read task needs (picklable)."""

    index: int
    shape: SplitShape
    paths: tuple[str, ...]
    names: tuple[str, ...]  # the files' repository paths: an audio value's ``path``
    first_row_id: int
    rows: int
    duplicated: frozenset[str]  # lower-cased MP3 stems more than one row of the part asks for
    finished: np.ndarray  # ids of the part's rows already in the ledger, sorted
    metadata: pa.Table | None = None  # an audio folder's metadata rows for the part's audio files, in their order

    @property
    def pending(self) -> int:
        return self.rows - len(self.finished)

    def slice(self, unit: int, units: int) -> tuple[int, int]:
        """Rows ``[start, stop)`` of the part (0-based within it) that slice ``unit`` of ``units`` reads."""
        if self.shape.format not in SLICED_FORMATS or _compressed_shard(self.shape.format, self.paths[0]):
            return (0, self.rows) if unit == 0 else (0, 0)
        return self.rows * unit // units, self.rows * (unit + 1) // units


def cut_parts(format: str, names: Sequence[str], sizes: Sequence[int | None]) -> tuple[list[Part], list[int]]:
    """The split's parts, in split order, and (for an audio folder) its metadata files, read before any part."""
    if format != "audiofolder":
        return [Part(i, (i,), sizes[i]) for i in range(len(names))], []
    metadata = [i for i, name in enumerate(names) if PurePosixPath(name).name in METADATA_NAMES]
    audio = [i for i, name in enumerate(names) if _extension(name) in AUDIO_EXTENSIONS]
    if not audio:
        raise PlanError("the audio folder holds no audio files")
    parts = []
    for n, start in enumerate(range(0, len(audio), AUDIOFOLDER_PART_FILES)):
        files = tuple(audio[start:start + AUDIOFOLDER_PART_FILES])
        known = [sizes[i] for i in files]
        size = None if any(s is None for s in known) else sum(s for s in known if s is not None)
        parts.append(Part(n, files, size, rows=len(files)))
    return parts, metadata


def units_per_part(parts: Sequence[Part], format: str, *, cpus: int) -> list[int]:
    """How many slices each part is read as: parts of about equal bytes, enough of them to keep ``cpus`` busy.

    The last part is read as ``cpus`` slices at least (where its bytes allow): it is the last to download, so when
    it arrives no other part's slices are left to share the cores with, and as one slice it would convert on one
    core while the others idle."""
    if format not in SLICED_FORMATS or not parts:
        return [1] * len(parts)
    sizes = [p.size or MIN_UNIT_BYTES for p in parts]
    target = max(MIN_UNIT_BYTES, min(BLOCK_BYTES, sum(sizes) // max(1, cpus * UNITS_PER_CPU)))
    units = [max(1, math.ceil(size / target)) for size in sizes]
    units[-1] = max(units[-1], min(cpus, sizes[-1] // MIN_UNIT_BYTES))
    return units


# ------------------------------------------------------------------------------------------------ the split's shape


def split_shape(format: str, audio_column: str | None, first: Sequence[Path], metadata: Sequence[Path],
                metadata_names: Sequence[str]) -> tuple[SplitShape, dict[str, str]]:
    """The shape of a split from its first part's files and its metadata files; returns it and the columns (name ->
    kind: ``Audio`` for audio columns, else the Arrow type) a plan chooses its audio and text columns from.

    Raises:
        PlanError: the files cannot be read as the layout says.
    """
    try:
        if format == "webdataset":
            columns = _webdataset_columns(first[0])
            kinds = {c: "string" if c == "__key__" else _member_kind(c) for c in columns}
            return SplitShape(format, audio_column, columns=tuple(columns)), kinds
        if format == "audiofolder":
            table, index = _audiofolder_metadata(metadata, metadata_names)
            kinds = {"audio": "Audio", **{f.name: str(f.type) for f in table.schema if f.name != "file_name"}}
            return SplitShape(format, audio_column, metadata=table, metadata_index=index), kinds
        schema = pq.read_schema(first[0]) if format == "parquet" else _read_tabular(format, first[0]).schema
    except (pa.ArrowException, OSError, tarfile.TarError, ValueError, UnicodeDecodeError) as e:
        raise PlanError(f"{first[0].name} cannot be read as {format} ({e}); check that it is the dataset's file and "
                        "complete") from None
    return SplitShape(format, audio_column), {f.name: _kind(f) for f in schema}


def _kind(f: pa.Field) -> str:
    if pa.types.is_struct(f.type) and {c.name for c in f.type} == {"bytes", "path"}:
        return "Audio"
    return str(f.type)


def _member_kind(extension: str) -> str:
    if extension.rsplit(".", 1)[-1] in AUDIO_EXTENSIONS:
        return "Audio"
    return "json" if extension == "json" else "string" if extension in TEXT_EXTENSIONS else "null"


# ---------------------------------------------------------------------------------------------- opening a part


def open_part(part: Part, shape: SplitShape, paths: Sequence[Path], names: Sequence[str], first_row_id: int,
              finished: np.ndarray) -> OpenedPart:
    """Count a local part's rows and find the MP3 names its rows share; ``finished`` is the ledger's sorted ids.

    Raises:
        PlanError: a file cannot be read as the layout says.
    """
    metadata = None
    if shape.format == "audiofolder" and shape.metadata is not None:
        metadata = shape.metadata.take(pa.array([shape.metadata_index.get(n) for n in names], pa.int64()))
        metadata = metadata.drop_columns(["file_name"])
    try:
        rows, candidates = _rows_and_names(shape, paths, names, metadata)
    except (pa.ArrowException, OSError, tarfile.TarError, ValueError, UnicodeDecodeError) as e:
        raise PlanError(f"{names[0]} cannot be read as {shape.format} ({e}); check that it is the dataset's file "
                        "and complete") from None
    lo = np.searchsorted(finished, first_row_id, side="left")
    hi = np.searchsorted(finished, first_row_id + rows, side="left")
    shipped = dataclasses.replace(shape, metadata=None, metadata_index={})  # a part carries its own metadata rows
    return OpenedPart(part.index, shipped, tuple(str(p) for p in paths), tuple(names), first_row_id, rows,
                      naming.duplicated_stems(c for c in candidates if c), finished[lo:hi].copy(), metadata)


def _rows_and_names(shape: SplitShape, paths: Sequence[Path], names: Sequence[str], metadata: pa.Table | None
                    ) -> tuple[int, list[str]]:
    if shape.format == "parquet":
        return pq.ParquetFile(paths[0]).metadata.num_rows, _parquet_names(paths[0], shape.audio_column)
    if shape.format == "webdataset":
        keys = [key for key, _ in _tar_samples(paths[0], read=False)]
        return len(keys), [naming.safe_stem(key) for key in keys]
    if shape.format == "audiofolder":
        table = _audiofolder_table(names, [b""] * len(names), metadata)
        return len(names), _table_names(table, shape.audio_column)
    table = _read_tabular(shape.format, paths[0])
    return table.num_rows, _table_names(table, shape.audio_column)


def _parquet_names(path: Path, audio_column: str | None) -> list[str]:
    """The MP3 stem each row asks for, read column-wise: only the name columns' own pages (``iter_batches`` of the
    nested ``audio.path`` leaf; ``read_table`` of the same columns reads the whole audio struct, its bytes too)."""
    parquet = pq.ParquetFile(path, buffer_size=STREAM_BUFFER_BYTES, pre_buffer=False)
    schema = parquet.schema_arrow
    columns = [naming.NAME_COLUMN] if naming.NAME_COLUMN in schema.names else []
    if _with_path(schema, audio_column):
        columns.append(f"{audio_column}.path")
    if not columns:
        return [""] * parquet.metadata.num_rows
    names: list[str] = []
    for batch in parquet.iter_batches(columns=columns, batch_size=NAME_BATCH_ROWS):
        names += _table_names(pa.Table.from_batches([batch]), audio_column)
    return names


def _with_path(schema: pa.Schema, audio_column: str | None) -> bool:
    f = schema.field(audio_column) if audio_column in schema.names else None
    return f is not None and pa.types.is_struct(f.type) and f.type.get_field_index("path") >= 0


def _table_names(table: pa.Table, audio_column: str | None) -> list[str]:
    """The MP3 stem each row of ``table`` asks for: its ``audio_filename``, else its audio ``path``'s stem."""
    rows = table.num_rows
    filenames = table.column(naming.NAME_COLUMN).to_pylist() if naming.NAME_COLUMN in table.column_names else None
    paths = (pc.struct_field(table.column(audio_column), "path").to_pylist()
             if _with_path(table.schema, audio_column) else None)
    return [naming.name_candidate(filenames[i] if filenames else None, paths[i] if paths else None)
            for i in range(rows)]


# ------------------------------------------------------------------------------------------------ reading a slice


def iter_slice(part: OpenedPart, unit: int, units: int, *, block_bytes: int = BLOCK_BYTES) -> Iterator[pa.Table]:
    """The rows of slice ``unit`` of ``units`` of a part not yet finished, as blocks of at most ``block_bytes`` of
    source (one row at least): ``row_id`` first, the part and the row's MP3 name last."""
    start, stop = part.slice(unit, units)
    if stop <= start or _all_finished(part, start, stop):
        return
    read = _READERS[part.shape.format]
    for first, table in read(part, start, stop, block_bytes):
        ids = np.arange(part.first_row_id + first, part.first_row_id + first + table.num_rows, dtype=np.int64)
        table = table.add_column(0, RowColumn.ROW_ID, pa.array(ids))
        if len(part.finished):
            table = table.filter(pa.array(~np.isin(ids, part.finished)))
        if table.num_rows:
            yield _with_names(part, table)


def _all_finished(part: OpenedPart, start: int, stop: int) -> bool:
    lo = np.searchsorted(part.finished, part.first_row_id + start, side="left")
    hi = np.searchsorted(part.finished, part.first_row_id + stop, side="left")
    return bool(hi - lo == stop - start)


def _with_names(part: OpenedPart, table: pa.Table) -> pa.Table:
    audio = part.shape.audio_column
    if audio is None or audio not in table.column_names:
        names: list[str | None] = [None] * table.num_rows
    else:
        candidates = _table_names(table, audio)
        ids = table.column(RowColumn.ROW_ID).to_pylist()
        names = [naming.mp3_name(c, i, part.duplicated) for c, i in zip(candidates, ids, strict=True)]
    table = table.append_column(PART, pa.array([part.index] * table.num_rows, pa.int32()))
    return table.append_column(MP3_NAME, pa.array(names, pa.string()))


Reader = Callable[[OpenedPart, int, int, int], Iterator[tuple[int, pa.Table]]]


def _read_parquet(part: OpenedPart, start: int, stop: int, block_bytes: int) -> Iterator[tuple[int, pa.Table]]:
    """Rows ``[start, stop)`` of a parquet file, row group by row group, never a whole column chunk."""
    parquet = pq.ParquetFile(part.paths[0], buffer_size=STREAM_BUFFER_BYTES, pre_buffer=False)
    group_start = 0
    for group in range(parquet.metadata.num_row_groups):
        meta = parquet.metadata.row_group(group)
        lo, hi = max(start, group_start), min(stop, group_start + meta.num_rows)
        if lo < hi:
            row_bytes = max(1, meta.total_byte_size // max(1, meta.num_rows))
            block_rows = max(1, min(hi - lo, block_bytes // row_bytes))
            batch_rows = min(block_rows, SKIP_BATCH_ROWS) if lo > group_start else block_rows
            position = group_start  # the part's rows decoded so far
            pieces: list[pa.RecordBatch] = []
            for batch in parquet.iter_batches(batch_size=batch_rows, row_groups=[group], use_threads=False):
                first, position = position, position + batch.num_rows
                if position <= lo:
                    continue
                a, b = max(first, lo), min(position, hi)
                pieces.append(batch.slice(a - first, b - a))
                held = sum(p.num_rows for p in pieces)
                if held >= block_rows or b >= hi:
                    yield b - held, pa.Table.from_batches(pieces, schema=parquet.schema_arrow)
                    pieces = []
                if b >= hi:
                    break
        group_start += meta.num_rows
        if group_start >= stop:
            return


def _read_webdataset(part: OpenedPart, start: int, stop: int, block_bytes: int) -> Iterator[tuple[int, pa.Table]]:
    """Samples ``[start, stop)`` of a shard; the members of the samples before them are passed over unread."""
    columns = part.shape.columns
    rows: list[dict[str, Any]] = []
    held = 0
    first = start
    for n, (key, members) in enumerate(_tar_samples(Path(part.paths[0]), read=True, first=start, stop=stop)):
        row: dict[str, Any] = dict.fromkeys(columns)
        row["__key__"] = key
        for extension, (name, data) in members.items():
            if extension in row:
                row[extension] = _member_value(extension, data, name)
                held += len(data)
        rows.append(row)
        if held >= block_bytes or start + n + 1 >= stop:
            yield first, _webdataset_table(rows, columns)
            first, rows, held = start + n + 1, [], 0
    if rows:
        yield first, _webdataset_table(rows, columns)


def _webdataset_table(rows: list[dict[str, Any]], columns: Sequence[str]) -> pa.Table:
    types = {c: pa.string() if c == "__key__" else _member_type(c) for c in columns}
    return pa.table({c: pa.array([r[c] for r in rows], types[c]) for c in columns})


def _member_type(extension: str) -> pa.DataType:
    kind = _member_kind(extension)
    return AUDIO_TYPE if kind == "Audio" else pa.null() if kind == "null" else pa.string()


def _member_value(extension: str, data: bytes, name: str) -> Any:
    kind = _member_kind(extension)
    if kind == "Audio":
        return {"bytes": data, "path": name}
    return data.decode("utf-8") if kind in ("string", "json") else None


def _tar_samples(path: Path, *, read: bool, first: int = 0, stop: int | None = None
                 ) -> Iterator[tuple[str, dict[str, tuple[str, bytes]]]]:
    """A shard's samples ``[first, stop)`` in order: (key, extension -> (member name, bytes)); bytes only when
    ``read`` and only for the samples asked for (the others' members are passed over by the tar reader)."""
    with tarfile.open(path, mode="r:*") as archive:
        key: str | None = None
        members: dict[str, tuple[str, bytes]] = {}
        n = -1
        for member in archive:
            if not member.isfile():
                continue
            base = PurePosixPath(member.name)
            stem, _, extension = base.name.partition(".")
            member_key = str(base.parent / stem)
            if member_key != key:
                if key is not None and n >= first:
                    yield key, members
                n += 1
                if stop is not None and n >= stop:
                    return
                key, members = member_key, {}
            if read and n >= first:
                data = archive.extractfile(member)
                assert data is not None
                members[extension.lower()] = (member.name, data.read())
        if key is not None and n >= first:
            yield key, members


def _webdataset_columns(path: Path) -> list[str]:
    """``__key__`` and the extensions of a shard's members, in the order they first appear."""
    columns = {"__key__": None}
    with tarfile.open(path, mode="r:*") as archive:
        for member in archive:
            if member.isfile():
                columns[PurePosixPath(member.name).name.partition(".")[2].lower()] = None
    return list(columns)


def _read_audiofolder(part: OpenedPart, start: int, stop: int, block_bytes: int) -> Iterator[tuple[int, pa.Table]]:
    position = start
    while position < stop:
        end, held = position, 0
        while end < stop and (end == position or held < block_bytes):
            held += Path(part.paths[end]).stat().st_size
            end += 1
        data = [Path(p).read_bytes() for p in part.paths[position:end]]
        metadata = part.metadata.slice(position, end - position) if part.metadata is not None else None
        yield position, _audiofolder_table(part.names[position:end], data, metadata)
        position = end


def _audiofolder_table(names: Sequence[str], data: Sequence[bytes], metadata: pa.Table | None) -> pa.Table:
    audio = pa.array([{"bytes": d, "path": n} for d, n in zip(data, names, strict=True)], AUDIO_TYPE)
    table = pa.table({"audio": audio})
    for name in metadata.column_names if metadata is not None else []:
        table = table.append_column(name, metadata.column(name))
    return table


def _audiofolder_metadata(paths: Sequence[Path], names: Sequence[str]) -> tuple[pa.Table, dict[str, int]]:
    """Every metadata row of the folder (``file_name`` made the audio file's repository path) and the index by it."""
    tables = []
    for path, name in zip(paths, names, strict=True):
        table = _read_metadata(path)
        if "file_name" not in table.column_names:
            continue
        base = PurePosixPath(name).parent
        files = [str(base / f) if isinstance(f, str) else None for f in table.column("file_name").to_pylist()]
        tables.append(table.set_column(table.schema.get_field_index("file_name"), "file_name", pa.array(files)))
    if not tables:
        return pa.table({"file_name": pa.array([], pa.string())}), {}
    table = pa.concat_tables(tables, promote_options="default")
    return table, {f: i for i, f in enumerate(table.column("file_name").to_pylist()) if f is not None}


def _read_metadata(path: Path) -> pa.Table:
    if path.name.endswith(".csv"):
        return pyarrow.csv.read_csv(path)
    if path.name.endswith(".jsonl"):
        return pa.Table.from_pylist([json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()
                                     if line.strip()])
    return read_parquet(path)


def _read_tabular_slice(part: OpenedPart, start: int, stop: int, block_bytes: int
                        ) -> Iterator[tuple[int, pa.Table]]:
    table = _read_tabular(part.shape.format, Path(part.paths[0])).slice(start, stop - start)
    row_bytes = max(1, table.nbytes // max(1, table.num_rows))
    step = max(1, block_bytes // row_bytes)
    for offset in range(0, table.num_rows, step):
        yield start + offset, table.slice(offset, step)


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


_READERS: dict[str, Reader] = {"parquet": _read_parquet, "webdataset": _read_webdataset,
                               "audiofolder": _read_audiofolder, "arrow": _read_tabular_slice,
                               "csv": _read_tabular_slice, "json": _read_tabular_slice}


def _compressed_shard(format: str, path: str) -> bool:
    """A WebDataset shard that is not a plain tar: reaching a slice of it would decompress everything before."""
    return format == "webdataset" and not path.endswith(".tar")


def _extension(name: str) -> str:
    suffix = PurePosixPath(name).suffix
    return suffix[1:].lower() if suffix else ""


def names_files(paths: Sequence[Path], audio_column: str | None) -> bool:
    """Whether a row of these files may hold its audio as a ``path`` into the dataset's files rather than as bytes,
    told from the footers alone: the null count of ``<audio>.bytes`` in every row group (no statistics: maybe)."""
    if audio_column is None:
        return False
    for path in paths:
        metadata = pq.ParquetFile(path).metadata
        columns = [metadata.schema.column(i).path for i in range(metadata.num_columns)]
        if f"{audio_column}.bytes" not in columns:
            continue
        index = columns.index(f"{audio_column}.bytes")
        for group in range(metadata.num_row_groups):
            stats = metadata.row_group(group).column(index).statistics
            if stats is None or not stats.has_null_count or stats.null_count > 0:
                return True
    return False


def json_columns(shape: SplitShape) -> frozenset[str]:
    """Columns a read carries as JSON text, which the converter parses into the row."""
    return frozenset(c for c in shape.columns if _member_kind(c) == "json")
