"""The README's main job and the benchmarks run (smoke sizes), so none of them can rot."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from hugflow_ray.cli import demo
from tests.audio_fixtures import decode_back
from tests.helpers import load_benchmark

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.subprocess_sync  # the demo and the benchmarks sync (most in child processes)


@pytest.mark.usefixtures("ray_session")
def test_the_demo_syncs_a_built_dataset_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert demo.main(["--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "complete with 1 row errors, 24 rows" in out
    dataset_dir = next((tmp_path / "datasets").iterdir())
    manifest = [json.loads(line) for line in (dataset_dir / "manifest.jsonl").read_text().splitlines()]
    assert len(manifest) == 23 == len(list((dataset_dir / "audio").glob("*/*.mp3")))
    for entry in manifest:
        mp3 = decode_back((dataset_dir / entry["audio_filepath"]).read_bytes())
        assert len(mp3.samples) / mp3.sample_rate == pytest.approx(entry["duration"], abs=0.01)
    assert (tmp_path / "processed" / dataset_dir.name).resolve() == dataset_dir.resolve()


def test_the_codec_benchmark_runs_in_smoke_mode(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    results = load_benchmark("codec_throughput").main(
        ["--clips", "2", "--seconds", "0.5", "--rates", "8000", "--rounds", "1", "--json", str(out)])
    assert json.loads(out.read_text()) == results
    assert results["8000"]["ratio_median"] > 0


def test_the_throughput_benchmark_compares_every_variant_in_smoke_mode(tmp_path: Path) -> None:
    out = tmp_path / "throughput.json"
    # every default variant, and hugflow without its metrics (what recording them costs)
    result = load_benchmark("throughput").main(["--smoke", "--variants", "limit1,seed,pool,hugflow,hugflow-nometrics",
                                                "--work", str(tmp_path / "work"), "--json", str(out)])
    assert json.loads(out.read_text()) == result
    assert set(result["x_realtime"]) == {"limit", "seed", "pool", "hugflow", "hugflow-nometrics"}
    assert all(figures["median"] > 0 for figures in result["x_realtime"].values())
    assert set(result["ratios"]) == {"hugflow/limit", "hugflow/seed", "hugflow/pool", "hugflow/hugflow-nometrics"}
    assert all(result["peak_rss_mib"][variant]["median"] > 10 for variant in ("limit1", "seed", "pool", "hugflow"))
    assert 0 < result["output_actor_busy_fraction"]["median"] < 1
    cpu = result["hugflow_cpu_s_by_process"]
    assert cpu["python hugflow_ray"] > 0 and any(name.startswith("ray::") for name in cpu), cpu


def test_the_throughput_benchmark_measures_scale_and_resume_in_smoke_mode(
        tmp_path: Path, joined_ray: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in joined_ray.items():  # the syncs join the session's Ray: six of them, none starting its own
        monkeypatch.setenv(name, value)
    result = load_benchmark("throughput").main(["--smoke", "--scale", "--join", "--work", str(tmp_path / "work")])
    assert list(result["sizes"]) == ["4 rows", "12 rows"]
    assert all(size["x_realtime"]["median"] > 0 for size in result["sizes"].values())
    assert result["rss_ratio_largest_over_middle"] > 0
    groups = result["row_groups"]
    assert list(groups["groups"]) == ["2", "8"] and groups["rss_ratio_largest_over_smallest"] > 0
    resume = result["resume"]
    assert 0 < resume["rows_left_fraction"] <= 0.5 and resume["resume_s"] > 0 and resume["full_s"] > 0


def test_the_verify_benchmark_times_verify_against_bare_hashing_in_smoke_mode(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    results = load_benchmark("verify").main(["--gb", "0.002", "--mp3-kb", "20", "--rounds", "1", "--json", str(out),
                                             "--root", str(tmp_path)])
    assert json.loads(out.read_text()) == results
    assert results["files"] > 100 and results["verify_seconds_per_gb"] > 0 and results["ratio_verify_to_bare"] > 0


def test_the_throughput_benchmark_measures_marginal_rate_and_the_plain_ray_data_script_in_smoke_mode(
        tmp_path: Path, joined_ray: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in joined_ray.items():  # the joined variant joins the session's Ray, not one of its own
        monkeypatch.setenv(name, value)
    result = load_benchmark("throughput").main(["--smoke", "--marginal", "4", "8", "--joined", "--join", "--work",
                                                str(tmp_path / "work")])
    assert result["clips"] == [4, 8] and result["limit_x_realtime"] > 0
    for variant in ("hugflow", "raydata", "hugflow-joined"):
        # smoke sizes: the two sizes' difference is noise, so the marginal figures are finite, not meaningful
        assert set(result[variant]["wall_s"]) == {"4", "8"} and math.isfinite(result[variant]["fixed_s"])
    assert result["hugflow_over_raydata_end_to_end"]["median"] > 0
    phases = result["hugflow_phases_s"]["small"]
    assert {"interpreter and imports", "executor start", "convert", "finalize", "shut-down"} <= set(phases), phases
    joined = result["hugflow_phases_s"]["small, hugflow-joined"]
    assert joined["convert"] > 0 and joined["executor start"] < phases["executor start"], (joined, phases)
    outside = result["hugflow_cpu_s_outside_conversion"]
    assert set(outside) == {"hugflow", "hugflow-joined"}
    assert all(v["total"] > 0 and math.isfinite(v["budget_at_1_5x"]) for v in outside.values()), outside
    # joined, the sync's workers are the running Ray's processes, not its own: they count all the same
    by_process = outside["hugflow-joined"]["by_process"]
    assert by_process["python hugflow_ray"] > 0 and sum(by_process.values()) - by_process["python hugflow_ray"] > 0.5
    written = sorted(p.name for p in (tmp_path / "work").glob("data-*"))
    assert written == ["data-4", "data-8"]


def test_the_layout_benchmark_times_a_flat_json_directory_against_a_sharded_one_in_smoke_mode(
        tmp_path: Path) -> None:
    out, work = tmp_path / "layout.json", tmp_path / "work"
    result = load_benchmark("layout").main(["--smoke", "--work", str(work), "--json", str(out)])
    assert json.loads(out.read_text()) == result
    assert result["files"] == [200, 1000] and result["filesystem"]["type"] not in ("", "unknown")
    for size in ("200", "1000"):
        for layout in ("flat", "sharded"):
            operations = result["sizes"][size][layout]
            assert set(operations) == {"create", "list", "stat", "read", "delete"}
            assert all(figures["seconds"] > 0 for figures in operations.values()), (size, layout, operations)
        assert all(ratio > 0 for ratio in result["sizes"][size]["ratio_sharded_to_flat"].values())
    assert all(growth["ratio"] > 0 for growth in result["growth"]["flat"].values())
    assert list(work.iterdir()) == []


def test_the_million_row_benchmark_measures_the_sync_the_ledger_and_the_commands_in_smoke_mode(
        tmp_path: Path) -> None:
    out = tmp_path / "million.json"
    result = load_benchmark("million").main(["--smoke", "--work", str(tmp_path / "work"), "--json", str(out)])
    assert json.loads(out.read_text()) == result
    assert result["rows"] > 0 and result["sync"]["wall_s"] > 0 and result["sync"]["peak_rss_mib"] > 10
    alone, by_phase = result["sync"]["peak_rss_mib_alone"], result["sync"]["driver_rss_mib_by_phase"]
    assert 10 < alone["driver"] <= result["sync"]["peak_rss_mib"], "each process's own peak is sampled"
    assert by_phase["convert"]["peak_mib"] > 10, by_phase
    assert result["ledger"]["parts"] >= 1 and result["ledger"]["bytes"] > 0
    assert {"status", "verify"} <= set(result["commands"]), result["commands"]


def test_the_layout_memory_benchmark_compares_webdataset_and_audio_folders_with_parquet_in_smoke_mode(
        tmp_path: Path) -> None:
    result = load_benchmark("layout_memory").main(["--smoke", "--work", str(tmp_path / "work")])
    assert set(result["layouts"]) == {"parquet", "webdataset", "audiofolder"}
    assert set(result["rss_over_parquet"]) == {"webdataset", "audiofolder"}
    assert all(ratio["median"] > 0 for ratio in result["rss_over_parquet"].values())


def test_the_streaming_benchmark_times_download_and_conversion_alone_and_together_in_smoke_mode() -> None:
    module = load_benchmark("streaming")
    assert module.refusal() is None, "the suite runs as root with unshare, ip and tc (.ci/run installs them)"
    result = module.main(["--smoke"])
    assert set(result["wall_s"]) == {"download", "convert", "hugflow", "snapshot+raydata"}
    assert all(figures["median"] > 0 for figures in result["wall_s"].values())
    assert {"hugflow/max(download,convert)", "(snapshot+raydata)/hugflow"} <= set(result["ratios"]), result["ratios"]


def test_the_webdataset_read_benchmark_reads_every_row_with_ray_datas_reader_and_hugflows(tmp_path: Path) -> None:
    out = tmp_path / "read.json"
    result = load_benchmark("webdataset_read").main(["--smoke", "--work", str(tmp_path / "work"), "--json", str(out)])
    assert json.loads(out.read_text()) == result
    assert {variant: [run["rows"] for run in runs] for variant, runs in result["runs"].items()} == {
        "raydata": [result["clips"]], "hugflow": [result["clips"]]}
    assert all(ratio["median"] > 0 for ratio in result["hugflow_over_raydata"].values())


def test_the_incremental_benchmark_updates_a_copy_after_one_shard_changed_in_smoke_mode(
        joined_ray: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in joined_ray.items():  # the syncs join the session's Ray: what it measures is not Ray's start
        monkeypatch.setenv(name, value)
    result = load_benchmark("incremental").main(["--smoke", "--join"])
    (only,) = result["rounds"]
    assert result["identical"], "the updated copy equals a fresh sync of the new commit"
    assert (only["incremental"]["taken_over"], only["incremental"]["converted"]) == (14, 2)
    assert (only["full"]["taken_over"], only["full"]["converted"]) == (0, 16)
    assert result["wall_ratio"]["median"] > 0
