"""Audio that real datasets carry, made by tools no one here wrote (FFmpeg's encoders and muxers): MP3s without a
Xing/Info header, VBR, big ID3v2 pictures, FLAC written to a pipe, a FLAC header that lies; and rows that fail
in ways no decoder names. Each used to be rejected, cut short or to crash the whole sync."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest

from hugflow_ray.codec import audio, mp3
from hugflow_ray.errors import AudioDecodeError, AudioTooLongError
from tests.audio_fixtures import decode_back, encoded, sine

SECONDS = 9.5
RATE = 16000


def ffmpeg(*args: str, stdout: Path | None = None) -> None:
    """Run FFmpeg (installed by .ci/run; the benchmark needs it too)."""
    binary = shutil.which("ffmpeg")
    assert binary is not None, "ffmpeg is needed: apt-get install ffmpeg (.ci/run installs it)"
    with open(stdout, "wb") if stdout else open(os.devnull, "wb") as out:
        subprocess.run([binary, "-loglevel", "error", "-y", *args], check=True, stdout=out)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("real-audio")
    wav = root / "in.wav"
    wav.write_bytes(encoded(sine(RATE, SECONDS), RATE, format="WAV", subtype="PCM_16"))
    made = {
        "cbr_no_xing": root / "cbr_no_xing.mp3", "vbr_no_xing": root / "vbr_no_xing.mp3",
        "big_id3": root / "big_id3.mp3", "pipe": root / "pipe.flac",
    }
    ffmpeg("-i", str(wav), "-c:a", "libmp3lame", "-b:a", "128k", "-write_xing", "0", str(made["cbr_no_xing"]))
    ffmpeg("-i", str(wav), "-c:a", "libmp3lame", "-q:a", "2", "-write_xing", "0", str(made["vbr_no_xing"]))
    picture = root / "cover.png"
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=1024x1024:rate=1", "-frames:v", "1", str(picture))
    ffmpeg("-i", str(wav), "-i", str(picture), "-map", "0", "-map", "1", "-c:a", "libmp3lame", "-c:v", "copy",
           "-id3v2_version", "3", str(made["big_id3"]))
    ffmpeg("-i", str(wav), "-f", "flac", "-", stdout=made["pipe"])
    return made


def ffmpeg_samples(path: Path) -> int:
    """How many samples FFmpeg decodes from the file: the reference length."""
    with av.open(str(path)) as container:
        return sum(frame.samples for frame in container.decode(container.streams.audio[0]))


@pytest.mark.parametrize("name", ["cbr_no_xing", "vbr_no_xing", "big_id3"])
def test_valid_mp3s_decode_to_the_end_of_their_stream(files: dict[str, Path], name: str) -> None:
    data = files[name].read_bytes()
    result = audio.convert({"bytes": data, "path": files[name].name})
    assert result.facts.duration == pytest.approx(ffmpeg_samples(files[name]) / RATE)
    assert result.facts.duration >= SECONDS
    back = decode_back(result.mp3)
    assert len(back.samples) == pytest.approx(result.facts.duration * RATE, abs=1)


def test_a_flac_written_to_a_pipe_converts_whole(files: dict[str, Path]) -> None:
    result = audio.convert(files["pipe"].read_bytes())
    assert result.facts.duration == pytest.approx(SECONDS)


def test_a_flac_header_that_declares_an_absurd_length_is_a_row_error_not_an_allocation() -> None:
    data = bytearray(encoded(sine(RATE, 1.0), RATE))
    assert data[:4] == b"fLaC"
    fields = int.from_bytes(data[18:26], "big")
    data[18:26] = (fields | (1 << 36) - 1).to_bytes(8, "big")  # total samples: 2^36 - 1 (about 50 days)
    with pytest.raises(AudioDecodeError, match="of the 68719476735 samples its header declares"):
        audio.convert(bytes(data))


def test_audio_longer_than_the_limit_is_that_rows_error() -> None:
    with pytest.raises(AudioTooLongError) as caught:
        audio.convert(encoded(sine(RATE, 3.0), RATE), max_seconds=2.0, row_id=7)
    assert caught.value.code == "too_long" and caught.value.row_id == 7
    assert audio.convert(encoded(sine(RATE, 3.0), RATE), max_seconds=3.0).facts.duration == pytest.approx(3.0)


def test_long_audio_converts_chunk_by_chunk_to_the_same_mp3() -> None:
    """Several decode chunks (with resampling across their edges) give the MP3 of one pass over all samples."""
    flac = encoded(sine(96000, 2.5, channels=2), 96000)  # 240,000 frames: 4 chunks, resampled to 48 kHz
    assert 240_000 > 3 * audio.CHUNK_FRAMES
    whole = audio.to_pcm16(audio.decode(flac), 48000)  # every sample at once, resampled in one call
    assert audio.convert(flac).mp3 == mp3.encode_mono(whole, 48000, bitrate=192, quality=3)


@pytest.mark.subprocess_sync
def test_an_unexpected_error_in_one_row_is_that_rows_error(tmp_path: Path) -> None:
    """A failpoint raises inside row 2 of a real local sync (a fresh process, its own embedded Ray)."""
    from tests.datasets_fixtures import parquet_bytes, speech_features, speech_records

    data = tmp_path / "ds" / "data"
    data.mkdir(parents=True)
    (data / "train-00000-of-00001.parquet").write_bytes(
        parquet_bytes(speech_records(5), speech_features(), row_group_size=5))
    request = tmp_path / "requests" / "add" / "ds.yaml"
    request.parent.mkdir(parents=True)
    request.write_text("path: ../../ds\ndescription: d\n")
    env = {**os.environ, "HUGFLOW_FAILPOINT": "raise-in-row:2", "STORAGE_ROOT": str(tmp_path / "datasets"),
           "STATE_DIR": str(tmp_path / "state"), "PROCESSED_ROOT": str(tmp_path / "processed"),
           "MAX_ROW_ERROR_RATE": "0.5"}
    result = subprocess.run([sys.executable, "-m", "hugflow_ray", "local-sync", str(request)], env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "completed with 1 row errors" in result.stdout and "Traceback" not in result.stderr
    dataset = next((tmp_path / "datasets").iterdir())
    assert sorted(int(p.stem) for p in (dataset / "json").glob("*.json")) == [0, 1, 3, 4]
    errors = subprocess.run([sys.executable, "-m", "hugflow_ray", "status", dataset.name, "--errors"], env=env,
                            capture_output=True, text=True, timeout=60)
    assert "row 2: [unexpected] RuntimeError: failpoint raise-in-row:2" in errors.stdout
    assert json.loads((dataset / "json" / "3.json").read_text())["audio"].startswith("audio/")


def test_a_sync_of_real_files_keeps_every_good_row_and_records_the_bad(files: dict[str, Path], tmp_path: Path,
                                                                       ray_session: None) -> None:
    """Pipe FLAC, Xing-less and VBR MP3s and a lying FLAC in one dataset: one row error, the rest converted."""
    import datasets

    from hugflow_ray.api import load_settings, row_errors, sync
    from tests.datasets_fixtures import parquet_bytes

    liar = bytearray(encoded(sine(RATE, 1.0), RATE))
    liar[18:26] = (int.from_bytes(liar[18:26], "big") | (1 << 36) - 1).to_bytes(8, "big")
    values = [files["pipe"].read_bytes(), files["vbr_no_xing"].read_bytes(), bytes(liar),
              files["cbr_no_xing"].read_bytes()]
    records = [{"audio": {"bytes": v, "path": f"r{i}.x"}, "text": str(i)} for i, v in enumerate(values)]
    features = datasets.Features({"audio": datasets.Audio(), "text": datasets.Value("string")})
    (tmp_path / "ds").mkdir()
    (tmp_path / "ds" / "train.parquet").write_bytes(parquet_bytes(records, features, row_group_size=2))
    request = tmp_path / "requests" / "add" / "real.yaml"
    request.parent.mkdir(parents=True)
    request.write_text("path: ../../ds/train.parquet\ndescription: d\n")
    settings = load_settings(storage_root=tmp_path / "datasets", state_dir=tmp_path / "state",
                             processed_root=tmp_path / "processed", max_row_error_rate=0.5)
    report = sync(request, settings)
    assert (report.state, report.rows_done, report.row_errors) == ("complete", 4, 1)
    assert [(e.row_id, e.error_code) for e in row_errors(settings, report.dataset_name)] == [(2, "undecodable")]
    durations = [json.loads((report.dataset_dir / "json" / f"{i}.json").read_text())["audio_info"]["duration"]
                 for i in (0, 1, 3)]
    assert durations[0] == pytest.approx(SECONDS) and min(durations) >= SECONDS


def test_decoded_chunks_are_float32_frames_by_channels() -> None:
    decoded = audio.decode(io.BytesIO(encoded(sine(RATE, 0.5, channels=2), RATE)).getvalue())
    assert decoded.samples.dtype == np.float32 and decoded.samples.shape == (RATE // 2, 2)
