"""URL sources of the catalog: downloads resumed and verified against a real HTTP server on loopback."""

from __future__ import annotations

import hashlib
import os
import random
import socket
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from hugflow_ray.adapters.urls import CHUNK_BYTES, FILE_MODE, fetch_url, partial_path
from hugflow_ray.core.catalog import UrlSource
from hugflow_ray.errors import SourceError
from tests.file_server import FileServer

PAYLOAD = random.Random(0).randbytes(3 * CHUNK_BYTES + 12345)  # several chunks, not a whole number of them
PATH = "/speech.tar.gz"


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _source(url: str, data: bytes = PAYLOAD, **changes: object) -> UrlSource:
    fields: dict[str, object] = {"url": url, "sha256": _sha(data), "size": len(data)} | changes
    return UrlSource(**fields)  # type: ignore[arg-type]


@pytest.fixture
def server() -> Iterator[FileServer]:
    with FileServer({PATH: PAYLOAD}) as running:
        yield running


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
        fetch_url(_source(server.url(PATH)), dest)
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


def test_a_missing_file_names_the_url_and_the_404(server: FileServer, tmp_path: Path) -> None:
    url = server.url("/gone.zip")
    with pytest.raises(SourceError) as caught:
        fetch_url(_source(url), tmp_path / "gone.zip")
    assert url in str(caught.value) and "HTTP 404" in str(caught.value) and "check the catalog" in str(caught.value)
    assert (caught.value.status, caught.value.transient) == (404, False)


def test_a_server_error_keeps_the_part_for_the_next_run(server: FileServer, tmp_path: Path) -> None:
    dest = tmp_path / "speech.tar.gz"
    partial_path(dest).write_bytes(PAYLOAD[:1000])
    server.serve(PATH, PAYLOAD, status=503)
    with pytest.raises(SourceError, match="HTTP 503.*resumes from byte 1000") as caught:
        fetch_url(_source(server.url(PATH)), dest)
    assert (caught.value.status, caught.value.transient) == (503, True)
    assert partial_path(dest).read_bytes() == PAYLOAD[:1000]


def test_a_refused_connection_is_a_transient_source_error(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens there once closed
    with pytest.raises(SourceError, match="ConnectionRefusedError") as caught:
        fetch_url(_source(f"http://127.0.0.1:{port}/x"), tmp_path / "x")
    assert caught.value.transient and f"127.0.0.1:{port}/x" in str(caught.value)


def test_a_stalled_server_times_out_and_keeps_what_came(server: FileServer, tmp_path: Path) -> None:
    server.serve(PATH, PAYLOAD, stall=True)
    with pytest.raises(SourceError, match="timed out") as caught:
        fetch_url(_source(server.url(PATH)), tmp_path / "speech.tar.gz", timeout=0.2)
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
