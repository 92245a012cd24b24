"""Quantizers on synthetic data: index round trips, gradients, codebook usage and dead-code restarts,
residual error per stage, quantizer dropout, FSQ's implicit codebook, scalar quantization noise."""

import math
import random
from typing import Callable

import pytest
import torch
from torch import Tensor, nn

from polycodec.quantizers import (
    FSQ, GroupedResidualVQ, QuantizerOutput, ResidualFSQ, ResidualVQ, ScalarQuantizer, VectorQuantizer,
    empirical_bits,
)

DIM = 8


@pytest.fixture(autouse=True)
def seeded() -> None:
    """Every test starts from the same torch and Python random state (quantizer dropout uses ``random``)."""
    torch.manual_seed(0)
    random.seed(0)


def gaussian_mixture(n: int, centres: Tensor, spread: float = 0.3) -> Tensor:
    """n samples (n, d) around randomly picked ``centres`` (k, d)."""
    pick = torch.randint(centres.shape[0], (n,))
    return centres[pick] + spread * torch.randn(n, centres.shape[1])


def fit(quantizer: nn.Module, batches: Callable[[], Tensor], steps: int) -> nn.Module:
    """Train-mode forward passes only: EMA codebooks (and k-means init) update inside forward."""
    quantizer.train()
    with torch.no_grad():
        for _ in range(steps):
            quantizer(batches())
    return quantizer.eval()


def mse(a: Tensor, b: Tensor) -> float:
    return torch.mean((a - b) ** 2).item()


def stage_mses(quantizer: nn.Module, x: Tensor) -> list[float]:
    """Eval-mode MSE of the reconstruction from the first k stages, k = 1..num_stages."""
    with torch.no_grad():
        return [mse(quantizer(x, num_stages=k).quantized, x) for k in range(1, quantizer.num_stages + 1)]


def fsq_preimage(fsq: FSQ, digits: Tensor, iters: int = 60) -> Tensor:
    """A code-space input z with bound(z) == digits (bisection: bound is increasing per dimension)."""
    lo, hi = torch.full_like(digits, -30.0), torch.full_like(digits, 30.0)
    for _ in range(iters):
        mid = (lo + hi) / 2
        below = fsq.bound(mid) < digits
        lo, hi = torch.where(below, mid, lo), torch.where(below, hi, mid)
    return (lo + hi) / 2


# Every quantizer that emits indices: (name, factory, input dim, whether it has learned projections).
QUANTIZERS = {
    "scalar": (lambda: ScalarQuantizer(step=0.5), DIM, False),
    "fsq": (lambda: FSQ([8, 5, 5, 5]), 4, False),
    "fsq_projected": (lambda: FSQ([8, 5, 5, 5], dim=DIM), DIM, True),
    "vq": (lambda: VectorQuantizer(DIM, 32), DIM, False),
    "vq_cosine": (lambda: VectorQuantizer(DIM, 32, cosine=True), DIM, False),
    "vq_low_dim": (lambda: VectorQuantizer(DIM, 32, codebook_dim=3), DIM, True),
    "residual_vq": (lambda: ResidualVQ(DIM, 32, num_quantizers=4), DIM, False),
    "residual_fsq": (lambda: ResidualFSQ(4, [8, 5, 5, 5], num_quantizers=3), 4, False),
    "residual_fsq_projected": (lambda: ResidualFSQ(DIM, [8, 5, 5, 5], num_quantizers=3), DIM, True),
    "grouped_residual_vq": (lambda: GroupedResidualVQ(DIM, groups=2, codebook_size=32, num_quantizers=3), DIM,
                            False),
}


@pytest.mark.parametrize("name", QUANTIZERS)
def test_indices_decode_to_exactly_the_quantized_values(name: str) -> None:
    factory, dim, _ = QUANTIZERS[name]
    quantizer = fit(factory(), lambda: torch.randn(512, dim), steps=3)  # k-means init + a few EMA steps
    x = torch.randn(4, 50, dim)
    with torch.no_grad():
        out = quantizer(x)
        decoded = quantizer.from_indices(out.indices)
    assert isinstance(out, QuantizerOutput)
    assert out.quantized.shape == x.shape
    assert not out.indices.is_floating_point()
    assert out.indices.shape[:2] == x.shape[:2]
    assert decoded.shape == x.shape
    assert torch.equal(decoded, out.quantized)


@pytest.mark.parametrize("name", QUANTIZERS)
def test_gradients_reach_the_input_and_the_projections(name: str) -> None:
    factory, dim, projected = QUANTIZERS[name]
    quantizer = factory().train()
    x = torch.randn(4, 50, dim, requires_grad=True)
    out = quantizer(x)
    (out.quantized.sum() + out.loss).backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    params = list(quantizer.named_parameters())
    assert bool(params) == projected
    for pname, p in params:
        assert p.grad is not None, pname
        assert torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, pname


@pytest.mark.parametrize("kwargs", [{}, {"kmeans_init": False}, {"cosine": True}, {"codebook_dim": 4}])
def test_vector_quantizer_uses_at_least_90_percent_of_its_codebook_after_a_short_fit(kwargs: dict) -> None:
    centres = 3 * torch.randn(256, DIM)
    vq = fit(VectorQuantizer(DIM, 64, **kwargs), lambda: gaussian_mixture(2048, centres), steps=40)
    x = gaussian_mixture(8192, centres)
    with torch.no_grad():
        out = vq(x)
    assert vq.usage(out.indices) >= 0.9
    if not kwargs.get("cosine") and not kwargs.get("codebook_dim"):  # (untrained projections do not invert)
        assert mse(out.quantized, x) < 0.4 * x.var().item()


def test_vector_quantizer_fits_a_plain_gaussian_with_high_usage() -> None:
    vq = fit(VectorQuantizer(DIM, 64), lambda: torch.randn(2048, DIM), steps=40)
    with torch.no_grad():
        out = vq(torch.randn(8192, DIM))
    assert vq.usage(out.indices) >= 0.9


def test_ema_moves_a_codeword_towards_the_mean_of_its_vectors() -> None:
    """With no k-means init the initial statistics must already describe the codebook: one step moves each
    used codeword onto the segment between where it was and the mean of the vectors it took, never past it."""
    vq = VectorQuantizer(2, 4, kmeans_init=False).train()
    old = vq.codebook.clone()
    x = torch.randn(4096, 2)
    with torch.no_grad():
        index = vq(x).indices[:, 0]
    for k in index.unique().tolist():
        taken = x[index == k]
        if len(taken) < 2:  # codes the step left (nearly) unused may have been restarted instead
            continue
        towards = taken.mean(0) - old[k]
        t = torch.dot(vq.codebook[k] - old[k], towards) / towards.pow(2).sum()
        assert 0 < t <= 1, (k, t)
        assert torch.allclose(vq.codebook[k], old[k] + t * towards, atol=1e-4), k


def test_dead_codes_far_from_the_data_are_restarted_onto_it() -> None:
    vq = VectorQuantizer(DIM, 64, kmeans_init=False)
    with torch.no_grad():  # every codeword (and its statistics) far away from the data
        vq.codebook.fill_(100.0)
        vq.embed_sum.copy_(vq.codebook * vq.cluster_size.unsqueeze(-1))
    restarted: list[Tensor] = []
    restart = vq._restart_dead

    def spy(flat: Tensor) -> None:
        dead = vq.cluster_size < vq.dead_threshold
        restart(flat)
        restarted.append(dead)
        # Right after the restart the statistics describe exactly the new codewords, which are batch vectors.
        if dead.any():
            assert torch.allclose(vq.cluster_size[dead], torch.full_like(vq.cluster_size[dead], vq.dead_threshold))
            assert torch.allclose(vq.embed_sum[dead] / vq.cluster_size[dead].unsqueeze(-1), vq.codebook[dead])
            assert (vq.codebook[dead].unsqueeze(1) == flat).all(-1).any(-1).all()

    vq._restart_dead = spy
    vq.train()
    x = torch.randn(1024, DIM)
    with torch.no_grad():
        first = vq(x)
    assert vq.usage(first.indices) == 1 / 64  # all vectors went to one (tied) far codeword
    assert restarted[0].sum() >= 60
    fit(vq, lambda: torch.randn(1024, DIM), steps=8)
    assert len(restarted) == 9
    with torch.no_grad():
        out = vq(torch.randn(8192, DIM))
    assert vq.usage(out.indices) >= 0.9
    assert vq.codebook[out.indices.unique()].abs().max() < 10  # the codewords in use sit in the data


def test_residual_vq_error_falls_with_every_stage() -> None:
    rvq = fit(ResidualVQ(DIM, 32, num_quantizers=4, dropout=False), lambda: torch.randn(2048, DIM), steps=20)
    x = torch.randn(4096, DIM)
    errors = stage_mses(rvq, x)
    assert errors[0] < 0.7 * x.var().item()
    assert all(a > b for a, b in zip(errors, errors[1:])), errors


def test_the_audio_models_residual_vq_error_falls_with_every_stage() -> None:
    # The audio model once built its RVQ with cosine lookup: unit codewords carry no magnitude, the residual
    # never shrank, and 12 kbps decoded no better than 1.5 kbps.  The quantizer the model builds by default
    # must refine with every stage, on latents of a realistic scale (the trained encoder's are ~3 per dim).
    from polycodec.models.audio import AudioModel, AudioModelConfig

    rvq = AudioModel._build_quantizer(AudioModelConfig(latent=DIM, codebook_size=32, num_quantizers=4))
    rvq = fit(rvq, lambda: 3 * torch.randn(2048, DIM), steps=20)
    x = 3 * torch.randn(4096, DIM)
    errors = stage_mses(rvq, x)
    assert errors[0] < 0.7 * x.var().item()
    assert all(a > 1.05 * b for a, b in zip(errors, errors[1:])), errors


@pytest.mark.parametrize("levels", [[8, 5, 5, 5], [5, 5, 5], [4, 4, 4], [7, 7]])
def test_residual_fsq_error_falls_with_every_stage(levels: list[int]) -> None:
    rfsq = ResidualFSQ(len(levels), levels, num_quantizers=4).eval()
    x = torch.rand(4096, len(levels)) * 2 - 1
    errors = stage_mses(rfsq, x)
    assert errors[0] < 0.2 * x.var().item()
    assert all(a > b for a, b in zip(errors, errors[1:])), errors


def test_residual_fsq_error_falls_with_every_stage_through_orthonormal_projections() -> None:
    """project_out = project_in^T (orthonormal rows), so the error is the code-space error plus a constant."""
    levels = [5, 5, 5]
    rfsq = ResidualFSQ(DIM, levels, num_quantizers=4).eval()
    basis = torch.linalg.qr(torch.randn(DIM, len(levels))).Q.T  # (3, DIM) orthonormal rows
    with torch.no_grad():
        rfsq.project_in.weight.copy_(basis)
        rfsq.project_out.weight.copy_(basis.T)
        rfsq.project_in.bias.zero_()
        rfsq.project_out.bias.zero_()
    x = 0.5 * torch.randn(4096, DIM)
    errors = stage_mses(rfsq, x)
    assert all(a > b for a, b in zip(errors, errors[1:])), errors


def test_quantizer_dropout_gives_working_lower_bitrates() -> None:
    rvq = ResidualVQ(DIM, 64, num_quantizers=4, dropout=True).train()
    depths = set()
    with torch.no_grad():
        for _ in range(40):
            depths.add(rvq(torch.randn(2048, DIM)).indices.shape[-1])
    assert depths == {1, 2, 3, 4}  # dropout drew every depth, so every stage got trained
    rvq.eval()
    x = torch.randn(4096, DIM)
    var = x.var().item()
    errors, bits = [], []
    with torch.no_grad():
        for k in range(1, 5):
            out = rvq(x, num_stages=k)
            assert out.indices.shape == (4096, k)
            assert torch.equal(rvq.from_indices(out.indices), out.quantized)
            errors.append(mse(out.quantized, x))
            bits.append(out.bits.item())
    assert errors[0] < 0.7 * var
    assert all(e < 0.7 * var for e in errors)
    assert all(a > b for a, b in zip(errors, errors[1:])), errors
    assert all(a < b for a, b in zip(bits, bits[1:])), bits
    with pytest.raises(ValueError):
        rvq(x, num_stages=5)


def test_grouped_residual_vq_drops_the_same_stages_in_every_group() -> None:
    grvq = GroupedResidualVQ(DIM, groups=2, codebook_size=32, num_quantizers=3).train()
    with torch.no_grad():
        depths = {grvq(torch.randn(512, DIM)).indices.shape[-1] for _ in range(20)}
    assert depths == {2, 4, 6}
    grvq.eval()
    x = torch.randn(1024, DIM)
    with torch.no_grad():
        for k in range(1, 4):
            out = grvq(x, num_stages=k)
            assert out.indices.shape == (1024, 2 * k)
            assert torch.equal(grvq.from_indices(out.indices), out.quantized)


def test_beam_search_of_width_one_is_greedy_and_chunking_changes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    import polycodec.quantizers.residual as residual

    rvq = fit(ResidualVQ(DIM, 32, num_quantizers=4, dropout=False), lambda: torch.randn(2048, DIM), steps=20)
    x = torch.randn(3, 700, DIM)
    greedy, beam = rvq.search(x, 3, beam=1), rvq.search(x, 3, beam=4)
    assert torch.equal(greedy, rvq(x, num_stages=3).indices)
    monkeypatch.setattr(residual, "SEARCH_CHUNK", 4 * 32 * 100)  # 100 vectors a chunk at beam 4: the last short
    assert torch.equal(rvq.search(x, 3, beam=4), beam)
    assert rvq.search(x[:, :0], 3, beam=4).shape == (3, 0, 3)


@pytest.mark.parametrize("grouped", [False, True])
def test_beam_search_finds_codes_closer_than_greedy(grouped: bool) -> None:
    make = (lambda: GroupedResidualVQ(DIM, groups=2, codebook_size=32, num_quantizers=4, dropout=False)) if grouped \
        else (lambda: ResidualVQ(DIM, 32, num_quantizers=4, dropout=False))
    quantizer = fit(make(), lambda: torch.randn(2048, DIM), steps=20)
    x = torch.randn(4096, DIM)
    with torch.no_grad():
        greedy = mse(quantizer(x, num_stages=4).quantized, x)
        errors = [mse(quantizer.from_indices(quantizer.search(x, 4, beam)), x) for beam in (1, 4, 16)]
    assert errors[0] == pytest.approx(greedy, rel=1e-6)
    # Wider beams keep the greedy path's rivals, so the error falls; a wrong parent bookkeeping (codes of one
    # path, residual of another) would raise it above greedy's instead.
    assert errors[1] < 0.95 * errors[0] and errors[2] < errors[1], errors


def test_beam_search_refuses_quantizers_it_cannot_search() -> None:
    with pytest.raises(ValueError, match="euclidean VQ"):
        ResidualFSQ(DIM, [5, 5, 5], num_quantizers=2).search(torch.randn(4, DIM), 2, beam=4)
    with pytest.raises(ValueError, match="euclidean VQ"):
        ResidualVQ(DIM, 16, num_quantizers=2, cosine=True).search(torch.randn(4, DIM), 2, beam=4)


# No level of 2 here: bound's shift puts z = 0 on the upper code of an even level, which for 2 levels leaves
# the lower code only to z < -atanh(0.999) = -3.8, so "every index for a wide input" depends on how wide.
@pytest.mark.parametrize("levels", [[8, 5, 5, 5], [4, 4], [3, 4, 7], [6]])
def test_fsq_uses_every_index_with_codes_in_the_unit_box(levels: list[int]) -> None:
    fsq = FSQ(levels).eval()
    size = math.prod(levels)
    assert fsq.codebook_size == size
    # A wide input, spread evenly over tanh's range.
    x = torch.atanh((2 * torch.rand(200_000, len(levels)) - 1) * 0.9999)
    with torch.no_grad():
        out = fsq(x)
        huge = fsq(1e4 * x).quantized
    assert out.indices.shape == (200_000, 1)
    assert torch.equal(out.indices.unique(), torch.arange(size))
    assert out.quantized.abs().max() <= 1 and huge.abs().max() <= 1
    assert huge.min() == -1  # the box is reached, not just approached
    for d, level in enumerate(levels):
        assert out.quantized[:, d].unique().numel() == level
    assert torch.equal(fsq(torch.zeros(1, len(levels))).quantized, torch.zeros(1, len(levels)))


@pytest.mark.parametrize("levels", [[8, 5, 5, 5], [4, 4], [3, 2, 7], [2], [6]])
def test_fsq_mixed_radix_round_trip_of_every_index(levels: list[int]) -> None:
    fsq = FSQ(levels).eval()
    size = math.prod(levels)
    assert fsq.codebook_size == size
    # index = sum_d digit_d * prod(levels[:d]), digits in 0..levels[d]-1, one distinct code per index.
    indices = torch.arange(size)
    codes = fsq.codes_from_indices(indices)
    assert codes.shape == (size, len(levels)) and codes.unique(dim=0).shape[0] == size
    assert codes.abs().max() <= 1
    half_width = torch.tensor([level // 2 for level in levels], dtype=torch.float32)
    digits = (codes * half_width).round()  # centred digits, what bound() rounds to
    offset_digits = (digits + half_width).long()
    radix = torch.tensor([math.prod(levels[:d]) for d in range(len(levels))])
    assert ((offset_digits >= 0) & (offset_digits < torch.tensor(levels))).all()
    assert torch.equal((offset_digits * radix).sum(-1), indices)
    # A code-space input that bounds onto those digits quantizes back to the same code and index, and
    # from_indices decodes each index (..., 1) to its code.
    requantized, reindexed = fsq.quantize_codes(fsq_preimage(fsq, digits))
    assert torch.equal(reindexed, indices)
    assert torch.equal(requantized, codes)
    assert torch.equal(fsq.from_indices(indices.unsqueeze(-1)), codes)


def test_fsq_rejects_bad_levels() -> None:
    for levels in ([], [1, 5]):
        with pytest.raises(ValueError):
            FSQ(levels)


@pytest.mark.parametrize("step", [1.0, 0.25, 3.0])
def test_scalar_quantizer_noise_in_training_and_rounding_in_eval(step: float) -> None:
    sq = ScalarQuantizer(step=step, mode="noise")
    x = 5 * torch.randn(100_000)

    noisy = sq.train()(x).quantized
    noise = noisy - x
    assert noise.abs().max() <= step / 2 * (1 + 1e-5) + 1e-5
    assert abs(noise.mean().item()) < 0.01 * step
    assert abs(noise.std().item() - step / math.sqrt(12)) < 0.01 * step  # uniform over one step
    assert not torch.allclose(noisy, torch.round(x / step) * step)  # noise, not rounding

    out = sq.eval()(x)
    assert torch.equal(out.indices, torch.round(x / step).long())
    assert torch.equal(out.quantized, out.indices.float() * step)
    assert (out.quantized - x).abs().max() <= step / 2 * (1 + 1e-5) + 1e-5
    assert torch.equal(sq.from_indices(out.indices), out.quantized)


def test_scalar_quantizer_ste_rounds_in_training_with_identity_gradient() -> None:
    sq = ScalarQuantizer(step=0.5, mode="ste").train()
    x = torch.randn(1000, requires_grad=True)
    out = sq(x)
    assert torch.equal(out.quantized.detach(), torch.round(x.detach() / 0.5) * 0.5)
    out.quantized.sum().backward()
    assert torch.allclose(x.grad, torch.ones_like(x))
    with pytest.raises(ValueError):
        ScalarQuantizer(step=0.0)
    with pytest.raises(ValueError):
        ScalarQuantizer(mode="gumbel")


def test_empirical_bits_is_the_zeroth_order_entropy_of_each_column() -> None:
    uniform_four = torch.arange(4).repeat(256)  # 1024 symbols, 2 bits each
    constant = torch.zeros(1024, dtype=torch.long)
    assert empirical_bits(uniform_four).item() == pytest.approx(2048)
    assert empirical_bits(torch.stack([uniform_four, constant], -1)).item() == pytest.approx(2048)
    assert empirical_bits(torch.stack([uniform_four, uniform_four], -1)).item() == pytest.approx(4096)
