import pytest
import torch

from brl_graph.nn.functional import (SPLIT_ROWS, node_scores, pool_nodes, prefix_softmax_pool,
                                     split_blocks, split_length, spread_tokens)
from brl_graph.nn.plan import dense_groups


def naive_prefix(s, v, mask=None):
    L = s.size(-1)
    outs = []
    for i in range(L):
        si = s[..., : i + 1]
        if mask is not None:
            si = si.masked_fill(~mask[..., : i + 1], float("-inf"))
        w = torch.softmax(si, dim=-1)
        outs.append((w.unsqueeze(-1) * v[..., : i + 1, :]).sum(-2))
    return torch.stack(outs, dim=-2)


@pytest.mark.parametrize("L", [1, 7, 8, 9, 64, 200])
def test_prefix_pool_matches_naive(L):
    torch.manual_seed(L)
    s = torch.randn(2, 3, L, dtype=torch.float64) * 4
    v = torch.randn(2, 3, L, 5, dtype=torch.float64)
    out = prefix_softmax_pool(s, v, block=8)
    assert out.shape == (2, 3, L, 5)
    torch.testing.assert_close(out, naive_prefix(s, v), atol=1e-5, rtol=1e-5)


def test_prefix_pool_mask_and_broadcast():
    torch.manual_seed(0)
    s = torch.randn(2, 4, 50)
    v = torch.randn(2, 1, 50, 3)  # broadcast over the 4 query rows
    mask = torch.rand(2, 4, 50) > 0.3
    mask[..., 0] = True
    out = prefix_softmax_pool(s, v, mask=mask, block=4)
    ref = naive_prefix(s, v.expand(2, 4, 50, 3), mask)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


def test_prefix_pool_is_stable_for_huge_logits():
    torch.manual_seed(0)
    s = (torch.randn(3, 300) * 1e4).requires_grad_()
    v = torch.randn(3, 300, 4, requires_grad=True)
    out = prefix_softmax_pool(s, v, block=16)
    assert torch.isfinite(out).all()
    # with logits this far apart each prefix picks its running argmax
    idx = torch.cummax(s.detach(), dim=-1).indices
    torch.testing.assert_close(out, torch.gather(v.detach(), 1, idx.unsqueeze(-1).expand(-1, -1, 4)))
    out.sum().backward()
    assert torch.isfinite(s.grad).all() and torch.isfinite(v.grad).all()


def test_prefix_pool_bf16_autocast():
    s = torch.randn(2, 500).bfloat16() * 1e4
    v = torch.randn(2, 500, 8).bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = prefix_softmax_pool(s, v)
    assert out.dtype == torch.bfloat16 and torch.isfinite(out.float()).all()


def test_prefix_pool_gradient_never_leaks_forward():
    torch.manual_seed(0)
    s = torch.randn(1, 2, 130, requires_grad=True)
    v = torch.randn(1, 1, 130, 3, requires_grad=True)
    out = prefix_softmax_pool(s, v, block=8)
    for i in (0, 17, 64, 129):
        s.grad = v.grad = None
        out[0, :, i].sum().backward(retain_graph=True)
        assert (s.grad[..., i + 1:] == 0).all() and (v.grad[..., i + 1:, :] == 0).all()
        assert v.grad[..., : i + 1, :].abs().sum() > 0


def test_prefix_pool_rejects_bad_shapes():
    with pytest.raises(ValueError, match="positions"):
        prefix_softmax_pool(torch.randn(4, 5), torch.randn(4, 6, 2))
    with pytest.raises(ValueError, match="block"):
        prefix_softmax_pool(torch.randn(4, 5), torch.randn(4, 5, 2), block=1)


def test_dense_groups_bound_padding():
    sizes = [5000] + [3] * 2000
    batch = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))
    groups = dense_groups(batch, len(sizes))
    assert len(groups) > 1
    seen = torch.cat([g.graph_index for g in groups]).sort().values
    assert torch.equal(seen, torch.arange(len(sizes)))
    padded = sum(g.num_graphs * g.max_nodes for g in groups)
    assert padded <= 2 * batch.numel()
    # balanced batches stay one group without copies
    even = torch.arange(10).repeat_interleave(7)
    (g,) = dense_groups(even, 10)
    assert g.node_index is None and g.max_nodes == 7


@pytest.mark.parametrize("lq,lk", [(40, 8), (8, 40), (8, 8)])
def test_attention_matches_sdpa(lq, lk):
    from brl_graph.nn.functional import attention
    torch.manual_seed(0)
    q, k, v = torch.randn(3, 2, lq, 4), torch.randn(3, 2, lk, 4), torch.randn(3, 2, lk, 4)
    mask = torch.rand(3, 1, 1, lk) > 0.3
    mask[..., 0] = True
    ref = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    torch.testing.assert_close(attention(q, k, v, mask), ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(attention(q, k, v),
                               torch.nn.functional.scaled_dot_product_attention(q, k, v),
                               atol=1e-5, rtol=1e-5)


def token_node_products(block, L, seed=0):
    """The three token-node products of random float64 inputs with split ``block``,
    and the gradients of a random functional of them."""
    g = torch.Generator().manual_seed(seed)
    G, K, C = 3, 4, 5
    t, w, v = (torch.randn(*shape, generator=g, dtype=torch.float64, requires_grad=True)
               for shape in ((G, K, C), (G, K, L), (G, K, C)))
    x = torch.randn(G, L, C, generator=g, dtype=torch.float64, requires_grad=True)
    mask_bias = torch.randn(G, 1, L, generator=g, dtype=torch.float64)
    bias = torch.randn(C, generator=g, dtype=torch.float64)
    outs = [node_scores(t, x, block=block), node_scores(t, x, mask_bias, block=block),
            pool_nodes(w, x, block=block), spread_tokens(w, v, bias, block=block),
            spread_tokens(w, v, block=block)]
    probe = sum((o * torch.randn(o.shape, generator=g, dtype=torch.float64)).sum() for o in outs)
    return outs + list(torch.autograd.grad(probe, (t, x, w, v)))


@pytest.mark.parametrize("L,block", [(12, 3), (13, 3), (1000, 64), (5, 2), (7, 7), (1, 4)])
def test_split_token_node_products_match_one_product(L, block):
    # blocks of nodes, padded where block does not divide L, reduced in parallel:
    # the same values and gradients as the single batched product
    whole = token_node_products(None, L)
    split = token_node_products(block, L)
    for a, b in zip(split, whole):
        assert a.shape == b.shape
        torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-12)


def test_split_blocks_decides_by_device_and_length():
    x = torch.zeros(1, 4 * SPLIT_ROWS, 2)
    assert split_blocks(x) == 1  # never on the CPU by itself
    assert split_blocks(x, block=SPLIT_ROWS) == 4
    assert split_blocks(torch.zeros(2, 10, 3), block=3) == 4
    meta = torch.zeros(1, 4 * SPLIT_ROWS, 2, device="meta")
    assert split_blocks(meta) == 4
    assert split_blocks(meta[:, :2 * SPLIT_ROWS - 1]) == 1  # too short to be worth it
    with pytest.raises(ValueError, match="block must be >= 1"):
        split_blocks(x, block=0)


def test_split_length_pads_to_whole_blocks_off_the_cpu_only():
    cpu, meta = torch.device("cpu"), torch.device("meta")
    assert split_length(5 * SPLIT_ROWS + 3, cpu) == 5 * SPLIT_ROWS + 3
    assert split_length(5 * SPLIT_ROWS + 3, meta) == 6 * SPLIT_ROWS
    assert split_length(4 * SPLIT_ROWS, meta) == 4 * SPLIT_ROWS
    assert split_length(2 * SPLIT_ROWS - 1, meta) == 2 * SPLIT_ROWS - 1  # not split: as it is
    # a padded length splits into whole blocks of SPLIT_ROWS rows
    L = split_length(3 * SPLIT_ROWS + 1, meta)
    assert split_blocks(torch.empty(1, L, 1, device="meta")) * SPLIT_ROWS == L


def test_split_products_keep_the_autocast_dtype():
    # under bf16 autocast baddbmm returns bf16 whatever the bias dtype; the split
    # path adds its float32 bias in the result's dtype too
    g = torch.Generator().manual_seed(0)
    t, x = torch.randn(2, 3, 4, generator=g), torch.randn(2, 10, 4, generator=g)
    w, v = torch.rand(2, 3, 10, generator=g), torch.randn(2, 3, 4, generator=g)
    mask_bias, bias = torch.zeros(2, 1, 10), torch.zeros(4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        for block in (None, 3):
            assert node_scores(t, x, mask_bias, block=block).dtype == torch.bfloat16
            assert spread_tokens(w, v, bias, block=block).dtype == torch.bfloat16
            assert pool_nodes(w, x, block=block).dtype == torch.bfloat16
