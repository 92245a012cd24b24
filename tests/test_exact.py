"""Fixed-point layers: inference is exact integer arithmetic, whatever the summation order or settings."""

import torch

from polycodec.models.exact import ACT_BITS, ExactConv2d, checkerboard_mask, to_grid


def grid_input(*shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return to_grid(torch.randn(*shape, generator=g) * 20)


def test_exact_path_matches_integer_reference():
    torch.manual_seed(0)
    conv = ExactConv2d(7, 5, 3).eval()
    x = grid_input(2, 7, 9, 11)
    with torch.no_grad():
        out = conv(x)
        # Reference in Python integers, no floating point at all.
        a = (x * 2**ACT_BITS).round().long()
        w = (conv.quantized_weight() * 2**8).round().long()
        b = (to_grid(conv.bias) * 2**ACT_BITS).round().long() * 2**8
        acc = torch.nn.functional.conv2d(a.double(), w.double(), padding=1).long() + b.view(1, -1, 1, 1)
        expected = torch.div(acc + 2**7, 2**8, rounding_mode="floor").float() / 2**ACT_BITS
    assert torch.equal(out, expected)
    assert torch.equal(out, to_grid(out))  # stays on the grid


def test_result_does_not_depend_on_channel_order_or_threads():
    torch.manual_seed(1)
    conv = ExactConv2d(64, 8, 3).eval()
    x = grid_input(1, 64, 16, 16, seed=2)
    perm = torch.randperm(64)
    permuted = ExactConv2d(64, 8, 3).eval()
    with torch.no_grad():
        permuted.weight.copy_(conv.weight[:, perm])
        permuted.bias.copy_(conv.bias)
        reference = conv(x)
        assert torch.equal(permuted(x[:, perm]), reference)  # another summation order, same integers
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            assert torch.equal(conv(x), reference)
        finally:
            torch.set_num_threads(threads)


def test_training_path_approximates_inference_and_has_gradients():
    torch.manual_seed(3)
    conv = ExactConv2d(8, 4, 3, relu=True)
    x = grid_input(1, 8, 10, 10).requires_grad_()
    train_out = conv(x)
    train_out.sum().backward()
    assert x.grad.abs().sum() > 0 and conv.weight.grad.abs().sum() > 0
    conv.eval()
    with torch.no_grad():
        exact = conv(x.detach())
    assert (train_out.detach() - exact).abs().max() <= 2 / 2**ACT_BITS


def test_checkerboard_mask_sees_only_the_other_colour():
    mask = checkerboard_mask(5)
    assert mask[2, 2] == 0 and mask[2, 3] == 1 and mask[1, 1] == 0 and mask.sum() == 12
