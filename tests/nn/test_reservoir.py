import math

import pytest
import torch

from brl_graph.nn.dropout import dropout
from brl_graph.nn.functional import NEG
from brl_graph.nn.reservoir import TokenReservoir, fold_pool

C, K = 16, 3


def explicit_compress(res, x, T):
    """The textbook form: project the nodes, one softmax per token over the nodes."""
    q = res.query(res.norm(T))
    k, v = res.key_value(x).chunk(2, -1)
    w = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(C), -1)
    return res.mixer(T + res.out(w @ v))


def test_compress_equals_the_explicit_projections():
    torch.manual_seed(0)
    res = TokenReservoir(C, K, heads=4).eval()
    x = torch.randn(2, 7, C)
    T = torch.randn(2, K, C)
    torch.testing.assert_close(res.compress(x, T), explicit_compress(res, x, T), atol=1e-5, rtol=1e-5)


def test_padding_bias_and_empty_graphs():
    torch.manual_seed(0)
    res = TokenReservoir(C, K, heads=2).eval()
    x = torch.randn(2, 6, C)
    x[0, 4:] = 0.0  # graph 0 has 4 nodes, graph 1 none
    mask = torch.tensor([[True] * 4 + [False] * 2, [False] * 6])
    bias = torch.zeros(2, 1, 6).masked_fill(~mask[:, None], NEG)
    T = res.initial(2)
    out = res.compress(x, T, bias, empty=~mask.any(1))
    torch.testing.assert_close(out[0], explicit_compress(res, x[0, :4], T[0]), atol=1e-5, rtol=1e-5)
    # an empty graph pools a zero vector (no NaN from a softmax over padding only)
    torch.testing.assert_close(out[1], res.mixer(T[1] + res.out(torch.zeros(K, C))),
                               atol=1e-5, rtol=1e-5)


def test_attention_dropout_keeps_the_value_bias_weighting():
    # with dropout the pooling weights no longer sum to one; the absorbed
    # projection must weight the value bias by what is left
    torch.manual_seed(0)
    res = TokenReservoir(C, K, heads=2, attn_dropout=0.5).train()
    x, T = torch.randn(1, 9, C), torch.randn(1, K, C)
    torch.manual_seed(1)
    got = res.compress(x, T)
    torch.manual_seed(1)
    q = res.query(res.norm(T))
    k, v = res.key_value(x).chunk(2, -1)
    w = dropout(torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(C), -1), 0.5)
    torch.testing.assert_close(got, res.mixer(T + res.out(w @ v)), atol=1e-5, rtol=1e-5)


def test_causal_compress_uses_only_the_prefix():
    torch.manual_seed(0)
    res = TokenReservoir(C, K, heads=2)
    x = torch.randn(1, 12, C, requires_grad=True)
    T = res.compress_causal(x)
    assert T.shape == (1, 12, K, C)
    T[0, 5].sum().backward()
    assert (x.grad[0, 6:] == 0).all() and x.grad[0, :6].abs().sum() > 0


def test_errors_and_reset():
    with pytest.raises(ValueError, match="num_tokens > 0"):
        TokenReservoir(C, 0, heads=2)
    with pytest.raises(ValueError, match="divide"):
        TokenReservoir(C, K, heads=3)
    res = TokenReservoir(C, K, heads=2, learn_seeds=False)
    with pytest.raises(ValueError, match="learn_seeds=False"):
        res.initial(1)
    res = TokenReservoir(C, K, heads=2)
    before = res.seeds.detach().clone()
    res.reset_parameters()
    assert not torch.equal(before, res.seeds)
    assert repr(res) == "TokenReservoir(16, num_tokens=3, heads=2)"


def explicit_compress_heads(res, x, T, P):
    """P pooling heads per token, written out head by head."""
    D = C // P
    q = res.query(res.norm(T))
    k, v = res.key_value(x).chunk(2, -1)
    heads = []
    for p in range(P):
        sl = slice(p * D, (p + 1) * D)
        w = torch.softmax(q[..., sl] @ k[..., sl].transpose(-1, -2) / math.sqrt(D), -1)
        heads.append(w @ v[..., sl])
    return res.mixer(T + res.out(torch.cat(heads, -1)))


@pytest.mark.parametrize("P", [2, 4])
def test_pool_heads_compress_and_causal_prefix(P):
    torch.manual_seed(0)
    res = TokenReservoir(C, K, heads=2, pool_heads=P).eval()
    assert repr(res) == f"TokenReservoir(16, num_tokens=3, heads=2, pool_heads={P})"
    x = torch.randn(2, 9, C)
    mask = torch.ones(2, 9, dtype=torch.bool)
    mask[1, 5:] = False
    bias = torch.zeros(2, 1, 9).masked_fill(~mask[:, None], NEG)
    T = res.initial(2)
    out = res.compress(x, T, bias)
    torch.testing.assert_close(out[0], explicit_compress_heads(res, x[0], T[0], P), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out[1], explicit_compress_heads(res, x[1, :5], T[1], P),
                               atol=1e-5, rtol=1e-5)
    # causal: position i holds the reservoir of the prefix [0, i]
    causal = res.compress_causal(x, mask=mask)
    for i in (0, 4, 8):
        torch.testing.assert_close(causal[0, i], explicit_compress_heads(res, x[0, :i + 1], T[0], P),
                                   atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(causal[1, 4], explicit_compress_heads(res, x[1, :5], T[1], P),
                               atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="pool_heads"):
        TokenReservoir(C, K, heads=2, pool_heads=3)


# ---------------------------------------------------------------- folded projections
def folded_twin(res):
    """A fold=True reservoir computing what ``res`` computes: same seeds, norm and
    mixer, and its pooling maps folded from ``res``'s projections."""
    fold = TokenReservoir(C, K, heads=res.heads, fold=True).eval()
    fold.load_state_dict({k: v for k, v in res.state_dict().items()
                          if k.split(".")[0] in ("seeds", "norm", "mixer")}, strict=False)
    fold_pool(fold, res.query, res.key_value, res.out)
    return fold


def test_fold_computes_what_the_unfolded_projections_compute():
    torch.manual_seed(0)
    res = TokenReservoir(C, K, heads=2).eval()
    fold = folded_twin(res)
    # 2C^2 + 2C parameters fewer: (C^2 + C) + (2C^2 + 2C) + (C^2 + C) against 2 (C^2 + C)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(res) - count(fold) == 2 * C * C + 2 * C
    x = torch.randn(3, 6, C)
    x[2] = 0.0  # graph 2 has no nodes
    mask = torch.tensor([[True] * 4 + [False] * 2, [True] * 6, [False] * 6])
    bias = torch.zeros(3, 1, 6).masked_fill(~mask[:, None], NEG)
    T = torch.randn(3, K, C)
    empty = ~mask.any(1)
    got, want = fold.compress(x, T, bias, empty), res.compress(x, T, bias, empty)
    torch.testing.assert_close(got[:2], want[:2], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(fold.compress(x[:1, :4], T[:1]),
                               explicit_compress(res, x[:1, :4], T[:1]), atol=1e-5, rtol=1e-5)
    # The one documented difference: a graph without nodes pools a zero vector, which
    # the folded value map turns into W_O b_V + b_O where the unfolded one adds b_O.
    b_v = res.key_value.bias[C:]
    torch.testing.assert_close(want[2], res.mixer(T[2] + res.out.bias), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got[2], res.mixer(T[2] + res.out.weight @ b_v + res.out.bias),
                               atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(fold.compress_causal(x[:2], mask=mask[:2]),
                               res.compress_causal(x[:2], mask=mask[:2]), atol=1e-5, rtol=1e-5)


def test_fold_causal_uses_only_the_prefix_and_an_empty_graph_stays_finite():
    torch.manual_seed(0)
    fold = TokenReservoir(C, K, heads=2, fold=True)
    x = torch.randn(1, 12, C, requires_grad=True)
    T = fold.compress_causal(x)
    T[0, 5].sum().backward()
    assert (x.grad[0, 6:] == 0).all() and x.grad[0, :6].abs().sum() > 0
    # a graph without nodes: the value map sees a zero vector (no NaN from a softmax
    # over padding only), so its tokens get the value map's bias
    fold.eval()
    bias = torch.full((1, 1, 3), NEG)
    out = fold.compress(torch.zeros(1, 3, C), fold.initial(1), bias, empty=torch.tensor([True]))
    torch.testing.assert_close(out[0], fold.mixer(fold.initial(1)[0] + fold.value_out.bias),
                               atol=1e-5, rtol=1e-5)


def test_fold_starts_as_a_product_of_fresh_projections_and_checks_its_arguments():
    torch.manual_seed(0)
    wide = TokenReservoir(64, K, heads=4, fold=True)
    # A product of two default-init C x C maps has entries of spread 1 / (3 sqrt(C)),
    # against 1 / sqrt(3C) for one default-init map.
    expect = 1.0 / (3 * 64 ** 0.5)
    for w in (wide.query_nodes.weight, wide.value_out.weight):
        assert 0.85 * expect < w.std().item() < 1.15 * expect
    before = wide.query_nodes.weight.detach().clone()
    wide.reset_parameters()
    assert not torch.equal(before, wide.query_nodes.weight)
    assert repr(wide) == "TokenReservoir(64, num_tokens=3, heads=4, fold=True)"
    with pytest.raises(ValueError, match="fold=True needs pool_heads=1"):
        TokenReservoir(C, K, heads=2, pool_heads=2, fold=True)
    plain = TokenReservoir(C, K, heads=2)
    with pytest.raises(ValueError, match="built with fold=True"):
        fold_pool(plain, plain.query, plain.key_value, plain.out)
