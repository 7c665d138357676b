"""The audio codec: any audio value a dataset row can hold -> mono MP3 bytes and the facts of the conversion.

Pure: no Ray, no ``datasets``, no network. Input forms (see :func:`decode`):

* ``{"bytes": b"...", "path": ...}`` — the Hub's undecoded ``Audio`` value; the bytes win;
* ``{"path": "clips/a.flac", "bytes": None}`` — a file inside the dataset's own files, reached only through a
  :class:`SafePathResolver` (never a URL, never an arbitrary local path);
* ``{"array": ..., "sampling_rate": ...}`` — decoded samples, 1-D or 2-D, any integer or float sample type;
* raw ``bytes``;
* objects shaped like torchcodec's ``AudioDecoder`` (``get_all_samples()`` -> ``.data`` (channels x samples),
  ``.sample_rate``), recognised by duck typing so that torchcodec stays optional.

Every failure is a typed :class:`~hugflow_ray.errors.AudioError`; nothing here writes files.
"""

from __future__ import annotations

import io
import itertools
import os
import stat
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import soundfile
import soxr

from hugflow_ray.codec import mp3
from hugflow_ray.core.encoding import AudioFacts, EncoderSettings, Hz, legal_bitrate, output_sample_rate
from hugflow_ray.errors import (
    AudioDecodeError,
    AudioError,
    AudioFormatError,
    AudioTooLongError,
    EmptyAudioError,
    NonFiniteAudioError,
    TruncatedAudioError,
    UnsafeAudioPathError,
)

MIN_SAMPLE_RATE: Hz = 1000
MAX_SAMPLE_RATE: Hz = 768_000
MAX_CHANNELS = 64
MAX_AUDIO_PATH_LENGTH = 4096
INT16_SCALE = 32768.0
CHUNK_FRAMES = 1 << 16  # frames decoded at a time: 1.4 s of 48 kHz audio, 2 MiB of float32 stereo
_LIBSNDFILE_UNRECOGNISED_FORMAT = 1  # SF_ERR_UNRECOGNISED_FORMAT: only then is another decoder worth a try
_UNKNOWN_LENGTH = 1 << 62  # libsndfile's length of a stream that does not declare one (SF_COUNT_MAX)
_ESTIMATED_LENGTH_FORMATS = frozenset({"mp3", "mpeg"})  # libsndfile only estimates their length
_INTEGER_SCALES: dict[np.dtype, tuple[float, float]] = {  # dtype -> (offset, scale) onto [-1, 1)
    np.dtype(np.int8): (0.0, 128.0),
    np.dtype(np.uint8): (128.0, 128.0),
    np.dtype(np.int16): (0.0, 32768.0),
    np.dtype(np.uint16): (32768.0, 32768.0),
    np.dtype(np.int32): (0.0, 2147483648.0),
    np.dtype(np.int64): (0.0, 9223372036854775808.0),
}


@dataclass(frozen=True)
class EncodedAudio:
    """An MP3 file's bytes and the facts of its conversion."""

    mp3: bytes
    facts: AudioFacts


@dataclass(frozen=True)
class DecodedAudio:
    """Samples as float32, shape (frames, channels), values nominally in [-1, 1]."""

    samples: np.ndarray
    sample_rate: Hz
    source_format: str

    @property
    def channels(self) -> int:
        return self.samples.shape[1]


@runtime_checkable
class AudioDecoderLike(Protocol):
    """What hugflow-ray uses of torchcodec's ``AudioDecoder``."""

    def get_all_samples(self) -> Any: ...


PathResolver = Callable[[str], Path]


class SafePathResolver:
    """Resolves an audio ``path`` from a dataset row to a regular file inside the dataset's own files.

    A row's ``path`` is untrusted. Accepted: a relative path that stays inside ``root`` lexically and whose
    real location (symlinks followed) lies inside ``root`` too. Refused: URLs, absolute paths, ``..`` escapes,
    symlinks out, NUL bytes, anything that is not a regular file.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(os.path.abspath(root))
        self._real_root = Path(os.path.realpath(root))

    def __call__(self, path: str) -> Path:
        if not isinstance(path, str) or not path:
            raise UnsafeAudioPathError("the audio path is empty; the row has neither audio bytes nor a file")
        if "\x00" in path or len(path) > MAX_AUDIO_PATH_LENGTH:
            raise UnsafeAudioPathError("the audio path contains a NUL byte or is too long")
        if "://" in path or path.startswith(("hf:", "s3:", "gs:", "file:")):
            raise UnsafeAudioPathError(f"the audio path {path!r} is a URL; only files inside the dataset are read")
        if os.path.isabs(path) or path.startswith("~"):
            raise UnsafeAudioPathError(f"the audio path {path!r} is absolute; only files inside the dataset are read")
        candidate = Path(os.path.normpath(self.root / path))
        if not candidate.is_relative_to(self.root):
            raise UnsafeAudioPathError(f"the audio path {path!r} leaves the dataset directory")
        real = Path(os.path.realpath(candidate))
        if not real.is_relative_to(self._real_root):
            raise UnsafeAudioPathError(f"the audio path {path!r} links outside the dataset's files")
        try:
            mode = real.stat().st_mode
        except OSError as e:
            raise AudioDecodeError(f"the audio file {path!r} does not exist in the dataset") from e
        if not stat.S_ISREG(mode):
            raise UnsafeAudioPathError(f"the audio path {path!r} is not a regular file")
        return real


@dataclass
class _Source:
    """Audio being decoded: what its header says, and its samples as float32 chunks of shape (frames, channels).

    Chunks are decoded on demand, at most ``CHUNK_FRAMES`` at a time, so no declared length is ever trusted for an
    allocation and a long row never holds all of its samples.
    """

    sample_rate: Hz
    channels: int
    source_format: str
    chunks: Iterator[np.ndarray]


def decode(audio: object, *, resolve_path: PathResolver | None = None) -> DecodedAudio:
    """Decode any supported audio value (see the module docstring) to float32 samples, all at once.

    Raises:
        AudioError: the value is not usable audio; the subclass says why.
    """
    source = _open(audio, resolve_path)
    chunks = list(source.chunks)
    if not chunks:
        raise EmptyAudioError("the audio holds no samples")
    return DecodedAudio(np.concatenate(chunks), source.sample_rate, source.source_format)


def _open(audio: object, resolve_path: PathResolver | None) -> _Source:
    if isinstance(audio, (bytes, bytearray, memoryview)):
        return _open_bytes(bytes(audio))
    if isinstance(audio, Mapping):
        return _open_mapping(audio, resolve_path)
    if isinstance(audio, AudioDecoderLike):
        return _open_decoder(audio)
    raise AudioFormatError(
        f"audio of type {type(audio).__name__} is not supported; expected bytes, a dict with 'bytes', 'path' or "
        "'array' + 'sampling_rate', or an AudioDecoder"
    )


def _open_mapping(audio: Mapping[str, Any], resolve_path: PathResolver | None) -> _Source:
    if audio.get("bytes") is not None:
        return _open(audio["bytes"], resolve_path)
    if audio.get("array") is not None:
        if "sampling_rate" not in audio:
            raise AudioFormatError("audio with an 'array' needs a 'sampling_rate'")
        return _whole(_from_array(audio["array"], audio["sampling_rate"], channels_first=None, source_format="array"))
    path = audio.get("path")
    if path is None:
        raise EmptyAudioError("the audio value has neither bytes, nor an array, nor a path")
    if resolve_path is None:
        raise UnsafeAudioPathError(
            f"the audio value only names a file ({path!r}); files are read only from the dataset's own download"
        )
    return _open_bytes(resolve_path(path).read_bytes())


def _open_decoder(decoder: AudioDecoderLike) -> _Source:
    try:
        samples = decoder.get_all_samples()
        data, rate = samples.data, samples.sample_rate
    except Exception as e:  # an arbitrary decoder's own failure: one row's error, never a crash
        raise AudioDecodeError(f"the AudioDecoder failed: {e}") from e
    return _whole(_from_array(data, rate, channels_first=True, source_format="decoder"))


def _whole(decoded: DecodedAudio) -> _Source:
    """Samples already in memory, as a source of one chunk."""
    return _Source(decoded.sample_rate, decoded.channels, decoded.source_format, iter([decoded.samples]))


def _open_bytes(data: bytes) -> _Source:
    if not data:
        raise EmptyAudioError("the audio bytes are empty")
    try:
        f = soundfile.SoundFile(io.BytesIO(data))
    except soundfile.LibsndfileError as e:
        if e.code != _LIBSNDFILE_UNRECOGNISED_FORMAT:
            raise AudioDecodeError(f"the audio is corrupt: {e.error_string}") from e
        return _open_with_av(data)
    source_format = f.format.lower()
    if source_format in _ESTIMATED_LENGTH_FORMATS or f.frames >= _UNKNOWN_LENGTH:
        # libsndfile only estimates an MP3's length (without a Xing/Info header), and fails at the end of a stream
        # that declares none (a FLAC written to a pipe): FFmpeg decodes both to the end of the stream
        f.close()
        return _open_with_av(data)
    if source_format == "wav" and _wav_is_truncated(data):
        f.close()
        raise TruncatedAudioError("the WAV audio is truncated: its header promises more samples than it holds")
    _check_header(f.samplerate, f.channels)
    return _Source(f.samplerate, f.channels, source_format, _sndfile_chunks(f))


def _sndfile_chunks(f: soundfile.SoundFile) -> Iterator[np.ndarray]:
    """A libsndfile stream's samples, chunk by chunk, read until the stream ends; then checked against the length
    its header declares (a corrupt or cut file holds fewer; libsndfile itself would pretend it is complete)."""
    declared = f.frames
    frames = 0
    with f:
        while True:
            try:
                chunk = f.read(CHUNK_FRAMES, dtype="float32", always_2d=True)
            except soundfile.LibsndfileError as e:
                raise AudioDecodeError(f"the audio is corrupt: {e.error_string} (after {frames} of the {declared} "
                                       "samples its header declares)") from e
            if len(chunk):
                frames += len(chunk)
                yield _finite(chunk)
            if len(chunk) < CHUNK_FRAMES:
                break
    if frames < declared:
        raise TruncatedAudioError(
            f"the {f.format} audio is truncated: its header promises {declared} samples, it holds {frames}"
        )


def _wav_is_truncated(data: bytes) -> bool:
    """True when a RIFF/WAVE file's ``data`` chunk claims more bytes than the file holds.

    libsndfile silently shortens such files to what is there.
    """
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        return False
    offset = 12
    while offset + 8 <= len(data):
        chunk_id = data[offset : offset + 4]
        size = int.from_bytes(data[offset + 4 : offset + 8], "little")
        if chunk_id == b"data":
            streaming = size in (0, 0xFFFFFFFF)
            return not streaming and offset + 8 + size > len(data)
        offset += 8 + size + (size & 1)
    return True


def _open_with_av(data: bytes) -> _Source:
    """Containers libsndfile cannot read (MP4/AAC, WebM/Opus...) and MP3s, decoded by FFmpeg to the stream's end."""
    import av  # PyAV

    try:
        container = av.open(io.BytesIO(data), mode="r")
    except av.FFmpegError as e:
        raise AudioDecodeError("the bytes are not audio any decoder here can read") from e
    if not container.streams.audio:
        container.close()
        raise AudioDecodeError("the file holds no audio stream")
    stream = container.streams.audio[0]
    chunks = _av_chunks(container, stream)
    first = next(chunks, None)
    if first is None:
        raise EmptyAudioError("the audio holds no samples")
    _check_header(stream.rate, first.shape[1])
    return _Source(stream.rate, first.shape[1], container.format.name.split(",")[0], itertools.chain([first], chunks))


def _av_chunks(container: Any, stream: Any) -> Iterator[np.ndarray]:
    """FFmpeg's decoded frames gathered into chunks of about ``CHUNK_FRAMES`` frames."""
    import av

    resampler = av.AudioResampler(format="fltp")
    pending: list[np.ndarray] = []
    size = 0
    with container:
        try:
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    pending.append(out.to_ndarray().T)
                    size += pending[-1].shape[0]
                    if size >= CHUNK_FRAMES:
                        yield _finite(np.concatenate(pending).astype(np.float32, copy=False))
                        pending, size = [], 0
        except av.FFmpegError as e:
            raise AudioDecodeError(f"the audio is corrupt: {e}") from e
    if pending:
        yield _finite(np.concatenate(pending).astype(np.float32, copy=False))


def _from_array(
    array: object, rate: object, *, channels_first: bool | None, source_format: str, check_finite: bool = True
) -> DecodedAudio:
    try:
        samples = np.asarray(array)
    except Exception as e:  # objects that refuse conversion (GPU tensors, ragged lists)
        raise AudioFormatError(f"the audio array cannot be read as numbers: {e}") from e
    if samples.ndim == 1:
        samples = samples[:, None]
    elif samples.ndim == 2:
        if channels_first is None:
            channels_first = _channels_first(samples.shape)
        if channels_first:
            samples = samples.T
    else:
        raise AudioFormatError(f"the audio array has {samples.ndim} dimensions; expected 1 (mono) or 2 (channels)")
    return _checked(_to_float(samples), rate, source_format, check_finite=check_finite)


def _channels_first(shape: tuple[int, ...]) -> bool:
    """Guess the layout of a 2-D array whose producer did not say: channels are the short axis."""
    rows, columns = shape
    if rows <= MAX_CHANNELS and rows < columns:
        return True
    if columns <= MAX_CHANNELS and columns < rows:
        return False
    raise AudioFormatError(f"the audio array's shape {shape} does not say which axis holds the channels")


def _to_float(samples: np.ndarray) -> np.ndarray:
    if samples.dtype.kind == "f":
        return samples.astype(np.float32, copy=False)
    if samples.dtype in _INTEGER_SCALES:
        offset, scale = _INTEGER_SCALES[samples.dtype]
        return ((samples.astype(np.float64) - offset) / scale).astype(np.float32)
    raise AudioFormatError(f"audio samples of type {samples.dtype} are not supported; use integer or float samples")


def _checked(samples: np.ndarray, rate: object, source_format: str, *, check_finite: bool = True) -> DecodedAudio:
    rate = _check_header(rate, samples.shape[1])
    if samples.shape[0] == 0:
        raise EmptyAudioError("the audio holds no samples")
    return DecodedAudio(samples=_finite(samples) if check_finite else samples, sample_rate=rate,
                        source_format=source_format)


def _check_header(rate: object, channels: int) -> Hz:
    """The sample rate as a whole number of Hz, once it and the channel count are known to be usable."""
    if isinstance(rate, bool) or not isinstance(rate, (int, float, np.integer, np.floating)) or rate != int(rate):
        raise AudioFormatError(f"the sample rate {rate!r} is not a whole number of Hz")
    rate = int(rate)
    if not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        raise AudioFormatError(f"the sample rate {rate} Hz is outside {MIN_SAMPLE_RATE}..{MAX_SAMPLE_RATE} Hz")
    if channels == 0 or channels > MAX_CHANNELS:
        raise AudioFormatError(f"the audio has {channels} channels; 1..{MAX_CHANNELS} are supported")
    return rate


def _finite(samples: np.ndarray) -> np.ndarray:
    if not np.isfinite(samples).all():
        raise NonFiniteAudioError("the audio contains NaN or infinite samples")
    return samples


def to_lossless_wav(audio: object) -> bytes:
    """Decoded audio (an array dict, an AudioDecoder) as float WAV bytes: exact samples, NaN kept, for staging.

    Raises:
        AudioError: the value is not audio at all (shape, type, rate).
    """
    if isinstance(audio, Mapping) and audio.get("array") is not None:
        decoded = _from_array(audio["array"], audio.get("sampling_rate"), channels_first=None, source_format="array",
                              check_finite=False)
    elif isinstance(audio, AudioDecoderLike) and not isinstance(audio, Mapping):
        samples = audio.get_all_samples()
        decoded = _from_array(samples.data, samples.sample_rate, channels_first=True, source_format="decoder",
                              check_finite=False)
    else:
        raise AudioFormatError("only decoded audio (an array or an AudioDecoder) is staged as WAV")
    buffer = io.BytesIO()
    soundfile.write(buffer, decoded.samples, decoded.sample_rate, format="WAV", subtype="FLOAT")
    return buffer.getvalue()


class _Pcm16:
    """Float chunks of one source -> mono, resampled to the output rate when it differs, int16 with clipping.

    Fed chunk by chunk (soxr's stream gives the same samples as one call with everything).
    """

    def __init__(self, source_rate: Hz, rate: Hz) -> None:
        self._resampler = soxr.ResampleStream(source_rate, rate, 1, dtype="float32", quality="HQ") \
            if rate != source_rate else None

    def push(self, chunk: np.ndarray, *, last: bool = False) -> np.ndarray:
        mono = chunk.mean(axis=1, dtype=np.float32) if chunk.shape[1] > 1 else chunk[:, 0]
        if self._resampler is not None:
            mono = self._resampler.resample_chunk(mono, last=last)
        return np.clip(np.rint(mono * INT16_SCALE), -32768, 32767).astype(np.int16)

    def finish(self) -> np.ndarray:
        """What the resampler still holds."""
        return self.push(np.zeros((0, 1), np.float32), last=True)


def to_pcm16(decoded: DecodedAudio, rate: Hz) -> np.ndarray:
    """Mix to mono, resample to ``rate`` when it differs, and quantise to int16 with clipping."""
    pcm = _Pcm16(decoded.sample_rate, rate)
    return np.concatenate([pcm.push(decoded.samples), pcm.finish()])


def convert(
    audio: object,
    settings: EncoderSettings = EncoderSettings(),
    *,
    resolve_path: PathResolver | None = None,
    row_id: int | None = None,
    max_seconds: float | None = None,
) -> EncodedAudio:
    """Decode any supported audio value and encode it as a mono CBR MP3 under the rate and bitrate policy of
    :mod:`hugflow_ray.core.encoding`, chunk by chunk: a row's memory is a chunk of samples plus its MP3.

    Raises:
        AudioError: the row's audio is unusable (or longer than ``max_seconds``); ``row_id`` is attached to it.
    """
    try:
        return _encode(_open(audio, resolve_path), settings, max_seconds)
    except AudioError as e:
        e.row_id = row_id
        raise


def _encode(source: _Source, settings: EncoderSettings, max_seconds: float | None) -> EncodedAudio:
    rate = output_sample_rate(source.sample_rate)
    bitrate = legal_bitrate(settings.bitrate_kbps, rate)
    max_frames = None if max_seconds is None else int(max_seconds * source.sample_rate)
    pcm = _Pcm16(source.sample_rate, rate)
    encoder = mp3.StreamingEncoder(rate, bitrate=bitrate, quality=settings.quality)
    frames = 0
    for chunk in source.chunks:
        frames += chunk.shape[0]
        if max_frames is not None and frames > max_frames:
            raise AudioTooLongError(f"the audio is longer than the {max_seconds:.0f} s a row may hold "
                                    "(MAX_AUDIO_SECONDS)")
        encoder.add(pcm.push(chunk))
    if frames == 0:
        raise EmptyAudioError("the audio holds no samples")
    encoder.add(pcm.finish())
    if encoder.samples == 0:
        raise EmptyAudioError("the audio is too short to hold one sample at the output rate")
    facts = AudioFacts(
        duration=frames / source.sample_rate,
        source_sample_rate=source.sample_rate,
        output_sample_rate=rate,
        bitrate_kbps=bitrate,
        source_channels=source.channels,
        source_format=source.source_format,
    )
    return EncodedAudio(mp3=encoder.finish(), facts=facts)
