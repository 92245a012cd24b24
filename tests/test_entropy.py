"""Coder round trips and overhead, entropy models, and decoding in another process with other settings."""

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from polycodec.entropy import (
    CategoricalPrior, EntropyDecodeError, FactorizedPrior, GaussianConditional, SymbolDecoder, SymbolEncoder,
    TableBank, decode_symbols, encode_symbols, quantize_pmf,
)
from polycodec.entropy.tables import TOTAL


def laplace_bank() -> TableBank:
    pmfs, offsets = [], []
    for scale in (0.3, 1.0, 4.0):
        x = np.arange(-10, 11)
        p = np.exp(-np.abs(x) / scale)
        pmfs.append(np.append(p / p.sum() * (1 - 1e-6), 1e-6))
        offsets.append(-10)
    return TableBank.from_pmfs(pmfs, offsets)


def test_quantize_pmf_is_a_valid_table_close_to_the_pmf():
    pmf = np.array([0.5, 0.25, 0.125, 0.125 - 1e-9, 1e-9])
    freqs = quantize_pmf(pmf)
    assert freqs.sum() == TOTAL and freqs.min() >= 1
    assert np.allclose(freqs / TOTAL, pmf, atol=1e-6)
    with pytest.raises(ValueError):
        quantize_pmf(np.array([1.0]))


def test_round_trip_with_escapes_and_extremes():
    bank = laplace_bank()
    rng = np.random.default_rng(0)
    indexes = rng.integers(0, 3, 5000)
    symbols = rng.integers(-12, 13, 5000).astype(np.int32)
    symbols[:6] = [2**31 - 1, -(2**31), 11, -11, 1000, -65537]
    data = encode_symbols(bank, symbols, indexes)
    assert np.array_equal(decode_symbols(bank, data, indexes), symbols)


def test_coded_size_matches_information_content():
    bank = laplace_bank()
    rng = np.random.default_rng(1)
    indexes = rng.integers(0, 3, 200_000)
    scales = np.array([0.3, 1.0, 4.0])[indexes]
    symbols = np.clip(np.round(rng.laplace(0, scales)), -10, 10).astype(np.int32)
    data = encode_symbols(bank, symbols, indexes)
    ideal = bank.information_bits(symbols, indexes)
    assert 8 * len(data) <= ideal * 1.005 + 64


def test_segments_share_one_stream_and_decode_in_order():
    bank = laplace_bank()
    enc = SymbolEncoder()
    a, b = np.arange(-5, 5, dtype=np.int32), np.array([7, -7, 100], dtype=np.int32)
    enc.add(bank, a, np.zeros_like(a))
    enc.add(bank, b, np.full(3, 2))
    dec = SymbolDecoder(enc.finish())
    assert np.array_equal(dec.read(bank, np.zeros(10, dtype=np.int64)), a)
    assert np.array_equal(dec.read(bank, np.full(3, 2)), b)
    dec.finish()


def test_leftover_or_misaligned_payload_is_an_error():
    bank = laplace_bank()
    data = encode_symbols(bank, np.array([3, 1, 4], dtype=np.int32), np.array([2, 2, 2]))
    with pytest.raises(EntropyDecodeError):
        decode_symbols(bank, data + b"\x01\x02\x03\x04", np.array([2, 2, 2]))
    with pytest.raises(EntropyDecodeError):
        SymbolDecoder(data[:-1])
    with pytest.raises(ValueError):
        encode_symbols(bank, np.array([1], dtype=np.int32), np.array([3]))


def test_factorized_prior_trains_and_codes():
    torch.manual_seed(0)
    model = FactorizedPrior(4)
    y = torch.randn(8, 4, 6, 6) * torch.tensor([0.5, 1.0, 3.0, 8.0]).view(1, 4, 1, 1)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(300):
        opt.zero_grad()
        _, lik = model(y)
        (-torch.log2(lik).mean() + model.aux_loss()).backward()
        opt.step()
    model.eval()
    model.update()
    with torch.no_grad():
        y_hat, lik = model(y)
    data = model.compress(y)
    assert torch.equal(model.decompress(data, y.shape), torch.round(y))
    ideal = float(-torch.log2(lik).sum())
    assert 8 * len(data) < ideal * 1.03 + 64  # tables match the trained density
    assert ideal / y.numel() < 4.5  # learned something: a fixed 8-bit code would cost 8


def test_gaussian_conditional_with_means_round_trips():
    torch.manual_seed(0)
    model = GaussianConditional().eval()
    model.update()
    scales = torch.rand(2, 3, 8, 8) * 10 + 0.05
    means = torch.randn(2, 3, 8, 8) * 3
    y = means + torch.randn_like(means) * scales
    y_hat, lik = model(y, scales, means)
    data = model.compress(y, scales, means)
    decoded = model.decompress(data, y.shape, scales, means)
    assert torch.allclose(decoded, y_hat)
    assert 8 * len(data) < float(-torch.log2(lik).sum()) * 1.02 + 64


def test_laplace_family_and_bad_arguments():
    model = GaussianConditional(family="laplace")
    model.update()
    assert model.bank.num_tables == len(model.scale_table)
    with pytest.raises(ValueError):
        GaussianConditional(family="cauchy")
    with pytest.raises(RuntimeError, match="update"):
        GaussianConditional().compress(torch.zeros(1, 1, 2, 2), torch.ones(1, 1, 2, 2))


def test_categorical_prior_beats_raw_packing():
    torch.manual_seed(0)
    probs = torch.softmax(torch.randn(2, 64) * 2, dim=-1)
    indices = torch.stack([torch.multinomial(p, 20_000, replacement=True) for p in probs], dim=-1)
    prior = CategoricalPrior(64, num_codebooks=2)
    prior.fit_counts(indices)
    prior.update()
    data = prior.compress(indices)
    assert torch.equal(prior.decompress(data, tuple(indices.shape)), indices)
    raw_bits = indices.numel() * 6
    entropy = float(-(probs * torch.log2(probs)).sum()) * indices.shape[0]
    assert 8 * len(data) < raw_bits * 0.9
    assert 8 * len(data) < entropy * 1.01 + 64


def test_tables_travel_in_state_dict():
    model = GaussianConditional()
    model.update()
    fresh = GaussianConditional()
    fresh.load_state_dict(model.state_dict())
    assert np.array_equal(fresh.bank.freqs, model.bank.freqs)


DECODER = textwrap.dedent("""
    import json, sys, numpy as np, torch
    torch.set_num_threads(1)
    torch.backends.mkldnn.enabled = False
    from safetensors.torch import load_file
    from polycodec.entropy import FactorizedPrior, GaussianConditional
    state = load_file(sys.argv[1])
    z_model, y_model = FactorizedPrior(3), GaussianConditional()
    z_model.load_state_dict({k[2:]: v for k, v in state.items() if k.startswith("z.")})
    y_model.load_state_dict({k[2:]: v for k, v in state.items() if k.startswith("y.")})
    z_model.eval(); y_model.eval()
    meta = json.load(open(sys.argv[2]))
    scales = torch.tensor(meta["scales"]).reshape(meta["shape"])
    z = z_model.decompress(bytes.fromhex(meta["z"]), meta["zshape"])
    y = y_model.decompress(bytes.fromhex(meta["y"]), meta["shape"], scales)
    print(json.dumps({"z": z.flatten().tolist(), "y": y.flatten().tolist()}))
""")


def test_decode_in_another_process_with_other_thread_settings(tmp_path):
    torch.manual_seed(3)
    z_model, y_model = FactorizedPrior(3), GaussianConditional()
    z_model.update()
    y_model.update()
    z = torch.randn(1, 3, 16, 16) * 4
    scales = torch.rand(1, 8, 32, 32) * 20 + 0.1
    y = torch.randn_like(scales) * scales
    state = {f"z.{k}": v for k, v in z_model.state_dict().items()} | {f"y.{k}": v for k, v in y_model.state_dict().items()}
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / "state.safetensors"))
    meta = {"z": z_model.compress(z).hex(), "zshape": list(z.shape), "y": y_model.compress(y, scales).hex(),
            "shape": list(y.shape), "scales": scales.flatten().tolist()}
    (tmp_path / "meta.json").write_text(json.dumps(meta))
    out = subprocess.run([sys.executable, "-c", DECODER, str(tmp_path / "state.safetensors"), str(tmp_path / "meta.json")],
                         capture_output=True, text=True, check=True)
    decoded = json.loads(out.stdout)
    assert decoded["z"] == torch.round(z).flatten().tolist()
    assert decoded["y"] == torch.round(y).flatten().tolist()
