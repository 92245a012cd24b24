"""Training recipes: nested dicts from YAML, defaults below, command-line overrides on top.

    recipe = load_config("configs/image.yaml", ["trainer.max_steps=20000", "model.config.channels=64"])

Every key must exist in :data:`DEFAULTS` (a typo is an error, not a silently ignored setting), except under
``model.config``, which :func:`polycodec.models.build_model` checks against the model's own options.  Values
of overrides are parsed as YAML, so ``--set optim.milestones=[16000,19000]`` gives a list of ints.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

DEFAULTS: dict[str, Any] = {
    "model": {"name": "image", "config": {}},
    "data": {
        "path": "data/train/images",
        "crop": 256,  # training crop, a multiple of 64
        "batch_size": 8,
        "workers": 2,  # DataLoader worker processes per training process
        "val_files": 2,  # images held out of the folder for validation (0: no validation)
        "val_crop": 256,  # validation centre crop (largest multiple of 64 up to this; null: whole image)
        "samples_per_epoch": 1000,  # crops per epoch: small folders would otherwise make epochs of 2 batches
        "cache": True,  # keep decoded images in memory (per process); turn off for large folders
        "segment": 24000,  # audio models: training segment in samples
    },
    "loss": {  # audio models: weights of the spectral terms (training/audio.py)
        "log": 1.0,
        "mel": 1.0,
        "convergence": 1.0,
        "compressed": 1.0,
    },
    "optim": {
        "lr": 1.0e-4,  # main parameters (Adam)
        "aux_lr": 1.0e-3,  # entropy bottleneck quantiles (Adam, aux loss only)
        "clip": 1.0,  # gradient norm clipping of the main parameters (0: off)
        "milestones": [16000, 19000],  # steps at which the main learning rate is multiplied by gamma
        "gamma": 0.1,
    },
    "trainer": {
        "init_from": "",  # a checkpoint or exported folder whose tensors of matching name and shape start the model
        "max_steps": 20000,
        "seed": 0,
        "precision": "32-true",
        "accelerator": "auto",
        "devices": 1,
        "strategy": "auto",
        "val_every": 1000,  # steps between validations
        "checkpoint_every": 1000,  # steps between checkpoints (last.ckpt is kept too)
        "keep_checkpoints": 3,  # periodic checkpoints kept, newest first (-1: all)
        "log_every": 50,
        "progress_bar": True,
    },
    "out": "runs/image",  # checkpoints/, logs/, tensorboard/ and the recipe used go here
}

# Keys whose values may legitimately have another type than their default (or be null).
_FREE = {"model.config", "trainer.devices", "data.val_crop", "optim.milestones"}


def deep_merge(base: dict, update: dict) -> dict:
    """A copy of ``base`` with ``update`` merged in, recursively for nested dicts."""
    out = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and key != "config":
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"a.b.c=value"`` -> (["a", "b", "c"], YAML-parsed value)."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip() or any(not part for part in key.strip().split(".")):
        raise ValueError(f"override {text!r} is not of the form section.key=value")
    try:
        parsed = yaml.safe_load(value) if value.strip() else None
    except yaml.YAMLError as exc:
        raise ValueError(f"override {text!r}: value is not valid YAML ({exc})") from exc
    return key.strip().split("."), parsed


def apply_overrides(config: dict, overrides: list[str]) -> dict:
    config = copy.deepcopy(config)
    for text in overrides:
        path, value = parse_override(text)
        node = config
        for part in path[:-1]:
            if not isinstance(node.get(part), dict):
                node[part] = {}  # validate() rejects paths that do not exist in DEFAULTS
            node = node[part]
        node[path[-1]] = value
    return config


def validate(config: dict, defaults: dict = DEFAULTS, prefix: str = "") -> None:
    """Unknown keys and wrong types are errors; model.config is left to the model."""
    for key, value in config.items():
        name = f"{prefix}{key}"
        if key not in defaults:
            raise ValueError(f"unknown config key {name!r} (known: {', '.join(prefix + k for k in defaults)})")
        default = defaults[key]
        if name in _FREE:
            continue
        if isinstance(default, dict):
            if not isinstance(value, dict):
                raise ValueError(f"config key {name!r} must be a mapping, got {value!r}")
            validate(value, default, name + ".")
        elif isinstance(default, bool) and not isinstance(value, bool):
            raise ValueError(f"config key {name!r} must be true or false, got {value!r}")
        elif isinstance(default, int) and not isinstance(default, bool) and (
                not isinstance(value, int) or isinstance(value, bool)):
            raise ValueError(f"config key {name!r} must be an integer, got {value!r}")
        elif isinstance(default, float) and (not isinstance(value, (int, float)) or isinstance(value, bool)):
            raise ValueError(f"config key {name!r} must be a number, got {value!r}")
        elif isinstance(default, str) and not isinstance(value, str):
            raise ValueError(f"config key {name!r} must be a string, got {value!r}")
    if not prefix:
        if config["data"]["crop"] % 64 or config["data"]["crop"] <= 0:
            raise ValueError(f"data.crop must be a positive multiple of 64, got {config['data']['crop']}")
        if not isinstance(config["model"]["config"], dict):
            raise ValueError("model.config must be a mapping of model options")


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> dict:
    """DEFAULTS <- YAML file (if given) <- overrides; validated."""
    config = copy.deepcopy(DEFAULTS)
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"config file {path} does not exist")
        loaded = yaml.safe_load(path.read_text()) or {}
        if not isinstance(loaded, dict):
            raise ValueError(f"{path}: a recipe must be a YAML mapping")
        config = deep_merge(DEFAULTS, loaded)  # a partial file is fine: the rest comes from DEFAULTS
    config = apply_overrides(config, overrides or [])
    validate(config)
    return config
