"""Training checkpoint -> shippable model folder, and back to a model.

    OUT_DIR/model.safetensors   the model's state_dict (entropy tables included), contiguous CPU tensors
    OUT_DIR/config.json         {"model", "config", "format": 1, "recipe", "steps"[, "started_from"]}

What ships is safetensors + JSON only: no pickle is ever read at load time.  Reading the *training*
checkpoint is the one place a pickle is opened, and it is opened with ``torch.load(weights_only=True)``:
torch's restricted unpickler, which admits tensors and plain containers only.  Lightning checkpoints written
by :mod:`.train` contain nothing else (hyper-parameters are saved as a plain dict of plain values), so this
works without ever allowing arbitrary code; a checkpoint that needs more is refused, not trusted.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save
from torch import nn

from ..bitstream.files import write_atomic
from ..codecs.base import sha256_file
from ..models import build_model

FORMAT = 1
WEIGHTS, CONFIG = "model.safetensors", "config.json"


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """A Lightning checkpoint as a dict, through torch's restricted (weights-only) unpickler."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises UnpicklingError or RuntimeError, with advice we do not want taken
        raise ValueError(f"{path} is not a training checkpoint that loads with weights_only=True ({type(exc).__name__}:"
                         f" {str(exc).splitlines()[0] if str(exc) else ''})") from exc


def model_from_checkpoint(checkpoint: dict[str, Any]) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model a :class:`~polycodec.training.module.RateDistortionModule` checkpoint holds."""
    hparams = checkpoint.get("hyper_parameters")
    if not isinstance(hparams, dict) or "model_name" not in hparams or "state_dict" not in checkpoint:
        raise ValueError("checkpoint was not written by `polycodec train` (no model hyper-parameters)")
    model = build_model(hparams["model_name"], hparams.get("model_config") or {})
    prefix = "model."
    state = {k[len(prefix):]: v for k, v in checkpoint["state_dict"].items() if k.startswith(prefix)}
    model.load_state_dict(state, strict=True)
    return model, hparams


def export(checkpoint_path: str | Path, out_dir: str | Path, force: bool = False,
           fit_data: str | Path | None = None, fit_minutes: float = 30.0, half: bool = False) -> Path:
    """Write ``out_dir/model.safetensors`` + ``config.json`` from a training checkpoint; returns ``out_dir``.

    ``fit_data`` (audio models): a folder of training audio whose codes, as the final model emits them,
    replace the code counts gathered during training before the tables are built (at most ``fit_minutes``,
    spread evenly over the files).  ``half`` stores floating-point tensors as float16 (half the size; loading
    casts them back to the model's float32), integer tables unchanged."""
    out_dir = Path(out_dir)
    for name in (WEIGHTS, CONFIG):
        if (out_dir / name).exists() and not force:
            raise FileExistsError(f"{out_dir / name} exists; pass --force to replace it")
    checkpoint = load_checkpoint(checkpoint_path)
    model, hparams = model_from_checkpoint(checkpoint)
    model.eval()
    if half:  # round first, so tables fitted below count the codes the float16 weights will really emit
        with torch.no_grad():
            for tensor in model.state_dict().values():
                if tensor.is_floating_point():
                    tensor.copy_(tensor.half())
    fitted = None
    if fit_data is not None:
        if not hasattr(model, "refit_counts"):
            raise ValueError(f"--fit-data applies to audio models, not {hparams['model_name']!r}")
        fitted = _refit(model, Path(fit_data), fit_minutes)
    model.update()  # integer entropy tables, built once here and shipped as buffers in the state_dict
    tensors = {k: (v.half() if half and v.is_floating_point() else v).detach().cpu().contiguous()
               for k, v in model.state_dict().items()}
    meta = {"model": hparams["model_name"], "config": model.config_dict(), "format": FORMAT,
            "recipe": hparams.get("recipe"), "steps": int(checkpoint.get("global_step", 0))}
    if fitted is not None:
        meta["tables_fitted_on"] = fitted
    if (started := _started_from(checkpoint, meta["recipe"])) is not None:
        meta["started_from"] = started
    # Weights first, config last: a folder with a config.json is a complete export.
    write_atomic(out_dir / WEIGHTS, save(tensors, metadata={"format": str(FORMAT)}), force=True)
    write_atomic(out_dir / CONFIG, (json.dumps(meta, indent=2) + "\n").encode(), force=True)
    _readable(out_dir / WEIGHTS, out_dir / CONFIG)
    return out_dir


LINEAGE = "polycodec_started_from"  # checkpoint key: what a warm-started run started from (see lineage_of)


def lineage_of(folder: str | Path) -> dict | None:
    """What a run warm-started from an exported ``folder`` started from: the folder, the sha256 of its weights,
    its recipe and steps (and its own lineage), so an export of a second stage still says how every step
    before it was trained.  None if ``folder`` is no export (a training checkpoint: its recipe is not at hand).
    Taken when the run starts and kept in its checkpoints, because the folder may be overwritten later (a
    stage trained from the shipped weights is usually exported over them)."""
    folder = Path(folder)
    if not (folder / CONFIG).is_file():
        return None
    before = _read_config(folder / CONFIG)
    return {"folder": str(folder), "weights_sha256": sha256_file(str(folder / WEIGHTS)).hex(),
            **{k: before[k] for k in ("recipe", "steps", "started_from") if k in before}}


def _started_from(checkpoint: dict[str, Any], recipe: dict | None) -> dict | None:
    if LINEAGE in checkpoint:
        return checkpoint[LINEAGE]
    # Checkpoints written before runs kept their lineage: the init folder as it is now.
    folder = (recipe or {}).get("trainer", {}).get("init_from")
    return lineage_of(folder) if folder else None


def _refit(model: nn.Module, folder: Path, minutes: float) -> dict:
    """Recount an audio model's codes on (an even sample of) the audio files in ``folder``."""
    from .audio import list_audio, load_int16

    files = list_audio(folder)
    rate = model.config.sample_rate
    budget = int(minutes * 60 * rate)
    per_file = max(rate, budget // len(files))

    def waveforms():
        for path in files:
            audio = torch.from_numpy(load_int16(path, rate)[:per_file].astype("float32") / 32768)
            yield audio.unsqueeze(0)

    frames = model.refit_counts(waveforms())
    return {"folder": str(folder), "files": len(files), "frames": frames}


def _readable(*paths: Path) -> None:
    """Atomic writes go through private (0600) temporary files; an export is meant to be shared, so give it
    the permissions an ordinary new file would have under the current umask."""
    umask = os.umask(0)
    os.umask(umask)
    for path in paths:
        os.chmod(path, 0o666 & ~umask)


def _read_config(config_file: Path) -> dict[str, Any]:
    """An export's config.json, its format checked."""
    meta = json.loads(config_file.read_text())
    if meta.get("format") != FORMAT:
        raise ValueError(f"{config_file}: export format {meta.get('format')!r} is not {FORMAT}")
    return meta


def read_exported(out_dir: str | Path, device: str | torch.device = "cpu") -> tuple[dict[str, Any],
                                                                                    dict[str, torch.Tensor]]:
    """An exported folder's config.json (format checked) and its state_dict, as stored (float16 when exported
    with ``half``: ``load_state_dict`` casts into the model's float32 tensors)."""
    out_dir = Path(out_dir)
    weights, config_file = out_dir / WEIGHTS, out_dir / CONFIG
    if not weights.is_file() or not config_file.is_file():
        raise FileNotFoundError(f"{out_dir} has no {WEIGHTS} + {CONFIG} (write one with `polycodec export`)")
    return _read_config(config_file), load_file(str(weights), device=str(device))


def load_exported(out_dir: str | Path, device: str | torch.device = "cpu") -> nn.Module:
    """An exported folder -> the model, strict state load, in eval mode (ready for compress/decompress)."""
    meta, state = read_exported(out_dir, device)
    try:
        model = build_model(meta["model"], meta["config"], complete=True)
    except ValueError as exc:  # name the folder whose config.json does not fit this version
        raise ValueError(f"{out_dir}: {exc}") from exc
    model.load_state_dict(state, strict=True)
    return model.to(device).eval()
