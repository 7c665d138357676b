"""Where a copy's files and its state live."""

from __future__ import annotations

from pathlib import Path


def progress_path(state_dir: Path, dataset_name: str) -> Path:
    return state_dir / "progress" / f"{dataset_name}.json"
