"""The overfitted image codec: fit a tiny model to each image, then send the model itself.

    image (C, H, W) --fit (training.overfit)--> latents + context MLPs + synthesis (float)
      --quantize: context weights on a 2^-b grid, synthesis on a 2^-e grid (b, e chosen by rate-distortion)
      --> .pcdc: header (size, channels, tables sha256)
                 PARAMS (model shape, b, e, one table bucket per network tensor)
                 DATA   (one ANS stream: context weights, synthesis weights, then the latents coarsest
                         first, each level in three passes (anchors, diagonals, others), each symbol
                         with the MeanScaleLaplace table its context chose)

Only the integer tables (``codecs/weights/overfit-laplace-v1.safetensors``) ship with the library; there
are no trained weights.  ``quality`` maps to the rate-distortion trade-off lambda; ``preset`` to the fitting
budget (see :data:`polycodec.training.overfit.PRESETS`); ``target_bpp`` searches lambda instead.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file
from torch import Tensor

from ..bitstream import FormatError, MediaInfo, Modality, PayloadReader, PayloadWriter
from ..entropy import SymbolDecoder, SymbolEncoder
from ..entropy.mean_scale import FRACTIONS, NUM_SCALES, MeanScaleLaplace
from ..models.overfit import PASSES, OverfitConfig, OverfitImageModel
from ..runtime import retain_freed_memory
from ..training.overfit import PRESETS, Preset, Progress, fit
from .base import StreamCodec, register_codec, sha256_file
from .image import check_image, read_image_stream, write_image_stream

TABLES = Path(__file__).parent / "weights" / "overfit-laplace-v1.safetensors"
LAMBDAS = (0.02, 0.008, 0.004, 0.002, 0.001, 0.0004)  # quality 1 .. 6: loss = MSE + lambda * bits per pixel
CONTEXT_WEIGHT_BITS = tuple(range(4, 9))
SYNTHESIS_STEP_EXPONENTS = tuple(range(5, 12))
MAX_LEVELS, MAX_WIDTH = 10, 128


def build_tables() -> MeanScaleLaplace:
    """The entropy model whose tables the codec ships (``scripts/export_tables.py`` writes them)."""
    model = MeanScaleLaplace()
    model.update()
    return model


# -- latents -----------------------------------------------------------------------------------------------
def latent_segments(model: OverfitImageModel, latents: list[Tensor]):
    """Yield (symbols, table indexes) of every coding pass, in stream order: coarsest level first."""
    for plane, coarser in model.coding_order():
        for pass_ in PASSES:
            means, scales, positions = model.level_codes(latents[plane], None if coarser is None else latents[coarser],
                                                         pass_)
            values = latents[plane].reshape(-1).index_select(0, positions)
            yield model.entropy.symbols_and_indexes(values, means, scales)


def read_latents(model: OverfitImageModel, decoder: SymbolDecoder) -> list[Tensor]:
    latents: list[Tensor | None] = [None] * len(model.planes)
    for plane_index, coarser in model.coding_order():
        plane = torch.zeros_like(model.latents[plane_index], dtype=torch.float64)
        for pass_ in PASSES:
            means, scales, positions = model.level_codes(plane, None if coarser is None else latents[coarser], pass_)
            whole, tables = model.entropy.split_codes(means, scales)
            symbols = decoder.read(model.entropy.bank, tables.numpy())
            plane.view(-1).index_copy_(0, positions, torch.from_numpy(symbols).double() + whole)
        latents[plane_index] = plane.float()
    return latents  # type: ignore[return-value]


# -- network parameters ------------------------------------------------------------------------------------
def parameter_tables(model: OverfitImageModel, ints: list[np.ndarray]) -> list[int]:
    """Per tensor, the zero-mean table (one per scale bucket) that codes its integers in the fewest bits."""
    bank = model.entropy.bank
    buckets = []
    for values in ints:
        cost = [bank.information_bits(values, np.full(values.size, b * FRACTIONS)) for b in range(NUM_SCALES)]
        buckets.append(int(np.argmin(cost)))
    return buckets


def parameter_bits(model: OverfitImageModel, ints: list[np.ndarray]) -> float:
    bank = model.entropy.bank
    return sum(bank.information_bits(v, np.full(v.size, b * FRACTIONS))
               for v, b in zip(ints, parameter_tables(model, ints)))


def context_ints(model: OverfitImageModel) -> list[np.ndarray]:
    return [t.reshape(-1).numpy() for net in (model.context.anchor, model.context.other)
            for t in net.integer_parameters()]


def synthesis_ints(model: OverfitImageModel, exponent: int) -> list[np.ndarray]:
    return [torch.round(p.detach().double() * 2.0**exponent).reshape(-1).numpy().astype(np.int64)
            for p in model.synthesis.parameters()]


@torch.no_grad()
def set_synthesis_ints(model: OverfitImageModel, ints: list[np.ndarray], exponent: int) -> None:
    for p, values in zip(model.synthesis.parameters(), ints):
        p.copy_(torch.from_numpy(values.astype(np.float64) / 2.0**exponent).reshape(p.shape))


def _quantize_context(model: OverfitImageModel, float_state: dict[str, Tensor], bits: int) -> None:
    """Put the context MLPs back to their fitted float weights, then round them onto the 2^-bits grid."""
    model.context.load_state_dict(float_state)
    model.context.anchor.quantize(bits)
    model.context.other.quantize(bits)


def _quantize_synthesis(model: OverfitImageModel, float_params: list[Tensor], exponent: int) -> list[np.ndarray]:
    """Put the synthesis back to its fitted float weights, then round them onto the 2^-exponent grid;
    returns the integers the stream carries."""
    with torch.no_grad():
        for p, original in zip(model.synthesis.parameters(), float_params):
            p.copy_(original)
    ints = synthesis_ints(model, exponent)
    set_synthesis_ints(model, ints, exponent)
    return ints


@torch.no_grad()
def quantize_networks(model: OverfitImageModel, image: Tensor, lam: float) -> tuple[int, int]:
    """Pick the context weight grid and the synthesis step that minimise MSE + lambda * bits / pixel, and
    leave the model quantized to them.  Returns (context weight bits, synthesis step exponent)."""
    latents = model.quantized_latents("round")
    float_context = {k: v.clone() for k, v in model.context.state_dict().items()}
    best_bits, best_rate = None, math.inf
    for bits in CONTEXT_WEIGHT_BITS:
        _quantize_context(model, float_context, bits)
        rate = parameter_bits(model, context_ints(model))
        rate += sum(model.entropy.bank.information_bits(s, i) for s, i in latent_segments(model, latents))
        if rate < best_rate:
            best_bits, best_rate = bits, rate
    _quantize_context(model, float_context, best_bits)

    float_synthesis = [p.detach().clone() for p in model.synthesis.parameters()]
    best_exp, best_cost = None, math.inf
    for exponent in SYNTHESIS_STEP_EXPONENTS:
        ints = _quantize_synthesis(model, float_synthesis, exponent)
        x_hat = torch.round(model.synthesize(latents).clamp(0, 1) * 255) / 255
        cost = float(torch.mean((x_hat[0] - image) ** 2)) + lam * parameter_bits(model, ints) / model.num_pixels
        if cost < best_cost:
            best_exp, best_cost = exponent, cost
    _quantize_synthesis(model, float_synthesis, best_exp)
    return best_bits, best_exp


@register_codec("image-overfit", Modality.IMAGE, "overfitted per-image codec (Cool-chic family), quality 1-6, "
                "no trained weights", sweep=tuple({"quality": q} for q in range(1, 7)), aliases=("overfit",))
class OverfitImageCodec(StreamCodec):
    name = "image-overfit"
    modality = Modality.IMAGE
    version = 2  # 2: three context passes per level (anchors, diagonals, others)
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
    def fit(self, image: Tensor, lam: float) -> tuple[OverfitImageModel, int, int]:
        """Fit and quantize a model for one image: (model, context weight bits, synthesis step exponent)."""
        model = fit(image, lam, self.preset, self.config, self.progress, self.seed)
        model.entropy.load_state_dict(self.entropy.state_dict())
        context_bits, synthesis_exp = quantize_networks(model, image, lam)
        return model, context_bits, synthesis_exp

    def encode(self, media: Tensor) -> bytes | list[bytes]:
        """(C, H, W) -> bytes of one .pcdc stream; (B, C, H, W) -> one stream per image."""
        if media.ndim == 4:
            return [self.encode(image) for image in media]
        image = check_image(media)
        if self.target_bpp is None:
            return self._encode_with(image, LAMBDAS[self.quality - 1])
        return self._encode_at_rate(image)

    def _encode_with(self, image: Tensor, lam: float) -> bytes:
        model, context_bits, synthesis_exp = self.fit(image, lam)
        return self._write(model, context_bits, synthesis_exp)

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

    def _write(self, model: OverfitImageModel, context_bits: int, synthesis_exp: int) -> bytes:
        context, synthesis = context_ints(model), synthesis_ints(model, synthesis_exp)
        tables = parameter_tables(model, context + synthesis)
        encoder = SymbolEncoder()
        for values, bucket in zip(context + synthesis, tables):
            encoder.add(model.entropy.bank, values, np.full(values.size, bucket * FRACTIONS))
        with torch.no_grad():
            for symbols, indexes in latent_segments(model, model.quantized_latents("round")):
                encoder.add(model.entropy.bank, symbols, indexes)
        config = model.config
        params = (PayloadWriter().uint(config.levels).uint(config.synthesis_width).uint(config.context_hidden)
                  .uint(config.chroma_from_level).uint(context_bits).uint(synthesis_exp).u8_array(np.array(tables)))
        return write_image_stream(self, model.width, model.height, model.channels, params.to_bytes(),
                                  encoder.finish())

    # -- decoding --------------------------------------------------------------------------------------
    def decode(self, data: bytes | list[bytes]) -> Tensor | list[Tensor]:
        """Bytes of one stream -> (C, H, W) in [0, 1] on the 8-bit grid; a list of streams -> a list."""
        if isinstance(data, list):
            return [self.decode(d) for d in data]
        retain_freed_memory()
        media, params, payload = read_image_stream(self, data)
        model, context_bits, synthesis_exp, tables = self._read_params(params, media)
        decoder = SymbolDecoder(payload)
        with torch.no_grad():
            self._read_networks(model, decoder, context_bits, synthesis_exp, tables)
            latents = read_latents(model, decoder)
            decoder.finish()
            image = model.synthesize(latents)[0].clamp(0, 1)
        return torch.round(image * 255) / 255

    def _read_params(self, payload: bytes, media: MediaInfo) -> tuple[OverfitImageModel, int, int, np.ndarray]:
        p = PayloadReader(payload, "image-overfit params")
        levels, width, hidden = p.uint(MAX_LEVELS), p.uint(MAX_WIDTH), p.uint(MAX_WIDTH)
        chroma_from = p.uint(MAX_LEVELS)
        context_bits, synthesis_exp = p.uint(max(CONTEXT_WEIGHT_BITS)), p.uint(24)
        if min(levels, width, hidden, context_bits, synthesis_exp) < 1:
            raise FormatError("image-overfit params: zero-sized model or step")
        model = OverfitImageModel(OverfitConfig(levels, width, hidden, chroma_from), media.height, media.width, media.channels)
        count = len(context_ints_shapes(model)) + len(list(model.synthesis.parameters()))
        tables = p.u8_array(count).astype(np.int64)
        p.done()
        if tables.max(initial=0) >= NUM_SCALES:
            raise FormatError("image-overfit params: table bucket out of range")
        model.entropy.load_state_dict(self.entropy.state_dict())
        return model, context_bits, synthesis_exp, tables

    @staticmethod
    def _read_networks(model: OverfitImageModel, decoder: SymbolDecoder, context_bits: int, synthesis_exp: int,
                       tables: np.ndarray) -> None:
        bank, tables = model.entropy.bank, iter(tables)
        context = [torch.from_numpy(decoder.read(bank, np.full(n, next(tables) * FRACTIONS)).astype(np.int64))
                   for n in context_ints_shapes(model)]
        half = len(model.context.anchor.layers) * 2
        try:
            model.context.anchor.load_integer_parameters(context[:half], context_bits)
            model.context.other.load_integer_parameters(context[half:], context_bits)
        except ValueError as exc:
            raise FormatError(f"image-overfit context model: {exc}") from None
        synthesis = [decoder.read(bank, np.full(p.numel(), next(tables) * FRACTIONS)).astype(np.int64)
                     for p in model.synthesis.parameters()]
        set_synthesis_ints(model, synthesis, synthesis_exp)


def context_ints_shapes(model: OverfitImageModel) -> list[int]:
    """Element counts of the context tensors, in stream order."""
    return [t.numel() for net in (model.context.anchor, model.context.other) for layer in net.layers
            for t in (layer.weight, layer.bias)]
