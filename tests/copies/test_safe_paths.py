"""The checks on the paths a copy's own state names (hugflow_ray/utils/safe_paths.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from hugflow_ray.utils.safe_paths import UnsafePathError, inside, read_small


@pytest.mark.parametrize("relative", ["../x", "a/../../x", "/etc/passwd", "a/..", "a/../a/x", "a\\b", ""])
def test_a_path_that_would_leave_the_copy_is_refused_even_in_a_folder_already_checked(tmp_path: Path,
                                                                                       relative: str) -> None:
    (tmp_path / "a").mkdir()
    known: set[str] = set()
    assert inside(tmp_path, "a/fine", known=known) == tmp_path / "a" / "fine" and known == {"a"}
    with pytest.raises(UnsafePathError):
        inside(tmp_path, relative, known=known)


def test_a_link_in_a_folders_place_is_refused(tmp_path: Path) -> None:
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "audio").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(UnsafePathError, match="symbolic link"):
        inside(tmp_path, "audio/00000/a.mp3", known=set())


def test_read_small_reads_a_file_whole_and_refuses_one_over_its_limit(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_bytes(b"x" * 100)
    assert read_small(path, 100) == b"x" * 100
    with pytest.raises(UnsafePathError, match="more than 99 bytes"):
        read_small(path, 99)
    assert read_small(tmp_path / "absent.json", 100) is None
