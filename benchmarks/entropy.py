"""Entropy coding benchmark: real coded size against ideal information content, and throughput.

    python benchmarks/entropy.py [--symbols 1000000] [--repeats 3]

For each entropy model type, 1 M symbols are coded through the model's own ``compress`` / ``decompress``
(table selection included).  Two overheads are printed:
  * vs tables: coded bits over -sum(log2 p) under the integer tables -- the coder's own cost;
  * vs model:  coded bits over -sum(log2 p) under the float model -- adds table quantization and the
               discrete scale table, i.e. everything between a training-time rate estimate and the file.
Targets (issue 2): overhead <= 0.5 %, >= 10 M symbols/s encode and decode.  Throughput is the best of
``--repeats`` runs, as these machines are shared and noisy.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import time

import numpy as np
import torch

from polycodec.entropy import CategoricalPrior, FactorizedPrior, GaussianConditional


def best_time(fn, repeats: int):
    best, result = math.inf, None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def case_factorized(n: int):
    channels = 192
    model = FactorizedPrior(channels).eval()
    model.update()
    side = int(math.sqrt(n / channels))
    y = torch.randn(1, channels, side, side) * torch.linspace(0.2, 3, channels).view(1, -1, 1, 1)
    with torch.no_grad():
        _, lik = model(y)
    return model, (y,), tuple(y.shape), (), lik


def case_gaussian(n: int):
    model = GaussianConditional().eval()
    model.update()
    side = int(math.sqrt(n / 192))
    scales = torch.exp(torch.empty(1, 192, side, side).uniform_(math.log(0.11), math.log(16)))
    means = torch.randn_like(scales)
    y = means + torch.randn_like(scales) * scales
    with torch.no_grad():
        _, lik = model(y, scales, means)
    return model, (y, scales, means), tuple(y.shape), (scales, means), lik


def case_categorical(n: int):
    codebooks, size = 8, 1024
    model = CategoricalPrior(size, codebooks).eval()
    with torch.no_grad():
        model.logits.copy_(torch.randn(codebooks, size) * 1.5)
    model.update()
    probs = torch.softmax(model.logits.detach(), -1)
    indices = torch.stack([torch.multinomial(p, n // codebooks, replacement=True) for p in probs], -1)
    with torch.no_grad():
        _, lik = model(indices)
    return model, (indices,), tuple(indices.shape), (), lik


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--symbols", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.manual_seed(0)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    header = (f"{'model':<22}{'symbols':>10}{'bytes':>11}{'bits/sym':>10}{'vs tables':>11}{'vs model':>10}"
              f"{'enc Msym/s':>12}{'dec Msym/s':>12}  ok")
    print(header)
    print("-" * len(header))
    for name, case in [("factorized (192 ch)", case_factorized), ("gaussian (128 scales)", case_gaussian),
                       ("categorical (8x1024)", case_categorical)]:
        model, enc_args, shape, cond, lik = case(args.symbols)
        symbols, indexes = model.symbols_and_indexes(*enc_args)
        enc_s, data = best_time(lambda: model.compress(*enc_args), args.repeats)
        dec_s, decoded = best_time(lambda: model.decompress(data, shape, *cond), args.repeats)
        expected = model.reconstruct(symbols, shape, *cond)
        assert torch.equal(decoded, expected), f"{name}: round trip failed"
        n = symbols.size
        bits = 8 * len(data)
        table_bits = model.bank.information_bits(symbols, indexes)
        model_bits = float(-torch.log2(lik.double()).sum())
        vs_tables, vs_model = bits / table_bits - 1, bits / model_bits - 1
        enc_rate, dec_rate = n / enc_s / 1e6, n / dec_s / 1e6
        ok = vs_model <= 0.005 and enc_rate >= 10 and dec_rate >= 10
        print(f"{name:<22}{n:>10}{len(data):>11}{bits / n:>10.4f}{vs_tables:>10.3%}{vs_model:>10.3%}"
              f"{enc_rate:>12.1f}{dec_rate:>12.1f}  {'yes' if ok else 'NO'}")


if __name__ == "__main__":
    main()
