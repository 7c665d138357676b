"""The README's main job and the codec benchmark run, so neither can rot."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from hugflow_ray import demo
from tests.audio_fixtures import decode_back

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.usefixtures("ray_session")
def test_the_demo_syncs_a_built_dataset_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert demo.main(["--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "complete with 1 row errors, 24 rows" in out
    dataset_dir = next((tmp_path / "datasets").iterdir())
    manifest = [json.loads(line) for line in (dataset_dir / "manifest.jsonl").read_text().splitlines()]
    assert len(manifest) == 23 == len(list((dataset_dir / "audio").glob("*.mp3")))
    for entry in manifest:
        mp3 = decode_back((dataset_dir / entry["audio_filepath"]).read_bytes())
        assert len(mp3.samples) / mp3.sample_rate == pytest.approx(entry["duration"], abs=0.01)
    assert (tmp_path / "processed" / dataset_dir.name).resolve() == dataset_dir.resolve()


def test_the_codec_benchmark_runs_in_smoke_mode(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("codec_throughput", ROOT / "benchmarks" / "codec_throughput.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "bench.json"
    results = module.main(["--clips", "2", "--seconds", "0.5", "--rates", "8000", "--rounds", "1", "--json", str(out)])
    assert json.loads(out.read_text()) == results
    assert results["8000"]["ratio_median"] > 0
