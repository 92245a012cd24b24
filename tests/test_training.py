"""Training, resuming, export and multi-process (DDP on the CPU) with a tiny model on tiny generated images."""

import csv
import hashlib
import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from PIL import Image
from safetensors import safe_open

from polycodec.cli.main import build_parser, main
from polycodec.training.cli import overrides_from_args
from polycodec.training.config import load_config
from polycodec.training.data import CentreCrops, ImageFolderDataModule, RandomCrops, list_images, split_files

ROOT = Path(__file__).resolve().parents[1]
TINY = "model.config={channels: 16, latent: 32, hyper_latent: 16, slices: 2}"


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # On a shared two-core machine, two OpenMP threads per process spin against the other jobs: the tiny model
    # ran ~50x slower than on one thread.  (DDP children get one thread each from Lightning already.)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    """Five smooth, textured images; one (48x40) is smaller than the 64 px crop, to exercise the padding."""
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for i, (h, w) in enumerate([(96, 80), (70, 100), (64, 64), (48, 40), (80, 80)]):
        yy, xx = np.mgrid[0:h, 0:w]
        pixels = np.stack([128 + 100 * np.sin(xx / (5 + i) + c) * np.cos(yy / 7) for c in range(3)], -1)
        pixels = (pixels + rng.normal(0, 8, (h, w, 3))).clip(0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"im{i}.png")
    Image.fromarray(np.full((70, 70), 90, np.uint8), "L").save(folder / "gray.png")  # grayscale -> 3 channels
    return folder


def tiny(data: Path, out: Path, *extra: str) -> list[str]:
    """Overrides for a seconds-long run: tiny model, 64 px crops, batch 2, checkpoint and validate at step 2."""
    return [TINY, f"data.path={data}", f"out={out}", "data.crop=64", "data.batch_size=2", "data.workers=0",
            "data.val_files=1", "data.val_crop=64", "trainer.val_every=2", "trainer.checkpoint_every=2",
            "trainer.log_every=1", "trainer.progress_bar=false", "trainer.accelerator=cpu", *extra]


def read_metrics(out: Path) -> list[dict]:
    rows = []
    for path in sorted((out / "logs").glob("version_*/metrics.csv")):
        with open(path) as f:
            rows += list(csv.DictReader(f))
    return rows


# -- recipes -------------------------------------------------------------------------------------------------
def test_recipe_file_flags_and_overrides(tmp_path):
    args = build_parser().parse_args(["train", "--config", str(ROOT / "configs/image.yaml"), "--max-steps", "20",
                                      "--data", "my data: #1", "--devices", "2", "--strategy", "ddp", "--lr", "3e-4",
                                      "--set", "optim.milestones=[10, 15]", "--set", TINY])
    config = load_config(args.config, overrides_from_args(args))
    assert config["trainer"]["max_steps"] == 20 and config["trainer"]["devices"] == 2
    assert config["trainer"]["strategy"] == "ddp" and config["optim"]["lr"] == 3e-4
    assert config["data"]["path"] == "my data: #1"  # quoted: YAML would have made it a mapping
    assert config["optim"]["milestones"] == [10, 15] and config["model"]["config"]["channels"] == 16
    assert config["data"]["crop"] == 256 and config["model"]["name"] == "image"  # untouched keys from the file
    for bad, message in [("trainer.max_step=3", "unknown config key 'trainer.max_step'"),
                         ("trainer.max_steps=many", "must be an integer"), ("data.crop=100", "multiple of 64"),
                         ("trainer", "section.key=value"), ("optim.lr=[1", "not valid YAML")]:
        with pytest.raises(ValueError, match=message):
            load_config(None, [bad])
    (tmp_path / "bad.yaml").write_text("data: {patch: x}\n")
    with pytest.raises(ValueError, match="data.patch"):
        load_config(tmp_path / "bad.yaml")


@pytest.mark.parametrize("case", ["missing", "empty", "too few"])
def test_clear_errors_for_bad_data_folders(tmp_path, capsys, case):
    folder = tmp_path / "images"
    if case != "missing":
        folder.mkdir()
        (folder / "notes.txt").write_text("not an image")
    if case == "too few":
        Image.new("RGB", (64, 64)).save(folder / "one.png")
    code = main(["train", "--data", str(folder), "--out", str(tmp_path / "run"), "--set", TINY])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("polycodec train: error:")
    assert {"missing": "does not exist", "empty": "no images", "too few": "too few"}[case] in err
    assert not (tmp_path / "run").exists()


# -- data ----------------------------------------------------------------------------------------------------
def test_data_crops_padding_and_deterministic_split(images):
    files = list_images(images)
    assert len(files) == 6
    train, val = split_files(files, images, 2, seed=0)
    assert len(val) == 2 and not set(train) & set(val)
    # The split depends on names and seed only: not on listing order, nor on other files being added.
    assert split_files(files[::-1], images, 2, seed=0)[1] == val
    new = images / "zz_new.png"
    assert set(split_files(files + [new], images, 2, seed=0)[1]) - {new} <= set(val)
    crops = RandomCrops(files, 64, length=12)
    batch = torch.stack([crops[i] for i in range(12)])  # includes the 48x40 image, reflection-padded
    assert batch.shape == (12, 3, 64, 64) and batch.dtype == torch.float32 and 0 <= batch.min() <= batch.max() <= 1
    for x in CentreCrops(files, max_side=None):
        assert x.shape[0] == 3 and x.shape[1] % 64 == 0 and x.shape[2] % 64 == 0
    module = ImageFolderDataModule(images, crop=64, batch_size=2, workers=0, val_files=2, val_crop=64)
    module.setup("fit")
    assert next(iter(module.train_dataloader())).shape == (2, 3, 64, 64)
    assert [b.shape for b in module.val_dataloader()] == [(1, 3, 64, 64)] * 2


def test_loss_goes_down_on_a_fixed_batch(images):
    from polycodec.training.module import RateDistortionModule, rate_distortion

    torch.manual_seed(0)
    module = RateDistortionModule(model_config={"channels": 16, "latent": 32, "hyper_latent": 16, "slices": 2})
    main_params, aux_params = module.parameter_groups()
    assert len(aux_params) == 1 and aux_params[0].shape[-1] == 3  # the quantiles, and nothing else
    crops = RandomCrops(list_images(images), 64, length=4)
    x = torch.stack([crops[i] for i in range(4)])
    quality = torch.tensor([0, 2, 3, 5])
    optimizer = torch.optim.Adam(main_params, lr=1e-3)
    losses = []
    for _ in range(25):
        terms = rate_distortion(module.model, x, quality)
        optimizer.zero_grad()
        terms["loss"].backward()
        optimizer.step()
        losses.append(terms["loss"].item())
    assert all(math.isfinite(v) for v in losses) and np.mean(losses[-5:]) < 0.7 * np.mean(losses[:5])
    assert terms["bpp"].shape == (4,) and (terms["bpp"] > 0).all()
    assert aux_params[0].grad is None  # the main loss never reaches the quantiles


# -- training, resuming, export -------------------------------------------------------------------------------
def test_train_resume_export_reload(images, tmp_path):
    from polycodec.training.export import load_checkpoint, load_exported, model_from_checkpoint
    from polycodec.training.train import build, train

    out = tmp_path / "run"
    trainer = train(load_config(ROOT / "configs/image.yaml", tiny(images, out, "trainer.max_steps=3")))
    assert trainer.global_step == 3
    checkpoints = out / "checkpoints"
    # Every 2 steps, and last.ckpt = the final step even off the checkpoint grid.
    assert sorted(p.name for p in checkpoints.iterdir()) == ["last.ckpt", "step0000002.ckpt"]
    assert load_checkpoint(checkpoints / "last.ckpt")["global_step"] == 3
    rows = read_metrics(out)
    assert [float(r["train/loss"]) for r in rows if r.get("train/loss")] and all(
        math.isfinite(float(r["train/loss"])) for r in rows if r.get("train/loss"))
    val = [r for r in rows if r.get("val/psnr_q5")]
    assert val and math.isfinite(float(val[0]["val/bpp_q0"])) and "val/loss" in val[0]
    assert (out / "recipe.yaml").is_file() and list((out / "tensorboard").glob("version_*/events.*"))

    # Resuming continues the step count (and the optimizers' state) instead of starting over.
    trainer = train(load_config(ROOT / "configs/image.yaml", tiny(images, out, "trainer.max_steps=5")),
                    resume=checkpoints / "last.ckpt")
    assert trainer.global_step == 5
    checkpoint = load_checkpoint(checkpoints / "last.ckpt")  # torch.load(weights_only=True) suffices
    assert checkpoint["global_step"] == 5 and len(checkpoint["optimizer_states"]) == 2
    assert sorted(p.name for p in checkpoints.iterdir()) == ["last.ckpt", "step0000002.ckpt", "step0000004.ckpt"]
    assert max(int(r["step"]) for r in read_metrics(out) if r.get("train/loss")) == 4  # logged steps go on

    # Export through the command line, then reload: identical outputs in eval mode.
    export_dir = tmp_path / "exported"
    assert main(["export", str(checkpoints / "last.ckpt"), str(export_dir)]) == 0
    meta = json.loads((export_dir / "config.json").read_text())
    assert meta["format"] == 1 and meta["model"] == "image" and meta["steps"] == 5
    assert meta["config"]["channels"] == 16 and len(meta["config"]["lambdas"]) == 6
    assert meta["recipe"]["trainer"]["max_steps"] == 5 and meta["recipe"]["data"]["crop"] == 64
    with safe_open(str(export_dir / "model.safetensors"), "pt") as f:
        assert "z_model.table_freqs" in f.keys() and f.metadata()["format"] == "1"
    reloaded = load_exported(export_dir)
    original, _ = model_from_checkpoint(checkpoint)
    original.update()
    original.eval()
    assert not reloaded.training
    x = torch.rand(2, 3, 64, 128, generator=torch.Generator().manual_seed(1))
    quality = torch.tensor([0, 5])
    with torch.no_grad():
        a, b = original(x, quality), reloaded(x, quality)
    assert torch.equal(a["x_hat"], b["x_hat"])
    assert all(torch.equal(a["likelihoods"][k], b["likelihoods"][k]) for k in ("y", "z"))
    assert main(["export", str(checkpoints / "last.ckpt"), str(export_dir)]) == 2  # no silent overwrite

    # An exported folder starts a new run (trainer.init_from): its weights, not a fresh initialisation; only the
    # coding tables, rebuilt at export, are left as they are.
    _, module, _ = build(load_config(ROOT / "configs/image.yaml", tiny(
        images, tmp_path / "stage2", f"trainer.init_from={export_dir}")))
    started = module.model.state_dict()
    taken = [k for k in reloaded.state_dict() if "table_" not in k]
    assert len(taken) > 50 and all(torch.equal(started[k], reloaded.state_dict()[k]) for k in taken)
    # ... and the export of such a run records what it started from: the first stage's recipe and steps.
    stage2 = tmp_path / "stage2"
    train(load_config(ROOT / "configs/image.yaml", tiny(images, stage2, "trainer.max_steps=1",
                                                        f"trainer.init_from={export_dir}")))
    assert main(["export", str(stage2 / "checkpoints/last.ckpt"), str(tmp_path / "exported2")]) == 0
    meta2 = json.loads((tmp_path / "exported2/config.json").read_text())
    assert meta2["steps"] == 1 and meta2["started_from"]["steps"] == 5
    assert meta2["started_from"]["recipe"]["trainer"]["max_steps"] == 5 and "started_from" not in meta
    assert meta2["started_from"]["weights_sha256"] == hashlib.sha256(
        (export_dir / "model.safetensors").read_bytes()).hexdigest()
    # The lineage is taken when the run starts: exporting stage 2 over the folder it started from (as a stage
    # trained from the shipped weights usually is) does not change what a later export of it reports.
    assert main(["export", str(stage2 / "checkpoints/last.ckpt"), str(export_dir), "--force"]) == 0
    assert main(["export", str(stage2 / "checkpoints/last.ckpt"), str(tmp_path / "exported3")]) == 0
    assert json.loads((tmp_path / "exported3/config.json").read_text())["started_from"] == meta2["started_from"]
    # Resuming a warm-started run reads neither the weights nor the lineage from trainer.init_from (the
    # checkpoint holds both), so it resumes even when that folder is gone, and still reports its lineage.
    shutil.rmtree(export_dir)
    train(load_config(ROOT / "configs/image.yaml", tiny(images, stage2, "trainer.max_steps=2",
                                                        f"trainer.init_from={export_dir}")),
          resume=stage2 / "checkpoints/last.ckpt")
    assert main(["export", str(stage2 / "checkpoints/last.ckpt"), str(tmp_path / "exported4")]) == 0
    meta4 = json.loads((tmp_path / "exported4/config.json").read_text())
    assert meta4["steps"] == 2 and meta4["started_from"] == meta2["started_from"]


def test_warm_start_takes_a_submodule_whole_or_not_at_all(tmp_path):
    # A quantizer whose codebook changed size must start afresh (k-means and all): taking its old "initialised"
    # flag and usage counts beside a new random codebook would skip the initialisation.  The rest is taken.
    from polycodec.quantizers import VectorQuantizer
    from polycodec.training.train import warm_start

    def net(codebook_dim: int) -> nn.Module:
        return nn.ModuleDict({"head": nn.Linear(4, 4), "vq": VectorQuantizer(4, 8, codebook_dim=codebook_dim)})

    old = net(2)
    old.vq(torch.randn(64, 4))  # k-means initialisation
    assert bool(old.vq.initialised)
    torch.save({"state_dict": old.state_dict()}, tmp_path / "old.ckpt")
    new = net(4)
    warm_start(new, str(tmp_path / "old.ckpt"))
    assert torch.equal(new.head.weight, old.head.weight)
    assert not bool(new.vq.initialised) and torch.equal(new.vq.cluster_size, torch.ones(8))


def test_checkpoints_needing_arbitrary_pickles_are_refused(tmp_path):
    from polycodec.training.export import load_checkpoint

    path = tmp_path / "evil.ckpt"
    # torch.save pickles the object; a pathlib.Path stands for any class outside torch's safe allow-list.
    torch.save({"state_dict": {}, "payload": Path("x")}, path)
    with pytest.raises(ValueError, match="weights_only"):
        load_checkpoint(path)


# -- several processes -----------------------------------------------------------------------------------------
def test_ddp_two_cpu_processes_through_the_cli(images, tmp_path):
    """`python -m polycodec train --devices 2 --strategy ddp --accelerator cpu`: Lightning re-executes the command
    line in a child process; both ranks train and rank 0 writes the checkpoint."""
    out = tmp_path / "ddp"
    overrides = [arg for o in tiny(images, out) for arg in ("--set", o)]
    start = time.monotonic()
    run = subprocess.run([sys.executable, "-m", "polycodec", "train", *overrides, "--max-steps", "3",
                          "--devices", "2", "--strategy", "ddp", "--accelerator", "cpu"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=300,
                         env={k: v for k, v in os.environ.items() if k not in ("LOCAL_RANK", "WORLD_SIZE")})
    elapsed = time.monotonic() - start
    assert run.returncode == 0, run.stderr[-3000:]
    log = run.stdout + run.stderr
    assert "distributed_backend=gloo" in log and "Starting with 2 processes" in log
    assert run.stdout.count("trained to step 3") == 1  # printed by rank 0 only
    from polycodec.training.export import load_checkpoint

    assert load_checkpoint(out / "checkpoints" / "last.ckpt")["global_step"] == 3
    print(f"DDP test: {elapsed:.1f} s")
