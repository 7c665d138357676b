"""Incremental re-sync: a copy synced again at a new commit takes the rows of its unchanged files from the old copy.

A copy complete at one commit whose request now resolves to another (the Hub moved) is not made again from nothing.
Its next version is built under ``STORAGE_ROOT/.next/<name>`` while the copy itself stays whole and readable. A part
of the new split whose files are the old commit's, byte for byte (the same path and the same sha256 or git blob id),
read with the same columns and encoder settings, is neither downloaded nor converted: its rows are taken over from
the old copy. Only changed and new parts are converted; the rows of removed parts are left out.

Taking a row over gives exactly what converting it again would:

- its MP3 is the same bytes (the same audio, the same encoder settings): a hard link to the old copy's, checked
  against the old ledger's checksum first;
- ids are positions in the split: its id becomes the new first id of its part plus its place in the part. Names are
  decided within a part, so its MP3 keeps its basename in the new part's folder, renumbered where the name carries
  its id (:func:`~hugflow_ray.core.naming.moved_mp3_path`);
- its JSON is the old one with ``row_id`` and ``audio`` set to the new id and path, written canonically (the bytes a
  conversion writes); where that leaves its bytes as they were (its id and folder did not move), a hard link to the
  old one, as the MP3 is. Its ledger record is the old one with the new id, paths and JSON checksum.

A part holding a row error, or a row longer than ``MAX_AUDIO_SECONDS`` now allows, is converted again (a codec fix
or another limit may change it). When the next version is complete it takes the copy's place in one atomic swap (the
processed link's path never changes); the old copy is then deleted, or kept under ``STORAGE_ROOT/.previous/`` with
``KEEP_PREVIOUS_COPY``. The build resumes as any sync does, from its own ledger. Its ``.hugflow/replaces.json`` names
the commit it replaces: what stands under ``.next/`` without it is an old copy a swap left there, and goes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.compute as pc

from hugflow_ray.adapters.hub import Hub, RepoSnapshot
from hugflow_ray.copies.batches import table_to_records
from hugflow_ray.copies.layout import CopyLayout, StoreLayout
from hugflow_ray.copies.ledger import Ledger, LedgerDamagedError
from hugflow_ray.copies.part_rows import PartRows
from hugflow_ray.copies.status import read_status_or_none
from hugflow_ray.copies.verify import file_sha256
from hugflow_ray.core import naming, sidecar
from hugflow_ray.core.plan import Plan, SourceFile
from hugflow_ray.core.records import DatasetState, RowColumn, RowRecord, RowStatus
from hugflow_ray.core.request import HubRef
from hugflow_ray.errors import HugflowError, SyncError
from hugflow_ray.pipeline.readers.parts import Part, cut_parts
from hugflow_ray.utils import atomic
from hugflow_ray.utils.safe_paths import UnsafePathError, inside, read_small

log = logging.getLogger(__name__)

MOVES_WITH_THE_COMMIT = frozenset({"sha", "files_sha", "files"})  # the fingerprint's keys a new commit changes
SETTLED_LATER = frozenset({"audio_column", "text_column"})  # not parquet: chosen once the first part is read
REPLACES_FILE = "replaces.json"
TAKE_ROWS = 4096  # rows taken over per batch: their files made durable together, then one ledger part
MAX_JSON_BYTES = 64 << 20


def replaced_sha(copy_dir: Path, fingerprint: dict[str, Any]) -> str | None:
    """The commit of the copy at ``copy_dir`` when a sync with ``fingerprint`` should build its next version beside it
    (it is complete at another commit of the same source, subset and split, with the same settings); else None."""
    status = read_status_or_none(copy_dir)
    if status is None or status.state is not DatasetState.COMPLETE or fingerprint.get("sha") is None:
        return None
    try:
        recorded = Ledger(copy_dir).recorded_fingerprint()
    except LedgerDamagedError:
        return None
    if recorded is None or recorded.get("sha") in (None, fingerprint["sha"]):
        return None
    stable = {*recorded, *fingerprint} - MOVES_WITH_THE_COMMIT - SETTLED_LATER
    return recorded["sha"] if all(recorded.get(k) == fingerprint.get(k) for k in stable) else None


def begin(store: StoreLayout, name: str, old_sha: str, fingerprint: dict[str, Any]) -> Path:
    """The folder the next version of copy ``name`` is built in, marked as replacing ``old_sha``; a build of another
    commit or with other settings left there is discarded first (it never was anyone's copy)."""
    layout = store.next_copy(name)
    marker = layout.state / REPLACES_FILE
    if layout.root.is_dir():
        try:
            same = Ledger(layout.root).recorded_fingerprint() == fingerprint and _replaces(marker) == old_sha
        except LedgerDamagedError:
            same = False
        if not same:
            log.info("%s: discarding an unfinished build of another version", layout.root)
            shutil.rmtree(layout.root)
    layout.state.mkdir(parents=True, exist_ok=True)
    if _replaces(marker) != old_sha:
        atomic.write_json(marker, {"sha": old_sha})
    return layout.root


def settle(store: StoreLayout, name: str, *, keep: bool) -> None:
    """Finish a swap cut short: what stands at ``.next/<name>`` without the mark of a build is an old copy the swap
    put there, deleted (or kept, ``keep``) as after any swap. Call under the copy's lock."""
    layout = store.next_copy(name)
    if layout.root.is_dir() and _replaces(layout.state / REPLACES_FILE) is None:
        _retire(store, name, layout.root, keep=keep)


def replace(store: StoreLayout, name: str, *, keep: bool) -> Path:
    """The complete next version takes the copy's place (one atomic swap); the old copy goes (or is kept, ``keep``).
    Returns the copy's directory. Call under the copy's lock."""
    built, copy = store.next_copy(name), store.copy(name)
    atomic.exchange(built.root, copy.root)
    (copy.state / REPLACES_FILE).unlink(missing_ok=True)  # from here on, .next/<name> is the old copy
    _retire(store, name, built.root, keep=keep)
    with contextlib.suppress(OSError):  # another copy's next version is being built there
        built.root.parent.rmdir()
    return copy.root


def _retire(store: StoreLayout, name: str, old: Path, *, keep: bool) -> None:
    if not keep:
        shutil.rmtree(old)
        return
    status = read_status_or_none(old)
    kept = store.previous_copy(name, status.identity.sha if status else None)
    kept.parent.mkdir(parents=True, exist_ok=True)
    if kept.exists():
        shutil.rmtree(kept)
    old.rename(kept)
    log.info("%s: the copy it replaced is kept at %s (KEEP_PREVIOUS_COPY)", name, kept)


def _replaces(marker: Path) -> str | None:
    try:
        data = read_small(marker, 4096)
        return json.loads(data)["sha"] if data else None
    except (OSError, ValueError, KeyError, TypeError):
        return None


def old_files(plan: Plan, old_dir: Path, hub: Hub | None) -> list[SourceFile] | None:
    """The files the old copy was made from, as its ledger's fingerprint names them, with their checksums at its
    commit (one Hub call: nothing is downloaded); None when the Hub cannot say (the commit is gone): then nothing is
    taken over and every row is converted."""
    ref = plan.request.dataset
    try:
        recorded = Ledger(old_dir).recorded_fingerprint() or {}
    except LedgerDamagedError:
        return None
    names, commit = recorded.get("files"), recorded.get("files_sha") or recorded.get("sha")
    if hub is None or not isinstance(ref, HubRef) or not isinstance(names, list) or not isinstance(commit, str):
        return None
    try:
        checksums = hub.file_metadata(RepoSnapshot(ref.hf_id, commit, commit))
    except HugflowError as e:
        log.warning("%s: the files of the copy's commit %s cannot be listed (%s); every row is converted again",
                    plan.identity.name, commit[:12], e)
        return None
    return [SourceFile(path=name, **checksums.get(name, {})) for name in names]


@dataclass(frozen=True)
class TakenPart:
    """A part of the new split whose rows come from the old copy's part ``old_index`` (ids from ``old_first``)."""

    index: int
    old_index: int
    old_first: int
    rows: int


def taken_parts(old_dir: Path, old: list[SourceFile] | None, plan: Plan, parts: Sequence[Part],
                metadata: Sequence[int], *, max_seconds: float | None) -> dict[int, TakenPart]:
    """The parts of the new split (``parts``, ``metadata``) whose rows the old copy at ``old_dir``, made from the
    files ``old`` (:func:`old_files`), gives, by index. Its files are read as the new split's layout reads them: a
    split whose layout changed has no file in common with it."""
    try:
        recorded = Ledger(old_dir).recorded_fingerprint() or {}
    except LedgerDamagedError:
        return {}
    if old is None or any(recorded.get(k) != getattr(plan, k) for k in SETTLED_LATER):
        return {}
    names = [f.path for f in old]
    try:
        old_parts, old_metadata = cut_parts(plan.format, names, [f.size for f in old])
    except HugflowError:
        return {}  # the old files are no split of this layout
    new_key = _keys(plan.file_names(), plan.files)
    old_key = _keys(names, old)
    if [old_key[i] for i in old_metadata] != [new_key[i] for i in metadata] or None in (new_key[i] for i in metadata):
        return {}  # an audio folder's rows take columns from its metadata files
    if plan.format == "webdataset" and _part_key(old_parts[0], old_key) != _part_key(parts[0], new_key):
        return {}  # a WebDataset's rows have its first shard's columns
    counts = PartRows(old_dir).read([[names[i] for i in p.files] for p in old_parts])
    table = Ledger(old_dir).read([RowColumn.ROW_ID, RowColumn.STATUS, RowColumn.DURATION])
    ids = table.column(RowColumn.ROW_ID).to_numpy()
    ok = pc.equal(table.column(RowColumn.STATUS), RowStatus.OK.value).to_numpy(zero_copy_only=False)
    durations = pc.fill_null(table.column(RowColumn.DURATION), 0.0).to_numpy()
    too_long = durations > max_seconds if max_seconds is not None else np.zeros(len(ids), dtype=bool)
    clean: dict[tuple[Any, ...], tuple[int, int, int]] = {}
    first = 0
    for part in old_parts:
        rows = counts.get(part.index, part.rows)
        if rows is None:
            break  # ids are positions: without this part's count, no later part's ids are known
        lo, hi = np.searchsorted(ids, [first, first + rows])
        key = _part_key(part, old_key)
        if key is not None and hi - lo == rows and ok[lo:hi].all() and not too_long[lo:hi].any():
            clean.setdefault(key, (part.index, first, rows))
        first += rows
    taken = {}
    for part in parts:
        if (match := clean.get(_part_key(part, new_key))) is not None:  # type: ignore[arg-type]
            taken[part.index] = TakenPart(part.index, *match)
    return taken


def _keys(names: Sequence[str], files: Sequence[SourceFile]) -> list[tuple[str, str] | None]:
    """Each file's identity: its path and its checksum (None when the Hub gave neither sha256 nor blob id)."""
    return [_key(name, f) for name, f in zip(names, files, strict=True)]


def _key(name: str, file: SourceFile) -> tuple[str, str] | None:
    checksum = file.sha256 or file.blob_id
    return (name, checksum) if checksum else None


def _part_key(part: Part, keys: list[tuple[str, str] | None]) -> tuple[Any, ...] | None:
    key = tuple(keys[i] for i in part.files)
    return None if None in key else key


class OldRows:
    """The old copy's rows, taken over part by part into the new copy (see the module docstring)."""

    def __init__(self, old_dir: Path, name: str) -> None:
        self.old = CopyLayout(old_dir)
        self.name = name
        self._ledger = Ledger(old_dir)
        self._table: Any = None
        self._known: set[str] = set()

    def take(self, part: TakenPart, first: int, new_dir: Path, finished: np.ndarray) -> np.ndarray:
        """Give the new copy at ``new_dir`` the rows of ``part`` that ``finished`` (sorted ids) lacks, with ids from
        ``first``; returns their new ids. Each batch's files are durable before its ledger part is written.

        Raises:
            SyncError: a file of the old copy is missing or damaged (its rows cannot be taken over).
        """
        if self._table is None:
            self._table = self._ledger.read()
        ids = self._table.column(RowColumn.ROW_ID).to_numpy()
        lo, hi = np.searchsorted(ids, [part.old_first, part.old_first + part.rows])
        records = table_to_records(self._table.slice(lo, hi - lo))
        new = CopyLayout(new_dir)
        ledger = Ledger(new_dir)
        taken: list[int] = []
        for start in range(0, len(records), TAKE_ROWS):
            links, files, made = [], [], []
            for record in records[start:start + TAKE_ROWS]:
                new_id = first + record.row_id - part.old_first
                at = np.searchsorted(finished, new_id)
                if at < len(finished) and finished[at] == new_id:
                    continue
                moved, mp3 = self._moved(record, part.index, new_id)
                if mp3 is not None:
                    links.append((mp3, new_dir / moved.audio_file))  # type: ignore[operator]
                old_json, data = self._json(record)
                if record.json_sha256 is None or (new_id, moved.audio_file) != (record.row_id, record.audio_file):
                    data = self._renamed(data, new_id, moved.audio_file)
                    files.append((new_dir / naming.json_file(new_id), data))
                    moved = dataclasses.replace(moved, json_sha256=hashlib.sha256(data).hexdigest())
                else:  # neither its id nor its MP3 moved: the same bytes, and a link costs far less than a new file
                    links.append((old_json, new_dir / naming.json_file(new_id)))
                made.append(moved)
            if not made:
                continue
            for folder in {path.parent for _, path in links} | {new.json}:
                folder.mkdir(parents=True, exist_ok=True)
            atomic.link_many(links, root=new_dir)
            atomic.write_many(files, root=new_dir)
            ledger.append(made)
            taken.extend(r.row_id for r in made)
        return np.array(taken, dtype=np.int64)

    def _moved(self, record: RowRecord, part: int, new_id: int) -> tuple[RowRecord, Path | None]:
        """The record at its new place, and the old MP3 (checked against its checksum) to link there."""
        moved = dataclasses.replace(record, row_id=new_id, json_file=naming.json_file(new_id))
        if record.audio_file is None:
            return moved, None
        path = self._inside(record.audio_file)
        if file_sha256(path)[0] != record.sha256:
            raise self._damaged(record.audio_file)
        return dataclasses.replace(moved, audio_file=naming.moved_mp3_path(record.audio_file, part, record.row_id,
                                                                           new_id)), path

    @staticmethod
    def _renamed(data: bytes, row_id: int, audio_file: str | None) -> bytes:
        """A row's JSON with its new id and MP3 path, canonical (the bytes a conversion writes)."""
        document = json.loads(data)
        document[RowColumn.ROW_ID] = row_id
        if document.get(sidecar.AUDIO_KEY) is not None:
            document[sidecar.AUDIO_KEY] = audio_file
        return atomic.json_bytes(document)

    def _json(self, record: RowRecord) -> tuple[Path, bytes]:
        """The old JSON's path and bytes, checked against its checksum."""
        if record.json_file is None:
            raise self._damaged(f"the JSON of row {record.row_id}")
        path = self._inside(record.json_file)
        try:
            data = read_small(path, MAX_JSON_BYTES)
        except (OSError, UnsafePathError):
            data = None
        if data is None or (record.json_sha256 is not None and hashlib.sha256(data).hexdigest() != record.json_sha256):
            raise self._damaged(record.json_file)
        return path, data

    def _inside(self, relative: str) -> Path:
        try:
            return inside(self.old.root, relative, known=self._known)
        except UnsafePathError:
            raise self._damaged(relative) from None

    def _damaged(self, what: str) -> SyncError:
        return SyncError(f"{self.name}: {what} of the copy being updated is missing or damaged, so its rows cannot be "
                         f"taken over: run `hugflow verify {self.name} --repair`, then sync again (or sync with "
                         "--restart to convert every row)")
