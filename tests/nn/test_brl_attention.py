import pytest
import torch
import torch.nn.functional as F

from brl_graph.nn import BRLAttention

PROBE = torch.randn(16, generator=torch.Generator().manual_seed(7))


@pytest.mark.parametrize("causal", [False, True])
def test_window_only_matches_dense_banded_attention(causal):
    torch.manual_seed(0)
    attn = BRLAttention(16, heads=2, window=5, num_tokens=0, causal=causal).eval()
    B, L = 2, 23
    x = torch.randn(B, L, 16)
    q, k, v = (t.view(B, L, 2, 8).transpose(1, 2) for t in attn.qkv(x).chunk(3, -1))
    d = torch.arange(L)[:, None] - torch.arange(L)[None, :]
    band = ((d >= 0) & (d < 5)) if causal else (d.abs() < 5)
    ref = F.scaled_dot_product_attention(q, k, v, attn_mask=band).transpose(1, 2).reshape(B, L, 16)
    torch.testing.assert_close(attn(x), attn.out(ref), atol=1e-5, rtol=1e-5)


def test_tokens_share_one_softmax_with_the_window():
    # window >= length and K tokens: the layer is full attention over L + K keys
    torch.manual_seed(1)
    attn = BRLAttention(16, heads=2, window=64, num_tokens=3).eval()
    x = torch.randn(1, 10, 16)
    T = attn.tok_norm_r(attn._tokens(x, torch.ones(1, 10, dtype=torch.bool)))
    kt, vt = attn.kv_t(T).chunk(2, -1)
    q, k, v = attn.qkv(x).chunk(3, -1)
    keys, vals = torch.cat([k, kt], 1), torch.cat([v, vt], 1)

    def sp(t):
        return t.view(1, -1, 2, 8).transpose(1, 2)

    ref = F.scaled_dot_product_attention(sp(q), sp(keys), sp(vals)).transpose(1, 2).reshape(1, 10, 16)
    torch.testing.assert_close(attn(x), attn.out(ref), atol=1e-5, rtol=1e-5)


def test_causal_no_leak_and_far_information_arrives():
    torch.manual_seed(0)
    attn = BRLAttention(16, heads=2, window=4, num_tokens=3, causal=True)
    x = torch.randn(2, 130, 16, requires_grad=True)
    y = attn(x)
    for i in (0, 3, 64, 129):
        x.grad = None
        (y[0, i] * PROBE).sum().backward(retain_graph=True)
        assert (x.grad[0, i + 1:] == 0).all()
        assert (x.grad[1] == 0).all()
    # position 129 is 100+ steps beyond the window from position 0: only tokens connect them
    assert x.grad[0, 0].abs().sum() > 0
    window_only = BRLAttention(16, heads=2, window=4, num_tokens=0, causal=True)
    x.grad = None
    (window_only(x)[0, 129] * PROBE).sum().backward()
    assert (x.grad[0, :126] == 0).all()


@pytest.mark.parametrize("causal", [False, True])
def test_padding_does_not_influence_real_positions(causal):
    torch.manual_seed(0)
    attn = BRLAttention(16, heads=2, window=8, num_tokens=4, causal=causal).eval()
    x = torch.randn(2, 50, 16)
    mask = torch.ones(2, 50, dtype=torch.bool)
    mask[1, 35:] = False
    y = attn(x, mask)
    x2 = x.clone()
    x2[1, 35:] = torch.randn(15, 16) * 1e3
    y2 = attn(x2, mask)
    torch.testing.assert_close(y, y2)
    torch.testing.assert_close(y[1, :35], attn(x[1:, :35])[0], atol=1e-5, rtol=1e-5)
    assert (y[1, 35:] == 0).all()


def test_all_padding_and_bf16_are_finite():
    attn = BRLAttention(16, heads=2, window=8, num_tokens=4, causal=True)
    x = torch.randn(2, 40, 16) * 100
    mask = torch.zeros(2, 40, dtype=torch.bool)
    mask[0, 5:] = True  # left padding
    assert torch.isfinite(attn(x, mask)).all()
    enc = BRLAttention(16, heads=2, window=8, num_tokens=4)
    assert torch.isfinite(enc(x, torch.zeros(2, 40, dtype=torch.bool))).all()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.isfinite(attn(x).float()).all()


def test_bad_inputs():
    attn = BRLAttention(16, heads=2)
    with pytest.raises(ValueError, match=r"\[batch, length, 16\]"):
        attn(torch.randn(4, 16))
    with pytest.raises(ValueError, match="mask must be a bool"):
        attn(torch.randn(2, 5, 16), torch.ones(2, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="divide"):
        BRLAttention(16, heads=5)
    assert "window=64" in repr(attn)
