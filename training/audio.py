"""Training of the streaming audio codec (:class:`~polycodec.models.audio.AudioModel`).

    S = |STFT(x)| (the decoder's target spectrogram), S_hat = exp(decoder output)
    loss = w_log * L1(log S_hat, log S)                        (every bin, quiet ones too)
         + w_mel * L1(log10 mel(S_hat), log10 mel(S))           (80 Slaney bands, as the mel-distance metric)
         + w_convergence * ||S - S_hat||_F / ||S||_F            (spectral convergence: the loud bins)
         + w_compressed * L1(S_hat^0.3, S^0.3)                  (loudness-like compression, as PESQ weighs)
         + commitment loss of the residual quantizer
    one served bitrate per step (quantizer dropout), the same on every DDP rank

No waveform is made while training: phase is reconstructed from the magnitudes when decoding.

Data: 24 kHz mono files under ``data.path`` (``scripts/build_audio_data.py`` writes speech/ and music/);
each training segment comes from a uniformly chosen top-level subfolder, then a file chosen in proportion
to its length, at a random offset, with a random gain.
"""

from __future__ import annotations

import random
import warnings
from pathlib import Path

import lightning as L
import numpy as np
import soundfile as sf
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from ..models import build_model

AUDIO_SUFFIXES = (".flac", ".wav", ".ogg")


class SpectralLoss(nn.Module):
    """The four magnitude terms of the module docstring, each a scalar."""

    def __init__(self, sample_rate: int, n_fft: int, mels: int = 80) -> None:
        super().__init__()
        import torchaudio.functional as AF

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # empty low mel bands: harmless
            bank = AF.melscale_fbanks(n_fft // 2 + 1, 0.0, sample_rate / 2, mels, sample_rate, norm="slaney",
                                      mel_scale="slaney")
        self.register_buffer("mel_bank", bank, persistent=False)  # (bins, mels)

    def forward(self, log_predicted: Tensor, target: Tensor) -> dict[str, Tensor]:
        predicted = log_predicted.exp()
        log_l1 = (log_predicted - torch.log(target.clamp_min(1e-5))).abs().mean()
        mel = (torch.log10((predicted @ self.mel_bank).clamp_min(1e-5))
               - torch.log10((target @ self.mel_bank).clamp_min(1e-5))).abs().mean()
        convergence = (torch.linalg.vector_norm(target - predicted, dim=(1, 2))
                       / torch.linalg.vector_norm(target, dim=(1, 2)).clamp_min(1e-5)).mean()
        compressed = (torch.exp(0.3 * log_predicted) - target.clamp_min(1e-8).pow(0.3)).abs().mean()
        return {"log": log_l1, "mel": mel, "convergence": convergence, "compressed": compressed}


def stages_for_step(served: list[int], seed: int, step: int) -> int:
    """The quantizer depth of a training step: random, but equal on every rank (VQ statistics are all-reduced
    per stage, so ranks that disagreed would deadlock)."""
    return random.Random(seed * 1_000_003 + step).choice(served)


class AudioCodecModule(L.LightningModule):
    def __init__(self, model_name: str = "audio", model_config: dict | None = None, lr: float = 5e-4,
                 clip: float = 1.0, milestones: list[int] | None = None, gamma: float = 0.1, seed: int = 0,
                 weights: dict[str, float] | None = None, recipe: dict | None = None) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.model = build_model(model_name, model_config or {})
        self.weights = {"log": 1.0, "mel": 1.0, "convergence": 1.0, "compressed": 1.0} | (weights or {})
        self.spectral = SpectralLoss(self.model.config.sample_rate, self.model.config.n_fft)

    def configure_optimizers(self):
        optimizer = torch.optim.AdamW(self.model.parameters(), lr=self.hparams.lr, betas=(0.8, 0.99),
                                      weight_decay=0.0)
        if not self.hparams.milestones:
            return optimizer
        schedule = torch.optim.lr_scheduler.MultiStepLR(optimizer, list(self.hparams.milestones), self.hparams.gamma)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    def on_train_start(self) -> None:
        torch.manual_seed(self.hparams.seed * 1_000_003 + self.global_rank * 7919 + self.global_step)

    def terms(self, x: Tensor, num_stages: int) -> dict[str, Tensor]:
        out = self.model(x, num_stages)
        with torch.no_grad():
            target = self.model.target_magnitudes(x)
        terms = self.spectral(out["log_magnitude"], target)
        loss = sum(self.weights[k] * v for k, v in terms.items()) + out["loss"]
        return {"loss": loss, "commit": out["loss"].detach()} | {k: v.detach() for k, v in terms.items()}

    def training_step(self, batch: Tensor, batch_idx: int) -> Tensor:
        stages = stages_for_step(self.model.served_stages, self.hparams.seed, self.global_step)
        terms = self.terms(batch, stages)
        size = batch.shape[0]
        self.log_dict({"train/loss": terms["loss"].detach(), "train/mel": terms["mel"], "train/log": terms["log"]},
                      prog_bar=True, batch_size=size)
        self.log_dict({"train/convergence": terms["convergence"], "train/compressed": terms["compressed"],
                       "train/commit": terms["commit"],
                       "train/stages": float(stages)}, batch_size=size)
        return terms["loss"]

    def validation_step(self, batch: Tensor, batch_idx: int) -> None:
        for stages in self.model.served_stages:
            terms = self.terms(batch, stages)
            self.log(f"val/mel_s{stages}", terms["mel"], sync_dist=True, batch_size=batch.shape[0])
            self.log(f"val/convergence_s{stages}", terms["convergence"], sync_dist=True, batch_size=batch.shape[0])


def list_audio(folder: str | Path) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"training folder {folder} does not exist (scripts/build_audio_data.py builds one)")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES)
    if not files:
        raise FileNotFoundError(f"{folder} holds no {'/'.join(AUDIO_SUFFIXES)} files")
    return files


def load_int16(path: Path, sample_rate: int) -> np.ndarray:
    data, rate = sf.read(path, dtype="int16", always_2d=True)
    if rate != sample_rate:
        raise ValueError(f"{path}: {rate} Hz; training files must be {sample_rate} Hz (build_audio_data.py resamples)")
    return np.ascontiguousarray(data.mean(axis=1).astype(np.int16) if data.shape[1] > 1 else data[:, 0])


class AudioSegments(Dataset):
    """Random segments of ``segment`` samples; folders (speech/, music/) are sampled evenly.  Held in memory as
    int16 (about 170 MB per hour of audio)."""

    def __init__(self, root: Path, files: list[Path], segment: int, length: int, sample_rate: int,
                 random_offsets: bool = True) -> None:
        self.segment, self.length, self.random_offsets = segment, length, random_offsets
        groups: dict[str, list[np.ndarray]] = {}
        for path in files:
            audio = load_int16(path, sample_rate)
            if audio.size >= segment // 4:
                groups.setdefault(path.relative_to(root).parts[0] if path.parent != root else ".", []).append(audio)
        if not groups:
            raise ValueError(f"no training file is at least {segment // 4} samples long")
        self.groups = list(groups.values())

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> Tensor:
        rng = np.random.default_rng(None if self.random_offsets else index)
        group = self.groups[rng.integers(len(self.groups))]
        sizes = np.array([a.size for a in group], dtype=np.float64)
        audio = group[rng.choice(len(group), p=sizes / sizes.sum())]
        start = rng.integers(0, max(1, audio.size - self.segment + 1))
        piece = audio[start:start + self.segment].astype(np.float32) / 32768
        piece = np.pad(piece, (0, self.segment - piece.size))
        peak = float(np.abs(piece).max())
        if peak > 1e-4:
            piece = piece * (rng.uniform(0.1, 0.99) / peak if self.random_offsets else 0.5 / peak)
        return torch.from_numpy(piece.astype(np.float32))


class AudioDataModule(L.LightningDataModule):
    def __init__(self, path: str | Path, segment: int = 24000, batch_size: int = 16, workers: int = 2,
                 val_files: int = 0, samples_per_epoch: int = 1000, sample_rate: int = 24000, seed: int = 0,
                 **unused) -> None:
        super().__init__()
        self.path, self.segment, self.batch_size, self.workers = Path(path), segment, batch_size, workers
        self.val_files, self.samples_per_epoch, self.sample_rate, self.seed = val_files, samples_per_epoch, sample_rate, seed

    @property
    def val_count(self) -> int:
        return self.val_files

    def check(self) -> None:
        list_audio(self.path)

    def setup(self, stage: str | None = None) -> None:
        files = list_audio(self.path)
        rng = random.Random(self.seed)
        val = sorted(rng.sample(files, min(self.val_files, len(files) - 1))) if self.val_files else []
        train = [f for f in files if f not in val]
        self.train_set = AudioSegments(self.path, train, self.segment, self.samples_per_epoch, self.sample_rate)
        self.val_set = (AudioSegments(self.path, val, self.segment, 4 * len(val), self.sample_rate,
                                      random_offsets=False) if val else None)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_set, batch_size=self.batch_size, num_workers=self.workers, drop_last=True,
                          persistent_workers=self.workers > 0)

    def val_dataloader(self) -> DataLoader | list:
        if self.val_set is None:
            return []
        return DataLoader(self.val_set, batch_size=self.batch_size, num_workers=0)
