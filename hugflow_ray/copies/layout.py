"""Where a copy's files and its state live: the one place that spells a path under ``STORAGE_ROOT``,
``STATE_DIR`` or ``PROCESSED_ROOT``.

A copy (``STORAGE_ROOT/<name>/``) holds what its users read (``audio/``, ``json/``, the manifests; a kept copy's
``files/``) and its own state under ``.hugflow/`` (the ledger, the status, the parts' row counts, a kept copy's
index, the downloads in flight). A copy's next version (a new commit) is built under ``STORAGE_ROOT/.next/`` and
then takes its place; one replaced can be kept under ``STORAGE_ROOT/.previous/``. The run state of the whole store (locks, progress files, staged rows, the PR
workflow's scratch space) lives under ``STATE_DIR``; the processed links under ``PROCESSED_ROOT``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from hugflow_ray.core import naming

if TYPE_CHECKING:
    from hugflow_ray.settings import Settings

STATE = ".hugflow"  # a copy's own state, beside what its users read
MANIFEST_PARQUET = "manifest.parquet"
MANIFEST_JSONL = "manifest.jsonl"
STATUS_FILE = "status.json"
PART_ROWS_FILE = "part_rows.jsonl"
LEDGER_DIR = "ledger"
LEDGER_META = "meta.json"
SOURCES_DIR = "sources"  # a Hub dataset's downloaded files, until their rows are in the ledger
FILES_DIR = "files"  # a kept copy's files, as the source holds them
FILES_INDEX = "files.parquet"  # a kept copy's index: every file's path, size and sha256
URL_SOURCES = ".sources"  # under STORAGE_ROOT: a catalog URL source's verified downloads, until its copy is complete
NEXT_COPIES = ".next"  # under STORAGE_ROOT: a copy's next version (a new commit), built beside it until complete
PREVIOUS_COPIES = ".previous"  # under STORAGE_ROOT: copies replaced by their next version, kept (KEEP_PREVIOUS_COPY)
LOCKS_DIR = "locks"  # under STATE_DIR
PROGRESS_DIR = "progress"  # under STATE_DIR


@dataclass(frozen=True)
class CopyLayout:
    """Every path of one dataset copy."""

    root: Path

    @property
    def audio(self) -> Path:
        return self.root / naming.AUDIO_DIR

    @property
    def json(self) -> Path:
        return self.root / naming.JSON_DIR

    @property
    def files(self) -> Path:
        return self.root / FILES_DIR

    @property
    def manifest_parquet(self) -> Path:
        return self.root / MANIFEST_PARQUET

    @property
    def manifest_jsonl(self) -> Path:
        return self.root / MANIFEST_JSONL

    @property
    def state(self) -> Path:
        return self.root / STATE

    @property
    def ledger(self) -> Path:
        return self.state / LEDGER_DIR

    @property
    def ledger_meta(self) -> Path:
        """The fingerprint the ledger was opened with."""
        return self.state / LEDGER_META

    @property
    def status(self) -> Path:
        return self.state / STATUS_FILE

    @property
    def part_rows(self) -> Path:
        return self.state / PART_ROWS_FILE

    @property
    def sources(self) -> Path:
        return self.state / SOURCES_DIR

    @property
    def files_index(self) -> Path:
        return self.state / FILES_INDEX


@dataclass(frozen=True)
class StoreLayout:
    """Where the copies and the store's run state live: the copies under ``storage_root``, locks, progress files and
    scratch space under ``state_dir``, the processed links under ``processed_root``."""

    storage_root: Path
    state_dir: Path
    processed_root: Path

    @classmethod
    def of(cls, settings: Settings) -> StoreLayout:
        return cls(settings.storage_root, settings.state_dir, settings.processed_root)

    def copy(self, name: str) -> CopyLayout:
        return CopyLayout(self.storage_root / name)

    def next_copy(self, name: str) -> CopyLayout:
        """Where the copy ``name`` at a new commit is built while the copy itself stays whole (an incremental
        re-sync); it takes the copy's place when complete."""
        return CopyLayout(self.storage_root / NEXT_COPIES / name)

    def previous_copy(self, name: str, sha: str | None) -> Path:
        """Where a copy replaced by its next version is kept, named after its commit."""
        return self.storage_root / PREVIOUS_COPIES / f"{name}@{(sha or 'unknown')[:12]}"

    def previous_copies(self, name: str) -> list[Path]:
        """The kept copies of ``name`` (:meth:`previous_copy`), one per commit an update replaced."""
        folder = self.storage_root / PREVIOUS_COPIES
        return sorted(p for p in folder.iterdir() if p.name.rpartition("@")[0] == name) if folder.is_dir() else []

    def url_source(self, entry: str) -> Path:
        """A catalog URL source's working folder (its downloads, its extraction), until its copy is complete."""
        return self.storage_root / URL_SOURCES / entry

    def progress(self, name: str) -> Path:
        return progress_path(self.state_dir, name)

    def processed_link(self, name: str) -> Path:
        return self.processed_root / name

    @property
    def locks(self) -> Path:
        return self.state_dir / LOCKS_DIR

    @property
    def progress_files(self) -> Path:
        return self.state_dir / PROGRESS_DIR

    def incoming(self, stem: str) -> Path:
        """Rows handed in through the Python API, staged as a dataset of their own."""
        return self.state_dir / "incoming" / stem

    def ci_run(self, pr: int, head_sha: str) -> Path:
        """The PR workflow's scratch space for one run of one pull request's head commit."""
        return self.state_dir / "ci" / f"pr-{pr}" / head_sha[:12]


def progress_path(state_dir: Path, dataset_name: str) -> Path:
    return state_dir / PROGRESS_DIR / f"{dataset_name}.json"


def lock_path(state_dir: Path, dataset_name: str) -> Path:
    return state_dir / LOCKS_DIR / f"{dataset_name}.lock"
