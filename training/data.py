"""A folder of images -> random training crops and a fixed validation split.

Policy (one place, so every run sees the same data the same way):

- Files: every image under the folder (recursively, by extension, hidden files skipped), sorted.  Decoding
  follows :func:`polycodec.media.read_image` (8-bit, opaque); grayscale images become three equal channels.
- Validation: ``val_files`` images are held out, chosen by a seeded hash of their relative paths -- the same
  files on every machine and every process, and adding a file to the folder never reshuffles the others.
  Each is centre-cropped to the largest multiple of 64 that fits (at most ``val_crop`` per side).
- Training: a random ``crop`` x ``crop`` window and a random horizontal flip.  Images smaller than the crop
  are *padded by reflection* rather than skipped: no file silently drops out, and mirrored content is
  still natural image statistics (a constant border would teach the codec a cheap flat region instead).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from ..media.image import IMAGE_FORMATS, read_image

MULTIPLE = 64  # the image model's latent grids are 1/16 and 1/64 of the image


def list_images(folder: str | Path) -> list[Path]:
    """Image files under ``folder``, sorted; clear errors for a missing or empty folder."""
    folder = Path(folder)
    if not folder.exists():
        raise FileNotFoundError(f"training data folder {folder} does not exist "
                                f"(build the default set with scripts/build_image_data.py)")
    if not folder.is_dir():
        raise ValueError(f"training data path {folder} is not a folder")
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_FORMATS
                   and not any(part.startswith(".") for part in p.relative_to(folder).parts))
    if not files:
        raise ValueError(f"no images ({', '.join(sorted(IMAGE_FORMATS))}) in {folder}")
    return files


def split_files(files: list[Path], root: Path, val_files: int, seed: int) -> tuple[list[Path], list[Path]]:
    """(training, validation): the ``val_files`` files with the smallest seeded hash of their relative path."""
    if val_files < 0:
        raise ValueError(f"val_files must be >= 0, got {val_files}")
    if val_files >= len(files):
        raise ValueError(f"{root} has {len(files)} images: too few to hold out {val_files} for validation "
                         f"and still train (set data.val_files lower)")

    def key(p: Path) -> str:
        return hashlib.sha256(f"{seed}:{p.relative_to(root).as_posix()}".encode()).hexdigest()

    files = sorted(files)
    held = set(sorted(files, key=key)[:val_files])
    return [f for f in files if f not in held], [f for f in files if f in held]


def load_uint8(path: Path) -> Tensor:
    """(3, H, W) uint8: crops and flips are cheaper on bytes than on floats, and a cache 4x smaller."""
    x = read_image(path)
    return (x * 255).round().to(torch.uint8).expand(3, -1, -1).contiguous()


def reflect_pad(x: Tensor, height: int, width: int) -> Tensor:
    """Pad (C, H, W) by reflection to at least (height, width), split evenly on both sides."""
    ph, pw = max(0, height - x.shape[1]), max(0, width - x.shape[2])
    if not ph and not pw:
        return x
    # numpy repeats the reflection when the pad is wider than the image; torch's reflect pad refuses that.
    padded = np.pad(x.numpy(), ((0, 0), (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2)), mode="reflect"
                    if min(x.shape[1:]) > 1 else "edge")
    return torch.from_numpy(padded)


class _ImageFiles(Dataset):
    """Shared decoding with an optional per-process cache (each DataLoader worker holds its own)."""

    def __init__(self, files: list[Path], cache: bool) -> None:
        self.files, self.cache = list(files), cache
        self._decoded: dict[int, Tensor] = {}

    def image(self, i: int) -> Tensor:
        if i in self._decoded:
            return self._decoded[i]
        x = load_uint8(self.files[i])
        if self.cache:
            self._decoded[i] = x
        return x


class RandomCrops(_ImageFiles):
    """``length`` samples cycling over the files: a random crop and a random horizontal flip of each."""

    def __init__(self, files: list[Path], crop: int, length: int, cache: bool = True) -> None:
        super().__init__(files, cache)
        self.crop, self.length = crop, max(length, len(files))

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> Tensor:
        x = reflect_pad(self.image(index % len(self.files)), self.crop, self.crop)
        top = int(torch.randint(0, x.shape[1] - self.crop + 1, ()))
        left = int(torch.randint(0, x.shape[2] - self.crop + 1, ()))
        x = x[:, top : top + self.crop, left : left + self.crop]
        if torch.rand(()) < 0.5:
            x = x.flip(-1)
        return x.float().div(255)


class CentreCrops(_ImageFiles):
    """Each file once, centre-cropped to a multiple of 64 (at most ``max_side`` per side)."""

    def __init__(self, files: list[Path], max_side: int | None, cache: bool = True) -> None:
        super().__init__(files, cache)
        self.max_side = max_side

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> Tensor:
        x = self.image(index)
        h, w = x.shape[1:]
        limit = self.max_side if self.max_side else max(h, w)
        th = max(MULTIPLE, min(h, limit) // MULTIPLE * MULTIPLE)
        tw = max(MULTIPLE, min(w, limit) // MULTIPLE * MULTIPLE)
        x = reflect_pad(x, th, tw)  # only images under 64 px need it
        top, left = (x.shape[1] - th) // 2, (x.shape[2] - tw) // 2
        return x[:, top : top + th, left : left + tw].float().div(255)


class ImageFolderDataModule(L.LightningDataModule):
    """Random crops of a folder of images for training, a held-out handful for validation."""

    def __init__(self, path: str | Path, crop: int = 256, batch_size: int = 8, workers: int = 2,
                 val_files: int = 2, val_crop: int | None = 256, samples_per_epoch: int = 1000,
                 cache: bool = True, seed: int = 0) -> None:
        super().__init__()
        if crop <= 0 or crop % MULTIPLE:
            raise ValueError(f"crop must be a positive multiple of {MULTIPLE}, got {crop}")
        if val_crop is not None and (val_crop <= 0 or val_crop % MULTIPLE):
            raise ValueError(f"val_crop must be a positive multiple of {MULTIPLE} or null, got {val_crop}")
        if batch_size <= 0 or workers < 0:
            raise ValueError("batch_size must be positive and workers non-negative")
        self.path, self.crop, self.batch_size, self.workers = Path(path), crop, batch_size, workers
        self.val_count, self.val_crop, self.samples_per_epoch = val_files, val_crop, samples_per_epoch
        self.cache, self.seed = cache, seed
        self.train_files: list[Path] = []
        self.val_files: list[Path] = []

    def check(self) -> None:
        """List and split the folder now: errors surface before any process is launched."""
        files = list_images(self.path)
        self.train_files, self.val_files = split_files(files, self.path, self.val_count, self.seed)

    def setup(self, stage: str | None = None) -> None:
        if not self.train_files:
            self.check()

    def _loader(self, dataset: Dataset, batch_size: int, shuffle: bool, workers: int) -> DataLoader:
        return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, num_workers=workers,
                          drop_last=shuffle, persistent_workers=workers > 0, pin_memory=torch.cuda.is_available())

    def train_dataloader(self) -> DataLoader:
        data = RandomCrops(self.train_files, self.crop, self.samples_per_epoch, self.cache)
        return self._loader(data, self.batch_size, shuffle=True, workers=self.workers)

    def val_dataloader(self) -> DataLoader | list:
        if not self.val_files:
            return []
        # Batch size 1: validation images keep their own (cropped) sizes.  No workers: a handful of files.
        return self._loader(CentreCrops(self.val_files, self.val_crop, self.cache), 1, shuffle=False, workers=0)
