"""Batch writes: all files land whole, or the targets keep what they had."""

from __future__ import annotations

from pathlib import Path

import pytest

from hugflow_ray.utils import atomic


def test_a_batch_writes_every_file_whole_and_leaves_no_temp_files(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "old.mp3").write_bytes(b"old bytes")
    files = [(tmp_path / "a" / "old.mp3", b"new bytes"), (tmp_path / "a" / "1.json", b"{}\n"),
             (tmp_path / "a" / "big.mp3", bytes(range(256)) * 4096)]
    atomic.write_many(files, root=tmp_path)
    assert [path.read_bytes() for path, _ in files] == [data for _, data in files]
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["1.json", "big.mp3", "old.mp3"]


def test_a_batch_that_fails_part_way_leaves_every_target_as_it_was(tmp_path: Path) -> None:
    (tmp_path / "audio").mkdir()
    (tmp_path / "audio" / "x.mp3").write_bytes(b"old bytes")
    files = [(tmp_path / "audio" / "x.mp3", b"new bytes"), (tmp_path / "missing-dir" / "y.json", b"{}")]
    with pytest.raises(FileNotFoundError):
        atomic.write_many(files, root=tmp_path)
    assert (tmp_path / "audio" / "x.mp3").read_bytes() == b"old bytes"
    assert atomic.remove_temp_files([tmp_path / "audio"]) == 1, "the next writer clears what the failed batch left"
    assert [p.name for p in (tmp_path / "audio").iterdir()] == ["x.mp3"]


def test_an_empty_batch_writes_nothing(tmp_path: Path) -> None:
    atomic.write_many([], root=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_a_file_written_by_name_appears_whole_or_not_at_all(tmp_path: Path) -> None:
    target = tmp_path / "manifest.parquet"
    target.write_bytes(b"old")

    def fails_half_way(temp: Path) -> None:
        temp.write_bytes(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic.write_through(target, fails_half_way)
    assert target.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["manifest.parquet"]
    atomic.write_through(target, lambda temp: temp.write_bytes(b"new"))
    assert target.read_bytes() == b"new" and [p.name for p in tmp_path.iterdir()] == ["manifest.parquet"]


def test_exchange_swaps_two_folders_and_link_many_gives_files_second_names(tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    for folder, text in ((first, "one"), (second, "two")):
        folder.mkdir()
        (folder / "file").write_text(text)
    atomic.exchange(first, second)
    assert ((first / "file").read_text(), (second / "file").read_text()) == ("two", "one")
    (tmp_path / "linked").mkdir()
    atomic.link_many([(first / "file", tmp_path / "linked" / "again")], root=tmp_path)
    assert (tmp_path / "linked" / "again").stat().st_ino == (first / "file").stat().st_ino
    assert not list((tmp_path / "linked").glob(f".*{atomic.TEMP_SUFFIX}"))


def test_link_many_replaces_what_stands_at_a_name_and_never_writes_through_a_link(tmp_path: Path) -> None:
    source, elsewhere = tmp_path / "source", tmp_path / "elsewhere"
    source.write_bytes(b"new")
    elsewhere.write_bytes(b"not mine")
    (tmp_path / "linked").mkdir()
    stale, trap = tmp_path / "linked" / "stale", tmp_path / "linked" / "trap"
    stale.write_bytes(b"an interrupted run's")
    trap.symlink_to(elsewhere)
    atomic.link_many([(source, stale), (source, trap)], root=tmp_path)
    assert stale.stat().st_ino == trap.stat().st_ino == source.stat().st_ino and not trap.is_symlink()
    assert elsewhere.read_bytes() == b"not mine"
    assert sorted(p.name for p in (tmp_path / "linked").iterdir()) == ["stale", "trap"]
