"""The sync streams: a part converts while later parts download, finished parts' files are deleted, a resume
downloads only the parts with unfinished rows, and every layout is read in place with the same rows' same MP3s."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hugflow_ray.api import sync
from hugflow_ray.copies.ledger import Ledger
from hugflow_ray.settings import Settings, load_settings
from tests import datasets_fixtures as fx
from tests.audio_fixtures import encoded, sine
from tests.conftest import LICENSED, HubFixture
from tests.hub_proxy import HoldingProxy

pytestmark = [pytest.mark.hub, pytest.mark.usefixtures("ray_session")]

HOLD_DEADLINE = 120.0  # a sync that downloads everything before converting waits this long, then fails
SHARDS = "org__shards__split_train__rev_main"


def settings_for(endpoint: str, tmp_path: Path, **more: object) -> Settings:
    return load_settings(hf_endpoint=endpoint, storage_root=tmp_path / "datasets", state_dir=tmp_path / "state",
                         processed_root=tmp_path / "processed", max_concurrent_downloads=1, **more)


def request(tmp_path: Path, text: str, name: str = "req.yaml") -> Path:
    path = tmp_path / "requests" / "add" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def data_files(folder: Path) -> list[str]:
    """The downloaded data files under a copy's sources folder (the Hub client's bookkeeping left out)."""
    return sorted(p.name for p in folder.rglob("*.parquet") if ".cache" not in p.parts) if folder.is_dir() else []


def file_requests(proxy: HoldingProxy) -> list[str]:
    """The data files asked for, in order, each once (the Hub client asks with HEAD, then GET)."""
    asked = [path.rsplit("/", 1)[-1] for path, *_ in proxy.requests
             if "/resolve/" in path and path.endswith(".parquet")]
    return list(dict.fromkeys(asked))


def test_the_first_file_converts_while_the_last_is_held_back_and_finished_files_are_deleted(
    hub: HubFixture, tmp_path: Path
) -> None:
    copy = tmp_path / "datasets" / SHARDS
    sources = copy / ".hugflow" / "sources"

    def first_rows_in_ledger() -> bool:
        return bool(list((copy / ".hugflow" / "ledger").glob("part-*.parquet")))

    with HoldingProxy(hub.endpoint, hold=("train-00002-of-00003",), until=first_rows_in_ledger,
                      deadline=HOLD_DEADLINE) as proxy:
        report = sync(request(tmp_path, "hf_id: org/shards\ndescription: d\n"), settings_for(proxy.endpoint, tmp_path))

    assert proxy.timed_out == [], "the last file was held until rows of the first were converted"
    assert (report.rows_done, report.row_errors) == (26, 0)
    last = [path for path, _ in proxy.requests if "train-00002-of-00003" in path and "/resolve/" in path]
    assert last, proxy.requests
    assert data_files(sources) == [], "no source is left once the copy is complete"
    assert Ledger(copy).summary().rows == 26


def test_downloads_keep_to_their_window_and_a_finished_part_is_deleted(hub: HubFixture, tmp_path: Path) -> None:
    """The download window against the real Hub client: one part ahead at most, each deleted once finished, and a
    part a read waits for is fetched whatever the window."""
    from hugflow_ray.adapters.hub import Hub
    from hugflow_ray.core.request import parse_request
    from hugflow_ray.pipeline.download import PartDownloads
    from hugflow_ray.pipeline.plan import make_plan
    from hugflow_ray.pipeline.readers.parts import cut_parts

    client = Hub(endpoint=hub.endpoint)
    plan = make_plan(parse_request("hf_id: org/shards\ndescription: d\n"), hub=client)
    parts, _ = cut_parts(plan.format, plan.file_names(), [f.size for f in plan.files])
    target = tmp_path / "sources"
    downloads = PartDownloads(plan, client, target=target, concurrency=1, window=1, delete=True)
    downloads.order(parts)
    first = downloads.wait(parts[0])
    assert [p.name for p in first] == ["train-00000-of-00003.parquet"] and first[0].is_file()
    assert data_files(target) == ["train-00000-of-00003.parquet"], "the window holds one part"
    downloads.finished(parts[0])
    assert not first[0].exists(), "a finished part's files are deleted"
    second = downloads.wait(parts[1])
    downloads.demand(2)  # a read waits for the third part: fetched though the second is not finished
    third = downloads.wait(parts[2])
    assert second[0].is_file() and third[0].is_file()
    downloads.close(done=True)
    assert not target.exists()


def test_a_download_waiting_for_its_turn_does_not_start_once_the_downloads_are_closed(
        hub: HubFixture, tmp_path: Path) -> None:
    """Downloads start paced: with the second file's download held, the third waits for its turn; an interrupted
    sync closes the downloads, and the third is then never asked for (an interruption does not wait for it)."""
    from hugflow_ray.adapters.hub import Hub
    from hugflow_ray.core.request import parse_request
    from hugflow_ray.pipeline.download import PartDownloads
    from hugflow_ray.pipeline.plan import make_plan
    from hugflow_ray.pipeline.readers.parts import cut_parts

    released = False
    with HoldingProxy(hub.endpoint, hold=("train-00001-of-00003",), until=lambda: released,
                      deadline=HOLD_DEADLINE) as proxy:
        client = Hub(endpoint=proxy.endpoint)
        plan = make_plan(parse_request("hf_id: org/shards\ndescription: d\n"), hub=client)  # the first file: cached
        parts, _ = cut_parts(plan.format, plan.file_names(), [f.size for f in plan.files])
        proxy.requests.clear()
        downloads = PartDownloads(plan, client, target=tmp_path / "sources", concurrency=3, window=6, delete=True)
        downloads.order(parts)
        assert [p.name for p in downloads.wait(parts[0])] == ["train-00000-of-00003.parquet"]
        proxy.wait_for(lambda: file_requests(proxy) == ["train-00001-of-00003.parquet"])
        downloads.close(done=False)
        released = True
        proxy.check()
        downloads.close(done=True)  # waits for the download in flight
    assert proxy.timed_out == []
    assert file_requests(proxy) == ["train-00001-of-00003.parquet"]


def test_a_resume_downloads_only_the_parts_with_unfinished_rows(hub: HubFixture, tmp_path: Path) -> None:
    path = request(tmp_path, "hf_id: org/shards\ndescription: d\n")
    with HoldingProxy(hub.endpoint, hold=(), until=lambda: True, deadline=0) as proxy:
        settings = settings_for(proxy.endpoint, tmp_path)
        first = sync(path, settings)
        expected = {p.relative_to(first.dataset_dir): p.read_bytes() for p in first.dataset_dir.rglob("*.mp3")}
        Ledger(first.dataset_dir).drop_rows(range(17, 22))  # rows of the third shard (rows 17..25)
        (first.dataset_dir / ".hugflow" / "status.json").unlink()
        proxy.requests.clear()
        again = sync(path, settings)
    assert file_requests(proxy) == ["train-00002-of-00003.parquet"]
    assert (again.resumed_from, again.newly_processed, again.rows_done) == (21, 5, 26)
    assert {p.relative_to(again.dataset_dir): p.read_bytes() for p in again.dataset_dir.rglob("*.mp3")} == expected


def test_kept_sources_stay_and_a_restart_reads_them_again_without_downloading(hub: HubFixture,
                                                                              tmp_path: Path) -> None:
    path = request(tmp_path, "hf_id: org/shards\ndescription: d\n")
    with HoldingProxy(hub.endpoint, hold=(), until=lambda: True, deadline=0) as proxy:
        settings = settings_for(proxy.endpoint, tmp_path, keep_sources=True)
        first = sync(path, settings)
        sources = first.dataset_dir / ".hugflow" / "sources"
        assert data_files(sources) == [f"train-0000{i}-of-00003.parquet" for i in range(3)]
        proxy.requests.clear()
        again = sync(path, settings, restart=True)
    assert again.newly_processed == 26 and file_requests(proxy) == []


# ------------------------------------------------------------------------------------------- layouts in place


def clips(count: int) -> list[tuple[str, bytes, str]]:
    """(key, FLAC bytes, transcript) of ``count`` distinct clips."""
    return [(f"utt{i:03d}", encoded(sine(16000, 0.2 + 0.01 * i, amplitude=0.1 + 0.02 * i), 16000), f"words {i}")
            for i in range(count)]


@pytest.fixture(scope="module")
def same_rows(hub: HubFixture) -> dict[str, str]:
    """The same 12 clips as a parquet split, a WebDataset split (3 shards) and an audio folder."""
    import datasets

    from tests.hub_server import make_dataset_repo

    rows = clips(12)
    mirrors = hub.server.mirrors_dir
    features = datasets.Features({"audio": datasets.Audio(), "text": datasets.Value("string")})
    records = [{"audio": {"bytes": data, "path": f"{key}.flac"}, "text": text} for key, data, text in rows]
    make_dataset_repo(mirrors, "same/parquet", {
        "data/train-00000-of-00001.parquet": fx.parquet_bytes(records, features, row_group_size=5)}, card=LICENSED)
    shards = {f"train/shard-{n:03d}.tar": fx.tar_bytes([(f"{key}.{ext}", value) for key, data, text in rows[n::3]
                                                     for ext, value in (("flac", data), ("txt", text.encode()))])
              for n in range(3)}
    make_dataset_repo(mirrors, "same/wds", shards, card=LICENSED)
    folder = {f"data/train/{key}.flac": data for key, data, _ in rows}
    folder["data/train/metadata.csv"] = ("file_name,text\n" + "".join(f"{k}.flac,{t}\n" for k, _, t in rows)).encode()
    make_dataset_repo(mirrors, "same/folder", folder, card=LICENSED)
    return {"parquet": "hf_id: same/parquet\n", "webdataset": "hf_id: same/wds\naudio_column: flac\ntext_column: txt\n",
            "audiofolder": "hf_id: same/folder\n"}


def mp3s_by_text(copy: Path, text_column: str) -> dict[str, bytes]:
    rows = [json.loads(p.read_text()) for p in (copy / "json").glob("*.json")]
    return {row[text_column]: (copy / row["audio"]).read_bytes() for row in rows}


@pytest.mark.parametrize("layout", ["webdataset", "audiofolder"])
def test_a_layout_read_in_place_gives_the_same_mp3s_as_the_same_rows_in_parquet(
    hub: HubFixture, same_rows: dict[str, str], tmp_path: Path, layout: str
) -> None:
    settings = settings_for(hub.endpoint, tmp_path)
    reference = sync(request(tmp_path, same_rows["parquet"] + "description: d\n", "p.yaml"), settings)
    report = sync(request(tmp_path, same_rows[layout] + "description: d\n", "l.yaml"), settings)
    assert (report.rows_done, report.row_errors) == (12, 0)
    text = "txt" if layout == "webdataset" else "text"
    assert mp3s_by_text(report.dataset_dir, text) == mp3s_by_text(reference.dataset_dir, "text")
    assert not (report.dataset_dir / ".hugflow" / "staging").exists(), "nothing is staged"
