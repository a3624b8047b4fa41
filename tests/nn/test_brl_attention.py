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


def padded_outputs_match(attn):
    """Sequence 1 padded after 35 positions: padding values never reach real
    positions, which equal the unpadded sequence alone. Returns the outputs."""
    x = torch.randn(2, 50, 16)
    mask = torch.ones(2, 50, dtype=torch.bool)
    mask[1, 35:] = False
    y = attn(x, mask)
    x2 = x.clone()
    x2[1, 35:] = torch.randn(15, 16) * 1e3
    torch.testing.assert_close(y, attn(x2, mask))
    torch.testing.assert_close(y[1, :35], attn(x[1:, :35])[0], atol=1e-5, rtol=1e-5)
    return y


@pytest.mark.parametrize("causal", [False, True])
def test_padding_does_not_influence_real_positions(causal):
    torch.manual_seed(0)
    attn = BRLAttention(16, heads=2, window=8, num_tokens=4, causal=causal).eval()
    y = padded_outputs_match(attn)
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


# ---------------------------------------------------------------- blocks mode
def blocks_reference(attn, x, mask=None):
    """Position by position: the keys each query may read in blocks mode, one softmax."""
    B, L, C = x.shape
    H, D, b, c = attn.heads, C // attn.heads, attn.block_size, attn.block_tokens
    W = min(attn.window, L)
    mask = torch.ones(B, L, dtype=torch.bool) if mask is None else mask
    q, k, v = (t.view(B, L, H, D) for t in attn.qkv(x).chunk(3, -1))
    s = attn.pool(x).view(B, L, H, c)
    nb = -(-L // b)
    out = torch.zeros(B, L, H, D)
    for bi in range(B):
        toks = []  # (block, key [H, D], value [H, D]) per token
        for m in range(nb):
            idx = [j for j in range(m * b, min(L, (m + 1) * b)) if mask[bi, j]]
            if not idx:
                continue
            for t in range(c):
                beta = torch.softmax(s[bi, idx, :, t], dim=0)  # [n, H]
                toks.append((m, (beta[..., None] * k[bi, idx]).sum(0),
                             (beta[..., None] * v[bi, idx]).sum(0)))
        for i in range(L):
            for h in range(H):
                win = [j for j in range(L) if mask[bi, j] and
                       ((0 <= i - j < W) if attn.causal else abs(i - j) < W)]
                vis = [(m, kt[h], vt[h]) for m, kt, vt in toks
                       if not attn.causal or (m + 1) * b - 1 <= i]
                keys = [k[bi, j, h] for j in win] + [kt for _, kt, _ in vis]
                vals = [v[bi, j, h] for j in win] + [vt for _, _, vt in vis]
                if attn.top_k and vis:
                    score = {}
                    for m, kt, _ in vis:
                        score.setdefault(m, []).append(q[bi, i, h] @ kt / D ** 0.5)
                    score = {m: torch.logsumexp(torch.stack(z), 0) for m, z in score.items()}
                    chosen = sorted(score, key=lambda m: -score[m])[:attn.top_k]
                    for m in chosen:
                        for j in range(m * b, min(L, (m + 1) * b)):
                            if mask[bi, j] and j not in win:
                                keys.append(k[bi, j, h])
                                vals.append(v[bi, j, h])
                if not keys:
                    continue
                a = torch.softmax(torch.stack(keys) @ q[bi, i, h] / D ** 0.5, 0)
                out[bi, i, h] = a @ torch.stack(vals)
    return attn.out(out.reshape(B, L, C)) * mask[..., None]


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("top_k,block_tokens", [(0, 1), (2, 2), (1, 3)])
def test_blocks_mode_matches_position_by_position_reference(causal, top_k, block_tokens):
    torch.manual_seed(0)
    attn = BRLAttention(16, heads=2, window=5, causal=causal, mode="blocks", block_size=4,
                        block_tokens=block_tokens, top_k=top_k).eval()
    x = torch.randn(2, 27, 16)
    mask = torch.ones(2, 27, dtype=torch.bool)
    mask[1, 20:] = False
    mask[1, :2] = False
    with torch.no_grad():
        torch.testing.assert_close(attn(x, mask), blocks_reference(attn, x, mask),
                                   atol=1e-5, rtol=1e-5)


def test_blocks_mode_chunks_queries_without_changing_the_result(monkeypatch):
    import brl_graph.nn.blocks as mod
    torch.manual_seed(0)
    attn = BRLAttention(16, heads=2, window=4, causal=True, mode="blocks", block_size=4,
                        top_k=2).eval()
    x = torch.randn(2, 50, 16)
    whole = attn(x)
    monkeypatch.setattr(mod, "CHUNK_ELEMS", 1)  # one window tile per chunk
    torch.testing.assert_close(attn(x), whole, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("top_k", [0, 2])
@pytest.mark.parametrize("bf16", [False, True])
def test_blocks_causal_no_leak_and_far_information_arrives(top_k, bf16):
    torch.manual_seed(0)
    attn = BRLAttention(16, heads=2, window=4, causal=True, mode="blocks", block_size=4,
                        block_tokens=2, top_k=top_k)
    x = torch.randn(2, 130, 16, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        y = attn(x)
    assert y.dtype == (torch.bfloat16 if bf16 else torch.float32)
    for i in (0, 3, 4, 5, 64, 129):
        x.grad = None
        (y[0, i].float() * PROBE).sum().backward(retain_graph=True)
        assert (x.grad[0, i + 1:] == 0).all(), f"position {i} leaks from later positions"
        assert (x.grad[1] == 0).all(), "batch elements are not isolated"
    # 129 is 125 positions beyond the window from 0: block 0's token connects them.
    assert x.grad[0, 0].abs().sum() > 0


def test_blocks_top_k_reads_the_selected_block_at_full_resolution():
    # With top_k = 1, position 40 also reads one block's positions individually
    # (beyond the block means): the gradient to the far positions changes.
    torch.manual_seed(0)
    x = torch.randn(1, 41, 16, requires_grad=True)
    grads = {}
    for top_k in (0, 1):
        torch.manual_seed(1)
        attn = BRLAttention(16, heads=2, window=4, causal=True, mode="blocks", block_size=4,
                            top_k=top_k)
        x.grad = None
        (attn(x)[0, 40] * PROBE).sum().backward()
        grads[top_k] = x.grad[0, :36].clone()
    assert not torch.allclose(grads[0], grads[1])


@pytest.mark.parametrize("causal", [False, True])
def test_blocks_padding_does_not_influence_real_positions(causal):
    torch.manual_seed(0)
    attn = BRLAttention(16, heads=2, window=8, causal=causal, mode="blocks", block_size=8,
                        block_tokens=2, top_k=2).eval()
    y = padded_outputs_match(attn)
    assert (y[1, 35:] == 0).all()


def test_blocks_huge_logits_all_padding_and_bf16_are_finite():
    for causal in (False, True):
        attn = BRLAttention(16, heads=2, window=8, causal=causal, mode="blocks", block_size=8,
                            top_k=2)
        x = torch.randn(2, 40, 16) * 1e4
        mask = torch.zeros(2, 40, dtype=torch.bool)
        mask[0, 5:] = True  # left padding
        assert torch.isfinite(attn(x, mask)).all()
        assert torch.isfinite(attn(x, torch.zeros(2, 40, dtype=torch.bool))).all()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = attn(x)
            y.float().sum().backward()
        assert torch.isfinite(y.float()).all()
        assert all(torch.isfinite(p.grad).all() for p in attn.parameters() if p.grad is not None)


def test_blocks_bad_arguments():
    with pytest.raises(ValueError, match="unknown mode"):
        BRLAttention(16, heads=2, mode="landmark")
    with pytest.raises(ValueError, match=r"window \(8\) >= block_size \(16\)"):
        BRLAttention(16, heads=2, window=8, mode="blocks", block_size=16)
    with pytest.raises(ValueError, match="top_k >= 0"):
        BRLAttention(16, heads=2, window=8, mode="blocks", block_size=8, top_k=-1)
    with pytest.raises(ValueError, match="block_tokens >= 1"):
        BRLAttention(16, heads=2, window=8, mode="blocks", block_size=8, block_tokens=0)
    attn = BRLAttention(16, heads=2, window=8, mode="blocks", block_size=8, top_k=2)
    assert "mode=blocks" in repr(attn) and "top_k=2" in repr(attn)
    assert attn.seeds is None and not hasattr(attn, "reservoir")  # no reservoir in blocks mode


@pytest.mark.parametrize("num_tokens", [0, 3])
def test_reservoir_and_window_causal_no_leak_under_bf16_autocast(num_tokens):
    torch.manual_seed(0)
    attn = BRLAttention(16, heads=2, window=4, num_tokens=num_tokens, causal=True)
    x = torch.randn(2, 70, 16, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = attn(x)
    for i in (0, 5, 69):
        x.grad = None
        (y[0, i].float() * PROBE).sum().backward(retain_graph=True)
        assert (x.grad[0, i + 1:] == 0).all() and (x.grad[1] == 0).all()


@pytest.mark.parametrize("causal", [False, True])
def test_reservoir_tokens_pool_with_one_softmax_per_head(causal):
    # the tokens are the TokenReservoir's: seeds pool the sequence with `heads`
    # heads each, then mix; causal position i pools positions <= i
    torch.manual_seed(0)
    attn = BRLAttention(16, heads=2, window=4, num_tokens=3, causal=causal).eval()
    res = attn.reservoir
    x = torch.randn(1, 9, 16)
    q = res.query(res.norm(attn.seeds)).view(3, 2, 8)

    def pooled(n):
        k, v = (t.view(n, 2, 8) for t in res.key_value(x[0, :n]).chunk(2, -1))
        w = torch.softmax(torch.einsum("khd,lhd->hkl", q, k) / 8 ** 0.5, -1)
        return res.mixer(attn.seeds + res.out(torch.einsum("hkl,lhd->khd", w, v).reshape(3, 16)))

    T = attn._tokens(x, torch.ones(1, 9, dtype=torch.bool))
    with torch.no_grad():
        if causal:
            for i in (0, 4, 8):
                torch.testing.assert_close(T[0, i], pooled(i + 1), atol=1e-5, rtol=1e-5)
        else:
            torch.testing.assert_close(T[0], pooled(9), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("mode", ["reservoir", "blocks"])
def test_dropout_is_output_dropout_and_attn_dropout_drops_weights(mode):
    # as in BRLConv: dropout zeroes output entries (the rest scaled by 1/(1-p));
    # attn_dropout drops attention weights, which leaves no entry exactly zero
    kw = {"mode": mode, "block_size": 4} if mode == "blocks" else {"num_tokens": 3}
    x = torch.randn(2, 20, 16)
    torch.manual_seed(0)
    out_drop = BRLAttention(16, heads=2, window=4, causal=True, dropout=0.5, attn_dropout=0.0, **kw)
    out_drop.eval()
    clean = out_drop(x)
    out_drop.train()
    y = out_drop(x)
    zero = y == 0
    assert 0.3 < zero.float().mean() < 0.7
    if mode == "blocks":  # (the reservoir's residual branches drop too, as in BRLConv)
        torch.testing.assert_close(y[~zero], 2 * clean[~zero], atol=1e-5, rtol=1e-5)
    torch.manual_seed(0)
    attn_drop = BRLAttention(16, heads=2, window=4, causal=True, attn_dropout=0.5, **kw).train()
    y = attn_drop(x)
    assert (y != 0).all() and not torch.allclose(y, attn_drop.eval()(x))


def test_dropout_without_attn_dropout_warns_once_of_the_new_meaning(monkeypatch):
    import warnings

    import brl_graph.nn.brl_attention as mod
    monkeypatch.setattr(mod, "_DROPOUT_WARNED", False)
    with pytest.warns(FutureWarning, match="attn_dropout"):
        attn = BRLAttention(16, heads=2, dropout=0.1)
    assert attn.dropout == 0.1 and attn.attn_dropout == 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        BRLAttention(16, heads=2, dropout=0.1)  # once per process
        monkeypatch.setattr(mod, "_DROPOUT_WARNED", False)
        BRLAttention(16, heads=2, dropout=0.1, attn_dropout=0.1)  # explicit: no warning
        BRLAttention(16, heads=2)
