"""Media file I/O: round trips per format, the image reading policy, refusals of bad files, streaming."""

import io
import struct
import zlib

import numpy as np
import pytest
import soundfile
import torch
from PIL import Image

from polycodec.bitstream import Modality
from polycodec.media import (audio_info, image_bytes, iter_audio_blocks, iter_video_frames, modality_of,
                             read_audio, read_image, read_video, video_info, write_audio, write_image,
                             write_video)
from polycodec.media.audio import av_encode_audio

H, W = 48, 64


def smooth_image(channels: int = 3) -> torch.Tensor:
    yy, xx = torch.meshgrid(torch.linspace(0, 1, H), torch.linspace(0, 1, W), indexing="ij")
    planes = [0.5 + 0.4 * torch.sin(3 * xx + 2 * yy), 0.5 + 0.4 * torch.cos(2 * xx - 3 * yy), 0.2 + 0.6 * xx * yy]
    return torch.stack(planes[:channels])


def quantized(x: torch.Tensor) -> torch.Tensor:
    return (x * 255).round() / 255


def png(width: int, height: int, depth: int, color_type: int, raw: bytes) -> bytes:
    """A PNG written by hand: Pillow cannot write 16-bit RGB, and oversized headers need no pixels."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    header = struct.pack(">IIBBBBB", width, height, depth, color_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


# --- images ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("suffix,tolerance", [(".png", 0), (".bmp", 0), (".tif", 0), (".webp", 0), (".jp2", 0),
                                              (".jpg", 0.08), (".avif", 0.05)])
def test_image_round_trip(tmp_path, suffix, tolerance):
    image = smooth_image()
    restored = read_image(write_image(image, tmp_path / f"a{suffix}"))
    assert restored.shape == image.shape and restored.dtype == torch.float32
    assert float((restored - quantized(image)).abs().max()) <= tolerance + 1e-6


def test_grayscale_stays_one_channel(tmp_path):
    image = smooth_image(1)
    restored = read_image(write_image(image, tmp_path / "g.png"))
    assert torch.equal(restored, quantized(image))


def test_alpha_is_dropped_only_when_opaque(tmp_path):
    rgb = (quantized(smooth_image()) * 255).to(torch.uint8).permute(1, 2, 0).numpy()
    alpha = np.full((H, W, 1), 255, np.uint8)
    Image.fromarray(np.concatenate([rgb, alpha], axis=2), "RGBA").save(tmp_path / "opaque.png")
    assert torch.equal(read_image(tmp_path / "opaque.png"), quantized(smooth_image()))
    alpha[0, 0] = 254
    Image.fromarray(np.concatenate([rgb, alpha], axis=2), "RGBA").save(tmp_path / "clear.png")
    with pytest.raises(ValueError, match="has transparency; flatten it first"):
        read_image(tmp_path / "clear.png")
    palette = Image.fromarray(rgb, "RGB").convert("P")
    unused = min(set(range(256)) - set(np.asarray(palette).ravel().tolist()))
    palette.save(tmp_path / "unused.png", transparency=unused)  # a transparent entry no pixel uses
    assert read_image(tmp_path / "unused.png").shape == (3, H, W)
    palette.save(tmp_path / "palette.png", transparency=palette.getpixel((0, 0)))
    with pytest.raises(ValueError, match="transparency"):
        read_image(tmp_path / "palette.png")


def test_palette_and_la_images_become_rgb_and_l(tmp_path):
    gray = (quantized(smooth_image(1))[0] * 255).to(torch.uint8).numpy()
    Image.merge("LA", [Image.fromarray(gray), Image.new("L", (W, H), 255)]).save(tmp_path / "la.png")
    assert read_image(tmp_path / "la.png").shape == (1, H, W)
    Image.fromarray(gray).convert("P").save(tmp_path / "p.png")
    assert read_image(tmp_path / "p.png").shape == (3, H, W)


def test_sixteen_bit_images_are_refused(tmp_path):
    Image.fromarray(np.full((H, W), 1000, "<u2")).save(tmp_path / "gray16.png")
    (tmp_path / "rgb16.png").write_bytes(png(4, 3, 16, 2, b"".join(b"\0" + bytes(4 * 6) for _ in range(3))))
    for name in ("gray16.png", "rgb16.png"):
        with pytest.raises(ValueError, match="8 bits"):
            read_image(tmp_path / name)


def test_exif_orientation_is_applied(tmp_path):
    image = quantized(smooth_image())
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    pil = Image.fromarray((image * 255).to(torch.uint8).permute(1, 2, 0).numpy(), "RGB")
    pil.save(tmp_path / "rotated.png", exif=exif.tobytes())
    assert torch.equal(read_image(tmp_path / "rotated.png"), torch.rot90(image, k=-1, dims=(1, 2)))


def test_bad_image_files_raise_value_errors_naming_the_file(tmp_path):
    good = image_bytes(smooth_image(), "PNG")
    cases = {"empty.png": b"", "garbage.png": b"not an image at all" * 10, "cut.png": good[: len(good) // 2],
             "wide.png": png(70000, 1, 8, 0, b""), "huge.png": png(20000, 20000, 8, 0, b"")}
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(ValueError, match=name):
            read_image(tmp_path / name)
    with pytest.raises(FileNotFoundError):
        read_image(tmp_path / "missing.png")
    with pytest.raises(ValueError):
        write_image(smooth_image(), tmp_path / "a.xyz")


# --- audio ------------------------------------------------------------------------------------------

def tone(rate: int = 16000, channels: int = 2, seconds: float = 1.0) -> torch.Tensor:
    t = torch.arange(int(rate * seconds)) / rate
    return torch.stack([0.5 * torch.sin(2 * torch.pi * (300 + 200 * c) * t) for c in range(channels)])


@pytest.mark.parametrize("suffix,rate,tolerance", [(".wav", 16000, 1 / 32768), (".flac", 16000, 1 / 32768),
                                                   (".aiff", 16000, 1 / 32768), (".ogg", 16000, None),
                                                   (".mp3", 16000, None), (".opus", 48000, None)])
def test_audio_round_trip(tmp_path, suffix, rate, tolerance):
    waveform = tone(rate)
    restored, restored_rate = read_audio(write_audio(waveform, rate, tmp_path / f"a{suffix}"))
    assert restored_rate == rate and restored.shape == waveform.shape and restored.dtype == torch.float32
    if tolerance is not None:
        assert float((restored - waveform).abs().max()) <= tolerance
    else:  # lossy: aligned and close in shape
        assert float(torch.nn.functional.cosine_similarity(restored, waveform, dim=1).min()) > 0.95
    assert audio_info(tmp_path / f"a{suffix}").sample_rate == rate


def m4a_file(tmp_path, waveform, rate):
    """An AAC file in M4A: read through PyAV, as soundfile does not read MP4."""
    data = av_encode_audio(waveform.numpy(), rate, container_format="ipod", codec="aac", bit_rate=96000,
                           container_options={"movie_timescale": str(rate)})
    path = tmp_path / "a.m4a"
    path.write_bytes(data)
    return path


def test_pyav_fallback_reads_m4a_at_its_declared_length(tmp_path):
    waveform = tone(16000, channels=1)
    restored, rate = read_audio(m4a_file(tmp_path, waveform, 16000))
    assert rate == 16000 and restored.shape == waveform.shape
    assert float(torch.nn.functional.cosine_similarity(restored, waveform, dim=1)) > 0.95


@pytest.mark.parametrize("suffix", [".wav", ".m4a"])
def test_audio_blocks_concatenate_to_the_whole_file(tmp_path, suffix):
    waveform = tone(16000, channels=2, seconds=0.7)
    if suffix == ".wav":
        path = write_audio(waveform, 16000, tmp_path / "a.wav")
    else:
        path = m4a_file(tmp_path, waveform, 16000)
    blocks = list(iter_audio_blocks(path, 1000))
    assert all(b.shape == (2, 1000) for b in blocks[:-1]) and 0 < blocks[-1].shape[1] <= 1000
    assert torch.equal(torch.cat(blocks, dim=1), read_audio(path)[0])


def test_bad_audio_files_raise_value_errors(tmp_path):
    silent = io.BytesIO()
    soundfile.write(silent, np.zeros((0, 1), np.float32), 16000, format="WAV")
    cases = {"empty.wav": b"", "garbage.wav": b"RIFF but not really" * 20, "garbage.m4a": bytes(range(256)) * 4,
             "silent.wav": silent.getvalue()}
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(ValueError, match=name):
            read_audio(tmp_path / name)
    with pytest.raises(ValueError):
        list(iter_audio_blocks(tmp_path / "garbage.m4a", 100))


# --- video ------------------------------------------------------------------------------------------

def moving_frames(count: int = 10) -> torch.Tensor:
    t = torch.arange(count)[:, None, None]
    yy, xx = torch.meshgrid(torch.arange(H), torch.arange(W), indexing="ij")
    return torch.stack([0.5 + 0.4 * torch.sin((xx + 2 * t) / 9.0 + yy / 13.0),
                        0.5 + 0.4 * torch.cos((yy - t) / 7.0 - xx / 17.0),
                        0.4 + 0.3 * torch.sin((xx + yy + 3 * t) / 11.0)], dim=1).float()


@pytest.mark.parametrize("suffix,tolerance", [(".mkv", 0), (".mp4", 4 / 255)])
def test_video_round_trip(tmp_path, suffix, tolerance):
    frames = moving_frames()
    path = write_video(frames, 30000 / 1001, tmp_path / f"v{suffix}")
    restored, fps = read_video(path)
    assert restored.shape == frames.shape and abs(fps - 30000 / 1001) < 1e-9
    assert float((restored - quantized(frames)).abs().max()) <= tolerance + 1e-6
    assert torch.equal(torch.stack(list(iter_video_frames(path))), restored)
    assert torch.equal(read_video(path, max_frames=3)[0], restored[:3])
    info = video_info(path)
    assert (info.width, info.height) == (W, H)


def test_bad_video_files_raise_value_errors(tmp_path):
    cases = {"empty.mp4": b"", "garbage.mkv": bytes(range(256)) * 8}
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(ValueError, match=name):
            read_video(tmp_path / name)
    with pytest.raises(ValueError):
        write_video(moving_frames(2), 25, tmp_path / "v.gif")


# --- modality --------------------------------------------------------------------------------------

def test_modality_of_extensions():
    assert modality_of("photo.JPG") == Modality.IMAGE
    assert modality_of("a/b/speech.flac") == Modality.AUDIO
    assert modality_of("song.m4a") == Modality.AUDIO
    assert modality_of("clip.webm") == Modality.VIDEO
    with pytest.raises(ValueError, match=r"\.png.*\.wav.*\.mp4"):
        modality_of("data.xyz")
