"""URL sources of the catalog: downloads resumed and verified against a real HTTP server on loopback, and archives
extracted safely (nothing outside the target, nothing half-done at it)."""

from __future__ import annotations

import hashlib
import io
import os
import random
import socket
import stat
import tarfile
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from hugflow_ray.adapters.urls import CHUNK_BYTES, fetch_url, partial_path
from hugflow_ray.catalog.archives import COMPLETE_MARKER, DIR_MODE, FILE_MODE, extract
from hugflow_ray.core.catalog import ArchiveFormat, UrlSource
from hugflow_ray.errors import ArchiveError, SourceError
from tests.file_server import FileServer

PAYLOAD = random.Random(0).randbytes(3 * CHUNK_BYTES + 12345)  # several chunks, not a whole number of them
PATH = "/speech.tar.gz"
MiB = 1024 * 1024


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _source(url: str, data: bytes = PAYLOAD, **changes: object) -> UrlSource:
    fields: dict[str, object] = {"url": url, "sha256": _sha(data), "size": len(data)} | changes
    return UrlSource(**fields)  # type: ignore[arg-type]


@pytest.fixture
def server() -> Iterator[FileServer]:
    with FileServer({PATH: PAYLOAD}) as running:
        yield running


def _tree(root: Path) -> set[str]:
    """Every path under ``root``, links included (not followed)."""
    return {str(p.relative_to(root)) for p in root.rglob("*")}


# ---- downloads ----


def test_a_download_is_verified_and_lands_and_a_second_call_does_not_download_again(server: FileServer,
                                                                                      tmp_path: Path) -> None:
    dest = tmp_path / "downloads" / "speech.tar.gz"
    assert fetch_url(_source(server.url(PATH)), dest) == dest
    assert dest.read_bytes() == PAYLOAD
    assert not partial_path(dest).exists()
    assert stat.S_IMODE(dest.stat().st_mode) == FILE_MODE
    assert len(server.gets(PATH)) == 1

    assert fetch_url(_source(server.url(PATH)), dest) == dest
    assert len(server.gets(PATH)) == 1


def test_a_final_file_with_the_right_size_but_other_bytes_is_downloaded_again(server: FileServer,
                                                                               tmp_path: Path) -> None:
    dest = tmp_path / "speech.tar.gz"
    dest.write_bytes(bytes(len(PAYLOAD)))
    fetch_url(_source(server.url(PATH)), dest)
    assert dest.read_bytes() == PAYLOAD
    assert len(server.gets(PATH)) == 1


def test_a_wrong_sha256_names_both_hashes_and_leaves_no_file(server: FileServer, tmp_path: Path) -> None:
    dest = tmp_path / "speech.tar.gz"
    declared = "0" * 64
    with pytest.raises(SourceError) as caught:
        fetch_url(_source(server.url(PATH), sha256=declared), dest)
    message = str(caught.value)
    assert declared in message and _sha(PAYLOAD) in message
    assert server.url(PATH) in message and "correct the catalog" in message
    assert (caught.value.expected, caught.value.actual, caught.value.transient) == (declared, _sha(PAYLOAD), False)
    assert not dest.exists() and not partial_path(dest).exists()


def test_a_download_cut_short_keeps_its_part_and_the_next_call_resumes_from_it(server: FileServer,
                                                                               tmp_path: Path) -> None:
    dest = tmp_path / "speech.tar.gz"
    cut = len(PAYLOAD) * 4 // 10
    served = server.serve(PATH, PAYLOAD, cut_after=cut)
    with pytest.raises(SourceError) as caught:
        fetch_url(_source(server.url(PATH)), dest, attempts=1)  # one run's one attempt (the next run resumes)
    assert caught.value.transient and f"after {cut} of {len(PAYLOAD)} bytes" in str(caught.value)
    assert "run again to resume" in str(caught.value)
    assert partial_path(dest).read_bytes() == PAYLOAD[:cut]
    assert not dest.exists()

    served.cut_after = None
    fetch_url(_source(server.url(PATH)), dest)
    assert [r.range for r in server.gets(PATH)] == [None, f"bytes={cut}-"]
    assert server.gets(PATH)[-1].status == 206
    assert dest.read_bytes() == PAYLOAD
    assert not partial_path(dest).exists()


def test_a_corrupt_kept_prefix_fails_the_hash_and_is_deleted(server: FileServer, tmp_path: Path) -> None:
    dest = tmp_path / "speech.tar.gz"
    partial_path(dest).write_bytes(b"not the start of the file")
    with pytest.raises(SourceError, match="sha256"):
        fetch_url(_source(server.url(PATH)), dest)
    assert not partial_path(dest).exists()
    fetch_url(_source(server.url(PATH)), dest)  # and the next run starts over
    assert dest.read_bytes() == PAYLOAD


def test_a_server_that_ignores_the_range_is_downloaded_again_from_the_start(server: FileServer,
                                                                           tmp_path: Path) -> None:
    dest = tmp_path / "speech.tar.gz"
    cut = len(PAYLOAD) // 3
    partial_path(dest).write_bytes(PAYLOAD[:cut])
    server.serve(PATH, PAYLOAD, ignore_range=True)
    fetch_url(_source(server.url(PATH)), dest)
    assert [(r.range, r.status) for r in server.gets(PATH)] == [(f"bytes={cut}-", 200)]
    assert dest.read_bytes() == PAYLOAD


def test_a_kept_prefix_past_the_end_of_a_changed_file_is_dropped_and_the_change_reported(
        server: FileServer, tmp_path: Path) -> None:
    declared = PAYLOAD[:1000]
    dest = tmp_path / "small"
    partial_path(dest).write_bytes(declared[:800])
    server.serve("/small", declared[:500])  # the file shrank at its source: the kept range is past its end
    with pytest.raises(SourceError, match="declares 500 bytes but the catalog declares 1000"):
        fetch_url(_source(server.url("/small"), declared), dest)
    assert [(r.range, r.status) for r in server.gets("/small")] == [("bytes=800-", 416), (None, 200)]
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("send_length", [True, False], ids=["declared-length", "streamed"])
def test_a_file_larger_than_declared_is_stopped_and_nothing_is_left(server: FileServer, tmp_path: Path,
                                                                    send_length: bool) -> None:
    server.serve(PATH, PAYLOAD, send_length=send_length)
    dest = tmp_path / "speech.tar.gz"
    declared = len(PAYLOAD) // 2
    with pytest.raises(SourceError, match=f"but the catalog declares {declared}") as caught:
        fetch_url(_source(server.url(PATH), sha256=_sha(PAYLOAD[:declared]), size=declared), dest)
    assert caught.value.expected == declared and caught.value.actual > declared
    assert "correct the catalog" in str(caught.value)
    assert os.listdir(tmp_path) == []


def test_a_cut_download_is_resumed_within_the_run_after_a_growing_wait(server: FileServer, tmp_path: Path) -> None:
    cut = len(PAYLOAD) * 4 // 10
    server.serve(PATH, PAYLOAD, cut_after=cut)  # every answer is cut: three attempts bring the whole file
    waits: list[float] = []
    dest = fetch_url(_source(server.url(PATH)), tmp_path / "speech.tar.gz", sleep=waits.append)
    assert dest.read_bytes() == PAYLOAD and waits == [2.0, 4.0]
    assert [r.range for r in server.gets(PATH)] == [None, f"bytes={cut}-", f"bytes={2 * cut}-"]


def test_a_rate_limit_waits_as_long_as_retry_after_says_then_downloads(server: FileServer, tmp_path: Path) -> None:
    server.serve(PATH, PAYLOAD, status=429, status_times=2, retry_after="7")
    waits: list[float] = []
    dest = fetch_url(_source(server.url(PATH)), tmp_path / "speech.tar.gz", sleep=waits.append)
    assert dest.read_bytes() == PAYLOAD and waits == [7.0, 7.0]
    assert [r.status for r in server.gets(PATH)] == [429, 429, 200]


def test_a_server_error_that_lasts_fails_after_its_attempts_keeping_the_part(server: FileServer,
                                                                             tmp_path: Path) -> None:
    dest = tmp_path / "speech.tar.gz"
    partial_path(dest).write_bytes(PAYLOAD[:1000])
    server.serve(PATH, PAYLOAD, status=503)
    waits: list[float] = []
    with pytest.raises(SourceError, match="HTTP 503.*resumes from byte 1000") as caught:
        fetch_url(_source(server.url(PATH)), dest, sleep=waits.append)
    assert caught.value.transient and waits == [2.0, 4.0, 8.0] and len(server.gets(PATH)) == 4
    assert partial_path(dest).read_bytes() == PAYLOAD[:1000]


def test_a_missing_file_names_the_url_and_the_404(server: FileServer, tmp_path: Path) -> None:
    url = server.url("/gone.zip")
    with pytest.raises(SourceError) as caught:
        fetch_url(_source(url), tmp_path / "gone.zip")
    assert url in str(caught.value) and "HTTP 404" in str(caught.value) and "check the catalog" in str(caught.value)
    assert (caught.value.status, caught.value.transient) == (404, False)


def test_a_refused_connection_is_a_transient_source_error(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens there once closed
    with pytest.raises(SourceError, match="ConnectionRefusedError") as caught:
        fetch_url(_source(f"http://127.0.0.1:{port}/x"), tmp_path / "x", attempts=1)
    assert caught.value.transient and f"127.0.0.1:{port}/x" in str(caught.value)


def test_a_stalled_server_times_out_and_keeps_what_came(server: FileServer, tmp_path: Path) -> None:
    server.serve(PATH, PAYLOAD, stall=True)
    with pytest.raises(SourceError, match="timed out") as caught:
        fetch_url(_source(server.url(PATH)), tmp_path / "speech.tar.gz", timeout=0.2, attempts=1)
    assert caught.value.transient


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://127.0.0.1/x.zip", "https:///no-host", "x.zip"])
def test_only_http_and_https_urls_are_fetched(tmp_path: Path, url: str) -> None:
    with pytest.raises(SourceError, match="only http and https"):
        fetch_url(_source(url), tmp_path / "x")
    assert os.listdir(tmp_path) == []


def test_a_redirect_to_another_scheme_is_refused(server: FileServer, tmp_path: Path) -> None:
    server.serve("/moved", b"", redirect_to="ftp://127.0.0.1/x.zip")
    with pytest.raises(SourceError, match="redirects to ftp://127.0.0.1/x.zip, which is not http"):
        fetch_url(_source(server.url("/moved")), tmp_path / "x")


def test_credentials_in_the_url_are_sent_but_never_shown(server: FileServer, tmp_path: Path) -> None:
    url = server.url("/private.zip").replace("http://", "http://alice:s3cr3t-pw@")
    with pytest.raises(SourceError) as caught:
        fetch_url(_source(url), tmp_path / "private.zip")
    assert "s3cr3t-pw" not in str(caught.value) and "alice" not in str(caught.value)
    assert caught.value.url == server.url("/private.zip")
    assert server.gets("/private.zip")[0].authorization == "Basic YWxpY2U6czNjcjN0LXB3"  # alice:s3cr3t-pw


# ---- archives ----

TREE = {"data/a.txt": b"alpha\n", "data/sub/b.bin": bytes(range(256)) * 5, "README": b"read me\n"}


def _tar(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]], *, gz: bool = False,
         mode: str | None = None) -> Path:
    with tarfile.open(path, mode or ("w:gz" if gz else "w")) as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def _tar_file(name: str, data: bytes, *, mode: int = 0o644) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.mode = mode
    return info, data


def _tar_entry(name: str, kind: bytes, *, linkname: str = "") -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode = kind, linkname, 0o755
    return info, None


def _zip(path: Path, members: list[tuple[zipfile.ZipInfo | str, bytes]]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for info, data in members:
            archive.writestr(info, data)
    return path


def _zip_symlink(name: str, link_target: str) -> tuple[zipfile.ZipInfo, bytes]:
    info = zipfile.ZipInfo(name)
    info.create_system = 3
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info, link_target.encode()


def _good(fmt: ArchiveFormat, path: Path) -> Path:
    if fmt is ArchiveFormat.ZIP:
        return _zip(path, [("data/", b""), *TREE.items()])
    setuid = _tar_file("README", TREE["README"], mode=0o4777)  # the archive's mode is not kept
    return _tar(path, [_tar_entry("data", tarfile.DIRTYPE), _tar_file("data/a.txt", TREE["data/a.txt"]),
                       _tar_file("./data/sub/b.bin", TREE["data/sub/b.bin"]), setuid],
                mode={ArchiveFormat.TAR_GZ: "w:gz", ArchiveFormat.TAR_XZ: "w:xz", ArchiveFormat.TAR_BZ2: "w:bz2"}.get(
                    fmt, "w"))


@pytest.mark.parametrize("fmt", [f for f in ArchiveFormat if f is not ArchiveFormat.NONE])
def test_a_good_archive_extracts_to_its_tree_with_plain_modes(tmp_path: Path, fmt: ArchiveFormat) -> None:
    archive = _good(fmt, tmp_path / "good.archive")
    target = tmp_path / "out" / "midi"
    assert extract(archive, fmt, target, max_bytes=MiB) == target
    files = {str(p.relative_to(target)): p.read_bytes() for p in target.rglob("*") if p.is_file()}
    assert files == TREE | {COMPLETE_MARKER: files[COMPLETE_MARKER]}
    assert {stat.S_IMODE(p.stat().st_mode) for p in target.rglob("*") if p.is_file()} == {FILE_MODE}
    assert {stat.S_IMODE(p.stat().st_mode) for p in target.rglob("*") if p.is_dir()} == {DIR_MODE}
    assert os.listdir(target.parent) == ["midi"]  # no temporary directory left beside it


def test_a_complete_target_is_returned_without_extracting_again(tmp_path: Path) -> None:
    archive = _good(ArchiveFormat.ZIP, tmp_path / "good.zip")
    target = extract(archive, ArchiveFormat.ZIP, tmp_path / "out", max_bytes=MiB)
    archive.unlink()
    assert extract(archive, ArchiveFormat.ZIP, target, max_bytes=MiB) == target
    assert (target / "README").read_bytes() == TREE["README"]


def test_an_extraction_of_another_archive_is_never_read_as_this_ones(tmp_path: Path) -> None:
    """The catalog entry changed (a new URL and sha256) after an earlier archive was extracted there."""
    (tmp_path / "old").mkdir()
    old = _zip(tmp_path / "old" / "a.zip", [("old.txt", b"the earlier source")])
    target = extract(old, ArchiveFormat.ZIP, tmp_path / "out", max_bytes=MiB, identity="1" * 64)
    new = _good(ArchiveFormat.ZIP, tmp_path / "a.zip")
    assert extract(new, ArchiveFormat.ZIP, target, max_bytes=MiB, identity="2" * 64) == target
    assert not (target / "old.txt").exists() and (target / "README").read_bytes() == TREE["README"]


def test_a_member_this_filesystem_refuses_is_an_archive_error_and_leaves_nothing(tmp_path: Path) -> None:
    archive = _tar(tmp_path / "long.tar", [_tar_file("a" * 300 + ".wav", b"RIFF")])  # over NAME_MAX (255 bytes)
    with pytest.raises(ArchiveError, match="cannot be extracted on this machine.*OSError.*File name too long"):
        extract(archive, ArchiveFormat.TAR, tmp_path / "out", max_bytes=MiB)
    assert os.listdir(tmp_path) == ["long.tar"]


def test_a_target_that_is_no_complete_extraction_is_left_alone_and_named(tmp_path: Path) -> None:
    archive = _good(ArchiveFormat.ZIP, tmp_path / "good.zip")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "mine.txt").write_text("a user's file")
    with pytest.raises(ArchiveError, match="not a complete extraction.*remove it"):
        extract(archive, ArchiveFormat.ZIP, tmp_path / "out", max_bytes=MiB)
    assert os.listdir(tmp_path / "out") == ["mine.txt"]


def test_a_single_file_source_lands_in_the_target_under_its_name(tmp_path: Path) -> None:
    single = tmp_path / "notes.mid"
    single.write_bytes(b"MThd" + bytes(100))
    target = extract(single, ArchiveFormat.NONE, tmp_path / "out", max_bytes=MiB)
    assert (target / "notes.mid").read_bytes() == single.read_bytes()
    with pytest.raises(ArchiveError, match="past 10 bytes"):
        extract(single, ArchiveFormat.NONE, tmp_path / "small", max_bytes=10)
    assert not (tmp_path / "small").exists()


def test_an_interrupted_extraction_leaves_nothing_and_the_next_one_completes(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    archive = _good(ArchiveFormat.TAR, tmp_path / "good.tar")
    target = tmp_path / "out" / "midi"
    from hugflow_ray.catalog import archives

    def interrupted(directory: Path) -> None:
        raise KeyboardInterrupt

    with monkeypatch.context() as patched:
        patched.setattr(archives, "sync_filesystem", interrupted)
        with pytest.raises(KeyboardInterrupt):
            extract(archive, ArchiveFormat.TAR, target, max_bytes=MiB)
    assert os.listdir(target.parent) == []
    extract(archive, ArchiveFormat.TAR, target, max_bytes=MiB)
    assert (target / "data" / "a.txt").read_bytes() == TREE["data/a.txt"]


def _zip_bomb(path: Path) -> Path:
    return _zip(path, [("small.txt", b"x"), ("zeros.bin", bytes(10 * MiB))])


UNSAFE: dict[str, tuple[ArchiveFormat, Callable[[Path], Path], str, str]] = {
    # case: (format, builder, the member named, what the message says)
    "tar-dotdot": (ArchiveFormat.TAR, lambda p: _tar(p, [_tar_file("ok.txt", b"ok"), _tar_file("../evil", b"x")]),
                   "../evil", "'..'"),
    "tar-dotdot-deep": (ArchiveFormat.TAR_GZ, lambda p: _tar(p, [_tar_file("a/../../evil", b"x")], gz=True),
                        "a/../../evil", "'..'"),
    "tar-absolute": (ArchiveFormat.TAR, lambda p: _tar(p, [_tar_file(f"{p.parent}/abs-evil", b"x")]),
                     "abs-evil", "absolute"),
    "tar-symlink-out": (ArchiveFormat.TAR, lambda p: _tar(p, [_tar_entry("link", tarfile.SYMTYPE,
                                                                          linkname="../../etc")]),
                        "link", "symbolic link to '../../etc' (outside"),
    "tar-symlink-absolute": (ArchiveFormat.TAR, lambda p: _tar(p, [_tar_entry("etc", tarfile.SYMTYPE,
                                                                              linkname="/etc")]),
                             "etc", "symbolic link to '/etc' (outside"),
    "tar-hardlink-out": (ArchiveFormat.TAR, lambda p: _tar(p, [_tar_entry("passwd", tarfile.LNKTYPE,
                                                                          linkname="../../etc/passwd")]),
                         "passwd", "'..' in its link target"),
    "tar-hardlink-absolute": (ArchiveFormat.TAR, lambda p: _tar(p, [_tar_entry("passwd", tarfile.LNKTYPE,
                                                                               linkname="/etc/passwd")]),
                              "passwd", "absolute link target"),
    "tar-char-device": (ArchiveFormat.TAR, lambda p: _tar(p, [_tar_entry("null", tarfile.CHRTYPE)]),
                        "null", "character device"),
    "tar-block-device": (ArchiveFormat.TAR, lambda p: _tar(p, [_tar_entry("sda", tarfile.BLKTYPE)]),
                         "sda", "block device"),
    "tar-fifo": (ArchiveFormat.TAR, lambda p: _tar(p, [_tar_entry("pipe", tarfile.FIFOTYPE)]), "pipe", "FIFO"),
    "tar-too-big": (ArchiveFormat.TAR_GZ, lambda p: _tar(p, [_tar_file("zeros.bin", bytes(10 * MiB))], gz=True),
                    "zeros.bin", f"past {MiB} bytes"),
    "zip-dotdot": (ArchiveFormat.ZIP, lambda p: _zip(p, [("ok.txt", b"ok"), ("../evil", b"x")]), "../evil", "'..'"),
    "zip-absolute": (ArchiveFormat.ZIP, lambda p: _zip(p, [(zipfile.ZipInfo(f"{p.parent}/abs-evil"), b"x")]),
                     "abs-evil", "absolute"),
    "zip-symlink-out": (ArchiveFormat.ZIP, lambda p: _zip(p, [_zip_symlink("link", "../../etc")]),
                        "link", "symbolic link to '../../etc' (outside"),
    "zip-bomb": (ArchiveFormat.ZIP, _zip_bomb, "zeros.bin", f"past {MiB} bytes"),
}


@pytest.mark.parametrize("case", list(UNSAFE))
def test_an_unsafe_archive_is_refused_naming_the_member_and_leaves_nothing(tmp_path: Path, case: str) -> None:
    fmt, build, member, problem = UNSAFE[case]
    archives = tmp_path / "archives"
    archives.mkdir()
    archive = build(archives / f"{case}.archive")
    target = tmp_path / "work" / "nested" / "target"
    target.parent.mkdir(parents=True)
    before = _tree(tmp_path)

    with pytest.raises(ArchiveError) as caught:
        extract(archive, fmt, target, max_bytes=MiB)

    assert member in str(caught.value) and problem in str(caught.value), str(caught.value)
    assert caught.value.member is not None and member in caught.value.member
    assert caught.value.archive == archive and str(archive) in str(caught.value)
    assert _tree(tmp_path) == before
    assert not target.exists() and not os.path.lexists(target)


def test_a_zip_bomb_is_stopped_at_the_limit_before_writing_the_rest(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from hugflow_ray.catalog import archives

    written: list[int] = []
    real_write = os.write

    def counting_write(fd: int, data: bytes | memoryview) -> int:
        written.append(len(data))
        return real_write(fd, data)

    monkeypatch.setattr(archives.os, "write", counting_write)
    with pytest.raises(ArchiveError, match="zeros.bin"):
        extract(_zip_bomb(tmp_path / "bomb.zip"), ArchiveFormat.ZIP, tmp_path / "out", max_bytes=MiB)
    assert sum(written) <= MiB


def test_a_zip_whose_headers_understate_a_member_is_refused_as_damaged(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from hugflow_ray.catalog import archives

    archive = _zip(tmp_path / "liar.zip", [("zeros.bin", bytes(10 * MiB))])
    data = bytearray(archive.read_bytes())
    lie = (100).to_bytes(4, "little")
    local, central = data.index(b"PK\x03\x04"), data.index(b"PK\x01\x02")
    data[local + 22:local + 26] = lie  # uncompressed size, local header
    data[central + 24:central + 28] = lie  # uncompressed size, central directory
    archive.write_bytes(bytes(data))
    written: list[int] = []
    real_write = os.write
    monkeypatch.setattr(archives.os, "write", lambda fd, chunk: written.append(len(chunk)) or real_write(fd, chunk))

    with pytest.raises(ArchiveError, match="cannot be read as zip"):
        extract(archive, ArchiveFormat.ZIP, tmp_path / "out", max_bytes=MiB)
    assert sum(written) <= 100
    assert sorted(os.listdir(tmp_path)) == ["liar.zip"]


def test_a_symlink_pointing_inside_the_tree_is_refused_too(tmp_path: Path) -> None:
    archive = _tar(tmp_path / "docs.tar", [_tar_file("docs/v1/index.txt", b"v1"),
                                           _tar_entry("docs/latest", tarfile.SYMTYPE, linkname="v1")])
    with pytest.raises(ArchiveError, match=r"'docs/latest' is a symbolic link to 'v1' \(inside the tree\).*"
                                           r"tar --dereference") as caught:
        extract(archive, ArchiveFormat.TAR, tmp_path / "out", max_bytes=MiB)
    assert caught.value.member == "docs/latest"
    assert sorted(os.listdir(tmp_path)) == ["docs.tar"]


def test_a_zip_symlink_pointing_inside_the_tree_is_refused_too(tmp_path: Path) -> None:
    archive = _zip(tmp_path / "docs.zip", [("docs/v1/index.txt", b"v1"), _zip_symlink("docs/latest", "v1")])
    with pytest.raises(ArchiveError, match=r"symbolic link to 'v1' \(inside the tree\)"):
        extract(archive, ArchiveFormat.ZIP, tmp_path / "out", max_bytes=MiB)
    assert sorted(os.listdir(tmp_path)) == ["docs.zip"]


def test_a_hard_link_to_an_earlier_file_becomes_a_copy_of_it(tmp_path: Path) -> None:
    archive = _tar(tmp_path / "linked.tar", [_tar_file("a.txt", b"shared"),
                                             _tar_entry("sub/b.txt", tarfile.LNKTYPE, linkname="a.txt")])
    target = extract(archive, ArchiveFormat.TAR, tmp_path / "out", max_bytes=MiB)
    assert (target / "sub" / "b.txt").read_bytes() == b"shared"
    assert (target / "sub" / "b.txt").stat().st_nlink == 1 and not (target / "sub" / "b.txt").is_symlink()


def test_a_hard_link_to_a_later_member_is_refused(tmp_path: Path) -> None:
    archive = _tar(tmp_path / "linked.tar", [_tar_entry("b.txt", tarfile.LNKTYPE, linkname="a.txt"),
                                             _tar_file("a.txt", b"late")])
    with pytest.raises(ArchiveError, match="'b.txt' is a hard link to 'a.txt', which is no file extracted before"):
        extract(archive, ArchiveFormat.TAR, tmp_path / "out", max_bytes=MiB)
    assert not (tmp_path / "out").exists()


def test_an_archive_with_too_many_members_is_refused(tmp_path: Path) -> None:
    archive = _zip(tmp_path / "many.zip", [(f"f{i}.txt", b"x") for i in range(5)])
    with pytest.raises(ArchiveError, match="5 members, more than the 4"):
        extract(archive, ArchiveFormat.ZIP, tmp_path / "out", max_bytes=MiB, max_members=4)
    tar = _tar(tmp_path / "many.tar", [_tar_file(f"f{i}.txt", b"x") for i in range(5)])
    with pytest.raises(ArchiveError, match="'f4.txt' is past the 4 members"):
        extract(tar, ArchiveFormat.TAR, tmp_path / "out", max_bytes=MiB, max_members=4)
    assert not (tmp_path / "out").exists()


def test_an_archive_of_another_format_is_named_as_damaged(tmp_path: Path) -> None:
    archive = _good(ArchiveFormat.ZIP, tmp_path / "really.zip")
    with pytest.raises(ArchiveError, match="cannot be read as tar.gz.*archive format"):
        extract(archive, ArchiveFormat.TAR_GZ, tmp_path / "out", max_bytes=MiB)
    assert sorted(os.listdir(tmp_path)) == ["really.zip"]
