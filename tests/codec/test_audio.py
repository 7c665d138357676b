"""The audio codec: every input form, rate, channel count and sample format; every kind of bad audio."""

from __future__ import annotations

import io
from pathlib import Path

import av
import numpy as np
import pytest

from hugflow_ray.codec import audio, mp3
from hugflow_ray.codec.audio import EncoderSettings, SafePathResolver
from hugflow_ray.core import encoding
from hugflow_ray.errors import (
    AudioDecodeError,
    AudioError,
    AudioFormatError,
    EmptyAudioError,
    NonFiniteAudioError,
    TruncatedAudioError,
    UnsafeAudioPathError,
)
from tests.audio_fixtures import FakeAudioDecoder, correlation, decode_back, encoded, sine

DEFAULT = EncoderSettings()


def assert_faithful(result: audio.EncodedAudio, source: np.ndarray, source_rate: int) -> None:
    """The decoded-back MP3 has the output rate, one channel, the source duration within one frame, the tone."""
    back = decode_back(result.mp3)
    facts = result.facts
    assert back.sample_rate == facts.output_sample_rate
    assert back.channels == 1
    assert back.bitrate == facts.bitrate_kbps
    frame = encoding.samples_per_frame(facts.output_sample_rate) / facts.output_sample_rate
    assert abs(len(back.samples) / back.sample_rate - source.shape[0] / source_rate) <= frame
    assert facts.duration == pytest.approx(source.shape[0] / source_rate)
    expected = audio.to_pcm16(audio.DecodedAudio(source, source_rate, "x"), facts.output_sample_rate) / 32768
    assert correlation(back.samples, expected) > 0.98


@pytest.mark.parametrize("rate", encoding.LEGAL_SAMPLE_RATES)
def test_legal_rates_are_kept_with_the_bitrate_clamped_to_the_legal_maximum(rate: int) -> None:
    source = sine(rate)
    result = audio.convert({"bytes": encoded(source, rate), "path": "a.flac"})
    assert result.facts.source_sample_rate == rate
    assert result.facts.output_sample_rate == rate
    assert result.facts.bitrate_kbps == min(192, encoding.max_bitrate(rate))
    assert_faithful(result, source, rate)


@pytest.mark.parametrize(("rate", "expected"), [(96000, 48000), (37800, 44100), (7000, 8000), (192000, 48000)])
def test_rates_mp3_cannot_carry_are_resampled_to_the_nearest_legal_rate_above(rate: int, expected: int) -> None:
    source = sine(rate)
    result = audio.convert(encoded(source, rate, format="WAV"))
    assert (result.facts.source_sample_rate, result.facts.output_sample_rate) == (rate, expected)
    assert_faithful(result, source, rate)


def test_bitrate_setting_is_honoured_where_legal() -> None:
    result = audio.convert(encoded(sine(44100), 44100), EncoderSettings(bitrate_kbps=128))
    assert result.facts.bitrate_kbps == 128
    assert decode_back(result.mp3).bitrate == 128


@pytest.mark.parametrize("channels", [1, 2, 6])
def test_any_channel_count_becomes_mono_and_is_recorded(channels: int) -> None:
    source = sine(22050, channels=channels)
    result = audio.convert(encoded(source, 22050))
    assert result.facts.source_channels == channels
    assert_faithful(result, source, 22050)


def test_mono_mixdown_averages_channels() -> None:
    left = sine(16000)[:, 0]
    opposite = np.stack([left, -left], axis=1)
    back = decode_back(audio.convert(encoded(opposite, 16000, format="WAV", subtype="FLOAT")).mp3)
    assert np.abs(back.samples).max() < 0.01


@pytest.mark.parametrize(
    ("format", "subtype"),
    [
        ("WAV", "PCM_U8"),
        ("WAV", "PCM_16"),
        ("WAV", "PCM_24"),
        ("WAV", "PCM_32"),
        ("WAV", "FLOAT"),
        ("WAV", "DOUBLE"),
        ("AIFF", "PCM_S8"),
        ("FLAC", "PCM_16"),
        ("FLAC", "PCM_24"),
        ("OGG", "VORBIS"),
    ],
)
def test_every_file_sample_format_decodes(format: str, subtype: str) -> None:
    source = sine(16000)
    result = audio.convert(encoded(source, 16000, format=format, subtype=subtype))
    assert result.facts.source_format == format.lower()
    assert_faithful(result, source, 16000)


@pytest.mark.parametrize("dtype", [np.int8, np.uint8, np.int16, np.int32, np.float32, np.float64])
def test_every_array_sample_format_decodes(dtype: type) -> None:
    source = sine(16000)
    if np.issubdtype(dtype, np.floating):
        array = source[:, 0].astype(dtype)
    else:
        info = np.iinfo(dtype)
        middle = (int(info.max) + int(info.min) + 1) / 2
        array = np.round(source[:, 0] * (info.max - middle) + middle).astype(dtype)
    result = audio.convert({"array": array, "sampling_rate": 16000})
    assert result.facts.source_format == "array"
    assert_faithful(result, source, 16000)


def test_int16_mono_survives_quantisation_bit_exactly() -> None:
    pcm = np.random.default_rng(0).integers(-32768, 32767, 4000, dtype=np.int16)
    decoded = audio.decode({"array": pcm, "sampling_rate": 16000})
    assert np.array_equal(audio.to_pcm16(decoded, 16000), pcm)


def test_samples_beyond_full_scale_are_clipped_not_wrapped() -> None:
    loud = sine(16000, amplitude=4.0)
    pcm = audio.to_pcm16(audio.decode({"array": loud[:, 0], "sampling_rate": 16000}), 16000)
    positive_peaks = pcm[loud[:, 0] > 1.0]
    assert positive_peaks.size and (positive_peaks == 32767).all()
    assert decode_back(audio.convert({"array": loud[:, 0], "sampling_rate": 16000}).mp3).samples.max() <= 1.0


@pytest.mark.parametrize("layout", ["channels_first", "channels_last"])
def test_two_dimensional_arrays_of_either_layout(layout: str) -> None:
    source = sine(16000, channels=2)
    array = source.T if layout == "channels_first" else source
    result = audio.convert({"array": array, "sampling_rate": 16000})
    assert result.facts.source_channels == 2
    assert_faithful(result, source, 16000)


def test_raw_bytes_bytearray_and_memoryview_are_accepted() -> None:
    data = encoded(sine(16000), 16000)
    results = [audio.convert(form) for form in (data, bytearray(data), memoryview(data))]
    assert len({r.mp3 for r in results}) == 1


def test_bytes_win_over_path_in_a_hub_audio_value() -> None:
    result = audio.convert({"bytes": encoded(sine(16000), 16000), "path": "https://evil.example/x.wav"})
    assert result.facts.source_sample_rate == 16000


def test_audio_decoder_objects_are_recognised_by_their_shape() -> None:
    source = sine(24000, channels=2)
    result = audio.convert(FakeAudioDecoder(source.T.copy(), 24000))
    assert (result.facts.source_format, result.facts.source_channels) == ("decoder", 2)
    assert_faithful(result, source, 24000)


def test_a_failing_audio_decoder_is_a_row_error() -> None:
    class Broken:
        def get_all_samples(self) -> None:
            raise RuntimeError("codec exploded")

    with pytest.raises(AudioDecodeError, match="codec exploded"):
        audio.convert(Broken(), row_id=7)


def test_containers_libsndfile_cannot_read_go_through_pyav() -> None:
    buffer = io.BytesIO()
    source = sine(44100, seconds=1.0)
    with av.open(buffer, mode="w", format="mp4") as container:
        stream = container.add_stream("aac", rate=44100)
        frame = av.AudioFrame.from_ndarray(source.T.copy(), format="fltp", layout="mono")
        frame.sample_rate = 44100
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    result = audio.convert(buffer.getvalue())
    assert result.facts.source_format == "mov"
    assert result.facts.output_sample_rate == 44100
    back = decode_back(result.mp3)
    assert back.channels == 1
    assert abs(result.facts.duration - 1.0) < 0.05  # AAC adds its own priming frames


def test_paths_are_read_only_inside_the_dataset(tmp_path: Path) -> None:
    root = tmp_path / "snapshot"
    (root / "clips").mkdir(parents=True)
    (root / "clips" / "a.flac").write_bytes(encoded(sine(16000), 16000))
    result = audio.convert({"path": "clips/a.flac", "bytes": None}, resolve_path=SafePathResolver(root))
    assert result.facts.source_format == "flac"


def test_symlinks_out_of_the_dataset_are_refused(tmp_path: Path) -> None:
    blobs, root = tmp_path / "blobs", tmp_path / "snapshots" / "abc"
    blobs.mkdir()
    root.mkdir(parents=True)
    (blobs / "0123").write_bytes(encoded(sine(16000), 16000))
    (root / "a.flac").symlink_to(blobs / "0123")
    with pytest.raises(UnsafeAudioPathError, match="links outside"):
        audio.convert({"path": "a.flac"}, resolve_path=SafePathResolver(root))


@pytest.mark.parametrize(
    "path",
    [
        "https://example.com/a.wav",
        "hf://datasets/org/name/a.wav",
        "/etc/passwd",
        "~/.ssh/id_rsa",
        "../outside.flac",
        "clips/../../outside.flac",
        "a\x00.flac",
        "",
    ],
)
def test_unsafe_paths_are_refused(tmp_path: Path, path: str) -> None:
    root = tmp_path / "snapshot"
    root.mkdir()
    (tmp_path / "outside.flac").write_bytes(encoded(sine(16000), 16000))
    with pytest.raises(AudioError) as caught:
        audio.convert({"path": path}, resolve_path=SafePathResolver(root), row_id=3)
    assert caught.value.code in ("unsafe_path", "empty")
    assert caught.value.row_id == 3


def test_a_path_without_the_dataset_files_is_refused_not_opened(tmp_path: Path) -> None:
    target = tmp_path / "a.flac"
    target.write_bytes(encoded(sine(16000), 16000))
    with pytest.raises(UnsafeAudioPathError, match="dataset's own download"):
        audio.convert({"path": str(target), "bytes": None})


def test_missing_files_and_directories_are_row_errors(tmp_path: Path) -> None:
    (tmp_path / "dir.flac").mkdir()
    resolver = SafePathResolver(tmp_path)
    with pytest.raises(AudioDecodeError, match="does not exist"):
        audio.convert({"path": "nope.flac"}, resolve_path=resolver)
    with pytest.raises(UnsafeAudioPathError, match="not a regular file"):
        audio.convert({"path": "dir.flac"}, resolve_path=resolver)


def _truncated_flac() -> bytes:
    data = encoded(sine(16000, seconds=2.0), 16000)
    return data[: len(data) // 2]


def _truncated_wav() -> bytes:
    data = encoded(sine(16000, seconds=2.0), 16000, format="WAV")
    return data[: len(data) // 2]


def _nan_wav() -> bytes:
    samples = sine(16000)
    samples[100, 0] = np.nan
    return encoded(samples, 16000, format="WAV", subtype="FLOAT")


@pytest.mark.parametrize(
    ("value", "error", "code"),
    [
        pytest.param({"array": np.array([0.1, np.nan, 0.2]), "sampling_rate": 16000}, NonFiniteAudioError,
                     "non_finite", id="nan-array"),
        pytest.param({"array": np.array([0.1, np.inf]), "sampling_rate": 16000}, NonFiniteAudioError, "non_finite",
                     id="inf-array"),
        pytest.param(_nan_wav(), NonFiniteAudioError, "non_finite", id="nan-float-wav"),
        pytest.param(b"", EmptyAudioError, "empty", id="empty-bytes"),
        pytest.param({"bytes": None, "path": None}, EmptyAudioError, "empty", id="empty-value"),
        pytest.param({"array": np.zeros(0, np.float32), "sampling_rate": 16000}, EmptyAudioError, "empty",
                     id="zero-samples"),
        pytest.param(encoded(np.zeros((0, 1), np.float32), 16000, format="WAV"), EmptyAudioError, "empty",
                     id="zero-frame-wav"),
        pytest.param(_truncated_flac(), AudioDecodeError, "undecodable", id="truncated-flac"),
        pytest.param(_truncated_wav(), TruncatedAudioError, "truncated", id="truncated-wav"),
        pytest.param(np.random.default_rng(1).bytes(5000), AudioDecodeError, "undecodable", id="random-bytes"),
        pytest.param(b"RIFF\x00\x00\x00\x00WAVEjunk", AudioDecodeError, "undecodable", id="riff-header-only"),
        pytest.param({"array": np.zeros((3, 3, 3)), "sampling_rate": 16000}, AudioFormatError, "format", id="3d"),
        pytest.param({"array": np.zeros((100, 100)), "sampling_rate": 16000}, AudioFormatError, "format",
                     id="ambiguous-layout"),
        pytest.param({"array": np.array(["a", "b"]), "sampling_rate": 16000}, AudioFormatError, "format",
                     id="text-samples"),
        pytest.param({"array": np.zeros(100)}, AudioFormatError, "format", id="no-rate"),
        pytest.param({"array": np.zeros(100), "sampling_rate": 0}, AudioFormatError, "format", id="rate-0"),
        pytest.param({"array": np.zeros(100), "sampling_rate": 44100.5}, AudioFormatError, "format",
                     id="rate-fraction"),
        pytest.param({"array": np.zeros(100), "sampling_rate": "16000"}, AudioFormatError, "format",
                     id="rate-text"),
        pytest.param({"array": np.zeros(100), "sampling_rate": True}, AudioFormatError, "format", id="rate-bool"),
        pytest.param({"array": np.zeros((65, 1000)), "sampling_rate": 16000}, AudioFormatError, "format",
                     id="65-channels"),
        pytest.param(12345, AudioFormatError, "format", id="int-value"),
        pytest.param({"bytes": "not bytes"}, AudioFormatError, "format", id="str-bytes"),
    ],
)
def test_bad_audio_is_a_typed_row_error(value: object, error: type[AudioError], code: str) -> None:
    with pytest.raises(error) as caught:
        audio.convert(value, row_id=42)
    assert caught.value.code == code
    assert caught.value.row_id == 42


@pytest.mark.parametrize("format", ["FLAC", "WAV", "OGG"])
def test_a_valid_file_with_junk_appended_converts_to_the_valid_part(format: str) -> None:
    source = sine(16000)
    clean = encoded(source, 16000, format=format)
    result = audio.convert(clean + np.random.default_rng(2).bytes(3000))
    assert_faithful(result, source, 16000)
    assert result.mp3 == audio.convert(clean).mp3


def test_conversion_is_deterministic() -> None:
    data = encoded(sine(48000, channels=2), 48000)
    assert audio.convert(data).mp3 == audio.convert(data).mp3


def test_every_mp3_starts_with_a_gapless_tag_decoders_honour() -> None:
    source = sine(32000, seconds=0.77)
    result = audio.convert({"array": source[:, 0], "sampling_rate": 32000})
    info = mp3.parse_header(result.mp3)
    assert result.mp3[4 + info.side_info_size : 8 + info.side_info_size] == b"Info"
    with av.open(io.BytesIO(result.mp3)) as container:
        ffmpeg_samples = sum(frame.samples for frame in container.decode(audio=0))
    assert ffmpeg_samples == source.shape[0]
    assert len(decode_back(result.mp3).samples) == source.shape[0]


@pytest.mark.parametrize("bad", [{"bitrate_kbps": 100}, {"bitrate_kbps": 0}, {"quality": 10}, {"quality": -1}])
def test_encoder_settings_reject_illegal_values(bad: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        EncoderSettings(**bad)


def test_audio_facts_round_trip_through_dicts() -> None:
    facts = audio.convert(encoded(sine(8000), 8000)).facts
    assert audio.AudioFacts.from_dict(facts.to_dict()) == facts
