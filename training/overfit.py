"""Fitting an :class:`~polycodec.models.overfit.OverfitImageModel` to one image: the overfitted codec's encoder.

    loss = MSE(image, synthesis(latents)) + lambda * latent bits / pixels

Latents start from a quantized Laplacian pyramid of the image at the higher qualities and at zero at the
lower ones (``Preset.pyramid_start_max_lambda``), or from a fit to the image at half size
(``Preset.half_size_steps``).  Two phases, as in Cool-chic and C3: first a smooth proxy of rounding lets the
latents move freely (soft rounding, additive noise, soft rounding again, with the soft rounding sharpening
as the phase goes on; or plain noise; the noise uniform on +-1/2, or Gaussian and shrinking from the pyramid
start), then they are rounded with straight-through gradients at a lower learning rate so the networks
adapt to the integers they will really see; the fit ends on that phase's best parameters, not its last.
A preset is a step budget; the time per step grows with the pixel count (for 768x512 on 2 CPU cores, about
0.3 s on a quiet host before the rate was compiled, docs/overfit.md; 0.55 s on a busy one with it, README).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Callable

import torch
from torch import Tensor, nn

from ..models.overfit import OverfitConfig, OverfitImageModel, downscale2x, rate_after_first_layer, rate_on_tables
from ..runtime import compiled, retain_freed_memory


@dataclass(frozen=True)
class Preset:
    steps: int
    learning_rate: float = 1e-2  # networks
    # Latents move five times faster: measured to fit far sooner; 0.1 lost 0.04 to 0.42 dB on whole photos.
    latent_learning_rate: float = 5e-2
    # Share of the steps spent in the straight-through phase.  0.05, not 0.2: on a 256x256 crop of baboon (q3)
    # the coded RD loss was 1.6 % lower at 2,000 steps and 0.6 % at 600; with 0.2 that phase's loss at lr 1e-3
    # turned upward after about 120 steps of it (docs/overfit.md, "How the settings were chosen").
    rounding_fraction: float = 0.05
    rounding_learning_rate: float = 1e-3
    # Start from a quantized Laplacian pyramid of the image instead of zero latents when lambda is at most
    # this (quality 4 and up; 0: never, math.inf: always).  At high rates the latents must carry fine detail,
    # which a fit from zero reaches late; at low rates the pyramid's start costs bits the fit then has to
    # shed.  On 256x256 crops of fruits and home at 600 steps it gained 0.13 to 1.32 dB against AVIF at
    # qualities 4 and 5, and moved qualities 1 to 3 by -0.98 to +0.17 dB (docs/overfit.md, "How the
    # settings were chosen").  Not with ``half_size_steps``, which chooses the starting latents itself.
    pyramid_start_max_lambda: float = 0.002
    # From the pyramid start, the learning rates rise linearly from zero over this share of the steps.  Adam's
    # first steps move every parameter by about the learning rate whatever its gradient, which scrambles the
    # synthesis the pyramid start sets up; on 256x256 crops of fruits and home at qualities 4 and 5 (600
    # steps) a 10 % warm-up gained 0.20 to 0.43 dB against AVIF (docs/overfit.md).  Fits from zero latents have
    # none.
    pyramid_warmup_fraction: float = 0.1
    # Soft rounding around the noise in the first phase (C3): its temperature falls linearly from the first
    # value to the second over that phase.  None: plain additive noise.  On 256x256 crops at 600 steps it
    # gained 0.1 to 3.8 dB over plain noise at equal rate; 0.5 -> 0.1 and 0.3 -> 0.03 were within 0.2 dB on
    # three of four points (docs/overfit.md, "How the settings were chosen").
    soft_rounding: tuple[float, float] | None = (0.3, 0.1)
    # From the pyramid start, the soft-rounding phase adds Gaussian noise whose standard deviation falls linearly
    # from the first value to the second (Cool-chic's current recipe), instead of uniform noise on +-1/2 (standard
    # deviation 0.29).  The pyramid's latents already carry the image; less noise disturbs them less as the fit
    # refines them.  On 256x256 crops of fruits and home at qualities 4 and 5 (600 steps) it gained 0.47 to 0.53
    # dB against AVIF at equal rate (docs/overfit.md).  None: uniform noise from the pyramid start too; fits from
    # zero latents always use uniform noise.
    pyramid_noise: tuple[float, float] | None = (0.25, 0.1)
    # Score the rate as the coded tables will see it (models.overfit.rate_on_tables: means on quarters, scales on
    # their buckets' middles, straight-through) instead of with float means and scales.  Off: on 256x256 crops of
    # fruits and home at 600 steps it gave BD-rates 2.2 % and 0.9 % lower, but the benchmark's medium run
    # (baboon and butterfly, 4,000 steps) gave a BD-rate against AVIF 0.5 points higher with it (docs/overfit.md).
    rate_on_tables: bool = False
    # Steps of a fit to the image at half size (2x2 means) before the full-size fit, whose coarser levels,
    # context and synthesis it then starts from (see OverfitImageModel.adopt_half_resolution).  A half-size
    # step costs about a third of a full-size one.  0: none, as in every preset: at about equal time it was
    # 11 % better (BD-rate) on one photo and 12 % worse on another (docs/overfit.md).
    half_size_steps: int = 0
    # Code the anchors in two passes (OverfitConfig.split_anchors) only when lambda is at least this (quality
    # 3 and down; 0: always, math.inf: never).  On 256x256 crops of fruits and home at 600 steps the split
    # gained 0.01 to 0.14 dB against AVIF at equal rate at qualities 1 to 3 and lost 0.03 to 0.23 dB at
    # qualities 4 and 5, where the dense latents already have neighbours worth reading (docs/overfit.md).
    split_anchors_min_lambda: float = 0.004
    # Compile the context's rate (torch.compile, see polycodec.runtime.compiled) for fits of at least this many
    # pixel-steps (steps x pixels; math.inf: never).  It cut a step at 768x512 on 2 threads from 0.78 to 0.55 s
    # (medians, benchmarks/image_overfit_step.py, README), and compiling costs 4 to 7 s, which a fit of 10^8
    # pixel-steps (250 steps at that size) earns back several times over; small fits, such as the tests', stay
    # eager.
    compile_min_pixel_steps: float = 1e8

    def __post_init__(self) -> None:
        if (self.steps < 1 or self.half_size_steps < 0 or not self.pyramid_start_max_lambda >= 0
                or not self.split_anchors_min_lambda >= 0 or not self.compile_min_pixel_steps >= 0):
            raise ValueError(f"a preset needs steps >= 1, half_size_steps >= 0, pyramid_start_max_lambda >= 0, "
                             f"split_anchors_min_lambda >= 0 and compile_min_pixel_steps >= 0, got {self}")
        if self.pyramid_noise is not None and not min(self.pyramid_noise) >= 0:
            raise ValueError(f"pyramid_noise must be two standard deviations >= 0 or None, got {self.pyramid_noise}")
        if not 0 <= self.pyramid_warmup_fraction < 1:
            raise ValueError(f"pyramid_warmup_fraction must be in [0, 1), got {self.pyramid_warmup_fraction}")

    def splits_anchors(self, lam: float) -> bool:
        """Whether a fit at this lambda may code the anchors in two passes (if its config asks for it)."""
        return lam >= self.split_anchors_min_lambda

    def compiles(self, pixels: int) -> bool:
        """Whether a fit of an image of this many pixels compiles its rate (see compile_min_pixel_steps)."""
        return self.steps * pixels >= self.compile_min_pixel_steps

    def starts_from_pyramid(self, lam: float) -> bool:
        """Whether a fit at this lambda starts from the quantized Laplacian pyramid (else from zero latents)."""
        return not self.half_size_steps and lam <= self.pyramid_start_max_lambda

    @property
    def noise_steps(self) -> int:
        """Steps of the first phase (noise / soft rounding); the rest are straight-through."""
        return round(self.steps * (1 - self.rounding_fraction))

    def with_steps(self, steps: int) -> "Preset":
        """This preset with ``steps`` full-size steps, its half-size steps scaled in proportion."""
        return replace(self, steps=steps, half_size_steps=round(self.half_size_steps * steps / self.steps))

    def describe(self) -> str:
        """The step budget in words, e.g. '800 half-size + 400 full-size steps'."""
        if not self.half_size_steps:
            return f"{self.steps} steps"
        return f"{self.half_size_steps} half-size + {self.steps} full-size steps"


# Step budgets.  Medium 3,000, not 2,000: on a 256x256 crop of baboon (q3, benchmarks/image_overfit_rounding.py)
# 3,000 steps gave a stream RD loss 2.3 % lower in 1.4x the time.  (With the earlier 20 % straight-through
# phase, whose loss rose as it went on, 2,700 steps had measured worse than 2,000: docs/overfit.md.)  Then
# 4,000: once the rate was compiled, 4,000 steps took about the time 3,000 had (0.55 against 0.77 s a step at
# 768x512 on 2 threads), and on baboon and butterfly they gave a BD-rate 1.3 % lower than 3,000 (README).
PRESETS = {"fast": Preset(steps=600), "medium": Preset(steps=4000), "slow": Preset(steps=6000)}

Progress = Callable[[int, int, float, float], None]  # (step, steps, bpp, psnr)


def _cosine(step: int, steps: int, start: float) -> float:
    return start * 0.5 * (1 + math.cos(math.pi * min(step / max(steps, 1), 1.0)))


def fit(image: Tensor, lam: float, preset: Preset, config: OverfitConfig = OverfitConfig(),
        progress: Progress | None = None, seed: int = 0) -> OverfitImageModel:
    """Fit latents and networks to ``image`` (C, H, W) in [0, 1]; returns the model in float (not yet quantized).

    Deterministic for a given seed, thread count and machine; different machines may fit slightly different
    models, which is harmless: the decoder only ever sees the quantized result written in the stream.
    """
    retain_freed_memory()  # large tensors are freed and reallocated every step (see polycodec.runtime)
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        channels, height, width = image.shape
        device = image.device
        if not preset.splits_anchors(lam):
            config = replace(config, split_anchors=False)
        model = OverfitImageModel(config, height, width, channels).to(device)
        from_pyramid = preset.starts_from_pyramid(lam)
        if from_pyramid:
            # High-rate theory for a uniform quantizer: MSE slope -2 ln2 q^2 / 12 per bit meets lambda at
            # q = sqrt(6 lambda / ln 2), about 2.9 sqrt(lambda).
            model.start_from_pyramid(image, math.sqrt(6 * lam / math.log(2)))
        half_size_steps = preset.half_size_steps if config.levels > 1 else 0  # one level has no coarser one
        total = half_size_steps + preset.steps
        if half_size_steps:
            small = downscale2x(image)
            half = OverfitImageModel(model.half_resolution_config(), small.shape[1], small.shape[2], channels)
            # No straight-through phase: these latents are only a start, fitted again at full size.
            optimise(half.to(device), small, lam, replace(preset, steps=half_size_steps, half_size_steps=0,
                                                          rounding_fraction=0.0), _shifted(progress, 0, total))
            model.adopt_half_resolution(half)
        warmup = round(preset.pyramid_warmup_fraction * preset.steps) if from_pyramid else 0
        rate = rate_on_tables if preset.rate_on_tables else rate_after_first_layer
        model.rate_after_first_layer = rate
        if preset.compiles(model.num_pixels):
            model.rate_after_first_layer = compiled(rate, _probe_rate(model), device.type)
        noise = preset.pyramid_noise if from_pyramid else None
        optimise(model, image, lam, preset, _shifted(progress, total - preset.steps, total), warmup, noise)
        model.rate_after_first_layer = rate_after_first_layer
        return model
    finally:
        torch.random.set_rng_state(generator_state)


def _probe_rate(model: OverfitImageModel) -> Callable[[Callable], None]:
    """A trial of a compiled :func:`rate_after_first_layer` on inputs shaped as ``model``'s fit will give it."""
    def probe(candidate: Callable) -> None:
        with torch.random.fork_rng():  # the trial draws no numbers from the fit's generators
            net, device = model.context.other, model.scale_shifts.device  # the device the fit runs on
            layers = [(nn.Parameter(layer.weight.detach().clone()), nn.Parameter(layer.bias.detach().clone()))
                      for layer in net.layers[1:]]
            # Everything requires grad, as in the fit (latents and shifts are fitted too): a trial without
            # would compile another graph than the fit's, and the fit would compile its own again.
            pre = torch.randn(64, net.layers[0].out_features, device=device, requires_grad=True)
            values = torch.randn(64, device=device).round().requires_grad_()
            shifts = torch.zeros(64, device=device, requires_grad=True)
            candidate(pre, values, shifts, layers).backward()
    return probe


def _shifted(progress: Progress | None, offset: int, total: int) -> Progress | None:
    """A phase's progress reported as steps of the whole fit."""
    if progress is None:
        return None
    return lambda step, _, bpp, psnr: progress(offset + step, total, bpp, psnr)


def optimise(model: OverfitImageModel, image: Tensor, lam: float, preset: Preset,
             progress: Progress | None = None, warmup_steps: int = 0,
             noise: tuple[float, float] | None = None) -> None:
    """Run ``preset``'s two fitting phases on ``model`` in place (noise / soft rounding, then rounding), the
    first phase's learning rates rising linearly over its first ``warmup_steps``.  ``noise``: the standard
    deviations (first, last) of Gaussian noise in the soft rounding, or None for uniform noise on +-1/2."""
    target = image.unsqueeze(0)
    noise_steps = preset.noise_steps
    groups = [{"params": list(model.latents.parameters()), "scale": preset.latent_learning_rate},
              {"params": [p for n, p in model.named_parameters() if not n.startswith("latents.")],
               "scale": preset.learning_rate}]
    optimizer = torch.optim.Adam(groups, lr=preset.learning_rate)
    best = _BestRounded(model)
    for step in range(preset.steps):
        rounding = step >= noise_steps
        warm = min(1.0, (step + 1) / warmup_steps) if warmup_steps else 1.0  # one factor for every group
        for group in optimizer.param_groups:
            if rounding:
                group["lr"] = _cosine(step - noise_steps, preset.steps - noise_steps, preset.rounding_learning_rate)
            else:
                group["lr"] = warm * _cosine(step, noise_steps, group["scale"]) + preset.rounding_learning_rate
        if rounding:
            x_hat, bits = model("ste")
        elif preset.soft_rounding is not None:
            share = step / max(noise_steps - 1, 1)  # of the first phase gone by
            first, last = preset.soft_rounding
            std = None if noise is None else noise[0] + (noise[1] - noise[0]) * share
            x_hat, bits = model("softround", first + (last - first) * share, std)
        else:
            x_hat, bits = model("noise")
        mse = torch.mean((x_hat - target) ** 2)
        loss = mse + lam * bits / model.num_pixels
        if rounding:
            best.offer(float(loss.detach()))  # before the update: the loss belongs to the current parameters
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if progress is not None:
            progress(step + 1, preset.steps, float(bits.detach()) / model.num_pixels,
                     float(-10 * torch.log10(mse.detach().clamp_min(1e-10))))
    best.restore()


class _BestRounded:
    """The parameters with the lowest loss seen in the straight-through phase, to end the fit on.

    Why: with rounded latents the gradients are biased, and on a 256x256 crop of baboon (q3, 2,000 steps, 400
    of them straight-through) the loss bottomed out after 120 of those steps and then rose by 1.5 %.  The
    loss is that of the rounded latents the stream will carry, so the lowest one is the model to keep.
    """

    def __init__(self, model: OverfitImageModel) -> None:
        self.model, self.loss, self.state = model, math.inf, None

    def offer(self, loss: float) -> None:
        if loss < self.loss:
            self.loss = loss
            self.state = [p.detach().clone() for p in self.model.parameters()]  # not the fixed entropy tables

    @torch.no_grad()
    def restore(self) -> None:
        if self.state is not None:
            for p, kept in zip(self.model.parameters(), self.state):
                p.copy_(kept)
