"""Would the overfitted codec's context model gain from other inputs?  A check to run before changing the stream.

    python benchmarks/image_overfit_context.py [--images fruits.jpg,home.jpg] [--qualities 1,3] [--steps 600]
                                               [--refit-steps 800] [--threads 1]

Fits each image (a whole photo, ``--steps`` steps), rounds its latents, then fits float context MLPs of the
shipped shape afresh to those fixed latents, once per variant of their inputs, with per-plane log-scale shifts
as the stream has.  Prints the latents' bits under each, and what the variant's extra weights would cost in the
stream, priced at the bits per weight the image's own quantized context MLPs take:

    own         the shipped inputs (the coarser 3x3 and, after the early anchors, 12 decoded neighbours)
    cross-N     plus N co-located inputs from the planes of the same level coded earlier (the first plane's
                centre / plus-shape / 3x3, and the second plane's centre / centre / 3x3 for N = 2 / 6 / 18)
    transfer    the other image's MLPs as they are, only this image's plane shifts fitted: what a context
                model shared by all images (shipped once, sent never) would cost in latent bits

The latents were fitted under the shipped context, so a variant that needs a new fit to pay off may look
worse here than it would be; a variant that does not pay off here has to overcome that in a refit.
The refits are not converged and not repeatable to the percent: a cross-N variant holds every input of
``own``, so any rise it shows is refit noise, and at 400 refit steps one came out 5 % above ``own``.  Read
differences of a few percent as nothing.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torch import Tensor, nn

from polycodec.codecs.overfit import LAMBDAS, OverfitImageCodec, context_ints, parameter_bits, quantize_networks
from polycodec.entropy.mean_scale import laplace_bin_likelihood
from polycodec.media import read_image
from polycodec.models.overfit import LOG_SCALE_RANGE, NETS, OverfitImageModel, net_name
from polycodec.training.overfit import Preset, fit

CROSS = {"cross-2": [4, 13], "cross-6": [1, 3, 4, 5, 7, 13], "cross-18": list(range(18))}  # columns of the 18


def context_rows(model: OverfitImageModel, latents: list[Tensor]) -> dict[str, tuple[Tensor, Tensor, Tensor, Tensor]]:
    """Per context MLP: (shipped inputs (N, k), the 18 cross-plane inputs (N, 18), values (N,), plane (N,))."""
    rows: dict[str, list[tuple[Tensor, ...]]] = {name: [] for name in NETS}
    for level, coarser_level in model.level_groups():
        planes = torch.stack([latents[i] for i in level])
        coarser = None if coarser_level is None else torch.stack([latents[i] for i in coarser_level])
        patches = model.context.parent_patches(planes)  # (P, H * W, 9): each plane's own 3x3, as parents give
        for pass_ in model.config.passes:
            inputs, positions = model.context.features(planes, coarser, pass_)
            count = positions.numel()
            cross = planes.new_zeros(len(level), count, 18)
            for later in range(1, len(level)):  # every later plane reads the first, the third the second too
                cross[later, :, :9] = patches[0, positions]
                if later == 2:
                    cross[later, :, 9:] = patches[1, positions]
            values = planes.reshape(len(level), -1)[:, positions].reshape(-1)
            plane = torch.tensor(level).repeat_interleave(count)
            rows[net_name(pass_)].append((inputs, cross.reshape(-1, 18), values, plane))
    return {name: tuple(torch.cat(parts) for parts in zip(*rows[name])) for name in NETS}


def refit(inputs: Tensor, values: Tensor, plane: Tensor, planes: int, steps: int, hidden: int,
          net: nn.Module | None = None) -> tuple[nn.Module, float]:
    """Fit a float MLP (inputs -> hidden -> hidden -> 2) and per-plane shifts to code ``values``; given ``net``,
    only the shifts.  -> (the MLP, the values' bits)."""
    if net is None:
        net = nn.Sequential(nn.Linear(inputs.shape[1], hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                            nn.Linear(hidden, 2))
        params = list(net.parameters())
    else:
        params = []
    shifts = torch.zeros(planes, requires_grad=True)
    optimiser = torch.optim.Adam(params + [shifts], lr=1e-2)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, steps)

    def bits() -> Tensor:
        mean, log_scale = net(inputs).unbind(1)
        scale = torch.exp((log_scale + shifts[plane]).clamp(*LOG_SCALE_RANGE))
        return -torch.log2(laplace_bin_likelihood(values, mean, scale)).sum()

    for _ in range(steps):
        optimiser.zero_grad()
        bits().backward()
        optimiser.step()
        schedule.step()
    with torch.no_grad():
        return net, float(bits())


def fitted_rows(path: Path, lam: float, steps: int) -> tuple[dict, int, float, int]:
    """Fit ``path`` -> (its context rows, plane count, stream bits per context weight, context hidden width)."""
    image = read_image(path)
    model = fit(image, lam, Preset(steps=steps))
    model.entropy.load_state_dict(OverfitImageCodec().entropy.state_dict())
    latents = model.quantized_latents("round")
    quantize_networks(model, image, lam)
    ints = context_ints(model)
    per_weight = parameter_bits(model, ints) / sum(values.size for values in ints)
    return context_rows(model, latents), len(latents), per_weight, model.config.context_hidden


def variant_bits(rows: dict, planes: int, hidden: int, steps: int, other: dict[str, tuple[nn.Module, float]]
                 ) -> dict[str, tuple[float, int]]:
    """Variant -> (latent bits, weights it adds to the stream) for the cross-plane variants and ``transfer``
    (``other``: the other image's refitted MLPs, whose weights it saves)."""
    results = {}
    for variant, columns in CROSS.items():
        bits = sum(refit(torch.cat([rows[n][0], rows[n][1][:, columns]], 1), rows[n][2], rows[n][3], planes, steps,
                         hidden)[1] for n in NETS)
        results[variant] = (bits, len(columns) * hidden * len(NETS))
    bits = sum(refit(rows[n][0], rows[n][2], rows[n][3], planes, steps, hidden, net=other[n][0])[1] for n in NETS)
    results["transfer"] = (bits, -sum(p.numel() for n in NETS for p in other[n][0].parameters()))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="data/eval/images")
    parser.add_argument("--images", default="fruits.jpg,home.jpg", help="two images (transfer swaps their MLPs)")
    parser.add_argument("--qualities", default="1,3")
    parser.add_argument("--steps", type=int, default=600, help="fitting steps (600: the fast preset)")
    parser.add_argument("--refit-steps", type=int, default=800, help="steps of each context refit")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    names = args.images.split(",")
    if len(names) != 2:
        parser.error("--images takes two images")
    print(f"{args.steps} fitting steps, {args.refit_steps} refit steps; latent bits under refitted context MLPs")
    print("| image | q | variant | latent bits | change | extra weights | their bits | net change |")
    print("|---|---|---|---|---|---|---|---|")
    for quality in map(int, args.qualities.split(",")):
        lam = LAMBDAS[quality - 1]
        fits = [fitted_rows(Path(args.data, name), lam, args.steps) for name in names]
        own_nets = [{n: refit(rows[n][0], rows[n][2], rows[n][3], planes, args.refit_steps, hidden) for n in NETS}
                    for rows, planes, _, hidden in fits]
        for i, (name, (rows, planes, per_weight, hidden)) in enumerate(zip(names, fits)):
            own = sum(bits for _, bits in own_nets[i].values())
            results = {"own": (own, 0), **variant_bits(rows, planes, hidden, args.refit_steps, own_nets[1 - i])}
            for variant, (bits, weights) in results.items():
                cost = weights * per_weight
                print(f"| {name} | {quality} | {variant} | {bits:.0f} | {100 * (bits / own - 1):+.1f} % | {weights:+d} "
                      f"| {cost:+.0f} | {bits - own + cost:+.0f} |", flush=True)


if __name__ == "__main__":
    main()
