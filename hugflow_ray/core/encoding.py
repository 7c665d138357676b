"""What an MP3 may be: legal sample rates and bitrates, the rate and bitrate policy, and the encoder settings.

Pure rules, no encoder (that is :mod:`hugflow_ray.codec.mp3`), so the settings can validate a bitrate and a plan can
fingerprint its encoder without loading any audio library. The policy, decided once (docs/DESIGN.md):

* Output sample rate: the source rate when MP3 can carry it, otherwise the nearest legal rate at or above it,
  capped at 48 kHz (7 kHz -> 8 kHz, 37.8 kHz -> 44.1 kHz, 96 kHz -> 48 kHz).
* Bitrate: the requested CBR bitrate clamped to the largest legal bitrate at the output rate that does not
  exceed it (192 kbps at 16 kHz -> 160 kbps; LAME caps MPEG-2.5 rates at 64 kbps).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

Seconds = float
Hz = int
Kbps = int

MPEG1_RATES: tuple[Hz, ...] = (32000, 44100, 48000)
MPEG2_RATES: tuple[Hz, ...] = (16000, 22050, 24000)
MPEG25_RATES: tuple[Hz, ...] = (8000, 11025, 12000)
LEGAL_SAMPLE_RATES: tuple[Hz, ...] = tuple(sorted(MPEG1_RATES + MPEG2_RATES + MPEG25_RATES))
MAX_OUTPUT_RATE: Hz = 48000

MPEG1_BITRATES: tuple[Kbps, ...] = (32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320)
MPEG2_BITRATES: tuple[Kbps, ...] = (8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160)
# LAME refuses more than 64 kbps at 8 / 11.025 / 12 kHz (measured: it silently encodes 64 when asked for more).
MPEG25_MAX_BITRATE: Kbps = 64
LEGAL_BITRATES: tuple[Kbps, ...] = tuple(sorted(set(MPEG1_BITRATES) | set(MPEG2_BITRATES)))


def output_sample_rate(source_rate: Hz) -> Hz:
    """The sample rate an MP3 of audio at ``source_rate`` is written at (see the module docstring)."""
    if source_rate in LEGAL_SAMPLE_RATES:
        return source_rate
    for rate in LEGAL_SAMPLE_RATES:
        if rate >= source_rate:
            return rate
    return MAX_OUTPUT_RATE


def mpeg_version(rate: Hz) -> str:
    if rate in MPEG1_RATES:
        return "1"
    if rate in MPEG2_RATES:
        return "2"
    if rate in MPEG25_RATES:
        return "2.5"
    raise ValueError(f"{rate} Hz is not a legal MP3 sample rate; legal rates: {LEGAL_SAMPLE_RATES}")


def bitrate_table(rate: Hz) -> tuple[Kbps, ...]:
    version = mpeg_version(rate)
    if version == "1":
        return MPEG1_BITRATES
    if version == "2":
        return MPEG2_BITRATES
    return tuple(b for b in MPEG2_BITRATES if b <= MPEG25_MAX_BITRATE)


def max_bitrate(rate: Hz) -> Kbps:
    """The highest CBR bitrate LAME writes at the legal sample rate ``rate``."""
    return bitrate_table(rate)[-1]


def legal_bitrate(requested: Kbps, rate: Hz) -> Kbps:
    """The largest legal bitrate at ``rate`` that does not exceed ``requested`` (the smallest legal one if all do)."""
    table = bitrate_table(rate)
    fitting = [b for b in table if b <= requested]
    return fitting[-1] if fitting else table[0]


def samples_per_frame(rate: Hz) -> int:
    """Samples per channel in one layer III frame at ``rate``."""
    return 1152 if mpeg_version(rate) == "1" else 576


@dataclass(frozen=True)
class EncoderSettings:
    """How MP3s are encoded; part of a dataset's fingerprint.

    Attributes:
        bitrate_kbps: requested CBR bitrate, clamped per file to the legal maximum at its output rate.
        quality: LAME's algorithm quality, 0 (best, slowest) to 9 (fastest).
    """

    bitrate_kbps: int = 192
    quality: int = 3

    def __post_init__(self) -> None:
        if self.bitrate_kbps not in LEGAL_BITRATES:
            raise ValueError(f"{self.bitrate_kbps} kbps is not an MP3 bitrate; choose one of {LEGAL_BITRATES}")
        if not 0 <= self.quality <= 9:
            raise ValueError(f"LAME quality {self.quality} is outside 0..9")


@dataclass(frozen=True)
class AudioFacts:
    """What the conversion of one row did, recorded next to its MP3."""

    duration: Seconds
    source_sample_rate: Hz
    output_sample_rate: Hz
    bitrate_kbps: int
    source_channels: int
    source_format: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AudioFacts:
        return cls(**{name: data[name] for name in cls.__dataclass_fields__})
