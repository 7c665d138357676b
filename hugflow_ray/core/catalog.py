"""The curated catalog: a YAML file in the repository (``catalog.yaml``) listing datasets with their source,
licence, expected size, tier and priority, read as strictly as a request.

A catalog looks like::

    tiers: [minimal, balanced, comprehensive]   # cumulative, smallest first
    datasets:
      - name: speech-small                      # the entry's name (and a URL source's directory name)
        description: Read speech for the TTS baseline.
        licence: CC-BY-4.0                      # an SPDX id
        tier: minimal
        priority: 1                             # 1 comes first
        size_gb: 2.6                            # expected size on disk, for the budget
        data: audio                             # audio: MP3 + JSON as a request; files: kept as they are
        source:
          hf_id: org/speech                     # a Hub source has a request's fields...
          revision: main
      - name: midi
        ...
        source:
          url: https://example.org/midi.tar.gz  # ...a URL source: url, sha256, size in bytes, archive format
          sha256: 3f0c...
          size: 12345
          archive: tar.gz                       # tar, tar.gz, zip or none
          directory: midi                       # optional: the part of the archive to read

The records here are pure; :func:`load_catalog` and :func:`parse_catalog` read the YAML.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from hugflow_ray.core.request import DEFAULT_AUDIO_COLUMN, DEFAULT_TEXT_COLUMN, HubRef

GB = 1000**3  # sizes in the catalog and MAX_STORAGE_GB are decimal gigabytes, as the Hub and disk vendors count


class DataKind(StrEnum):
    """What a sync does with an entry's data."""

    AUDIO = "audio"  # every row -> MP3 + JSON, as a request
    FILES = "files"  # the files kept as they are (MIDI, scores, text): copied, checksummed, verified


class ArchiveFormat(StrEnum):
    """How a URL source is packed."""

    NONE = "none"  # a single file (a parquet file, a MIDI file...)
    TAR = "tar"
    TAR_GZ = "tar.gz"
    ZIP = "zip"


@dataclass(frozen=True)
class UrlSource:
    """A dataset downloaded from a plain URL, verified against its size and sha256 before anything reads it.

    Attributes:
        url: http(s) URL.
        sha256: the file's checksum, 64 lowercase hex digits.
        size: the file's size in bytes.
        archive: how the file is packed.
        directory: the directory inside the (extracted) archive to read, relative; None: all of it.
    """

    url: str
    sha256: str
    size: int
    archive: ArchiveFormat = ArchiveFormat.NONE
    directory: str | None = None

    @property
    def source(self) -> str:
        """The source as a user would name it."""
        return self.url


CatalogSource = HubRef | UrlSource


@dataclass(frozen=True)
class CatalogEntry:
    """One dataset of the catalog.

    Attributes:
        name: unique in the catalog; lowercase letters, digits, '-' and '_'.
        licence: an SPDX licence id as written in the catalog.
        licence_override: the recorded reason an entry outside the licence policy is brought in anyway.
        size_bytes: the expected size on disk (``size_gb`` in the file), for the budget.
        tier: the smallest tier that includes the entry (tiers are cumulative).
        priority: 1 comes first; entries of equal priority keep their order in the file.
        data: audio (MP3 + JSON) or files kept as they are.
        line: the entry's line in the catalog file, for messages.
    """

    name: str
    description: str
    source: CatalogSource
    licence: str
    size_bytes: int
    tier: str
    priority: int
    data: DataKind = DataKind.AUDIO
    licence_override: str | None = None
    audio_column: str = DEFAULT_AUDIO_COLUMN
    text_column: str = DEFAULT_TEXT_COLUMN
    audio_column_explicit: bool = False
    text_column_explicit: bool = False
    line: int | None = None


@dataclass(frozen=True)
class Catalog:
    """A catalog file: its tiers (smallest first, each including the ones before it) and its entries in file
    order."""

    tiers: tuple[str, ...]
    entries: tuple[CatalogEntry, ...]
    path: Path | None = None

    def tier_entries(self, tier: str) -> list[CatalogEntry]:
        """The entries a tier brings in (its own and every smaller tier's), highest priority first.

        Raises:
            KeyError: no such tier.
        """
        rank = self.tiers.index(tier) if tier in self.tiers else None
        if rank is None:
            raise KeyError(tier)
        included = set(self.tiers[: rank + 1])
        chosen = [(e.priority, i, e) for i, e in enumerate(self.entries) if e.tier in included]
        return [e for _, _, e in sorted(chosen, key=lambda t: (t[0], t[1]))]

    def entry(self, name: str) -> CatalogEntry | None:
        """The entry called ``name``, or None."""
        return next((e for e in self.entries if e.name == name), None)
