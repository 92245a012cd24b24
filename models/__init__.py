"""Neural transforms (analysis / synthesis networks, hyperpriors, context models) that codecs compose with
quantizers and entropy models.  Models register by name; each documents the paper it implements."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from torch import nn

from .audio import AudioModel, AudioModelConfig
from .image import ImageModel, ImageModelConfig

MODELS: dict[str, tuple[type[nn.Module], type]] = {"image": (ImageModel, ImageModelConfig),
                                                   "audio": (AudioModel, AudioModelConfig)}


def build_model(name: str, config: dict[str, Any] | None = None, complete: bool = False) -> nn.Module:
    """Instantiate a registered model from a JSON-able config dict (unknown keys are an error).  With
    ``complete`` (exports, which store every option) a missing key is an error too: an option added after the
    config was written would otherwise silently take today's default, which may mean something else."""
    if name not in MODELS:
        raise KeyError(f"unknown model {name!r}; available: {', '.join(MODELS)}")
    model_cls, config_cls = MODELS[name]
    config = dict(config or {})
    known = {f.name for f in fields(config_cls)}
    if unknown := set(config) - known:
        raise ValueError(f"unknown {name} model options: {', '.join(sorted(unknown))}")
    if complete and (missing := [key for key in known if key not in config]):
        raise ValueError(f"the {name} model options {', '.join(sorted(missing))} are missing, added after this "
                         f"config was written: add each with the value the older version used (see "
                         f"{config_cls.__module__}.{config_cls.__name__})")
    for key, value in config.items():
        if isinstance(value, list):  # JSON / YAML lists -> the tuples frozen configs hold
            config[key] = tuple(value)
    return model_cls(config_cls(**config))


__all__ = ["AudioModel", "AudioModelConfig", "ImageModel", "ImageModelConfig", "MODELS", "build_model"]
