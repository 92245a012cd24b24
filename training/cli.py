"""``polycodec train`` and ``polycodec export``.

Lightning and the model are imported inside the commands, so that ``polycodec --help`` and the other
commands stay fast.
"""

from __future__ import annotations

import argparse
import json

# --flag -> recipe key: the settings changed most often; anything else goes through --set.
FLAGS = {
    "max_steps": ("trainer.max_steps", int, "training steps (optimizer steps of the main parameters)"),
    "data": ("data.path", str, "folder of training images"),
    "out": ("out", str, "output folder: checkpoints/, logs/, tensorboard/, recipe.yaml"),
    "devices": ("trainer.devices", str, "devices per node: a count, 'auto' or a list like 0,1"),
    "strategy": ("trainer.strategy", str, "Lightning strategy: auto, ddp, ..."),
    "accelerator": ("trainer.accelerator", str, "cpu, gpu, auto, ..."),
    "precision": ("trainer.precision", str, "32-true (default), bf16-mixed, 16-mixed"),
    "batch_size": ("data.batch_size", int, "crops per batch and process"),
    "crop": ("data.crop", int, "training crop side (a multiple of 64)"),
    "workers": ("data.workers", int, "DataLoader workers per process"),
    "lr": ("optim.lr", float, "learning rate of the main parameters"),
    "seed": ("trainer.seed", int, "random seed"),
}


def overrides_from_args(args: argparse.Namespace) -> list[str]:
    """The recipe overrides an argparse namespace asks for: named flags first, then --set in order."""
    overrides = []
    for dest, (key, _, _) in FLAGS.items():
        value = getattr(args, dest, None)
        if value is not None:
            # Paths and names are quoted (JSON strings are YAML) so that "a: b" or "#x" stay strings; devices
            # is not, so that "2" becomes the count 2 while "auto" and "0,1" stay strings.
            text = json.dumps(value) if isinstance(value, str) and dest != "devices" else value
            overrides.append(f"{key}={text}")
    return overrides + list(args.set or [])


def cmd_train(args: argparse.Namespace) -> int:
    from .config import load_config

    config = load_config(args.config, overrides_from_args(args))  # bad recipes fail before torch loads
    from .train import train

    trainer = train(config, resume=args.resume)
    if trainer.is_global_zero:
        callback = trainer.checkpoint_callback
        print(f"trained to step {trainer.global_step}; last checkpoint: {callback.last_model_path or '-'}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from .export import export

    out = export(args.checkpoint, args.out_dir, force=args.force, fit_data=args.fit_data,
                 fit_minutes=args.fit_minutes, half=args.half)
    print(f"exported {args.checkpoint} -> {out}/model.safetensors + config.json")
    return 0


def add_parsers(sub) -> None:
    p = sub.add_parser(
        "train", help="train a model from a recipe (YAML) on a folder of images or audio",
        description="Training with Lightning. Image recipes: rate-distortion on random crops of a folder of "
                    "images, one random quality level per sample. Audio recipes (model.name: audio): spectral "
                    "losses on segments of a folder of audio, one served bitrate per step. Checkpoints every N "
                    "steps plus last.ckpt, CSV (and TensorBoard) logs. The recipe is configs/*.yaml-style YAML; "
                    "flags and --set override it.",
        epilog="Examples:\n  polycodec train --config configs/image.yaml --max-steps 20000 --data data/train/images\n"
               "  polycodec train --config configs/image.yaml --devices 2 --strategy ddp --accelerator cpu\n"
               "  polycodec train --config configs/image.yaml --resume runs/image/checkpoints/last.ckpt\n"
               "  polycodec train --config configs/image-cpu.yaml --set trainer.init_from=codecs/weights/image"
               "   # start from shipped weights\n"
               "  polycodec train --set model.config.channels=64 --set optim.milestones=[16000,19000]\n"
               "  polycodec train --config configs/audio-cpu-stage3.yaml --data my/audio   # fine-tune shipped audio",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="recipe YAML (default: built-in defaults, see configs/image.yaml)")
    for dest, (key, kind, text) in FLAGS.items():
        p.add_argument(f"--{dest.replace('_', '-')}", dest=dest, type=kind, metavar=dest.upper(),
                       help=f"{text} ({key})")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override any recipe key, value parsed as YAML (repeatable): --set data.val_files=4")
    p.add_argument("--resume", metavar="CKPT", help="continue from a checkpoint (e.g. OUT/checkpoints/last.ckpt)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser(
        "export", help="turn a training checkpoint into model.safetensors + config.json",
        description="Load a checkpoint written by `polycodec train`, build the entropy tables (model.update()) "
                    "and write OUT_DIR/model.safetensors and OUT_DIR/config.json, the folder the image or audio codec loads "
                    "(--codec OUT_DIR).",
        epilog="Examples:\n  polycodec export runs/image/checkpoints/last.ckpt weights/image\n"
               "  polycodec export runs/audio-cpu/checkpoints/last.ckpt weights/audio --fit-data data/train/audio",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", help="a .ckpt file written by `polycodec train`")
    p.add_argument("out_dir", help="output folder")
    p.add_argument("--force", action="store_true", help="replace an existing export in OUT_DIR")
    p.add_argument("--fit-data", metavar="FOLDER",
                   help="audio models: count the final model's codes on this folder of (training) audio and build "
                        "the code tables from those counts instead of the ones gathered while training")
    p.add_argument("--fit-minutes", type=float, default=30.0,
                   help="with --fit-data: minutes of audio to count, spread evenly over the files (default 30)")
    p.add_argument("--half", action="store_true",
                   help="store float weights as float16: half the size on disk, cast back to float32 when loaded")
    p.set_defaults(func=cmd_export)
