"""Classical audio codecs through PyAV (FFmpeg): Opus in Ogg, MP3, AAC in M4A.

    encode(waveform float32 (channels, samples), sample_rate) -> bytes of a .opus / .mp3 / .m4a file
    decode(bytes) -> (waveform float32 (channels, samples) in [-1, 1], sample_rate)

decode(encode(x, sr)) has x's channel count (1 or 2), sample rate and length, and is time-aligned with x.
Every piece of that is recovered from the file alone, by means the formats define:

- Encoder delay (priming) is declared by each container and removed on decode: Ogg Opus's pre-skip, the
  LAME tag's delay in MP3 (FFmpeg writes it into the Xing frame), the edit list in M4A.  The padding after
  the last sample is declared too: Ogg's final granule position, the LAME tag's padding, the M4A edit
  list's duration (written in a movie timescale equal to the sample rate, so it is exact to the sample).
- MP3 and AAC code the input's sample rate directly; rates the format lacks raise ``ValueError``.
- Opus always decodes at 48 kHz.  Input at one of Opus's rates (8, 12, 16, 24, 48 kHz) goes to libopus
  as is; any other rate is resampled (torchaudio's windowed sinc, zero-phase) to the next Opus rate up,
  as opus-tools' ``opusenc`` does, and the true rate is written into the OpusHead "input sample rate"
  field (RFC 7845 section 5.1: the rate of the original input, for playback resampling).  decode resamples
  the 48 kHz output to that rate and trims to ``floor(n48 * rate / 48000)`` samples, which is the input
  length exactly for rates up to 48 kHz (and within one sample above).

The bitrate knob is ``bitrate`` in kbit/s.  Encoders are single-threaded (audio encoders are anyway).
"""

from __future__ import annotations

import io
import struct

import numpy as np
import torch
from torch import Tensor

from ...bitstream import Modality
from ...media.audio import av_decode_audio, av_encode_audio
from ..base import Codec
from . import ffmpeg_encoder_missing, register_if_available

OPUS_RATES = (8000, 12000, 16000, 24000, 48000)
OPUS_DECODE_RATE = 48000
MAX_SAMPLE_RATE = 384000


class AvAudioCodec(Codec):
    """Shared input checks and the bitrate knob of the FFmpeg audio codecs."""

    modality = Modality.AUDIO
    bitrate_range: tuple[float, float]

    def __init__(self, bitrate: float) -> None:
        low, high = self.bitrate_range
        if not low <= bitrate <= high:
            raise ValueError(f"{self.name} bitrate must be in [{low}, {high}] kbit/s, got {bitrate!r}")
        self.bitrate = float(bitrate)

    @property
    def bit_rate(self) -> int:
        """The knob in bit/s, as FFmpeg takes it."""
        return int(round(self.bitrate * 1000))

    def check_input(self, media: Tensor, sample_rate: int) -> tuple[np.ndarray, int]:
        x = torch.as_tensor(media).detach().cpu()
        if x.ndim != 2 or x.shape[0] not in (1, 2) or x.shape[1] == 0:
            raise ValueError(f"{self.name} codes waveforms (channels, samples) with 1 or 2 channels, "
                             f"got shape {tuple(x.shape)}")
        if not x.is_floating_point() or not torch.isfinite(x).all():
            raise ValueError(f"{self.name} needs a finite float waveform, got {x.dtype}")
        if int(sample_rate) != sample_rate or not 0 < sample_rate <= MAX_SAMPLE_RATE:
            raise ValueError(f"sample_rate must be a whole number of Hz in (0, {MAX_SAMPLE_RATE}], "
                             f"got {sample_rate!r}")
        return x.float().numpy(), int(sample_rate)

    def decode_file(self, data: bytes) -> tuple[np.ndarray, int]:
        if not data:
            raise ValueError(f"{self.name} data is empty")
        return av_decode_audio(_named(data, f"{self.name} data"))


@register_if_available(ffmpeg_encoder_missing("libopus"), "opus", Modality.AUDIO,
                       "Opus (libopus) in Ogg, bitrate in kbit/s, any sample rate (coded at an Opus rate)",
                       sweep=tuple({"bitrate": b} for b in (6, 8, 12, 16, 24, 32, 64)))
class OpusCodec(AvAudioCodec):
    name = "opus"
    bitrate_range = (6, 510)

    def __init__(self, bitrate: float = 32) -> None:
        super().__init__(bitrate)

    def encode(self, media: Tensor, sample_rate: int) -> bytes:
        waveform, rate = self.check_input(media, sample_rate)
        coding_rate = next((r for r in OPUS_RATES if r >= rate), OPUS_DECODE_RATE)
        if coding_rate != rate:
            waveform = resample(waveform, rate, coding_rate)
        data = av_encode_audio(waveform, coding_rate, container_format="ogg", codec="libopus",
                               bit_rate=self.bit_rate, sample_format="flt")
        # FFmpeg fills the OpusHead input rate with the rate libopus saw; the source's is the one to keep.
        return set_opus_input_rate(data, rate) if coding_rate != rate else data

    def decode(self, data: bytes) -> tuple[Tensor, int]:
        rate = opus_input_rate(data) or OPUS_DECODE_RATE  # 0 means "unspecified" (RFC 7845)
        waveform, decoded_rate = self.decode_file(data)
        if decoded_rate != rate:
            length = waveform.shape[1] * rate // decoded_rate
            waveform = _fit(resample(waveform, decoded_rate, rate), length)
        return torch.from_numpy(np.clip(waveform, -1, 1)), rate


@register_if_available(ffmpeg_encoder_missing("libmp3lame"), "mp3", Modality.AUDIO,
                       "MP3 (LAME), constant bitrate in kbit/s, gapless via the LAME tag",
                       sweep=tuple({"bitrate": b} for b in (32, 48, 64, 96, 128, 192, 256)))
class Mp3Codec(AvAudioCodec):
    """LAME rounds the bitrate to one the sample rate's MPEG version allows (MPEG-2 below 32 kHz tops out
    at 160 kbit/s, MPEG-2.5 below 16 kHz at 64)."""

    name = "mp3"
    bitrate_range = (8, 320)
    sample_rates = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)

    def __init__(self, bitrate: float = 128) -> None:
        super().__init__(bitrate)

    def encode(self, media: Tensor, sample_rate: int) -> bytes:
        waveform, rate = self.check_input(media, sample_rate)
        _check_rate(self.name, rate, self.sample_rates)
        # No ID3v2 tag: it would carry nothing.  The Xing/LAME frame stays: it holds the gapless delays.
        return av_encode_audio(waveform, rate, container_format="mp3", codec="libmp3lame",
                               bit_rate=self.bit_rate, sample_format="fltp",
                               container_options={"id3v2_version": "0"})

    def decode(self, data: bytes) -> tuple[Tensor, int]:
        waveform, rate = self.decode_file(data)
        return torch.from_numpy(np.clip(waveform, -1, 1)), rate


@register_if_available(ffmpeg_encoder_missing("aac"), "aac", Modality.AUDIO,
                       "AAC-LC (FFmpeg's encoder) in M4A, bitrate in kbit/s, gapless via the edit list",
                       sweep=tuple({"bitrate": b} for b in (24, 32, 48, 64, 96, 128, 192)))
class AacCodec(AvAudioCodec):
    name = "aac"
    bitrate_range = (8, 512)
    sample_rates = (7350, 8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000, 64000, 88200, 96000)

    def __init__(self, bitrate: float = 128) -> None:
        super().__init__(bitrate)

    def encode(self, media: Tensor, sample_rate: int) -> bytes:
        waveform, rate = self.check_input(media, sample_rate)
        _check_rate(self.name, rate, self.sample_rates)
        # A movie timescale equal to the sample rate makes the edit list, hence the length, sample-exact
        # (the default, 1000, rounds it to the millisecond).
        return av_encode_audio(waveform, rate, container_format="ipod", codec="aac", bit_rate=self.bit_rate,
                               container_options={"movie_timescale": str(rate)})

    def decode(self, data: bytes) -> tuple[Tensor, int]:
        waveform, rate = self.decode_file(data)
        return torch.from_numpy(np.clip(waveform, -1, 1)), rate


def resample(waveform: np.ndarray, orig_rate: int, new_rate: int) -> np.ndarray:
    """float32 ``(channels, n)`` -> ``(channels, ceil(n * new_rate / orig_rate))``, sample 0 staying at
    time 0 (torchaudio's windowed-sinc resampler is zero-phase)."""
    import torchaudio.functional  # imported here: it takes seconds, and only Opus at odd rates needs it

    resampled = torchaudio.functional.resample(torch.from_numpy(np.ascontiguousarray(waveform)),
                                               orig_rate, new_rate)
    return resampled.numpy()


def _fit(waveform: np.ndarray, length: int) -> np.ndarray:
    if waveform.shape[1] >= length:
        return np.ascontiguousarray(waveform[:, :length])
    return np.pad(waveform, ((0, 0), (0, length - waveform.shape[1])))


def _check_rate(name: str, rate: int, supported: tuple[int, ...]) -> None:
    if rate not in supported:
        raise ValueError(f"{name} does not code {rate} Hz; supported: {', '.join(map(str, supported))} Hz "
                         f"(resample first)")


def _named(data: bytes, name: str) -> io.BytesIO:
    buffer = io.BytesIO(data)
    buffer.name = name  # error messages name the codec rather than a BytesIO object
    return buffer


# --- Ogg Opus header ---------------------------------------------------------------------------------------
# The OpusHead packet fills the first Ogg page: 27-byte page header, segment table, then the packet
# ("OpusHead", version, channels, pre-skip u16, input sample rate u32 at byte 12, ...).  Pages carry a
# CRC-32 (polynomial 0x04C11DB7, not reflected, zero initial value) over the page with its CRC field zeroed.

def _ogg_crc_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte << 24
        for _ in range(8):
            crc = ((crc << 1) ^ 0x04C11DB7) if crc & 0x80000000 else crc << 1
        table.append(crc & 0xFFFFFFFF)
    return tuple(table)


_OGG_CRC = _ogg_crc_table()


def _ogg_crc(page: bytes) -> int:
    crc = 0
    for byte in page:
        crc = ((crc << 8) & 0xFFFFFFFF) ^ _OGG_CRC[(crc >> 24) ^ byte]
    return crc


def _opus_head(data: bytes) -> tuple[int, int]:
    """(offset of the OpusHead packet, length of the first page); ValueError if that is not what starts."""
    if len(data) < 27 or data[:4] != b"OggS":
        raise ValueError("opus data is not an Ogg file")
    segments = data[26]
    start = 27 + segments
    page_length = start + sum(data[27:start])
    if page_length > len(data) or data[start:start + 8] != b"OpusHead" or page_length - start < 19:
        raise ValueError("opus data does not start with an OpusHead page")
    return start, page_length


def opus_input_rate(data: bytes) -> int:
    """The OpusHead "input sample rate" of an Ogg Opus file (0 if the encoder left it unspecified)."""
    start, _ = _opus_head(data)
    return struct.unpack_from("<I", data, start + 12)[0]


def set_opus_input_rate(data: bytes, rate: int) -> bytes:
    """The same Ogg Opus file with OpusHead's input sample rate set to ``rate`` and the page CRC redone."""
    start, page_length = _opus_head(data)
    out = bytearray(data)
    struct.pack_into("<I", out, start + 12, rate)
    out[22:26] = bytes(4)
    struct.pack_into("<I", out, 22, _ogg_crc(bytes(out[:page_length])))
    return bytes(out)
