"""Learned image transform coding with a hyperprior and a channel + checkerboard context model.

Implements the design of He et al., "ELIC: Efficient learned image compression with unevenly grouped
space-channel contextual adaptive coding" (CVPR 2022) in a small, CPU-sized form: the latent is split into
channel slices (Minnen & Singh, ICIP 2020), each slice coded in two checkerboard passes (He et al.,
CVPR 2021); one model serves every quality level through per-level gain vectors (Cui et al., "Asymmetric
gained deep image compression with continuous rate adaptation", CVPR 2021).

    x -> g_a -> y * gain[q] --Q--> y_hat / gain[q] -> g_s -> x_hat
                  |                  ^
                 h_a -> z --Q--> z_hat -> h_s (exact) -> hyper
                                                  |
        for each slice s (channels), two passes:  v
          anchors:      params = P_s(hyper, y_hat[<s], 0)          -> (mean, scale) -> code anchors
          non-anchors:  params = P_s(hyper, y_hat[<s], C_s(anchors)) -> (mean, scale) -> code the rest

Everything that picks a probability table (h_s, the context convolutions C_s, the parameter nets P_s) is
built from :mod:`.exact` fixed-point layers, so the scales and means -- and therefore the tables and the
decoded latents -- are the same integers on every machine.  g_a, h_a (encoder only) and g_s
(reconstruction only) are ordinary float networks: their rounding can move a pixel, never the bitstream.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import Tensor, nn

from ..entropy import FactorizedPrior, GaussianConditional, SymbolDecoder, SymbolEncoder
from .exact import ExactConv2d, ExactUpsample2x, checkerboard_mask, to_grid

# Rate-distortion trade-offs of the quality levels: loss = LAMBDAS[q] * 255^2 * MSE + bits per pixel.
LAMBDAS = (0.0018, 0.0040, 0.0087, 0.0193, 0.0423, 0.0932)
PAD = 64  # the latent grids are 1/16 (y) and 1/64 (z) of the image


@dataclass
class ImageModelConfig:
    channels: int = 96  # N: width of the transforms
    latent: int = 128  # M: channels of y
    hyper_latent: int = 64  # channels of z
    slices: int = 4
    lambdas: tuple[float, ...] = field(default_factory=lambda: LAMBDAS)


def conv(cin: int, cout: int, k: int = 5, stride: int = 2) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2)


def deconv(cin: int, cout: int, k: int = 5, stride: int = 2) -> nn.ConvTranspose2d:
    return nn.ConvTranspose2d(cin, cout, k, stride=stride, padding=k // 2, output_padding=stride - 1)


def checkerboard(height: int, width: int, device=None) -> Tensor:
    """(1, 1, H, W) mask of the anchor positions, coded in the first pass."""
    yy, xx = torch.meshgrid(torch.arange(height, device=device), torch.arange(width, device=device), indexing="ij")
    return ((yy + xx) % 2 == 0).float().view(1, 1, height, width)


class SliceParameters(nn.Module):
    """P_s: (hyper, earlier slices, spatial context) -> (means, scales) of one slice, all exact."""

    def __init__(self, hyper: int, earlier: int, width: int) -> None:
        super().__init__()
        self.context = ExactConv2d(width, 2 * width, 5, mask=checkerboard_mask(5))
        # 1x1 layers: the hyper features and the context are spatial already, and 1x1 keeps the exact
        # (float64) path cheap enough for sub-second coding on two cores.
        self.net = nn.Sequential(ExactConv2d(hyper + earlier + 2 * width, 160, 1, relu=True),
                                 ExactConv2d(160, 128, 1, relu=True), ExactConv2d(128, 2 * width, 1))

    def forward(self, hyper: Tensor, earlier: list[Tensor], anchors: Tensor | None) -> tuple[Tensor, Tensor]:
        width = self.context.in_channels
        ctx = torch.zeros_like(hyper[:, : 2 * width]) if anchors is None else self.context(anchors)
        means, scales = self.net(torch.cat([hyper, *earlier, ctx], dim=1)).chunk(2, dim=1)
        return means, scales.abs()


class ImageModel(nn.Module):
    def __init__(self, config: ImageModelConfig | None = None) -> None:
        super().__init__()
        self.config = c = config or ImageModelConfig()
        from compressai.layers import GDN  # here, not at import: compressai takes seconds to import

        n, m, nz = c.channels, c.latent, c.hyper_latent
        if m % c.slices:
            raise ValueError("latent channels must split evenly into slices")
        self.slice_width = m // c.slices
        self.g_a = nn.Sequential(conv(3, n), GDN(n), conv(n, n), GDN(n), conv(n, n), GDN(n), conv(n, m))
        self.g_s = nn.Sequential(deconv(m, n), GDN(n, inverse=True), deconv(n, n), GDN(n, inverse=True),
                                 deconv(n, n), GDN(n, inverse=True), deconv(n, 3))
        self.h_a = nn.Sequential(conv(m, n, 3, 1), nn.ReLU(), conv(n, n), nn.ReLU(), conv(n, nz))
        self.h_s = nn.Sequential(ExactUpsample2x(nz, n), ExactUpsample2x(n, n), ExactConv2d(n, m, 3))
        self.slice_params = nn.ModuleList(
            SliceParameters(m, s * self.slice_width, self.slice_width) for s in range(c.slices))
        # Start each level's gain where an MSE-optimal quantizer step would put it (step ~ 1 / sqrt(lambda)),
        # so the levels differ from step 0 instead of having to drift apart during training.
        start = torch.tensor(c.lambdas).div(c.lambdas[len(c.lambdas) // 2]).sqrt().unsqueeze(1).expand(-1, m)
        self.gain = nn.Parameter(start.clone())
        self.inverse_gain = nn.Parameter(1 / start)
        self.register_buffer("lambdas", torch.tensor(c.lambdas), persistent=False)
        self.z_model = FactorizedPrior(nz)
        self.y_model = GaussianConditional()

    @property
    def num_qualities(self) -> int:
        return len(self.config.lambdas)

    def _gains(self, quality: Tensor) -> tuple[Tensor, Tensor]:
        """quality (B,) -> per-sample gain and inverse gain, (B, M, 1, 1), kept positive."""
        gain = self.gain.abs()[quality].unsqueeze(-1).unsqueeze(-1)
        return gain, self.inverse_gain.abs()[quality].unsqueeze(-1).unsqueeze(-1)

    def forward(self, x: Tensor, quality: Tensor) -> dict:
        """Training pass. x (B, 3, H, W) in [0, 1] with H, W multiples of 64; quality (B,) in 0..Q-1."""
        gain, inverse_gain = self._gains(quality)
        y = self.g_a(x) * gain
        z = self.h_a(y)
        z_hat, z_likelihood = self.z_model(z)
        z_hat = z - z.detach() + torch.round(z).detach()  # the decoder sees rounded z; keep its gradient
        hyper = self.h_s(to_grid(z_hat))
        anchor = checkerboard(*y.shape[-2:], device=y.device)
        y_hats, likelihoods = [], []
        for s, params in enumerate(self.slice_params):
            y_s = y[:, s * self.slice_width : (s + 1) * self.slice_width]
            means_a, scales_a = params(hyper, y_hats, None)
            anchors = self._round(y_s, means_a) * anchor
            means_n, scales_n = params(hyper, y_hats, anchors)
            means = means_a * anchor + means_n * (1 - anchor)
            scales = scales_a * anchor + scales_n * (1 - anchor)
            _, likelihood = self.y_model(y_s, scales, means)
            likelihoods.append(likelihood)
            y_hats.append(self._round(y_s, means))
        y_hat = torch.cat(y_hats, dim=1)
        x_hat = self.g_s(y_hat * inverse_gain)
        return {"x_hat": x_hat, "likelihoods": {"y": torch.cat(likelihoods, dim=1), "z": z_likelihood}}

    @staticmethod
    def _round(y: Tensor, means: Tensor) -> Tensor:
        """round(y - mean) + mean with a straight-through gradient: what the decoder will see."""
        return y - y.detach() + (torch.round(y - means) + means).detach()

    def aux_loss(self) -> Tensor:
        return self.z_model.aux_loss()

    def update(self) -> None:
        self.z_model.update()
        self.y_model.update()

    # -- coding ------------------------------------------------------------------------------------------
    @torch.no_grad()
    def compress(self, x: Tensor, quality: int, encoder: SymbolEncoder) -> tuple[int, int]:
        """x (1, 3, H, W), H and W multiples of 64 -> symbols appended to ``encoder``; returns z's grid size."""
        q = torch.tensor([quality], device=x.device)
        gain, _ = self._gains(q)
        y = self.g_a(x) * gain
        z_hat = torch.round(self.h_a(y))
        self.z_model.write(encoder, z_hat)
        self._code_slices(z_hat, y.shape, encoder=encoder, y=y)
        return tuple(z_hat.shape[-2:])

    @torch.no_grad()
    def decompress(self, decoder: SymbolDecoder, quality: int, z_size: tuple[int, int]) -> Tensor:
        """Symbols from ``decoder`` -> x_hat (1, 3, 64 * z_h, 64 * z_w), not clamped."""
        z_hat = self.z_model.read(decoder, (1, self.config.hyper_latent, *z_size))
        shape = (1, self.config.latent, 4 * z_size[0], 4 * z_size[1])
        y_hat = self._code_slices(z_hat, shape, decoder=decoder)
        _, inverse_gain = self._gains(torch.tensor([quality], device=y_hat.device))
        return self.g_s(y_hat * inverse_gain)

    def _code_slices(self, z_hat: Tensor, shape, encoder: SymbolEncoder | None = None, y: Tensor | None = None,
                     decoder: SymbolDecoder | None = None) -> Tensor:
        """The two-pass slice loop shared by encoder and decoder (the decoder learns y_hat as it goes)."""
        hyper = self.h_s(z_hat)
        anchor = checkerboard(*shape[-2:], device=z_hat.device).bool().expand(1, self.slice_width, *shape[-2:])
        y_hats = []
        for s, params in enumerate(self.slice_params):
            y_hat = torch.zeros(1, self.slice_width, *shape[-2:], device=z_hat.device)
            for positions, context in ((anchor, None), (~anchor, True)):
                means, scales = params(hyper, y_hats, y_hat if context else None)
                m, sc = means[positions], scales[positions]
                if encoder is not None:
                    y_s = y[:, s * self.slice_width : (s + 1) * self.slice_width][positions]
                    self.y_model.write(encoder, y_s, sc, m)
                    y_hat[positions] = torch.round(y_s - m) + m
                else:
                    y_hat[positions] = self.y_model.read(decoder, tuple(m.shape), sc, m)
            y_hats.append(y_hat)
        return torch.cat(y_hats, dim=1)

    def config_dict(self) -> dict:
        return asdict(self.config)
