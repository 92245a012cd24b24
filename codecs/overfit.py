"""The overfitted image codec: fit a tiny model to each image, then send the model itself.

    image (C, H, W) --fit (training.overfit)--> latents + context MLPs + synthesis (float)
      --quantize: each network tensor on its own 2^-e grid (e chosen by rate-distortion)
      --> .pcdc: header (size, channels, tables sha256)
                 PARAMS (model shape and anchor layout, then per network tensor its exponent e, then per
                         coded tensor its table bucket)
                 DATA   (one ANS stream: context weights, the per-plane scale shifts, synthesis weights,
                         then the latents coarsest first, each level in three passes (anchors, diagonals,
                         others) or, the anchors split, four; each symbol with the MeanScaleLaplace table
                         its context chose)

Only the integer tables (``codecs/weights/overfit-laplace-v1.safetensors``) ship with the library; there
are no trained weights.  ``quality`` maps to the rate-distortion trade-off lambda; ``preset`` to the fitting
budget (see :data:`polycodec.training.overfit.PRESETS`); ``target_bpp`` searches lambda instead.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from safetensors.torch import load_file
from torch import Tensor

from ..bitstream import FormatError, MediaInfo, Modality, PayloadReader, PayloadWriter
from ..entropy import SymbolDecoder, SymbolEncoder
from ..entropy.mean_scale import FRACTIONS, NUM_SCALES, MeanScaleLaplace
from ..models.exact import ACT_BITS
from ..models.overfit import MAX_SHIFT, NETS, FixedPointMLP, OverfitConfig, OverfitImageModel, net_name
from ..runtime import retain_freed_memory
from ..training.overfit import PRESETS, Preset, Progress, fit
from .base import StreamCodec, register_codec, sha256_file
from .image import check_image, read_image_stream, write_image_stream

TABLES = Path(__file__).parent / "weights" / "overfit-laplace-v1.safetensors"
LAMBDAS = (0.02, 0.008, 0.004, 0.002, 0.001, 0.0004)  # quality 1 .. 6: loss = MSE + lambda * bits per pixel
MAX_LEVELS, MAX_WIDTH = 10, 128


def build_tables() -> MeanScaleLaplace:
    """The entropy model whose tables the codec ships (``scripts/export_tables.py`` writes them)."""
    model = MeanScaleLaplace()
    model.update()
    return model


# -- latents -----------------------------------------------------------------------------------------------
def latent_segments(model: OverfitImageModel, latents: list[Tensor], passes: tuple[str, ...] | None = None):
    """Yield (symbols, table indexes) of every coding pass, in stream order: coarsest level first.

    ``passes``: only those of the model's passes (the rate search scores one context MLP at a time)."""
    for plane, coarser in model.coding_order():
        yield from plane_segments(model, latents, plane, coarser, passes)


def plane_segments(model: OverfitImageModel, latents: list[Tensor], plane: int, coarser: int | None,
                   passes: tuple[str, ...] | None = None):
    """Yield (symbols, table indexes) of one plane's passes (all of them if None); ``coarser``: its
    context's plane or None."""
    parents = model.parent_context(None if coarser is None else latents[coarser])
    for pass_ in model.config.passes if passes is None else passes:
        means, scales, positions = model.level_codes(plane, latents[plane], parents, pass_)
        values = latents[plane].reshape(-1).index_select(0, positions)
        yield model.entropy.symbols_and_indexes(values, means, scales)


def read_latents(model: OverfitImageModel, decoder: SymbolDecoder) -> list[Tensor]:
    latents: list[Tensor | None] = [None] * len(model.planes)
    for plane_index, coarser in model.coding_order():
        plane = torch.zeros_like(model.latents[plane_index], dtype=torch.float64)
        parents = model.parent_context(None if coarser is None else latents[coarser])
        for pass_ in model.config.passes:
            means, scales, positions = model.level_codes(plane_index, plane, parents, pass_)
            whole, tables = model.entropy.split_codes(means, scales)
            symbols = decoder.read(model.entropy.bank, tables.numpy())
            plane.view(-1).index_copy_(0, positions, torch.from_numpy(symbols).double() + whole)
        latents[plane_index] = plane.float()
    return latents  # type: ignore[return-value]


# -- network parameters ------------------------------------------------------------------------------------
# Every network tensor travels as integers on its own grid 2^-exponent, the exponent chosen by rate-distortion
# (version 3; version 2 had one exponent for all context weights and one for the whole synthesis).
CONTEXT_WEIGHT_EXPONENTS = range(1, 13)
CONTEXT_BIAS_EXPONENTS = range(0, ACT_BITS + 1)  # the activation grid or coarser (exactness)
SYNTHESIS_EXPONENTS = range(2, 17)
MAX_SYNTHESIS_EXPONENT = 24
# The single grids searched first (version 2's ranges): weights 2^-4 .. 2^-8, biases on the activation grid.
V2_CONTEXT_WEIGHT_BITS, V2_SYNTHESIS_EXPONENTS = tuple(range(4, 9)), tuple(range(5, 12))


def parameter_tables(model: OverfitImageModel, ints: list[np.ndarray]) -> list[int]:
    """Per tensor, the zero-mean table (one per scale bucket) that codes its integers in the fewest bits."""
    return [_best_bucket(model, values)[0] for values in ints]


def parameter_bits(model: OverfitImageModel, ints: list[np.ndarray]) -> float:
    return sum(_best_bucket(model, values)[1] for values in ints)


def _best_bucket(model: OverfitImageModel, values: np.ndarray) -> tuple[int, float]:
    bank = model.entropy.bank
    cost = [bank.information_bits(values, np.full(values.size, b * FRACTIONS)) for b in range(NUM_SCALES)]
    best = int(np.argmin(cost))
    return best, float(cost[best])


def context_nets(model: OverfitImageModel) -> tuple[tuple[FixedPointMLP, tuple[str, ...]], ...]:
    """The context MLPs in stream order, each with the passes it chooses the tables of."""
    return tuple((model.context.net(name), tuple(p for p in model.config.passes if net_name(p) == name))
                 for name in NETS)


def context_ints(model: OverfitImageModel) -> list[np.ndarray]:
    return [t.reshape(-1).numpy() for net, _ in context_nets(model) for t in net.integer_parameters()]


def shift_ints(model: OverfitImageModel) -> np.ndarray:
    """The per-plane scale shifts as the stream carries them: whole buckets, plane-major."""
    return model.shift_buckets().reshape(-1).numpy()


def plane_bits(model: OverfitImageModel, latents: list[Tensor], index: int, passes: tuple[str, ...]) -> float:
    """Code length of one plane's latents in the given passes, under the exact context (and its shift)."""
    segments = plane_segments(model, latents, index, dict(model.coding_order())[index], passes)
    return sum(model.entropy.bank.information_bits(symbols, indexes) for symbols, indexes in segments)


@torch.no_grad()
def choose_scale_shifts(model: OverfitImageModel, latents: list[Tensor]) -> None:
    """Round the fitted scale shifts onto whole buckets, then walk each (plane, MLP) shift to the fewest
    latent bits under the quantized context MLPs, which moved the tables a little from the float fit's."""
    model.quantize_scale_shifts()
    buckets = model.shift_buckets()
    for index in range(len(model.planes)):
        for column, (_, passes) in enumerate(context_nets(model)):  # the shifts' columns: stream order

            def cost(shift: list[int]) -> float:
                buckets[index, column] = shift[0]
                model.load_shift_buckets(buckets)
                return plane_bits(model, latents, index, passes)

            best = coordinate_descent([int(buckets[index, column])], [range(-MAX_SHIFT, MAX_SHIFT + 1)], cost)
            buckets[index, column] = best[0]
            model.load_shift_buckets(buckets)


def context_exponents(model: OverfitImageModel) -> list[int]:
    return [e for net, _ in context_nets(model) for e in net.exponents]


def synthesis_ints(model: OverfitImageModel, exponents: list[int]) -> list[np.ndarray]:
    return [torch.round(p.detach().double() * 2.0**e).reshape(-1).numpy().astype(np.int64)
            for p, e in zip(model.synthesis.parameters(), exponents)]


@torch.no_grad()
def set_synthesis_ints(model: OverfitImageModel, ints: list[np.ndarray], exponents: list[int]) -> None:
    for p, values, e in zip(model.synthesis.parameters(), ints, exponents):
        p.copy_(torch.from_numpy(values.astype(np.float64) / 2.0**e).reshape(p.shape))


def coordinate_descent(start: list[int], choices: list[range], cost: Callable[[list[int]], float],
                       sweeps: int = 2) -> list[int]:
    """Each position in turn walked one step at a time, down or up within its range, while ``cost`` falls
    (the others held), for up to ``sweeps`` rounds (fewer once a round changes nothing).

    A local walk rather than a scan of every choice: an exponent's cost falls to one minimum and rises
    again (coarser grids cost distortion or latent bits, finer ones weight bits), and the walk needs about
    three evaluations a tensor instead of ten.  Never ends above ``cost(start)``.
    """
    current, best = list(start), cost(start)
    for _ in range(sweeps):
        changed = False
        for i, options in enumerate(choices):
            for direction in (-1, 1):
                moved = False
                while current[i] + direction in options:
                    trial = current[:i] + [current[i] + direction] + current[i + 1:]
                    value = cost(trial)
                    if value >= best:
                        break
                    current, best, moved = trial, value, True
                if moved:  # it went down: no need to look up
                    changed = True
                    break
        if not changed:
            break
    return current


@torch.no_grad()
def _quantize_context_net(net: FixedPointMLP, float_tensors: list[Tensor], exponents: list[int]) -> None:
    """Put one context MLP back to its fitted float weights, then round them onto the given grids."""
    for t, original in zip(net.tensors(), float_tensors):
        t.copy_(original)
    net.quantize(exponents)


@torch.no_grad()
def _quantize_synthesis(model: OverfitImageModel, float_params: list[Tensor], exponents: list[int]) -> list[np.ndarray]:
    """Put the synthesis back to its fitted float weights, then round them onto the given grids; returns
    the integers the stream carries."""
    for p, original in zip(model.synthesis.parameters(), float_params):
        p.copy_(original)
    ints = synthesis_ints(model, exponents)
    set_synthesis_ints(model, ints, exponents)
    return ints


@torch.no_grad()
def quantize_networks(model: OverfitImageModel, image: Tensor, lam: float,
                      per_tensor: bool = True) -> tuple[list[int], list[int]]:
    """Pick the grids of the network tensors that minimise MSE + lambda * bits / pixel and leave the model
    quantized to them.  Returns (context exponents, synthesis exponents), one per tensor in stream order.

    First the best single grid per network (one for each context MLP's weights, biases on the activation
    grid, and one for the whole synthesis; version 2 sent one grid for both MLPs), then, with
    ``per_tensor``, each tensor's exponent
    by :func:`coordinate_descent`.  The context grids change only the rate (latents and weights), the
    synthesis grids only the image and the weights' rate, so the two are searched apart, and each context
    MLP against the passes it serves.
    """
    latents = model.quantized_latents("round")
    bank = model.entropy.bank
    model.quantize_scale_shifts()  # whole buckets from the start: the context search sees the coded tables
    context = []
    for net, passes in context_nets(model):
        float_tensors = [t.detach().clone() for t in net.tensors()]

        def context_rate(exponents: list[int]) -> float:
            _quantize_context_net(net, float_tensors, exponents)
            rate = parameter_bits(model, [t.reshape(-1).numpy() for t in net.integer_parameters()])
            return rate + sum(bank.information_bits(s, i) for s, i in latent_segments(model, latents, passes))

        start = min((list(net.uniform_exponents(b)) for b in V2_CONTEXT_WEIGHT_BITS), key=context_rate)
        choices = [CONTEXT_WEIGHT_EXPONENTS, CONTEXT_BIAS_EXPONENTS] * len(net.layers)
        best = coordinate_descent(start, choices, context_rate) if per_tensor else start
        _quantize_context_net(net, float_tensors, best)
        context += best
    choose_scale_shifts(model, latents)

    float_synthesis = [p.detach().clone() for p in model.synthesis.parameters()]

    def synthesis_cost(exponents: list[int]) -> float:
        ints = _quantize_synthesis(model, float_synthesis, exponents)
        x_hat = torch.round(model.synthesize(latents).clamp(0, 1) * 255) / 255
        return float(torch.mean((x_hat[0] - image) ** 2)) + lam * parameter_bits(model, ints) / model.num_pixels

    count = len(float_synthesis)
    start = min(([e] * count for e in V2_SYNTHESIS_EXPONENTS), key=synthesis_cost)
    synthesis = coordinate_descent(start, [SYNTHESIS_EXPONENTS] * count, synthesis_cost) if per_tensor else start
    _quantize_synthesis(model, float_synthesis, synthesis)
    return context, synthesis


@register_codec("image-overfit", Modality.IMAGE, "overfitted per-image codec (Cool-chic family), quality 1-6, "
                "no trained weights", sweep=tuple({"quality": q} for q in range(1, 7)), aliases=("overfit",))
class OverfitImageCodec(StreamCodec):
    name = "image-overfit"
    modality = Modality.IMAGE
    # 2: three context passes per level (anchors, diagonals, others); 3: one grid per network tensor;
    # 4: per-plane scale shifts of the context MLPs; 5: the anchors in two passes, or one (a PARAMS flag)
    version = 5
    fits_per_input = True

    def __init__(self, quality: int = 3, preset: str | Preset = "fast", steps: int | None = None,
                 target_bpp: float | None = None, progress: Progress | None = None, seed: int = 0,
                 config: OverfitConfig = OverfitConfig(), tables: str | Path = TABLES) -> None:
        if not (isinstance(quality, int) and 1 <= quality <= len(LAMBDAS)):
            raise ValueError(f"quality must be an integer in 1..{len(LAMBDAS)}, got {quality!r}")
        if not isinstance(preset, Preset) and preset not in PRESETS:
            raise ValueError(f"preset must be one of {', '.join(PRESETS)} or a Preset, got {preset!r}")
        if steps is not None and not (isinstance(steps, int) and steps >= 1):
            raise ValueError(f"steps must be a positive integer, got {steps!r}")
        if target_bpp is not None and not target_bpp > 0:
            raise ValueError(f"target_bpp must be > 0, got {target_bpp!r}")
        self.quality, self.target_bpp, self.progress, self.seed = quality, target_bpp, progress, seed
        self.config = config  # the model shape fitted; any shape decodes, the stream carries it
        preset = preset if isinstance(preset, Preset) else PRESETS[preset]  # a Preset: custom fitting settings
        # steps: full-size steps instead of the preset's; its half-size steps scale with them.
        self.preset = preset if steps is None else preset.with_steps(steps)
        self.entropy = MeanScaleLaplace()
        self.entropy.load_state_dict(load_file(str(tables)))
        self._hash = sha256_file(str(tables))

    @property
    def weights_hash(self) -> bytes:
        return self._hash

    # -- encoding --------------------------------------------------------------------------------------
    def fit(self, image: Tensor, lam: float) -> tuple[OverfitImageModel, list[int]]:
        """Fit and quantize a model for one image: (model, synthesis exponents; the context MLPs keep theirs)."""
        model = fit(image, lam, self.preset, self.config, self.progress, self.seed)
        model.entropy.load_state_dict(self.entropy.state_dict())
        _, synthesis = quantize_networks(model, image, lam)
        return model, synthesis

    def encode(self, media: Tensor) -> bytes | list[bytes]:
        """(C, H, W) -> bytes of one .pcdc stream; (B, C, H, W) -> one stream per image."""
        if media.ndim == 4:
            return [self.encode(image) for image in media]
        image = check_image(media)
        if self.target_bpp is None:
            return self._encode_with(image, LAMBDAS[self.quality - 1])
        return self._encode_at_rate(image)

    def _encode_with(self, image: Tensor, lam: float) -> bytes:
        return self._write(*self.fit(image, lam))

    def _encode_at_rate(self, image: Tensor, attempts: int = 4) -> bytes:
        """Bisect log(lambda) over LAMBDAS' range; keeps the largest stream within the target (or the
        smallest one if none is).  Costs up to ``attempts`` fits."""
        budget = self.target_bpp * image.shape[1] * image.shape[2] / 8
        lo, hi = math.log(LAMBDAS[-1]), math.log(LAMBDAS[0])  # low lambda = high rate
        best_fit, smallest = None, None
        for _ in range(attempts):
            mid = 0.5 * (lo + hi)
            data = self._encode_with(image, math.exp(mid))
            if len(data) <= budget:
                best_fit = data if best_fit is None or len(data) > len(best_fit) else best_fit
                hi = mid
            else:
                lo = mid
            smallest = data if smallest is None or len(data) < len(smallest) else smallest
        return best_fit if best_fit is not None else smallest

    def _write(self, model: OverfitImageModel, synthesis_exponents: list[int]) -> bytes:
        exponents = context_exponents(model) + list(synthesis_exponents)
        ints = context_ints(model) + [shift_ints(model)] + synthesis_ints(model, synthesis_exponents)
        tables = parameter_tables(model, ints)
        encoder = SymbolEncoder()
        for values, bucket in zip(ints, tables):
            encoder.add(model.entropy.bank, values, np.full(values.size, bucket * FRACTIONS))
        with torch.no_grad():
            for symbols, indexes in latent_segments(model, model.quantized_latents("round")):
                encoder.add(model.entropy.bank, symbols, indexes)
        config = model.config
        params = (PayloadWriter().uint(config.levels).uint(config.synthesis_width).uint(config.context_hidden)
                  .uint(config.chroma_from_level).uint(int(config.split_anchors))
                  .u8_array(np.array(exponents)).u8_array(np.array(tables)))
        return write_image_stream(self, model.width, model.height, model.channels, params.to_bytes(),
                                  encoder.finish())

    # -- decoding --------------------------------------------------------------------------------------
    @property
    def readable_versions(self) -> tuple[int, ...]:
        return (2, 3, 4, 5)

    def decode(self, data: bytes | list[bytes]) -> Tensor | list[Tensor]:
        """Bytes of one stream -> (C, H, W) in [0, 1] on the 8-bit grid; a list of streams -> a list."""
        if isinstance(data, list):
            return [self.decode(d) for d in data]
        retain_freed_memory()
        header, params, payload = read_image_stream(self, data)
        model, exponents, tables = self._read_params(params, header.media, header.codec_version)
        decoder = SymbolDecoder(payload)
        with torch.no_grad():
            self._read_networks(model, decoder, exponents, tables, header.codec_version)
            latents = read_latents(model, decoder)
            decoder.finish()
            image = model.synthesize(latents)[0].clamp(0, 1)
        return torch.round(image * 255) / 255

    def _read_params(self, payload: bytes, media: MediaInfo,
                     version: int) -> tuple[OverfitImageModel, list[int], np.ndarray]:
        """PARAMS -> (model of the stream's shape, one exponent per network tensor, one table per tensor).

        Version 3: levels, synthesis width, context width, chroma level (varints), then per network tensor its
        exponent and per coded tensor its table bucket (u8 arrays).  Version 4: the same; the scale shifts
        are one more coded tensor (a table bucket, no exponent).  Version 5: as version 4, with a varint
        after the chroma level: 1 if the anchors take two passes, 0 if one.  Version 2: the same shape
        fields, then one context weight exponent and one synthesis exponent (varints), then the table
        buckets.  Versions 2 and 3 have no shifts (all zero).
        """
        p = PayloadReader(payload, "image-overfit params")
        levels, width, hidden = p.uint(MAX_LEVELS), p.uint(MAX_WIDTH), p.uint(MAX_WIDTH)
        chroma_from = p.uint(MAX_LEVELS)
        split_anchors = bool(p.uint(1)) if version >= 5 else False
        if min(levels, width, hidden) < 1:
            raise FormatError("image-overfit params: zero-sized model")
        model = OverfitImageModel(OverfitConfig(levels, width, hidden, chroma_from, split_anchors), media.height,
                                  media.width, media.channels)
        nets = [net for net, _ in context_nets(model)]
        synthesis_count = len(list(model.synthesis.parameters()))
        count = sum(len(net.tensors()) for net in nets) + synthesis_count
        if version == 2:
            context_bits, synthesis_exp = p.uint(max(V2_CONTEXT_WEIGHT_BITS)), p.uint(MAX_SYNTHESIS_EXPONENT)
            if min(context_bits, synthesis_exp) < 1:
                raise FormatError("image-overfit params: zero step exponent")
            exponents = [e for net in nets for e in net.uniform_exponents(context_bits)]
            exponents += [synthesis_exp] * synthesis_count
        else:
            exponents = p.u8_array(count).astype(np.int64).tolist()
            if max(exponents[-synthesis_count:], default=0) > MAX_SYNTHESIS_EXPONENT:
                raise FormatError("image-overfit params: synthesis exponent out of range")
            start = 0
            for net in nets:
                try:
                    net.check_exponents(exponents[start:start + len(net.tensors())])
                except ValueError as exc:
                    raise FormatError(f"image-overfit params: {exc}") from None
                start += len(net.tensors())
        tables = p.u8_array(count + (version >= 4)).astype(np.int64)
        p.done()
        if tables.max(initial=0) >= NUM_SCALES:
            raise FormatError("image-overfit params: table bucket out of range")
        model.entropy.load_state_dict(self.entropy.state_dict())
        return model, exponents, tables

    @staticmethod
    def _read_networks(model: OverfitImageModel, decoder: SymbolDecoder, exponents: list[int],
                       tables: np.ndarray, version: int) -> None:
        bank, tables, exponents = model.entropy.bank, iter(tables), iter(exponents)

        def read(count: int) -> np.ndarray:
            return decoder.read(bank, np.full(count, next(tables) * FRACTIONS)).astype(np.int64)

        for net, _ in context_nets(model):
            tensors = net.tensors()
            values = [torch.from_numpy(read(t.numel())) for t in tensors]
            try:
                net.load_integer_parameters(values, [next(exponents) for _ in tensors])
            except ValueError as exc:
                raise FormatError(f"image-overfit context model: {exc}") from None
        if version >= 4:
            try:
                model.load_shift_buckets(torch.from_numpy(read(model.scale_shifts.numel())))
            except ValueError as exc:
                raise FormatError(f"image-overfit context model: {exc}") from None
        synthesis = list(model.synthesis.parameters())
        set_synthesis_ints(model, [read(p.numel()) for p in synthesis], [next(exponents) for _ in synthesis])
