"""The audio codec: streaming model and resampler, round trips, chunked equality, bitrates, partial decoding,
bad input, and the CLI on files."""

import dataclasses
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from safetensors import safe_open
import torch
import torchaudio.functional as AF

from polycodec import load
from polycodec.bitstream import BitstreamError, ModelMismatchError
from polycodec.cli.main import main
from polycodec.codecs.audio import AudioCodec
from polycodec.media import read_audio
from polycodec.media.resample import StreamingResampler
from polycodec.metrics.audio import mel_distance
from polycodec.models import build_model
from polycodec.models.audio import StreamDecoder, StreamEncoder
from polycodec.models.phase import PhaseReconstructor, magnitude_spectrogram

ROOT = Path(__file__).resolve().parents[1]


def snr_db(reference: torch.Tensor, other: torch.Tensor) -> float:
    return float(10 * torch.log10(reference.pow(2).sum() / (reference - other).pow(2).sum().clamp_min(1e-20)))


# Chunked and one-shot decoding run the same computations on differently sized tensors, so float rounding
# differs in the last bits; phase reconstruction carries that to about 1e-3 of full scale.  Required: the two
# agree to within 40 dB, with no clicks (no sample differs by more than 1 % of full scale).
def assert_same_audio(a: torch.Tensor, b: torch.Tensor) -> None:
    assert a.shape == b.shape
    assert snr_db(a, b) > 40 and float((a - b).abs().max()) < 0.01


def tone(seconds: float, rate: int = 24000, channels: int = 1, seed: int = 0) -> torch.Tensor:
    """A voiced-speech-like test signal: a gliding harmonic tone with an amplitude envelope, plus a little noise."""
    t = torch.arange(int(seconds * rate)) / rate
    f0 = 140 + 40 * torch.sin(2 * math.pi * 0.7 * t)
    phase = 2 * math.pi * torch.cumsum(f0, 0) / rate
    voiced = sum(torch.sin(k * phase) / k for k in range(1, 12)) * (0.5 + 0.5 * torch.sin(2 * math.pi * 3 * t))
    g = torch.Generator().manual_seed(seed)
    x = 0.25 * voiced + 0.01 * torch.randn(len(t), generator=g)
    return torch.stack([x * (1 - 0.3 * c) for c in range(channels)]).float()


@pytest.fixture(scope="module")
def codec() -> AudioCodec:
    return load("audio", bitrate=6)


# -- model and resampler ----------------------------------------------------------------------------------

def test_streaming_model_equals_one_shot():
    torch.manual_seed(0)
    model = build_model("audio", {"channels": 32, "encoder_blocks": 2, "decoder_blocks": 2, "latent": 16}).eval()
    x = tone(2.3)[:, :55_277]
    codes = model.encode(x, 4)
    assert codes.shape == (1, model.frames_for(x.shape[-1]), 4)
    encoder = StreamEncoder(model, 4, window=40)  # several windows: state carried across them
    pieces = [encoder.push(x[:, i:i + 4099]) for i in range(0, x.shape[-1], 4099)] + [encoder.finish()]
    assert torch.equal(torch.cat(pieces, dim=1), codes)
    whole = model.decode(codes, x.shape[-1])
    decoder = StreamDecoder(model)
    chunks = [decoder.push(codes[:, i:i + 13]) for i in range(0, codes.shape[1], 13)]
    chunks.append(decoder.finish(x.shape[-1]))
    assert_same_audio(torch.cat(chunks, dim=-1), whole)


@torch.no_grad()
def test_the_shipped_encoder_searches_codes_closer_than_greedy(codec):
    """The encoder's beam search (config beam_budget) is on for the shipped model and is what encode uses: its
    codes leave a smaller latent error than each stage's nearest codeword, and decode like any others."""
    model = codec.model
    assert model.beam_width(model.stages_for(3.0)) > 1
    x = tone(2.0)
    codes = model.encode(x, 4)
    latent = model.latents(x)
    greedy = model.quantizer(latent, 4).indices
    error = lambda c: float((model.quantizer.from_indices(c) - latent).pow(2).sum())
    assert error(codes) < 0.97 * error(greedy)
    assert mel_distance(x, model.decode(codes, x.shape[-1]), 24000) < 1.0


@pytest.mark.parametrize("quantizer, kbps, stages, columns", [("rvq", 3.0, 4, 4), ("rfsq", 3.0, 4, 4),
                                                            ("grvq", 3.0, 2, 4)])
def test_quantizer_variants_code_and_decode(quantizer, kbps, stages, columns):
    config = {"channels": 16, "encoder_blocks": 1, "decoder_blocks": 1, "latent": 16, "quantizer": quantizer,
              "num_quantizers": 8, "bitrates": [kbps]}
    model = build_model("audio", config).train()
    x = tone(0.64)
    model(x, model.stages_for(kbps))  # one training step's forward: k-means init, counts
    model.eval().update()
    assert model.stages_for(kbps) == stages
    codes = model.encode(x, stages)
    assert codes.shape[-1] == columns and codes.max() < model.codebook_size
    assert model.decode(codes, x.shape[-1]).shape == x.shape
    if quantizer != "rfsq":  # the encoder's beam search serves rvq and grvq alike
        model.config = dataclasses.replace(model.config, beam_budget=4 * stages)
        assert model.encode(x, stages).shape == codes.shape
    else:
        with pytest.raises(ValueError, match="beam_budget"):
            build_model("audio", config | {"beam_budget": 16})
    assert model.table_ids(stages)[-1] < model.prior.num_codebooks


def test_phase_reconstruction_streams_exactly_and_recovers_the_signal():
    x = tone(1.5)
    magnitudes = magnitude_spectrogram(x, 1024, 160)
    whole = PhaseReconstructor(1024, 160, iterations=16)
    one_shot = torch.cat([whole.push(magnitudes), whole.finish(x.shape[-1])], dim=-1)
    pieces = PhaseReconstructor(1024, 160, iterations=16)
    parts, start = [], 0
    for size in (1, 70, 3, 200):
        parts.append(pieces.push(magnitudes[:, start:start + size]))
        start += size
    parts.append(pieces.finish(x.shape[-1]))
    assert one_shot.shape == x.shape and torch.equal(torch.cat(parts, dim=-1), one_shot)
    # From magnitudes alone it rebuilds a signal with the same spectrogram (phase is free, so not the samples).
    rebuilt = magnitude_spectrogram(one_shot, 1024, 160)
    assert float((rebuilt - magnitudes).norm() / magnitudes.norm()) < 0.3  # random phases: 0.71
    assert mel_distance(x, one_shot, 24000) < 0.1


def test_gradient_integrated_phase_alone_rebuilds_a_consistent_spectrogram():
    # No Griffin-Lim round at all: the first phase, integrated from the magnitudes' gradients, must already be
    # nearly consistent (measured 0.028; a wrong sign of either gradient gives 0.41, a stationary start 0.46).
    x = tone(1.5)
    magnitudes = magnitude_spectrogram(x, 1024, 160)
    reconstructor = PhaseReconstructor(1024, 160, iterations=0)
    out = torch.cat([reconstructor.push(magnitudes), reconstructor.finish(x.shape[-1])], dim=-1)
    rebuilt = magnitude_spectrogram(out, 1024, 160)
    assert float((rebuilt - magnitudes).norm() / magnitudes.norm()) < 0.06


def test_phase_reconstruction_of_a_batch_equals_each_item_alone():
    x = torch.cat([tone(1.0, seed=1), 0.3 * tone(1.0, seed=2).flip(-1)])
    magnitudes = magnitude_spectrogram(x, 1024, 160)
    batch = PhaseReconstructor(1024, 160).push(magnitudes)
    for i in range(2):
        alone = PhaseReconstructor(1024, 160).push(magnitudes[i:i + 1])
        assert torch.allclose(batch[i:i + 1], alone, atol=1e-5)


@pytest.mark.parametrize("rates", [(44100, 24000), (24000, 48000), (16000, 24000), (22050, 24000)])
def test_streaming_resampler_equals_one_shot(rates):
    x = torch.randn(2, 77_777, generator=torch.Generator().manual_seed(1))
    reference = AF.resample(x, *rates)
    resampler = StreamingResampler(*rates)
    sizes = [5, 40_000, 1, 9_999]
    out, start, i = [], 0, 0
    while start < x.shape[-1]:
        out.append(resampler.push(x[:, start:start + sizes[i % 4]]))
        start, i = start + sizes[i % 4], i + 1
    out.append(resampler.finish())
    joined = torch.cat([o for o in out if o.numel()], dim=-1)
    assert joined.shape == reference.shape
    assert torch.allclose(joined, reference, atol=1e-5)


# -- codec ------------------------------------------------------------------------------------------------

def test_round_trip_keeps_rate_length_and_content(codec):
    x = tone(3.0)
    data = codec.encode(x, 24000)
    y, rate = codec.decode(data)
    assert rate == 24000 and y.shape == x.shape
    # The decode is close to the input: far closer than noise of the same loudness.
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(3)) * x.std()
    assert mel_distance(x, y, 24000) < 0.5 * mel_distance(x, noise, 24000)


def test_other_rates_and_channel_counts_are_restored(codec):
    x = tone(1.3, rate=44100, channels=2)
    y, rate = codec.decode(codec.encode(x, 44100))
    assert rate == 44100 and y.shape == x.shape
    assert torch.equal(y[0], y[1])  # mix mode: one coded channel, decoded to both
    separate = load("audio", bitrate=6, channel_mode="separate")
    data = separate.encode(x, 44100)
    y2, _ = separate.decode(data)
    assert y2.shape == x.shape and not torch.equal(y2[0], y2[1])
    assert len(data) > 1.6 * len(codec.encode(x, 44100))  # two channels cost about twice
    assert separate.stream_info(data).mode == "separate"


def test_bitrate_selects_stages_and_file_size(codec):
    speech, rate = read_audio(ROOT / "samples" / "speech.flac")
    seconds = speech.shape[1] / rate
    sizes = {}
    for kbps in (1.5, 3, 6, 12):
        data = load("audio", bitrate=kbps).encode(speech, rate)
        sizes[kbps] = len(data)
        # On audio like the training audio the fitted tables code below the raw rate; the rest is the
        # header and framing (about 130 bytes per file).
        assert len(data) * 8 / seconds / 1000 < kbps + 140 * 8 / seconds / 1000
        assert load("audio").stream_info(data).kbps == pytest.approx(kbps)
    assert sizes[1.5] < sizes[3] < sizes[6] < sizes[12]
    with pytest.raises(ValueError, match="kbps"):
        load("audio", bitrate=5)


def test_chunked_streams_decode_like_one_shot(codec):
    small = load("audio", bitrate=3)
    small.chunk_frames = 40  # many chunks in a short clip
    x = tone(3.7)
    blocks = [x[:, i:i + 7001] for i in range(0, x.shape[-1], 7001)]
    data = small.encode_blocks(blocks, 24000, 1)
    # How the input is cut does not change the stream (it did, before the encoder coded fixed windows: a near
    # tie in the nearest-codeword search flipped with the rounding of a differently sized convolution).
    assert data == small.encode(x, 24000)
    y, _ = small.decode(data)
    encoder = StreamEncoder(small.model, small.stages, window=small.chunk_frames)
    codes = torch.cat([encoder.push(x), encoder.finish()], dim=1)  # the stream's codes, decoded in one shot:
    assert_same_audio(y, small.model.decode(codes, x.shape[-1]).clamp(-1, 1))
    many = load("audio", bitrate=3)
    many.chunk_frames = 7  # chunks shorter than the phase reconstruction's look-ahead
    assert_same_audio(many.decode(many.encode(x, 24000))[0], y)


def test_truncated_stream_fails_or_decodes_the_intact_part():
    small = load("audio", bitrate=6)
    small.chunk_frames = 30
    x = tone(3.0)
    data = small.encode(x, 24000)
    full, _ = small.decode(data)
    cut = data[: len(data) * 2 // 3]
    with pytest.raises(BitstreamError):
        small.decode(cut)
    part, rate = small.decode(cut, partial=True)
    assert rate == 24000 and 0.3 * x.shape[-1] < part.shape[-1] < x.shape[-1]
    # The end of the part is rebuilt without look-ahead (0.5 s); before that it is the full decode.
    settled = part.shape[-1] - 72 * 160 - 512
    assert settled > 0
    assert_same_audio(part[:, :settled], full[:, :settled])


def test_bad_input_is_refused(codec):
    with pytest.raises(ValueError, match="no samples"):
        codec.encode(torch.zeros(1, 0), 24000)
    with pytest.raises(ValueError, match="NaN"):
        codec.encode(torch.full((1, 100), float("nan")), 24000)
    with pytest.raises(ValueError, match="sample rate"):
        codec.encode(tone(0.1), 0)
    with pytest.raises(ValueError):
        codec.encode(torch.zeros(100), 24000)
    data = bytearray(codec.encode(tone(0.5), 24000))
    data[len(data) // 2] ^= 0x40
    with pytest.raises(BitstreamError):
        codec.decode(bytes(data))
    with pytest.raises(BitstreamError):
        codec.decode(b"")
    with pytest.raises(ModelMismatchError):
        load("image").decode(codec.encode(tone(0.5), 24000))


def test_very_short_input_round_trips(codec):
    for n in (1, 319, 321):
        y, rate = codec.decode(codec.encode(tone(0.1)[:, :n], 24000))
        assert y.shape == (1, n) and rate == 24000


def test_decoding_does_not_depend_on_threads(codec, tmp_path):
    data = codec.encode(tone(1.0), 24000)
    (tmp_path / "a.pcdc").write_bytes(data)
    here, _ = codec.decode(data)
    script = ("import sys, torch; torch.set_num_threads(1); torch.backends.mkldnn.enabled = False\n"
              "from polycodec import load\n"
              "y, r = load('audio').decode(open(sys.argv[1], 'rb').read())\n"
              "import numpy as np; np.save(sys.argv[2], y.numpy())\n")
    subprocess.run([sys.executable, "-c", script, str(tmp_path / "a.pcdc"), str(tmp_path / "y.npy")], check=True,
                   cwd=ROOT.parent)
    there = torch.from_numpy(np.load(tmp_path / "y.npy"))
    assert_same_audio(here, there)  # same codes, same tables: only float rounding may differ


# -- CLI --------------------------------------------------------------------------------------------------

def test_cli_encode_decode_files(tmp_path, capsys):
    wav = tmp_path / "in.wav"
    sf.write(wav, tone(2.0, rate=16000, channels=2).T.numpy(), 16000)
    assert main(["encode", str(wav), str(tmp_path / "a.pcdc"), "--bitrate", "3"]) == 0
    assert main(["decode", str(tmp_path / "a.pcdc"), str(tmp_path / "out.flac")]) == 0
    y, rate = sf.read(tmp_path / "out.flac", always_2d=True)
    assert rate == 16000 and y.shape == (32000, 2)
    assert main(["decode", str(tmp_path / "a.pcdc"), str(tmp_path / "out.flac")]) == 2  # no silent overwrite
    assert "--force" in capsys.readouterr().err
    # a cut file: refused without --partial (no output left behind), decoded in part with it
    data = (tmp_path / "a.pcdc").read_bytes()
    (tmp_path / "cut.pcdc").write_bytes(data[:-10])
    assert main(["decode", str(tmp_path / "cut.pcdc"), str(tmp_path / "cut.wav")]) == 2
    assert "--partial" in capsys.readouterr().err
    assert not (tmp_path / "cut.wav").exists() and not list(tmp_path.glob(".cut.wav*"))
    assert main(["decode", str(tmp_path / "cut.pcdc"), str(tmp_path / "cut.wav"), "--partial"]) == 0
    assert 0 < sf.info(tmp_path / "cut.wav").frames <= 32000


def test_cli_bad_audio_files(tmp_path, capsys):
    (tmp_path / "empty.wav").write_bytes(b"")
    (tmp_path / "noise.wav").write_bytes(b"RIFF not really a wave file")
    sf.write(tmp_path / "zero.wav", np.zeros((0, 1), np.float32), 24000)
    (tmp_path / "x.xyz").write_bytes(b"abc")
    for name, message in [("empty.wav", "empty"), ("noise.wav", "noise.wav"), ("zero.wav", "no"),
                          ("x.xyz", "unknown media extension")]:
        assert main(["encode", str(tmp_path / name), str(tmp_path / "out.pcdc")]) == 2
        err = capsys.readouterr().err
        assert err.startswith("polycodec encode: error:") and message in err
    assert not list(tmp_path.glob("*.pcdc")) and not list(tmp_path.glob(".*.part"))


# -- training ---------------------------------------------------------------------------------------------

def test_training_export_and_coding_with_the_result(tmp_path):
    """A few steps of `polycodec train` on a tiny audio model, export, then the codec codes with the export."""
    torch.set_num_threads(1)
    for folder, seed in (("speech", 0), ("music", 1)):
        (tmp_path / "data" / folder).mkdir(parents=True)
        sf.write(tmp_path / "data" / folder / "a.flac", tone(2.0, seed=seed)[0].numpy(), 24000)
    tiny = "{channels: 16, encoder_blocks: 1, decoder_blocks: 1, latent: 16, codebook_size: 64, " \
           "num_quantizers: 4, bitrates: [0.9, 1.8]}"
    out = tmp_path / "run"
    assert main(["train", "--config", str(ROOT / "configs" / "audio-cpu.yaml"), "--max-steps", "4",
                 "--data", str(tmp_path / "data"), "--out", str(out), "--batch-size", "2", "--workers", "0",
                 "--accelerator", "cpu", "--set", f"model.config={tiny}", "--set", "data.segment=4800",
                 "--set", "trainer.checkpoint_every=2", "--set", "trainer.log_every=1"]) == 0
    metrics = (out / "logs" / "version_0" / "metrics.csv").read_text()
    assert "train/mel" in metrics and "train/stages" in metrics
    assert main(["export", str(out / "checkpoints" / "last.ckpt"), str(tmp_path / "export"),
                 "--fit-data", str(tmp_path / "data"), "--half"]) == 0
    with safe_open(str(tmp_path / "export" / "model.safetensors"), "pt") as f:
        dtypes = {f.get_tensor(k).dtype for k in f.keys()}
    assert torch.float16 in dtypes and torch.float32 not in dtypes and torch.int32 in dtypes  # tables stay integer
    fitted = json.loads((tmp_path / "export" / "config.json").read_text())["tables_fitted_on"]
    assert fitted["files"] == 2 and fitted["frames"] == 2 * 152  # 2 s = 150 frames + the two closing ones
    codec = load("audio", weights=tmp_path / "export", bitrate=1.8)
    assert codec.stages == 4
    x = tone(1.0)
    y, rate = codec.decode(codec.encode(x, 24000))
    assert y.shape == x.shape and rate == 24000
    # the exported tables come from the code counts gathered while training: not uniform any more
    prior = codec.model.prior
    assert float(prior.logits.detach().std()) > 0
    # and the CLI finds an export folder's kind by itself
    sf.write(tmp_path / "x.wav", x[0].numpy(), 24000)
    assert main(["encode", str(tmp_path / "x.wav"), str(tmp_path / "x.pcdc"), "--codec", str(tmp_path / "export"),
                 "--bitrate", "0.9"]) == 0
    assert main(["decode", str(tmp_path / "x.pcdc"), str(tmp_path / "y.wav"), "--codec",
                 str(tmp_path / "export")]) == 0
    # an export written before a model option existed is refused, naming the option, rather than silently
    # given today's default for it (which may mean something else than what it was trained with)
    meta = json.loads((tmp_path / "export" / "config.json").read_text())
    del meta["config"]["codebook_lookup"]
    (tmp_path / "export" / "config.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="codebook_lookup"):
        load("audio", weights=tmp_path / "export", bitrate=1.8)


def test_quantizer_depth_per_step_is_the_same_on_every_rank():
    from polycodec.training.audio import stages_for_step

    draws = [stages_for_step([2, 4, 8, 16], seed=0, step=s) for s in range(200)]
    assert draws == [stages_for_step([2, 4, 8, 16], seed=0, step=s) for s in range(200)]  # no hidden state
    assert set(draws) == {2, 4, 8, 16}
