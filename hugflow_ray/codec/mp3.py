"""The LAME encoder and the gapless "Info" frame: mono int16 PCM -> a CBR MP3 decoders trim exactly.

Every file starts with a LAME "Info" frame that records the encoder delay and padding, so decoders (mpg123,
ffmpeg) return exactly the source's sample count. lameenc does not write that frame itself. The rules (legal
rates and bitrates) are :mod:`hugflow_ray.core.encoding`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import lameenc
import numpy as np

from hugflow_ray.core.encoding import MPEG1_BITRATES, MPEG2_BITRATES, Hz, Kbps, bitrate_table, samples_per_frame

LAME_ENCODER_DELAY = 576  # samples LAME 3.100 prepends (ENCDELAY); decoders add their own 529 and skip both.
LAME_VERSION_TAG = b"LAME3.100"
MAX_GAPLESS_PADDING = 0xFFF  # 12 bits in the LAME tag

_HEADER_SYNC = 0x7FF
_VERSION_BITS = {0b11: "1", 0b10: "2", 0b00: "2.5"}
_RATE_TABLE = {"1": (44100, 48000, 32000), "2": (22050, 24000, 16000), "2.5": (11025, 12000, 8000)}
_INFO_FLAGS = 0x0F  # frames, bytes, TOC and quality fields present
_TOC_SIZE = 100
_LAME_EXTENSION_SIZE = 36


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


def parse_header(data: bytes | bytearray, offset: int = 0) -> FrameHeader:
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


def count_frames(data: bytes | bytearray) -> int:
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


def gapless_info_frame(frames: bytes | bytearray, num_samples: int) -> bytes:
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
        for b in bitrate_table(first.sample_rate)
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


class StreamingEncoder:
    """Encodes mono int16 PCM handed over in chunks into one gapless CBR MP3, so a long row never holds all of its
    samples at once (LAME buffers whole frames itself: the bytes are those of one call with all the samples)."""

    def __init__(self, rate: Hz, *, bitrate: Kbps, quality: int) -> None:
        """
        Args:
            rate: a legal MP3 sample rate; the output keeps it (set explicitly, LAME would otherwise pick).
            bitrate: a bitrate legal at ``rate`` (see :func:`hugflow_ray.core.encoding.legal_bitrate`).
            quality: LAME's algorithm quality, 0 (best, slowest) to 9 (fastest).
        """
        if bitrate not in bitrate_table(rate):
            raise ValueError(f"{bitrate} kbps is not legal at {rate} Hz; use core.encoding.legal_bitrate()")
        self._encoder = lameenc.Encoder()
        self._encoder.set_channels(1)
        self._encoder.set_in_sample_rate(rate)
        self._encoder.set_out_sample_rate(rate)
        self._encoder.set_bit_rate(bitrate)
        self._encoder.set_quality(quality)
        self._frames = bytearray()
        self.samples = 0

    def add(self, pcm: np.ndarray) -> None:
        """Encode the next 1-D int16 samples."""
        if pcm.dtype != np.int16 or pcm.ndim != 1:
            raise ValueError("StreamingEncoder.add needs a 1-D int16 array")
        if pcm.size:
            self._frames += self._encoder.encode(np.ascontiguousarray(pcm).tobytes())
            self.samples += pcm.size

    def finish(self) -> bytes:
        """The whole MP3: the gapless Info frame, then every audio frame."""
        if self.samples == 0:
            raise ValueError("an MP3 needs at least one sample")
        self._frames += self._encoder.flush()
        self._frames[0:0] = gapless_info_frame(self._frames, self.samples)  # in place: one MP3 in memory, not three
        return bytes(self._frames)


def encode_mono(pcm: np.ndarray, rate: Hz, *, bitrate: Kbps, quality: int) -> bytes:
    """Encode mono int16 PCM (at least one sample) at a legal ``rate`` to a gapless CBR MP3 (see
    :class:`StreamingEncoder`)."""
    encoder = StreamingEncoder(rate, bitrate=bitrate, quality=quality)
    encoder.add(pcm)
    return encoder.finish()
