"""Overfitted image model: latent grids, a context model and a synthesis network, all fitted to one image.

Follows Cool-chic (Ladune et al., "COOL-CHIC: Coordinate-based Low Complexity Hierarchical Image Codec",
ICCV 2023; Leguay et al., "Low-complexity Overfitted Neural Image Codec", MMSP 2023) and C3 (Kim et al.,
CVPR 2024).  Nothing here is trained on a data set: every parameter is optimised for the image it codes
(:mod:`polycodec.training.overfit`) and then sent in the stream.

    latents y_0 (H x W), y_1 (H/2 x W/2), ..., y_{L-1} (H/2^(L-1))       integers once quantized
      |  upsampled progressively (bilinear x2, then the next grid joins)  (L, H, W)
      v
    synthesis: 1x1 conv L->width, ReLU, 1x1 width->C, + residual 3x3 C->C, ReLU, 3x3 C->C
      -> image (C, H, W)

    entropy model, level by level from the coarsest, four passes per level (three with the anchors whole):
      early anchors (i, j even, (i + j)/2 even):  3x3 of the coarser level around (i//2, j//2)      9 inputs
      late anchors  (i, j even, (i + j)/2 odd):   the 12 early anchors at twice the 'others'
                                                  offsets (within 9x9) + the 9                     21 inputs
      diagonals     (i, j odd):   the 12 anchors at odd offsets within 7x7 (corners out) + the 9   21 inputs
      others        (i + j odd):  the 12 anchors and diagonals within 5x5 + the same 9 inputs      21 inputs
      -> fixed-point MLP (inputs -> hidden -> hidden -> 2), one for the early anchors and one shared by
         the three later passes -> integer (mean, log-scale) codes, the log-scale shifted by a whole
         number of scale buckets per plane and MLP -> MeanScaleLaplace table -> ANS

Why passes instead of Cool-chic's raster-scan context: each pass is one vectorised step, so a decoder
written in Python makes 4L passes over whole grids instead of H * W sequential steps.  Why these passes:
a latent with no decoded neighbour of its own level costs about twice the bits of one with them.  The
diagonal pass (stream version 2) lets the diagonals read anchors on every side before the others are
coded, and the anchors split into a checkerboard on their own grid (version 5; versions 2 to 4 code them
in one pass) give half of the anchors such neighbours too.  The context MLPs run in exact integer
arithmetic (weights on a 2^-b grid, activations on a 1/256 grid, sums exact in float64), so the tables a
decoder picks cannot depend on the machine.  The per-plane scale shifts (stream version 4) tell the shared
MLPs which plane they serve: an early anchor sees only the coarser plane, so without them a plane that
rounded to all zeros under a busy coarser one still paid for its anchors.  The synthesis runs in float:
it does not choose tables, so float noise there can only move a decoded pixel, never desynchronise the
stream.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import lru_cache

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from ..entropy.mean_scale import (CODE_ONE, FRACTIONS, NUM_SCALES, SCALE_CODE_MIN, SCALE_CODE_STEP, MeanScaleLaplace,
                                  laplace_bin_likelihood, scale_of_bucket)
from .exact import ACT_BITS, ACT_LIMIT, round_ste, to_grid
from .parity import coarse_preactivation, parity_subgrids, spatial_preactivation, valid_positions

# Offsets (dy, dx) of the decoded positions an 'other' position (i + j odd) sees within its 5x5 window: all
# the odd-parity ones, which are the anchors and diagonals.
SPATIAL_OFFSETS = tuple((dy, dx) for dy in range(-2, 3) for dx in range(-2, 3) if (dy + dx) % 2)
# The same pattern turned by 45 degrees and scaled by sqrt(2), for the 'diagonal' positions (i, j both odd):
# (odd, odd) offsets within 7x7, which land on anchors only.  One MLP serves both passes, since to it the
# neighbourhoods look alike; the k-th input of each is the same neighbour, rotated.
DIAGONAL_OFFSETS = tuple((dy - dx, dy + dx) for dy, dx in SPATIAL_OFFSETS)
# The 'other' pattern on the anchors' own grid (offsets doubled), for the later half of the anchors ((i + j) / 2
# odd, stream version 5): it lands on the earlier half only.
ANCHOR_OFFSETS = tuple((2 * dy, 2 * dx) for dy, dx in SPATIAL_OFFSETS)
PAD = 4  # border of zeros around a plane, wide enough for every offset set
COARSE_INPUTS = 9
WEIGHT_LIMIT = 8.0  # |weight| bound: with |activation| < 128 and fan-in <= 32 every exact sum stays < 2^31
MAX_EXPONENT = 16  # finest weight grid: sums of integer codes stay below 2^(23 + 16), far inside float64


@dataclass(frozen=True)
class OverfitConfig:
    levels: int = 7
    # Small on purpose: the networks travel in every stream (about 1,700 parameters, about 1 kB coded).  On whole
    # 768x512 photos at 600 steps (``benchmarks/image_overfit_settings.py --size 0``) a context MLP 16 wide
    # instead of 8 gained 0.14 to 0.75 dB against AVIF at equal rate on all four points; a synthesis 32 wide
    # gained nothing (-0.27 to +0.20 dB) and made fits 1.2 to 1.3x longer.
    synthesis_width: int = 16
    context_hidden: int = 16
    chroma_from_level: int = 1  # colour images: chroma planes at half resolution and below (4:2:0-like)
    # Anchors in two passes, the later half reading the earlier (stream version 5; versions 2 to 4: one pass).
    split_anchors: bool = True

    @property
    def passes(self) -> tuple[str, ...]:
        """The coding passes of every level, in order."""
        return SPLIT_PASSES if self.split_anchors else PASSES


class FixedPointMLP(nn.Module):
    """Linear layers with ReLU between them, activations on the 1/256 grid.

    ``forward`` is the plain float path used while fitting; :meth:`exact` runs quantized weights (see
    :meth:`quantize`) on integer activation codes in exact arithmetic and is what encoder and decoder both
    use to pick tables.  Each tensor (weight and bias of every layer, in that order) has its own grid
    2^-exponent: the stream carries the integers and the exponents.
    """

    def __init__(self, sizes: tuple[int, ...]) -> None:
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        with torch.no_grad():  # start from a near-zero output: mean 0, log-scale 0 (scale 1)
            self.layers[-1].weight.mul_(0.1)
            self.layers[-1].bias.zero_()
        self.exponents: tuple[int, ...] | None = None

    def forward(self, x: Tensor) -> Tensor:
        # Plain float while fitting: the 1/256 activation grid of the exact path moves the predicted means
        # and scales by far less than their table resolution, and fake quantization would double the cost.
        return self.after_first_layer(self.layers[0](x))

    def after_first_layer(self, pre: Tensor) -> Tensor:
        """The float network from the first layer's pre-activation on: what :meth:`forward` does after it."""
        x = pre
        for layer in self.layers[1:]:
            x = layer(F.relu(x))
        return x

    def tensors(self) -> list[Tensor]:
        """Weight and bias of every layer, in stream order."""
        return [t for layer in self.layers for t in (layer.weight, layer.bias)]

    def uniform_exponents(self, weight_bits: int) -> tuple[int, ...]:
        """Every weight on the 2^-weight_bits grid, every bias on the activation grid (stream version 2)."""
        return (weight_bits, ACT_BITS) * len(self.layers)

    def check_exponents(self, exponents: tuple[int, ...] | list[int]) -> tuple[int, ...]:
        """The exponents as a tuple, or ValueError if there are not one per tensor or one is out of range."""
        exponents = tuple(int(e) for e in exponents)
        if len(exponents) != 2 * len(self.layers):
            raise ValueError(f"expected {2 * len(self.layers)} exponents, got {len(exponents)}")
        # Weights: any grid up to 2^-MAX_EXPONENT keeps the sums of :meth:`exact` below 2^53.  Biases: the
        # activation grid or coarser, so adding one to an activation code stays on the code grid.
        if any(not 0 <= e <= MAX_EXPONENT for e in exponents[::2]) or any(
                not 0 <= e <= ACT_BITS for e in exponents[1::2]):
            raise ValueError(f"context exponents out of range: {exponents}")
        return exponents

    @torch.no_grad()
    def quantize(self, exponents: tuple[int, ...] | list[int]) -> None:
        """Round each tensor onto its 2^-exponent grid, in place (see :meth:`tensors` for the order)."""
        exponents = self.check_exponents(exponents)
        for i, t in enumerate(self.tensors()):
            t.copy_(to_grid(t, exponents[i], WEIGHT_LIMIT if i % 2 == 0 else ACT_LIMIT))
        self.exponents = exponents

    def integer_parameters(self) -> list[Tensor]:
        """Weights and biases as the integers the stream carries (after :meth:`quantize`)."""
        if self.exponents is None:
            raise RuntimeError("quantize() the context model before coding")
        return [torch.round(t.detach().double() * 2.0**e).to(torch.int64)
                for t, e in zip(self.tensors(), self.exponents)]

    @torch.no_grad()
    def load_integer_parameters(self, values: list[Tensor], exponents: tuple[int, ...] | list[int]) -> None:
        """Adopt weights read from a stream; refuses values outside the range that keeps :meth:`exact` exact."""
        exponents = self.check_exponents(exponents)
        for i, (value, e) in enumerate(zip(values, exponents)):
            limit = (WEIGHT_LIMIT if i % 2 == 0 else ACT_LIMIT) * 2.0**e
            if value.numel() and float(value.abs().max()) > limit:
                raise ValueError("a weight or bias lies outside the fixed-point range")
        for t, value, e in zip(self.tensors(), values, exponents):
            t.copy_(value.reshape(t.shape).double() / 2.0**e)
        self.exponents = exponents

    @torch.no_grad()
    def exact(self, x: Tensor | list[Tensor]) -> Tensor:
        """(N, inputs) activations on the 1/256 grid within +-ACT_LIMIT (float64), or its column blocks in
        order, -> (N, outputs) integer codes.

        Machine independent: every weight below is an integer times a power of two, so every product and
        partial sum is an integer times a power of two, far below 2^53, hence exact in float64 whatever the
        summation order.  Each layer computes floor(x W / 2^e + B 2^(8 - e_b) + 1/2) on the integer
        activation codes x (rounding half up), W and B the integers of its weight and bias and e, e_b their
        exponents; the scales 2^ACT_BITS (activations to codes) and 2^-e are folded into the weights, which
        changes no result and saves passes over the activations in the decoder's hot loop.
        """
        limit = ACT_LIMIT * 2.0**ACT_BITS
        blocks = [x] if isinstance(x, Tensor) else x
        layers = self._exact_layers()
        for i, (weight_t, bias_codes) in enumerate(layers):
            # The first layer's product summed block by block (still exact), then the bias added in place:
            # faster than addmm's broadcast copy of the bias.
            a = torch.mm(blocks[0].double(), weight_t[:blocks[0].shape[1]])
            start = blocks[0].shape[1]
            for block in blocks[1:]:
                a.addmm_(block.double(), weight_t[start:start + block.shape[1]])
                start += block.shape[1]
            a.add_(bias_codes).floor_().clamp_(0 if i < len(layers) - 1 else -limit, limit)
            blocks = [a]
        return a

    def _exact_layers(self) -> list[tuple[Tensor, Tensor]]:
        """Per layer, (transposed weights on the code grid, bias codes + 1/2) as :meth:`exact` multiplies
        them.  Kept while the weights and exponents stay as they are: a decoder calls :meth:`exact` three
        times per level and plane, and preparing the weights each time cost about 5 % of a decode."""
        if self.exponents is None:
            raise RuntimeError("quantize() the context model before coding")
        # Tensor versions count in-place changes, so any edit of a weight (quantize, load, copy_) is seen.
        key = (self.exponents, tuple((t.data_ptr(), t._version) for t in self.tensors()))
        if getattr(self, "_exact_key", None) != key:
            values, exponents, layers = self.integer_parameters(), self.exponents, []
            for i in range(len(self.layers)):
                weight_exp, bias_exp = exponents[2 * i], exponents[2 * i + 1]
                # Transposed weights made contiguous: addmm on a transposed view runs about twice as slow.
                weight_t = (values[2 * i].double() * 2.0 ** ((ACT_BITS if i == 0 else 0) - weight_exp)).T.contiguous()
                layers.append((weight_t, values[2 * i + 1].double() * 2.0 ** (ACT_BITS - bias_exp) + 0.5))
            self._exact_key, self._exact_cache = key, layers
        return self._exact_cache


def pass_masks(height: int, width: int) -> dict[str, Tensor]:
    """Pass -> (H * W,) bool: anchors (i, j even), or their halves 'anchor-even' and 'anchor-odd' by the parity
    of (i + j) / 2; diagonals (i, j odd); others (i + j odd)."""
    yy, xx = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    odd_row, odd_col = (yy % 2 == 1).reshape(-1), (xx % 2 == 1).reshape(-1)
    anchor, odd_half = ~odd_row & ~odd_col, ((yy + xx) // 2 % 2 == 1).reshape(-1)
    return {"anchor": anchor, "anchor-even": anchor & ~odd_half, "anchor-odd": anchor & odd_half,
            "diagonal": odd_row & odd_col, "other": odd_row ^ odd_col}


@dataclass(frozen=True)
class GridLayout:
    """Index tensors of one grid size: which positions each pass codes and where their context lies."""

    positions: dict[str, Tensor]  # pass -> flat positions (N,)
    parents: dict[str, Tensor]  # pass -> flat position of each one's parent (i//2, j//2) in the coarser grid
    spatial: dict[str, Tensor]  # pass -> (N, 12) flat positions of its visible neighbours in the padded plane


@lru_cache(maxsize=128)
def grid_layout(height: int, width: int) -> GridLayout:
    positions = {k: mask.nonzero()[:, 0] for k, mask in pass_masks(height, width).items()}
    parents = {k: (v // width // 2) * (-(-width // 2)) + (v % width) // 2 for k, v in positions.items()}
    spatial = {}
    patterns = (("anchor-odd", ANCHOR_OFFSETS), ("diagonal", DIAGONAL_OFFSETS), ("other", SPATIAL_OFFSETS))
    for pass_, offsets in patterns:
        rows, cols = positions[pass_] // width, positions[pass_] % width
        spatial[pass_] = torch.stack([(rows + PAD + dy) * (width + 2 * PAD) + cols + PAD + dx for dy, dx in offsets],
                                     dim=1)
    return GridLayout(positions, parents, spatial)


class ContextModel(nn.Module):
    """Predicts each latent's Laplace mean and log-scale from decoded neighbours (see the module docstring)."""

    def __init__(self, hidden: int = 16) -> None:
        super().__init__()
        self.anchor = FixedPointMLP((COARSE_INPUTS, hidden, hidden, 2))
        self.other = FixedPointMLP((len(SPATIAL_OFFSETS) + COARSE_INPUTS, hidden, hidden, 2))

    def features(self, planes: Tensor, coarser: Tensor | None, pass_: str) -> tuple[Tensor, Tensor]:
        """Context inputs of one pass (a name of :func:`pass_masks`) over same-size planes.

        planes (P, H, W) and their coarser planes (P, H/2, W/2) or None, or one plane of each as (H, W).
        Returns (features (P * N, 9 or 21), ordered plane by plane; flat positions within a plane (N,)).
        Only the pass's own positions are gathered.  Each pass reads the planes only where earlier passes
        coded (the 'anchor-odd' pass at early anchors, the 'diagonal' pass at anchors, the 'other' pass at
        anchors and diagonals, or the zero border), so a decoder may leave the later passes' positions empty.
        """
        patches = None if coarser is None else self.parent_patches(coarser)
        blocks, positions = self.feature_blocks(planes, patches, pass_)
        return (blocks[0] if len(blocks) == 1 else torch.cat(blocks, dim=1)), positions

    def feature_blocks(self, planes: Tensor, patches: Tensor | None, pass_: str) -> tuple[list[Tensor], Tensor]:
        """:meth:`features` as its column blocks ([spatial (P * N, 12)], coarse (P * N, 9)), not joined.

        ``patches``: :meth:`parent_patches` of the coarser planes, or None at the coarsest level; the
        decoder makes them once for a level's passes.  It feeds the blocks to
        :meth:`FixedPointMLP.exact` as they are: joining them costs more than the first layer's product.
        """
        planes = planes.reshape(-1, *planes.shape[-2:])
        count, height, width = planes.shape
        layout = grid_layout(height, width)
        positions = layout.positions[pass_]
        # Gathers pick whole rows (dim 1 of (P, rows, k)) and the result is built contiguous as (P, N, k):
        # index_select along a last dimension, or a transposed result fed to the MLP, is several times slower.
        if patches is None:
            coarse = planes.new_zeros(count * positions.numel(), COARSE_INPUTS)
        else:
            coarse = patches.index_select(1, layout.parents[pass_]).reshape(-1, COARSE_INPUTS)
        if pass_ not in layout.spatial:
            return [coarse], positions
        index = layout.spatial[pass_]
        padded = F.pad(planes, (PAD, PAD, PAD, PAD)).reshape(count, -1)
        spatial = padded.index_select(1, index.reshape(-1)).reshape(-1, index.shape[1])
        return [spatial, coarse], positions

    @staticmethod
    def parent_patches(coarser: Tensor) -> Tensor:
        """Coarser planes (P, h, w) or one as (h, w) -> (P, h * w, 9): the 3x3 around every position, zeros
        beyond the edges, each position's row contiguous for the gathers of :meth:`feature_blocks`."""
        coarser = coarser.reshape(-1, 1, *coarser.shape[-2:])
        return rearrange(F.unfold(coarser, 3, padding=1), "p k n -> p n k").contiguous()

    def net(self, pass_: str) -> FixedPointMLP:
        """The MLP of a pass (see :func:`net_name`), or of a name in NETS."""
        return self.anchor if net_name(pass_) == "anchor" else self.other


PASSES = ("anchor", "diagonal", "other")  # per level, in coding order (stream versions 2 to 4)
SPLIT_PASSES = ("anchor-even", "anchor-odd", "diagonal", "other")  # version 5
NETS = ("anchor", "other")  # the context MLPs, in stream order
# How the fitting path scores each pass (see OverfitImageModel.latent_bits): pieces of (grid, parity sub-grid
# of it, spatial offsets on that grid).  Grid 'plane' is the plane, 'anchors' its anchors (i, j even) as a
# plane of their own, on which 'anchor-odd' reads the 'other' pattern (ANCHOR_OFFSETS on the plane).
FITTING_PIECES = {
    "anchor": (("plane", (0, 0), ()),),
    "anchor-even": (("anchors", (0, 0), ()), ("anchors", (1, 1), ())),
    "anchor-odd": (("anchors", (0, 1), SPATIAL_OFFSETS), ("anchors", (1, 0), SPATIAL_OFFSETS)),
    "diagonal": (("plane", (1, 1), DIAGONAL_OFFSETS),),
    "other": (("plane", (0, 1), SPATIAL_OFFSETS), ("plane", (1, 0), SPATIAL_OFFSETS)),
}
PASS_SHARE = {"anchor": 1 / 4, "anchor-even": 1 / 8, "anchor-odd": 1 / 8, "diagonal": 1 / 4, "other": 1 / 2}
# Scale shifts are whole buckets: adding one to a log-scale code moves the table choice by exactly that many.
SHIFT_STEP = SCALE_CODE_STEP / CODE_ONE  # one bucket in nats (28/256, exact in float32)
MAX_SHIFT = NUM_SCALES  # buckets: beyond the table range either way there is nothing left to move
LOG_SCALE_RANGE = (math.log(scale_of_bucket(0.0)), math.log(scale_of_bucket(NUM_SCALES - 1.0)))  # the tables'


def net_name(pass_: str) -> str:
    """The context MLP that serves a pass: 'anchor' for the anchors without spatial context, else 'other'
    (whose 12 spatial inputs the later anchors, diagonals and others fill, each with its own pattern)."""
    return "anchor" if pass_ in ("anchor", "anchor-even") else "other"


class Synthesis(nn.Module):
    """Per-pixel MLP on the stacked grids, then a residual pair of 3x3 convolutions on the image."""

    def __init__(self, levels: int, width: int, channels: int) -> None:
        super().__init__()
        # The per-pixel layers keep Linear weights and run as one matrix product over all pixels (forward): on
        # the CPU about twice as fast to fit as the equivalent 1x1 convolutions, whose backward pass is slow
        # for so few channels.
        self.mix = nn.Linear(levels, width)
        self.project = nn.Linear(width, channels)
        self.refine = nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1, padding_mode="replicate"), nn.ReLU(),
                                    nn.Conv2d(channels, channels, 3, padding=1, padding_mode="replicate"))
        with torch.no_grad():  # start as mid-grey, the refinement as identity
            self.project.bias.fill_(0.5)
            self.refine[-1].weight.mul_(0.1)
            self.refine[-1].bias.zero_()

    def forward(self, features: Tensor, order: Tensor | None = None) -> Tensor:
        """(1, L, H, W) -> (1, C, H, W); ``order`` (L,): the plane each feature channel holds, if not 0..L-1."""
        _, planes, height, width = features.shape
        mix = self.mix.weight if order is None else self.mix.weight.index_select(1, order)
        # Channel-first products, (width, L) @ (L, H * W): no transposed copy of the features or the output.
        hidden = F.relu(torch.addmm(self.mix.bias[:, None], mix, features.reshape(planes, -1)))
        x = torch.addmm(self.project.bias[:, None], self.project.weight, hidden).reshape(1, -1, height, width)
        return x + self.refine(x)

    def multiplications_per_pixel(self) -> int:
        return sum(m.weight.numel() for m in self.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))


def rate_after_first_layer(pre: Tensor, values: Tensor, shifts: Tensor, layers: list[tuple[Tensor, Tensor]]
                           ) -> Tensor:
    """Bits of ``values`` (N,) under a context MLP from its first layer's pre-activations (N, hidden) on:
    ReLU and the later ``layers`` (weight, bias) give (mean, log-scale) per value, the log-scale shifted by
    ``shifts`` (N,) and clamped to the tables' range -> -sum log2 likelihood.

    A function of tensors alone, so the fit can compile it (``OverfitImageModel.rate_after_first_layer``):
    about a third of an uncompiled step is spent here.  No float arguments: torch 2.9's compiled form, first
    run with other floats, was seen to keep using them.
    """
    mean, log_scale = _context_outputs(pre, shifts, layers)
    return _laplace_bits(values, mean, log_scale)


def rate_on_tables(pre: Tensor, values: Tensor, shifts: Tensor, layers: list[tuple[Tensor, Tensor]]) -> Tensor:
    """:func:`rate_after_first_layer` with each mean snapped to its quarter and each log-scale to the middle of
    its bucket, as the coded tables have them (``entropy/mean_scale.py``), gradients passed straight through.

    The fit then scores the rate the coder will really pay: on a fitted 256x256 crop of baboon at quality 3
    the quarter means alone cost 1.9 % more latent bits than the float ones (docs/overfit.md).  Used when
    ``Preset.rate_on_tables`` is set.
    """
    mean, log_scale = _context_outputs(pre, shifts, layers)
    quarter = torch.floor(mean * FRACTIONS + 0.5) / FRACTIONS
    bucket = torch.floor((log_scale * CODE_ONE - SCALE_CODE_MIN) / SCALE_CODE_STEP).clamp(0, NUM_SCALES - 1)
    middle = (SCALE_CODE_MIN + (bucket + 0.5) * SCALE_CODE_STEP) / CODE_ONE
    return _laplace_bits(values, mean + (quarter - mean).detach(), log_scale + (middle - log_scale).detach())


def _context_outputs(pre: Tensor, shifts: Tensor, layers: list[tuple[Tensor, Tensor]]) -> tuple[Tensor, Tensor]:
    """(mean, log-scale) of a context MLP from its first layer's pre-activations; the log-scale shifted and
    clamped to the tables' range (before exp: a log-scale pushed far out cannot overflow to inf * 0 = nan
    gradients, and the likelihood is the one the entropy model gives, which clamps the scale)."""
    x = pre
    for weight, bias in layers[:-1]:
        x = F.linear(F.relu(x), weight, bias)
    x, (weight, bias) = F.relu(x), layers[-1]
    # The last layer's two outputs as two dot products: compiled, they fuse with the likelihood and its
    # gradient, where a matrix product with two columns, and its backward, ran slower than all the rest.
    mean, log_scale = (x * weight[0]).sum(1) + bias[0], (x * weight[1]).sum(1) + bias[1]
    return mean, (log_scale + shifts).clamp(*LOG_SCALE_RANGE)


def _laplace_bits(values: Tensor, mean: Tensor, log_scale: Tensor) -> Tensor:
    return -torch.log2(laplace_bin_likelihood(values, mean, torch.exp(log_scale))).sum()


def soft_round(y: Tensor, temperature: float) -> Tensor:
    """A differentiable rounding (Agustsson & Theis, NeurIPS 2020): identity as temperature grows, round as it
    falls to 0; continuous at the half-integers."""
    middle = torch.floor(y) + 0.5
    return middle + 0.5 * torch.tanh((y - middle) / temperature) / math.tanh(0.5 / temperature)


def level_shapes(height: int, width: int, levels: int) -> list[tuple[int, int]]:
    return [(-(-height // 2**level), -(-width // 2**level)) for level in range(levels)]


# YCbCr (BT.601, full range, chroma centred on 0) <-> RGB: the pyramid start splits luma from colour.
_RGB_TO_YCC = torch.tensor([[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]])
_YCC_TO_RGB = torch.linalg.inv(_RGB_TO_YCC)


def upsample2x(x: Tensor, height: int, width: int) -> Tensor:
    """(1, C, h, w) -> (1, C, height, width): bilinear doubling, cropped (the one upsampler of this model)."""
    return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)[..., :height, :width]


def downscale2x(x: Tensor) -> Tensor:
    """(..., C, H, W) -> (..., C, ceil(H/2), ceil(W/2)): 2x2 means, odd edges repeated (the grid sizes of a
    level one down)."""
    flat = x.reshape(-1, *x.shape[-3:])
    halved = F.avg_pool2d(F.pad(flat, (0, x.shape[-1] % 2, 0, x.shape[-2] % 2), mode="replicate"), 2)
    return halved.reshape(*x.shape[:-2], *halved.shape[-2:])


def _parity_subgrids_of_channels(features: Tensor) -> Tensor:
    """(P, C, h, w) -> (P, C, 4, h/2, w/2): :func:`parity_subgrids` of each channel."""
    subgrids = parity_subgrids(features.flatten(0, 1))
    return subgrids.reshape(*features.shape[:2], *subgrids.shape[1:])


class OverfitImageModel(nn.Module):
    """One image's latents and networks (see the module docstring for the data flow).

    Latent *planes*: one per level for luma (or grey), plus two chroma planes per level from
    ``config.chroma_from_level`` down for colour images.  Each plane's context reads the plane of the same
    channel one level coarser.
    """

    def __init__(self, config: OverfitConfig, height: int, width: int, channels: int = 3) -> None:
        super().__init__()
        self.config, self.height, self.width, self.channels = config, height, width, channels
        self.shapes = level_shapes(height, width, config.levels)
        colour = range(3) if channels == 3 else range(1)
        self.planes = [(level, c) for level in range(config.levels)
                       for c in (colour if level >= config.chroma_from_level else range(1))]
        self.latents = nn.ParameterList(nn.Parameter(torch.zeros(self.shapes[level])) for level, _ in self.planes)
        self.context = ContextModel(config.context_hidden)
        # Per plane and context MLP (column order of NETS), added to the MLP's log-scale: in nats while
        # fitting, then whole buckets of SHIFT_STEP (:meth:`quantize_scale_shifts`), which the stream carries.
        self.scale_shifts = nn.Parameter(torch.zeros(len(self.planes), len(NETS)))
        self.synthesis = Synthesis(len(self.planes), config.synthesis_width, channels)
        self.entropy = MeanScaleLaplace()
        # What latent_bits scores the context MLPs' outputs with: this function, or a compiled form of it that
        # a long fit swaps in (polycodec.training.overfit); the two give the same bits up to float noise.
        self.rate_after_first_layer = rate_after_first_layer

    @property
    def num_pixels(self) -> int:
        return self.height * self.width

    def coding_order(self) -> list[tuple[int, int | None]]:
        """(plane, plane of its context's coarser level or None), coarsest level first."""
        index = {plane: i for i, plane in enumerate(self.planes)}
        order = sorted(range(len(self.planes)), key=lambda i: (-self.planes[i][0], self.planes[i][1]))
        return [(i, index.get((self.planes[i][0] + 1, self.planes[i][1]))) for i in order]

    def quantized_latents(self, mode: str, temperature: float = 0.3, noise: float | None = None) -> list[Tensor]:
        """Latents as the synthesis and the rate term see them while fitting, or rounded.

        'noise': additive uniform noise; 'softround': soft rounding, noise, soft rounding again (C3's proxy,
        sharper as ``temperature`` falls), the noise uniform on +-1/2 or, given ``noise``, Gaussian with that
        standard deviation; 'ste': rounding with straight-through gradients; 'round': plain.
        """
        if mode == "noise":
            return [y + torch.empty_like(y).uniform_(-0.5, 0.5) for y in self.latents]
        if mode == "softround":
            return [soft_round(soft_round(y, temperature) + self._noise_like(y, noise), temperature)
                    for y in self.latents]
        if mode == "ste":
            return [round_ste(y) for y in self.latents]
        if mode == "round":
            return [torch.round(y.detach()) for y in self.latents]
        raise ValueError(f"unknown quantization mode {mode!r}")

    @staticmethod
    def _noise_like(y: Tensor, std: float | None) -> Tensor:
        """Uniform noise on +-1/2 (None) or Gaussian noise of standard deviation ``std``, shaped as ``y``."""
        if std is None:
            return torch.empty_like(y).uniform_(-0.5, 0.5)
        return torch.randn_like(y) * std

    def upsampled(self, latents: list[Tensor]) -> Tensor:
        """Latent planes -> (1, planes, H, W), each brought to full size by repeated :func:`upsample2x`."""
        stack, order = self._upsampled_stack(latents)
        return stack.index_select(1, torch.argsort(order))  # back to plane order

    def _upsampled_stack(self, latents: list[Tensor]) -> tuple[Tensor, Tensor]:
        """The upsampled planes coarsest level last, as they are built, and their plane indexes (L,).

        Progressive: the stack so far is doubled and the next finer level's planes join it, so the coarsest
        plane passes through six smoothing x2 steps.  Far cheaper to fit than one bicubic interpolation per
        plane straight to full size (19 ms against 128 ms per step at 768x512).
        """
        by_level: list[list[int]] = [[] for _ in self.shapes]
        for i, (level, _) in enumerate(self.planes):
            by_level[level].append(i)
        stack, order = None, []
        for level in reversed(range(len(self.shapes))):
            height, width = self.shapes[level]
            here = torch.stack([latents[i] for i in by_level[level]])[None]
            stack = here if stack is None else torch.cat([here, upsample2x(stack, height, width)], dim=1)
            order = by_level[level] + order
        return stack, torch.tensor(order, device=stack.device)

    def synthesize(self, latents: list[Tensor]) -> Tensor:
        """Latent planes -> image (1, C, H, W), not clamped."""
        # The synthesis reads the stack in build order through its weights' columns in that order: the same
        # sums as on plane order, without a copy of every full-size plane (and its backward) per step.
        return self.synthesis(*self._upsampled_stack(latents))

    def latent_bits(self, latents: list[Tensor]) -> Tensor:
        """Ideal code length of the latents under the (float) context model, differentiable.

        While fitting every latent is known, so all planes are scored at once, and each MLP's first layer
        runs as small convolutions over the planes' parity sub-grids (:mod:`.parity`) instead of on gathered
        neighbourhoods: the same sums, without building a (latents, 21) input matrix and scattering its
        gradient back.  The rest of each MLP runs once over every level and pass it serves.
        """
        rows: dict[str, list[Tensor]] = {name: [] for name in NETS}
        values: dict[str, list[Tensor]] = {name: [] for name in NETS}
        valid: dict[str, list[Tensor]] = {name: [] for name in NETS}
        shifts: dict[str, list[Tensor]] = {name: [] for name in NETS}
        for level, coarser_level in self.level_groups():
            planes = torch.stack([latents[i] for i in level])  # (P, H, W)
            coarser = None if coarser_level is None else torch.stack([latents[i] for i in coarser_level])
            grids = {"plane": parity_subgrids(planes)}  # (P, 4, H/2, W/2)
            sizes = {"plane": tuple(planes.shape[-2:]), "anchors": tuple(grids["plane"].shape[-2:])}
            if self.config.split_anchors:
                grids["anchors"] = parity_subgrids(grids["plane"][:, 0])  # (P, 4, H/4, W/4)
            for name in NETS:
                first = self.context.net(name).layers[0]
                spatial = first.in_features - COARSE_INPUTS
                # The coarser 3x3 term on the grid of the parents, which is the anchors' grid (h = H/2), and
                # split like the anchors for their passes.
                coarse = None
                if coarser is not None:
                    coarse = {"plane": coarse_preactivation(coarser, first.weight[:, spatial:])}
                    if self.config.split_anchors:
                        coarse["anchors"] = _parity_subgrids_of_channels(coarse["plane"])
                shift = self.scale_shifts[torch.tensor(level), NETS.index(name)]  # (P,)
                for pass_ in (p for p in self.config.passes if net_name(p) == name):
                    for grid, parity, offsets in FITTING_PIECES[pass_]:
                        sub = grids[grid]
                        index = 2 * parity[0] + parity[1]
                        pre = first.bias[None, :, None, None].expand(len(level), -1, *sub.shape[-2:])
                        if coarse is not None:
                            pre = pre + (coarse["plane"] if grid == "plane" else coarse["anchors"][:, :, index])
                        if offsets:
                            pre = pre + spatial_preactivation(sub, first.weight[:, :spatial], offsets, parity)
                        rows[name].append(rearrange(pre, "p c h w -> (p h w) c"))
                        values[name].append(sub[:, index].reshape(-1))
                        valid[name].append(valid_positions(*sizes[grid], parity).repeat(len(level)))
                        shifts[name].append(shift.repeat_interleave(sub.shape[-2] * sub.shape[-1]))
        bits = latents[0].new_zeros(())
        for name in NETS:
            pre, value, inside = torch.cat(rows[name]), torch.cat(values[name]), torch.cat(valid[name])
            shift = torch.cat(shifts[name])
            if not bool(inside.all()):  # odd sizes: drop the padding's positions, which are not latents
                inside = inside.to(pre.device)
                pre, value, shift = pre[inside], value[inside], shift[inside]
            later_layers = [(layer.weight, layer.bias) for layer in self.context.net(name).layers[1:]]
            bits = bits + self.rate_after_first_layer(pre, value, shift, later_layers)
        return bits

    def level_groups(self) -> list[tuple[list[int], list[int] | None]]:
        """Per level: (its planes, the planes their contexts read one level coarser, or None at the top)."""
        groups = {}
        for i, coarser in self.coding_order():
            level = self.planes[i][0]
            planes, parents = groups.setdefault(level, ([], []))
            planes.append(i)
            parents.append(coarser)
        if any(None in parents and set(parents) != {None} for _, parents in groups.values()):
            raise ValueError("every plane of a level must have a coarser plane, or none may")
        return [(planes, None if None in parents else parents) for planes, parents in groups.values()]

    def forward(self, mode: str = "noise", temperature: float = 0.3,
                noise: float | None = None) -> tuple[Tensor, Tensor]:
        """-> (image (1, C, H, W), latent bits); the arguments as :meth:`quantized_latents` takes them."""
        latents = self.quantized_latents(mode, temperature, noise)
        return self.synthesize(latents), self.latent_bits(latents)

    @torch.no_grad()
    def start_from_pyramid(self, image: Tensor, step: float) -> None:
        """Start the fit from a Laplacian pyramid of the image (YCbCr for colour) quantized with ``step``.

        The bands are built with this model's own upsampler, so the upsampled planes sum back to the image
        exactly; the synthesis is set to compute that sum (through +/- ReLU pairs) and convert to RGB, so
        the fit starts from a coded image instead of from grey.  Used at high rates only
        (``Preset.pyramid_start_max_lambda``): there it fits sooner than the zero start, at low rates not.
        """
        colour = self.channels == 3
        pixels = torch.einsum("dc,chw->dhw", _RGB_TO_YCC, image) if colour else image.clone()
        gaussian = [pixels[None]]
        for height, width in self.shapes[1:]:
            gaussian.append(downscale2x(gaussian[-1]))
        bands = [g - upsample2x(c, *g.shape[-2:]) for g, c in zip(gaussian[:-1], gaussian[1:])] + [gaussian[-1]]
        # Chroma bands finer than chroma_from_level have no planes: the start keeps chroma subsampled.
        for i, (level, c) in enumerate(self.planes):
            self.latents[i].copy_(torch.round(bands[level][0, c] / step))
        mix, project = self.synthesis.mix, self.synthesis.project
        mix.weight.zero_(), mix.bias.zero_(), project.weight.zero_()
        components = 3 if colour else 1
        to_output = _YCC_TO_RGB if colour else torch.ones(1, 1)
        for i, (_, c) in enumerate(self.planes):
            mix.weight[2 * c, i], mix.weight[2 * c + 1, i] = step, -step
        for c in range(components):
            project.weight[:, 2 * c], project.weight[:, 2 * c + 1] = to_output[:, c], -to_output[:, c]
        project.bias.zero_()
        self.synthesis.refine[-1].weight.zero_()
        self.synthesis.refine[-1].bias.zero_()

    def half_resolution_config(self) -> OverfitConfig:
        """The config of a model for this image at half size whose planes are this one's from level 1 down."""
        return replace(self.config, levels=self.config.levels - 1,
                       chroma_from_level=max(self.config.chroma_from_level - 1, 0))

    @torch.no_grad()
    def adopt_half_resolution(self, half: "OverfitImageModel") -> None:
        """Start from a model fitted to this image at half size (see :meth:`half_resolution_config`).

        Its level l becomes this model's level l + 1 (the grid sizes agree: ceil(ceil(H/2) / 2^l)); the
        networks are copied, and the new full-resolution plane starts at zero with zero weight in the
        synthesis, so this model starts out drawing the half-size fit upsampled once more.  Planes keep
        their scale shifts; the new one starts at zero.
        """
        index = {plane: i for i, plane in enumerate(self.planes)}
        if [(level + 1, c) for level, c in half.planes] != [p for p in self.planes if p[0] > 0]:
            raise ValueError("the half-resolution model's planes do not match this model's coarser planes")
        for j, (level, c) in enumerate(half.planes):
            self.latents[index[(level + 1, c)]].copy_(half.latents[j])
            self.scale_shifts[index[(level + 1, c)]] = half.scale_shifts[j]
        self.context.load_state_dict(half.context.state_dict())
        coarse = [i for i, (level, _) in enumerate(self.planes) if level > 0]
        mix = self.synthesis.mix
        mix.weight.zero_()
        mix.weight[:, coarse] = half.synthesis.mix.weight
        mix.bias.copy_(half.synthesis.mix.bias)
        for mine, theirs in zip((self.synthesis.project, self.synthesis.refine),
                                (half.synthesis.project, half.synthesis.refine)):
            mine.load_state_dict(theirs.state_dict())

    # -- exact coding path -------------------------------------------------------------------------------
    @torch.no_grad()
    def quantize_scale_shifts(self) -> None:
        """Round the scale shifts onto whole buckets within +-MAX_SHIFT, in place (before coding)."""
        self.scale_shifts.copy_(torch.round(self.scale_shifts / SHIFT_STEP).clamp(-MAX_SHIFT, MAX_SHIFT) * SHIFT_STEP)

    def shift_buckets(self) -> Tensor:
        """(planes, NETS) int64: the scale shifts in whole buckets, as the stream carries them."""
        return torch.round(self.scale_shifts.detach().double() / SHIFT_STEP).to(torch.int64)

    @torch.no_grad()
    def load_shift_buckets(self, buckets: Tensor) -> None:
        """Adopt shifts read from a stream ((planes, NETS) integers); ValueError beyond +-MAX_SHIFT."""
        if buckets.numel() and int(buckets.abs().max()) > MAX_SHIFT:
            raise ValueError(f"a scale shift lies beyond +-{MAX_SHIFT} buckets")
        self.scale_shifts.copy_(buckets.reshape(self.scale_shifts.shape).double() * SHIFT_STEP)

    def level_codes(self, index: int, plane: Tensor, parents: Tensor | None,
                    pass_: str) -> tuple[Tensor, Tensor, Tensor]:
        """Exact integer (mean, log-scale) codes for one pass of plane ``index``, and the flat positions they
        code.

        ``plane`` only needs the positions of the earlier passes filled: that is all the context reads.
        ``parents``: :meth:`parent_context` of the coarser plane (None at the coarsest level), made once for
        the level's passes.  The plane's scale shift (whole buckets) is added to the log-scale codes.
        """
        # Clamping the planes clamps every input gathered from them (zeros pad the border).
        plane = plane.double().clamp(-ACT_LIMIT, ACT_LIMIT)
        inputs, positions = self.context.feature_blocks(plane, parents, pass_)
        codes = self.context.net(pass_).exact(inputs)
        shift = int(self.shift_buckets()[index, NETS.index(net_name(pass_))]) * SCALE_CODE_STEP
        return codes[:, 0], codes[:, 1] + shift, positions

    def parent_context(self, coarser: Tensor | None) -> Tensor | None:
        """A coarser plane (h, w) as every pass of the finer level reads it in :meth:`level_codes`."""
        if coarser is None:
            return None
        return self.context.parent_patches(coarser.double().clamp(-ACT_LIMIT, ACT_LIMIT))

    def multiplications_per_pixel(self) -> float:
        """Decoder multiplications per image pixel: synthesis + context MLPs (upsampling excluded)."""
        def mlp(net: FixedPointMLP) -> int:
            return sum(layer.weight.numel() for layer in net.layers)
        latent_count = sum(self.shapes[level][0] * self.shapes[level][1] for level, _ in self.planes)
        context = latent_count * sum(PASS_SHARE[p] * mlp(self.context.net(p)) for p in self.config.passes)
        return self.synthesis.multiplications_per_pixel() + context / self.num_pixels


__all__ = ["ContextModel", "FixedPointMLP", "OverfitConfig", "OverfitImageModel", "Synthesis", "level_shapes"]
