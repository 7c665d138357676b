"""Tiny synthetic audio made in code, and an independent decode-back check for produced MP3s."""

from __future__ import annotations

import io
import types
from dataclasses import dataclass

import numpy as np
import soundfile

from hugflow_ray.codec import mp3

TONE_HZ = 440.0


def sine(rate: int, seconds: float = 0.5, channels: int = 1, *, amplitude: float = 0.3) -> np.ndarray:
    """A float32 sine, shape (frames, channels); channel k is phase-shifted so channels differ."""
    t = np.arange(int(round(rate * seconds))) / rate
    columns = [amplitude * np.sin(2 * np.pi * TONE_HZ * t + k * 0.3) for k in range(channels)]
    return np.stack(columns, axis=1).astype(np.float32)


def encoded(samples: np.ndarray, rate: int, *, format: str = "FLAC", subtype: str | None = None) -> bytes:
    """``samples`` written as an audio file in memory with libsndfile."""
    buffer = io.BytesIO()
    soundfile.write(buffer, samples, rate, format=format, subtype=subtype)
    return buffer.getvalue()


@dataclass(frozen=True)
class DecodedMp3:
    samples: np.ndarray  # (frames,) float64, mono
    sample_rate: int
    channels: int
    bitrate: int


def decode_back(data: bytes) -> DecodedMp3:
    """Decode an MP3 with libsndfile's mpg123 (not the encoder under test) and read its first audio frame header."""
    samples, rate = soundfile.read(io.BytesIO(data), always_2d=True)
    info = mp3.parse_header(data)
    audio_header = mp3.parse_header(data, info.length)
    channel_mode = (audio_header.raw >> 6) & 0b11
    return DecodedMp3(
        samples=samples[:, 0],
        sample_rate=rate,
        channels=1 if channel_mode == 0b11 else 2,
        bitrate=audio_header.bitrate,
    )


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    n = min(len(a), len(b))
    return float(np.corrcoef(a[:n], b[:n])[0, 1])


class FakeAudioDecoder:
    """Shaped like torchcodec's AudioDecoder: get_all_samples() -> .data (channels x frames), .sample_rate."""

    def __init__(self, data: np.ndarray, rate: int) -> None:
        self._samples = types.SimpleNamespace(data=data, sample_rate=rate)

    def get_all_samples(self) -> types.SimpleNamespace:
        return self._samples
