"""Run a recipe: data module + model module + Lightning trainer with checkpoints and logs.

    OUT/checkpoints/step0001000.ckpt ... last.ckpt   resumable (Lightning's own format)
    OUT/logs/version_N/metrics.csv                   one row per logged step
    OUT/tensorboard/version_N/                       when tensorboard is installed
    OUT/recipe.yaml                                  the resolved recipe of the latest run

Multi-process runs use Lightning's strategies as they are: with ``strategy: ddp`` the launcher re-executes the
same command line in one child process per extra device, and each process comes through here again.
"""

from __future__ import annotations

import copy
import importlib.util
import warnings
from pathlib import Path

import lightning as L
import yaml
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, Logger, TensorBoardLogger

from .audio import AudioCodecModule, AudioDataModule
from .data import ImageFolderDataModule
from .export import LINEAGE, lineage_of, load_checkpoint, read_exported
from .module import RateDistortionModule


# Lightning warnings that do not apply here, silenced during fit:
QUIET = [
    # checkpoints taken every N steps under manual optimization hold the weights *after* the step: exactly what
    # is wanted (the checkpoint of step N is the model trained for N steps);
    "Using ModelCheckpoint with manual optimization",
    # a resumed run cannot replay the rest of the interrupted epoch: samples are random crops anyway, and an
    # epoch is only samples_per_epoch of them.
    "You're resuming from a checkpoint that ended before the epoch ended",
]


class SaveRecipe(Callback):
    """Write the resolved recipe next to the checkpoints (global rank 0 only)."""

    def __init__(self, recipe: dict, path: Path) -> None:
        self.recipe, self.path = recipe, path

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if trainer.is_global_zero:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text(yaml.safe_dump(self.recipe, sort_keys=False))


class Lineage(Callback):
    """Keeps what a warm-started run started from (:func:`.export.lineage_of`, taken when it first starts) in
    every checkpoint, and a resumed run keeps the one its checkpoint holds, so the export reports the weights
    the run really started from even if their folder has been overwritten since."""

    def __init__(self, started_from: dict | None) -> None:
        self.started_from = started_from

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        if self.started_from is not None:
            checkpoint[LINEAGE] = self.started_from

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        self.started_from = checkpoint.get(LINEAGE)


class Checkpoints(ModelCheckpoint):
    """Lightning's ModelCheckpoint, plus: ``last.ckpt`` is always the final state.  Lightning writes it only at
    checkpoint steps, so a run whose max_steps is not a multiple of checkpoint_every would end with an older
    last.ckpt (or, when no checkpoint step was reached, a second "last-v1.ckpt")."""

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.save_last and self._last_global_step_saved != trainer.global_step:
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))  # on every rank; one writes
        else:
            super().on_train_end(trainer, pl_module)


def modules_for(config: dict) -> tuple[L.LightningModule, L.LightningDataModule]:
    """The Lightning module and data module of the recipe's model kind: image (rate-distortion on crops) or
    audio (reconstruction at fixed code rates, on segments)."""
    data_cfg, optim, seed, name = config["data"], config["optim"], config["trainer"]["seed"], config["model"]["name"]
    recipe = copy.deepcopy(config)  # no shared objects: no YAML anchors in hparams
    common = dict(lr=optim["lr"], clip=optim["clip"], milestones=optim["milestones"], gamma=optim["gamma"],
                  seed=seed, recipe=recipe)
    if name == "audio":
        module = AudioCodecModule(name, config["model"]["config"], weights=dict(config["loss"]), **common)
        data = AudioDataModule(seed=seed, sample_rate=module.model.config.sample_rate, **data_cfg)
        return module, data
    data = ImageFolderDataModule(seed=seed, **{k: v for k, v in data_cfg.items() if k != "segment"})
    return RateDistortionModule(name, config["model"]["config"], aux_lr=optim["aux_lr"], **common), data


def warm_start(module: L.LightningModule, checkpoint: str) -> None:
    """Copy the tensors of ``checkpoint`` whose name and shape match into ``module``, a submodule's all or none
    (the rest stays as initialised), e.g. to keep a trained encoder and quantizer while a new decoder head
    learns, or to train shipped weights further.  ``checkpoint`` is a training checkpoint or an exported
    folder (``polycodec export``, e.g. ``codecs/weights/image``).  The step count and optimizer start afresh:
    this is a new run, not a resumed one (use --resume for that)."""
    if Path(checkpoint).is_dir():
        state = {f"model.{name}": tensor for name, tensor in read_exported(checkpoint)[1].items()}
    else:
        state = load_checkpoint(checkpoint)["state_dict"]
    own = module.state_dict()
    fits = {k for k, v in state.items() if k in own and own[k].shape == v.shape}
    # A module's tensors come all together or not at all: half a module is no state of it (a codebook of a new
    # size beside the old "initialised" flag would skip the new codebook's k-means start).  Empty tensors hold
    # nothing to disagree with: coding tables stay empty until `update` builds them at export.
    def owner(name: str) -> str:
        return name.rpartition(".")[0]

    partial = {owner(k) for k, v in own.items() if k not in fits and v.numel()}
    taken = {k: state[k] for k in fits if owner(k) not in partial}
    module.load_state_dict(taken, strict=False)
    print(f"init_from {checkpoint}: {len(taken)} of {len(own)} tensors taken"
          f"{'; left as initialised: ' + ', '.join(sorted(partial)[:6]) if partial else ''}")


def build(config: dict, resuming: bool = False) -> tuple[L.Trainer, L.LightningModule, L.LightningDataModule]:
    """Trainer, module and data module for a validated recipe (see :mod:`.config`).  ``resuming``: a checkpoint
    will restore the weights and the lineage, so ``trainer.init_from`` is not read (it may be gone by then)."""
    run = config["trainer"]
    out = Path(config["out"])
    L.seed_everything(run["seed"], workers=True, verbose=False)
    module, data = modules_for(config)
    warm = run["init_from"] if not resuming else None
    if warm:
        warm_start(module, warm)
    data.check()  # a missing or empty folder fails here, before any process is launched
    keep = run["keep_checkpoints"]
    checkpoints = Checkpoints(
        dirpath=out / "checkpoints", filename="step{step:07d}", auto_insert_metric_name=False,
        every_n_train_steps=run["checkpoint_every"], save_last=True,
        # A new run in an old folder replaces its files: last.ckpt is always the run to --resume from.
        enable_version_counter=False,
        # "step" is always among the monitored candidates: top-k by step keeps the newest k.
        save_top_k=keep, monitor="step" if keep != 0 else None, mode="max")
    loggers: list[Logger] = [CSVLogger(out, name="logs")]
    if importlib.util.find_spec("tensorboard") is not None:
        loggers.append(TensorBoardLogger(out, name="tensorboard", default_hp_metric=False))
    # Validation every N steps across epochs (epochs are an artefact of samples_per_epoch here), or never.
    schedule = (dict(val_check_interval=run["val_every"], check_val_every_n_epoch=None) if data.val_count
                else dict(limit_val_batches=0))
    clip = dict(gradient_clip_val=config["optim"]["clip"] or None) if module.automatic_optimization else {}
    trainer = L.Trainer(
        max_steps=run["max_steps"], max_epochs=-1, accelerator=run["accelerator"], devices=run["devices"],
        strategy=run["strategy"], precision=run["precision"], default_root_dir=out, logger=loggers,
        callbacks=[checkpoints, SaveRecipe(config, out / "recipe.yaml"),
                   Lineage(lineage_of(warm) if warm else None)],
        log_every_n_steps=run["log_every"],
        num_sanity_val_steps=0, enable_progress_bar=run["progress_bar"], **schedule, **clip)
    return trainer, module, data


def train(config: dict, resume: str | Path | None = None) -> L.Trainer:
    """Train (or resume from a Lightning checkpoint, continuing its step count); returns the trainer."""
    if resume is not None and not Path(resume).is_file():
        raise FileNotFoundError(f"checkpoint {resume} does not exist")
    trainer, module, data = build(config, resuming=resume is not None)
    # A resumed run writes into its own checkpoint folder on purpose.
    quiet = QUIET + (["Checkpoint directory .* exists and is not empty"] if resume is not None else [])
    with warnings.catch_warnings():
        for message in quiet:
            warnings.filterwarnings("ignore", message=message)
        # weights_only: even resuming reads the checkpoint with torch's restricted unpickler (ours need no more).
        trainer.fit(module, datamodule=data, ckpt_path=str(resume) if resume is not None else None,
                    weights_only=True)
    return trainer
