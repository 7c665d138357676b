"""Dataset directory names: ``org__dataset__subset_X__split_Y__rev_Z`` (subset part omitted when none).

Names are deterministic and injective: two different dataset references never share a directory.

A component (org, name, subset, split, revision) is *clean* when it is made of ``[A-Za-z0-9._-]`` and single
underscores, and neither starts nor ends with ``_``; then splitting the directory name on ``__`` gives the
components back, so clean names cannot collide. Any other component (a ``__`` inside, a ``/`` in a branch
name, spaces, unicode, excess length) is rendered as ``<sanitised>+<hash>``, where the hash covers the
original component; clean components never contain ``+``, so the two forms cannot collide either.

Local ``path`` requests render as ``local__<stem>+<hash of the resolved path>__...``.
"""

from __future__ import annotations

import hashlib
import os
import re

from hugflow_ray.spec import DatasetRef

MAX_COMPONENT_LENGTH = 80
HASH_LENGTH = 12
LOCAL_ORG = "local"

_CLEAN = re.compile(r"[A-Za-z0-9.-]+(?:_[A-Za-z0-9.-]+)*")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:HASH_LENGTH]


def _component(value: str) -> str:
    if _CLEAN.fullmatch(value) and len(value) <= MAX_COMPONENT_LENGTH and value not in (".", ".."):
        return value
    sanitised = _UNSAFE.sub("-", value).replace("__", "_").strip("_.-")[: MAX_COMPONENT_LENGTH - HASH_LENGTH - 1]
    return f"{sanitised}+{_digest(value)}"


def dataset_dir_name(ref: DatasetRef) -> str:
    """The directory name of a dataset copy under ``STORAGE_ROOT``."""
    if ref.hf_id is not None:
        org, name = ref.hf_id.split("/")
        parts = [_component(org), _component(name)]
        revision: str | None = ref.revision
    else:
        assert ref.path is not None
        resolved = os.path.abspath(ref.path)
        stem = _UNSAFE.sub("-", os.path.basename(resolved.rstrip(os.sep)).rsplit(".parquet", 1)[0]).strip("_.-")
        parts = [LOCAL_ORG, f"{stem[: MAX_COMPONENT_LENGTH - HASH_LENGTH - 1]}+{_digest(resolved)}"]
        revision = None
    if ref.subset is not None:
        parts.append(f"subset_{_component(ref.subset)}")
    parts.append(f"split_{_component(ref.split)}")
    if revision is not None:
        parts.append(f"rev_{_component(revision)}")
    return "__".join(parts)
