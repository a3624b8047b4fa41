import pytest
import torch

from brl_graph.nn.token_mixer import TokenMixer

C, H, K = 16, 4, 5


def mixer(**kw):
    torch.manual_seed(0)
    return TokenMixer(C, heads=H, **kw).eval()


@pytest.mark.parametrize("shape", [(K, C), (3, K, C), (2, 3, K, C)])
def test_shape_is_kept(shape):
    T = torch.randn(*shape)
    assert mixer()(T).shape == T.shape


def test_leading_indices_are_independent_reservoirs():
    m = mixer()
    T = torch.randn(2, 3, K, C)
    out = m(T)
    for i in range(2):
        for j in range(3):
            torch.testing.assert_close(out[i, j], m(T[i, j]), atol=1e-6, rtol=1e-5)
    # Changing one reservoir leaves every other one's output exactly as it was.
    changed = T.clone()
    changed[1, 2] += 1.0
    again = m(changed)
    assert torch.equal(again[0], out[0]) and torch.equal(again[1, :2], out[1, :2])
    assert not torch.allclose(again[1, 2], out[1, 2])


def test_permutation_equivariant_over_tokens():
    m = mixer()
    T = torch.randn(3, K, C)
    perm = torch.tensor([3, 0, 4, 1, 2])
    torch.testing.assert_close(m(T[:, perm]), m(T)[:, perm], atol=1e-6, rtol=1e-5)


def test_mixes_tokens():
    # Attention among tokens: one token's output depends on the others.
    m = mixer()
    T = torch.randn(K, C)
    other = T.clone()
    other[1:] = torch.randn(K - 1, C)
    assert not torch.allclose(m(T)[0], m(other)[0])


def test_reset_parameters_reinitialises_every_parameter():
    m = mixer()
    with torch.no_grad():
        for p in m.parameters():
            p.fill_(7.0)
    m.reset_parameters()
    for name, p in m.named_parameters():
        assert not torch.all(p == 7.0), name
    assert torch.isfinite(m(torch.randn(2, K, C))).all()


def test_dropout_only_in_training():
    m = mixer(dropout=0.5, attn_dropout=0.5)
    T = torch.randn(2, K, C)
    assert torch.equal(m(T), m(T))  # eval: deterministic
    m.train()
    torch.manual_seed(1)
    a = m(T)
    torch.manual_seed(2)
    assert not torch.equal(a, m(T))


def test_gradients_reach_every_parameter():
    m = mixer().train()
    m(torch.randn(2, K, C)).pow(2).sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in m.parameters())


def test_heads_must_divide_channels_and_repr():
    with pytest.raises(ValueError, match="heads \\(3\\) must divide channels \\(16\\)"):
        TokenMixer(16, heads=3)
    assert repr(TokenMixer(16, heads=4)) == "TokenMixer(16, heads=4)"
