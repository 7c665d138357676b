"""Names on disk, pure: dataset directories and the MP3 file of each row.

Dataset directories: ``org__dataset__subset_X__split_Y__rev_Z`` (subset part omitted when none).

Names are deterministic and injective: two different dataset references never share a directory.

A component (org, name, subset, split, revision) is *clean* when it is made of ``[A-Za-z0-9._-]`` and single
underscores, and neither starts nor ends with ``_``; then splitting the directory name on ``__`` gives the
components back, so clean names cannot collide. Any other component (a ``__`` inside, a ``/`` in a branch
name, spaces, unicode, excess length) is rendered as ``<sanitised>+<hash>``, where the hash covers the
original component; clean components never contain ``+``, so the two forms cannot collide either.

Local ``path`` requests render as ``local__<stem>+<hash of the resolved path>__...``.

MP3 names come from the ``audio_filename`` column when present, else the source audio path's stem, else the
row id. They are basenames in ``[A-Za-z0-9._-]``, capped in length, in a folder per part of the split (a source
file: ``audio/<part>/``), so that a row's name never waits for the rows of files not yet downloaded. A name
shared by several rows of the part (compared case-insensitively, for case-insensitive filesystems) is
disambiguated as ``<stem>+<row id>``; since clean stems never contain ``+``, disambiguated names cannot collide
with plain ones, and the same dataset always yields the same names whatever the scheduling and whatever order its
files arrive in.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable

from hugflow_ray.core.request import DatasetRef, HubRef, LocalRef

MAX_COMPONENT_LENGTH = 80
HASH_LENGTH = 12
LOCAL_ORG = "local"
CATALOG_ORG = "catalog"
NAME_COLUMN = "audio_filename"
MAX_STEM_LENGTH = 120
AUDIO_DIR = "audio"
JSON_DIR = "json"

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_AUDIO_EXTENSIONS = re.compile(r"\.(mp3|wav|flac|ogg|opus|m4a|aac|webm|aiff?|au|sph)$", re.IGNORECASE)

_CLEAN = re.compile(r"[A-Za-z0-9.-]+(?:_[A-Za-z0-9.-]+)*")


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:HASH_LENGTH]


def _component(value: str) -> str:
    if _CLEAN.fullmatch(value) and len(value) <= MAX_COMPONENT_LENGTH and value not in (".", ".."):
        return value
    sanitised = _UNSAFE.sub("-", value).replace("__", "_").strip("_.-")[: MAX_COMPONENT_LENGTH - HASH_LENGTH - 1]
    return f"{sanitised}+{_digest(value)}"


def dataset_dir_name(ref: DatasetRef) -> str:
    """The directory name of a dataset copy under ``STORAGE_ROOT``."""
    revision: str | None = None
    if isinstance(ref, LocalRef) and ref.name is not None:
        return catalog_dir_name(ref.name)
    if isinstance(ref, HubRef):
        org, name = ref.hf_id.split("/")
        parts = [_component(org), _component(name)]
        revision = ref.revision
    else:
        resolved = os.path.abspath(ref.path)
        stem = _UNSAFE.sub("-", os.path.basename(resolved.rstrip(os.sep)).rsplit(".parquet", 1)[0]).strip("_.-")
        parts = [LOCAL_ORG, f"{stem[: MAX_COMPONENT_LENGTH - HASH_LENGTH - 1]}+{_digest(resolved)}"]
    if ref.subset is not None:
        parts.append(f"subset_{_component(ref.subset)}")
    parts.append(f"split_{_component(ref.split)}")
    if revision is not None:
        parts.append(f"rev_{_component(revision)}")
    return "__".join(parts)


def catalog_dir_name(entry_name: str) -> str:
    """The directory of a catalog entry's copy when its source is not a Hub dataset (a URL)."""
    return f"{CATALOG_ORG}__{_component(entry_name)}"


def is_catalog_dir_name(name: str) -> bool:
    """Whether ``name`` is a URL catalog entry's copy (``catalog__<entry>``), not a Hub copy of an org that happens
    to be called ``catalog`` (``catalog__<dataset>__split_...__rev_...``): a component never holds ``__``."""
    parts = name.split("__")
    return len(parts) == 2 and parts[0] == CATALOG_ORG


def safe_stem(value: object) -> str:
    """A filesystem-safe stem of a file name or path; empty when nothing usable is left."""
    if not isinstance(value, str):
        return ""
    base = re.split(r"[/\\]", value.replace("\x00", ""))[-1]
    base = _AUDIO_EXTENSIONS.sub("", base)
    return _UNSAFE.sub("_", base).strip("._-")[:MAX_STEM_LENGTH].rstrip("._-")


def name_candidate(filename: object, source_path: object) -> str:
    """The stem a row asks for: its ``audio_filename``, else its source path's stem."""
    return safe_stem(filename) or safe_stem(source_path)


def duplicated_stems(candidates: Iterable[str]) -> frozenset[str]:
    """The (lower-cased) stems more than one row asks for."""
    seen: set[str] = set()
    duplicated: set[str] = set()
    for stem in candidates:
        key = stem.lower()
        if key in seen:
            duplicated.add(key)
        seen.add(key)
    return frozenset(duplicated)


def mp3_name(candidate: str, row_id: int, duplicated: frozenset[str]) -> str:
    """The MP3 basename of a row (see the module docstring)."""
    if candidate and candidate.lower() not in duplicated:
        return f"{candidate}.mp3"
    return f"{candidate or 'row'}+{row_id}.mp3"


def mp3_path(part: int, name: str) -> str:
    """A row's MP3, relative to the dataset directory: its part's folder, then its basename (:func:`mp3_name`)."""
    return f"{AUDIO_DIR}/{part:05d}/{name}"


def json_file(row_id: int) -> str:
    """The sidecar JSON of a row, relative to the dataset directory."""
    return f"{JSON_DIR}/{row_id}.json"


def moved_mp3_path(audio_file: str, part: int, old_id: int, new_id: int) -> str:
    """The MP3 path a row gets when its part becomes part ``part`` and its id ``new_id`` (an incremental re-sync): the
    same basename in the new part's folder, the row id renumbered where the name carries it (``<stem>+<id>.mp3``),
    exactly the path :func:`mp3_path` gives the row at its new place (names are decided within the part)."""
    name = audio_file.rsplit("/", 1)[-1]
    stem, plus, rest = name.rpartition("+")
    if plus and rest == f"{old_id}.mp3":
        name = f"{stem}+{new_id}.mp3"
    return mp3_path(part, name)
