"""MP3 (MPEG audio layer III) rules and the LAME encoder, in one pure module.

The rules decided once (see DESIGN notes):

* Output sample rate: the source rate when MP3 can carry it, otherwise the nearest legal rate at or above it,
  capped at 48 kHz (7 kHz -> 8 kHz, 37.8 kHz -> 44.1 kHz, 96 kHz -> 48 kHz).
* Bitrate: the requested CBR bitrate clamped to the largest legal bitrate at the output rate that does not
  exceed it (192 kbps at 16 kHz -> 160 kbps; LAME caps MPEG-2.5 rates at 64 kbps).
* Every file starts with a LAME "Info" frame that records the encoder delay and padding, so decoders
  (mpg123, ffmpeg) return exactly the source's sample count. lameenc does not write that frame itself.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import lameenc
import numpy as np

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

LAME_ENCODER_DELAY = 576  # samples LAME 3.100 prepends (ENCDELAY); decoders add their own 529 and skip both.
LAME_VERSION_TAG = b"LAME3.100"
MAX_GAPLESS_PADDING = 0xFFF  # 12 bits in the LAME tag

_HEADER_SYNC = 0x7FF
_VERSION_BITS = {0b11: "1", 0b10: "2", 0b00: "2.5"}
_RATE_TABLE = {"1": (44100, 48000, 32000), "2": (22050, 24000, 16000), "2.5": (11025, 12000, 8000)}
_INFO_FLAGS = 0x0F  # frames, bytes, TOC and quality fields present
_TOC_SIZE = 100
_LAME_EXTENSION_SIZE = 36


def output_sample_rate(source_rate: Hz) -> Hz:
    """The sample rate an MP3 of audio at ``source_rate`` is written at (see the module docstring)."""
    if source_rate in LEGAL_SAMPLE_RATES:
        return source_rate
    for rate in LEGAL_SAMPLE_RATES:
        if rate >= source_rate:
            return rate
    return MAX_OUTPUT_RATE


def _version_of(rate: Hz) -> str:
    if rate in MPEG1_RATES:
        return "1"
    if rate in MPEG2_RATES:
        return "2"
    if rate in MPEG25_RATES:
        return "2.5"
    raise ValueError(f"{rate} Hz is not a legal MP3 sample rate; legal rates: {LEGAL_SAMPLE_RATES}")


def _bitrate_table(rate: Hz) -> tuple[Kbps, ...]:
    version = _version_of(rate)
    if version == "1":
        return MPEG1_BITRATES
    if version == "2":
        return MPEG2_BITRATES
    return tuple(b for b in MPEG2_BITRATES if b <= MPEG25_MAX_BITRATE)


def max_bitrate(rate: Hz) -> Kbps:
    """The highest CBR bitrate LAME writes at the legal sample rate ``rate``."""
    return _bitrate_table(rate)[-1]


def legal_bitrate(requested: Kbps, rate: Hz) -> Kbps:
    """The largest legal bitrate at ``rate`` that does not exceed ``requested`` (the smallest legal one if all do)."""
    table = _bitrate_table(rate)
    fitting = [b for b in table if b <= requested]
    return fitting[-1] if fitting else table[0]


def samples_per_frame(rate: Hz) -> int:
    """Samples per channel in one layer III frame at ``rate``."""
    return 1152 if _version_of(rate) == "1" else 576


@dataclass(frozen=True)
class FrameHeader:
    """The fields of one MPEG audio layer III frame header this module needs."""

    raw: int
    version: str
    sample_rate: Hz
    bitrate: Kbps
    padded: bool

    @property
    def length(self) -> int:
        """The frame's length in bytes, header included."""
        return _frame_length(self.version, self.bitrate, self.sample_rate) + int(self.padded)

    @property
    def side_info_size(self) -> int:
        """Bytes of side information after the 4-byte header (mono)."""
        return 17 if self.version == "1" else 9


def _frame_length(version: str, bitrate: Kbps, rate: Hz) -> int:
    coefficient = 144_000 if version == "1" else 72_000
    return coefficient * bitrate // rate


def parse_header(data: bytes, offset: int = 0) -> FrameHeader:
    """Parse the layer III frame header at ``offset``.

    Raises:
        ValueError: there is no valid layer III header at ``offset``.
    """
    if offset + 4 > len(data):
        raise ValueError(f"no MP3 frame header at byte {offset}: the data ends")
    raw = int.from_bytes(data[offset : offset + 4], "big")
    version = _VERSION_BITS.get((raw >> 19) & 0b11)
    layer = (raw >> 17) & 0b11
    bitrate_index = (raw >> 12) & 0xF
    rate_index = (raw >> 10) & 0b11
    if raw >> 21 != _HEADER_SYNC or version is None or layer != 0b01 or bitrate_index in (0, 15) or rate_index == 3:
        raise ValueError(f"no MP3 layer III frame header at byte {offset}")
    bitrates = MPEG1_BITRATES if version == "1" else MPEG2_BITRATES
    return FrameHeader(
        raw=raw,
        version=version,
        sample_rate=_RATE_TABLE[version][rate_index],
        bitrate=bitrates[bitrate_index - 1],
        padded=bool((raw >> 9) & 1),
    )


def count_frames(data: bytes) -> int:
    """Count the back-to-back layer III frames of ``data``.

    Raises:
        ValueError: the data is not a clean sequence of frames.
    """
    offset = 0
    frames = 0
    while offset < len(data):
        header = parse_header(data, offset)
        offset += header.length
        frames += 1
    if offset != len(data):
        raise ValueError("the last MP3 frame is cut short")
    return frames


def _crc16(data: bytes) -> int:
    """CRC-16/ARC, the checksum the LAME tag uses."""
    crc = 0
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


def gapless_info_frame(frames: bytes, num_samples: int) -> bytes:
    """Build the LAME "Info" frame that makes decoders trim LAME's delay and padding.

    Args:
        frames: the encoded audio frames, as LAME produced them from ``num_samples`` samples.
        num_samples: the number of PCM samples (per channel) that went into the encoder.
    """
    first = parse_header(frames)
    frame_count = count_frames(frames)
    padding = frame_count * samples_per_frame(first.sample_rate) - LAME_ENCODER_DELAY - num_samples
    if not 0 <= padding <= MAX_GAPLESS_PADDING:
        raise ValueError(f"LAME padding {padding} does not fit the gapless tag")
    body_size = first.side_info_size + 4 + 4 + 4 + 4 + _TOC_SIZE + 4 + _LAME_EXTENSION_SIZE
    bitrate = next(
        b
        for b in _bitrate_table(first.sample_rate)
        if b >= first.bitrate and _frame_length(first.version, b, first.sample_rate) >= 4 + body_size
    )
    bitrate_index = (MPEG1_BITRATES if first.version == "1" else MPEG2_BITRATES).index(bitrate) + 1
    raw = (first.raw & ~(0xF << 12) & ~(1 << 9)) | (bitrate_index << 12)
    length = _frame_length(first.version, bitrate, first.sample_rate)

    frame = bytearray(length)
    frame[0:4] = raw.to_bytes(4, "big")
    at = 4 + first.side_info_size
    toc = bytes(i * 256 // _TOC_SIZE for i in range(_TOC_SIZE))
    info = b"Info" + struct.pack(">III", _INFO_FLAGS, frame_count, len(frames) + length) + toc + struct.pack(">I", 0)
    frame[at : at + len(info)] = info
    at += len(info)
    lame = bytearray(_LAME_EXTENSION_SIZE)
    lame[0:9] = LAME_VERSION_TAG
    lame[20] = min(first.bitrate, 255)
    lame[21:24] = ((LAME_ENCODER_DELAY << 12) | padding).to_bytes(3, "big")
    frame[at : at + _LAME_EXTENSION_SIZE] = lame
    crc_at = at + _LAME_EXTENSION_SIZE - 2
    frame[crc_at : crc_at + 2] = _crc16(bytes(frame[:crc_at])).to_bytes(2, "big")
    return bytes(frame)


def encode_mono(pcm: np.ndarray, rate: Hz, *, bitrate: Kbps, quality: int) -> bytes:
    """Encode mono int16 PCM at a legal ``rate`` to a gapless CBR MP3.

    Args:
        pcm: 1-D int16 samples, at least one.
        rate: a legal MP3 sample rate; the output keeps it (set explicitly, LAME would otherwise pick).
        bitrate: a bitrate legal at ``rate`` (see :func:`legal_bitrate`).
        quality: LAME's algorithm quality, 0 (best, slowest) to 9 (fastest).
    """
    if pcm.dtype != np.int16 or pcm.ndim != 1 or pcm.size == 0:
        raise ValueError("encode_mono needs a non-empty 1-D int16 array")
    if bitrate not in _bitrate_table(rate):
        raise ValueError(f"{bitrate} kbps is not legal at {rate} Hz; use legal_bitrate()")
    encoder = lameenc.Encoder()
    encoder.set_channels(1)
    encoder.set_in_sample_rate(rate)
    encoder.set_out_sample_rate(rate)
    encoder.set_bit_rate(bitrate)
    encoder.set_quality(quality)
    frames = bytes(encoder.encode(np.ascontiguousarray(pcm).tobytes())) + bytes(encoder.flush())
    return gapless_info_frame(frames, pcm.size) + frames
