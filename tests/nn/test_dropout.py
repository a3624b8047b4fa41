import pytest
import torch
import torch.nn.functional as F

from brl_graph.nn.dropout import Dropout, dropout


@pytest.mark.parametrize("p", [0.05, 0.2, 0.5])
def test_drop_rate_and_scale(p):
    torch.manual_seed(0)
    x = torch.ones(200_000)
    y = dropout(x, p)
    dropped = (y == 0).float().mean().item()
    # binomial std of the rate at n = 2e5 is at most 1.2e-3; 5e-3 is > 4 std
    assert abs(dropped - p) < 5e-3
    kept = y[y != 0]
    assert torch.equal(kept, torch.full_like(kept, 1.0 / (1.0 - p)))


def test_slices_are_independent_of_position():
    # each 64-bit draw feeds four elements: every slot must drop at the rate p
    torch.manual_seed(0)
    y = dropout(torch.ones(400_000), 0.5).view(-1, 4)
    rates = (y == 0).float().mean(0)
    assert (rates - 0.5).abs().max() < 6e-3
    # and neighbours are not correlated (both dropped: p^2)
    both = ((y[:, 0] == 0) & (y[:, 1] == 0)).float().mean().item()
    assert abs(both - 0.25) < 6e-3


def test_gradient_is_the_scaled_mask():
    torch.manual_seed(0)
    x = torch.randn(37, 11, dtype=torch.float64, requires_grad=True)
    y = dropout(x, 0.3)
    y.sum().backward()
    mask = (y != 0).to(x.dtype) / 0.7
    assert torch.equal(x.grad, mask)
    assert torch.allclose(y, x.detach() * mask)


def test_reproducible_from_the_global_seed_and_not_in_place():
    x = torch.randn(5, 7)
    before = x.clone()
    torch.manual_seed(3)
    a = dropout(x, 0.4)
    torch.manual_seed(3)
    b = dropout(x, 0.4)
    assert torch.equal(a, b) and torch.equal(x, before)
    assert not torch.equal(a, dropout(x, 0.4))  # the stream moves on


def test_identity_when_not_training_or_p_zero_and_edge_cases():
    x = torch.randn(4, 3)
    assert dropout(x, 0.5, training=False) is x
    assert dropout(x, 0.0) is x
    assert torch.equal(dropout(x, 1.0), torch.zeros_like(x))
    assert dropout(torch.randn(0, 8), 0.5).shape == (0, 8)
    # non-contiguous input and reduced precision keep shape and dtype
    t = torch.randn(6, 8).t()
    assert dropout(t, 0.5).shape == (8, 6)
    assert dropout(torch.randn(6, 8, dtype=torch.bfloat16), 0.5).dtype == torch.bfloat16
    # integer tensors are passed to PyTorch's dropout, which names the problem
    with pytest.raises(RuntimeError):
        dropout(torch.ones(3, dtype=torch.long), 0.5)


@pytest.mark.parametrize("p", [-0.1, 1.5])
def test_bad_probability_is_named(p):
    with pytest.raises(ValueError, match="between 0 and 1"):
        dropout(torch.ones(3), p)
    with pytest.raises(ValueError, match="between 0 and 1"):
        Dropout(p)


def test_module_is_a_drop_in_for_torch_dropout():
    ours, theirs = Dropout(0.25), torch.nn.Dropout(0.25)
    assert ours.state_dict() == theirs.state_dict() == {}
    assert repr(ours) == "Dropout(p=0.25)"
    x = torch.randn(1000)
    assert torch.equal(ours.eval()(x), theirs.eval()(x))
    ours.train()
    torch.manual_seed(0)
    y = ours(torch.ones(100_000))
    assert abs((y == 0).float().mean().item() - 0.25) < 5e-3


def test_matches_torch_dropout_in_distribution_of_the_output_mean():
    # same estimator: E[dropout(x)] = x for both implementations
    torch.manual_seed(0)
    x = torch.randn(64)
    ours = torch.stack([dropout(x, 0.2) for _ in range(4000)]).mean(0)
    theirs = torch.stack([F.dropout(x, 0.2) for _ in range(4000)]).mean(0)
    tol = 4 * x.abs() * (0.2 / 0.8 / 4000) ** 0.5 + 1e-6  # 4 std of the mean
    assert ((ours - x).abs() <= tol).all() and ((theirs - x).abs() <= tol).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16])
def test_the_mask_is_the_documented_slice_comparison_in_every_dtype(dtype):
    # The definition: 64 random bits per four elements, element i keeps when its
    # 16-bit slice (signed) is >= round(p * 2**16) - 2**15; kept values scale by 1/(1-p).
    p = 0.2
    x = torch.randn(37, 5).to(dtype).t()  # odd size, not contiguous
    torch.manual_seed(4)
    out = dropout(x, p=p, training=True)
    torch.manual_seed(4)
    bits = torch.empty((x.numel() + 3) // 4, dtype=torch.int64).random_(-(2 ** 63), None)
    keep = bits.view(torch.int16)[:x.numel()].view(x.shape) >= round(p * 2 ** 16) - 2 ** 15
    assert out.dtype == dtype
    assert torch.equal(out, x * keep.to(dtype).mul_(1.0 / (1.0 - p)))
