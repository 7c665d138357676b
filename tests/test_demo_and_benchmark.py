"""The README's main job and the codec benchmark run, so neither can rot."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from hugflow_ray import demo
from tests.audio_fixtures import decode_back

ROOT = Path(__file__).resolve().parents[1]


def test_the_demo_converts_every_good_row_and_reports_the_bad_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert demo.main(["--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "row error [undecodable]" in out
    mp3s = sorted(tmp_path.glob("*.mp3"))
    assert [p.stem for p in mp3s] == sorted(k for k in demo.sample_rows() if k != "truncated_flac")
    for path in mp3s:
        facts = json.loads(path.with_suffix(".json").read_text())
        assert decode_back(path.read_bytes()).sample_rate == facts["output_sample_rate"]


def test_the_codec_benchmark_runs_in_smoke_mode(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("codec_throughput", ROOT / "benchmarks" / "codec_throughput.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "bench.json"
    results = module.main(["--clips", "2", "--seconds", "0.5", "--rates", "8000", "--rounds", "1", "--json", str(out)])
    assert json.loads(out.read_text()) == results
    assert results["8000"]["ratio_median"] > 0
