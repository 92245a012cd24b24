"""Training of the learned codecs' models (Lightning), and export to the shippable format.

    polycodec train --config configs/image.yaml      -> OUT/checkpoints/*.ckpt, OUT/logs/
    polycodec export OUT/checkpoints/last.ckpt DIR   -> DIR/model.safetensors + DIR/config.json

Modules: :mod:`.config` (recipes), :mod:`.data` (image folders), :mod:`.module` (the rate-distortion
LightningModule), :mod:`.train` (trainer, checkpoints, logs), :mod:`.export` (safetensors + JSON),
:mod:`.cli` (the two commands).  Names are imported lazily: ``load_exported`` must not pull in Lightning.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "load_config": ".config", "ImageFolderDataModule": ".data", "RateDistortionModule": ".module",
    "rate_distortion": ".module", "load_exported": ".export",
}
# (``train`` and ``export`` are not re-exported: they are also submodule names, which would shadow them.)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = sorted(_EXPORTS)
