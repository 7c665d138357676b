"""What more than one test module needs that is neither a server nor a dataset: comparing trees, reading a ledger's
raw parts, loading a benchmark script as a module."""

from __future__ import annotations

import hashlib
import importlib.util
import sys
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]


def digest_tree(dataset_dir: Path) -> dict[str, str]:
    """sha256 of every output file of a copy (its own bookkeeping under .hugflow/ excluded)."""
    return {
        str(p.relative_to(dataset_dir)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(dataset_dir.rglob("*"))
        if p.is_file() and ".hugflow" not in p.relative_to(dataset_dir).parts
    }


def raw_ledger_ids(dataset_dir: Path) -> list[int]:
    """Every row id the copy's ledger parts hold, as stored (a row in two parts twice)."""
    parts = sorted((dataset_dir / ".hugflow" / "ledger").glob("part-*.parquet"))
    return pa.concat_tables([pq.read_table(p, columns=["row_id"]) for p in parts]).column("row_id").to_pylist()


def load_benchmark(name: str) -> Any:
    """``benchmarks/<name>.py`` as a module (the benchmarks are scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module
