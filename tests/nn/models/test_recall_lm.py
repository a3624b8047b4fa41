"""Tests for :mod:`brl_graph.nn.models.recall_lm`: every attention kind is causal, finite and
trainable, and the window-only kind sees no further than its receptive field."""
import pytest
import torch

from brl_graph.nn.models import (ATTENTION_KINDS, BOS, FullCausalAttention, LinearCausalAttention,
                                 RecallLM, make_attention)

VOCAB = 12


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def tokens(batch: int, length: int, seed: int) -> torch.Tensor:
    return torch.randint(VOCAB, (batch, length), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("kind", ATTENTION_KINDS)
def test_every_kind_steps_finitely_and_is_causal(kind):
    torch.manual_seed(0)
    model = RecallLM(kind, VOCAB, dim=16, layers=2, heads=4, window=8, num_tokens=4,
                     block_size=8, top_k=2)
    x = tokens(3, 96, seed=1)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    logits = model(x)
    assert logits.shape == (3, 96, VOCAB)
    loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), x.roll(-1, 1).flatten())
    loss.backward()
    assert torch.isfinite(loss)
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    opt.step()
    # Causality of the whole model (token shift included): changing the last
    # token leaves every earlier position's logits unchanged.
    model.eval()
    with torch.no_grad():
        changed = x.clone()
        changed[:, -1] = (changed[:, -1] + 1) % VOCAB
        a, b = model(x), model(changed)
    assert torch.allclose(a[:, :-1], b[:, :-1], atol=1e-5)
    assert not torch.allclose(a[:, -1], b[:, -1])


def test_window_kind_cannot_see_beyond_its_receptive_field():
    # Two layers of window 8 plus the previous-token shift reach 15 positions
    # back: a change at position 2 must not move the logits 80 positions later.
    torch.manual_seed(0)
    model = RecallLM("window", VOCAB, dim=16, layers=2, heads=4, window=8).eval()
    x = tokens(2, 96, seed=2)
    changed = x.clone()
    changed[:, 2] = (changed[:, 2] + 1) % VOCAB
    with torch.no_grad():
        assert torch.equal(model(x)[:, -2:], model(changed)[:, -2:])


def test_first_position_sees_bos_as_its_previous_token():
    torch.manual_seed(0)
    model = RecallLM("full", VOCAB, dim=8, layers=1, heads=2).eval()
    x = tokens(1, 5, seed=3)
    with torch.no_grad():
        shifted = model.embed(x) + model.embed_prev(torch.cat([torch.full((1, 1), BOS), x[:, :-1]], 1))
        direct = model.embed(x[:, :1]) + model.embed_prev(torch.tensor([[BOS]]))
    assert torch.equal(shifted[:, :1], direct)


@pytest.mark.parametrize("cls", [FullCausalAttention, LinearCausalAttention])
def test_baselines_have_zero_gradient_to_later_positions(cls):
    torch.manual_seed(0)
    attn = cls(16, heads=4)
    x = torch.randn(2, 20, 16, requires_grad=True)
    attn(x)[:, 7].sum().backward()
    assert x.grad[:, 8:].abs().max() == 0 and x.grad[:, :8].abs().max() > 0


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="unknown attention kind"):
        make_attention("mamba", 16, 4, 8, 2)
    for cls in (FullCausalAttention, LinearCausalAttention):
        with pytest.raises(ValueError, match="divide dim"):
            cls(10, heads=4)
    with pytest.raises(ValueError, match="batch, length"):
        RecallLM("full", VOCAB, dim=8, layers=1, heads=2)(torch.zeros(4, dtype=torch.long))


@pytest.mark.parametrize("kind", ATTENTION_KINDS)
def test_reset_parameters_redraws_every_weight_and_repr_names_the_model(kind):
    torch.manual_seed(0)
    model = RecallLM(kind, vocab_size=11, dim=16, layers=2, heads=2, window=4, num_tokens=2,
                     block_size=4)
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(0.5)
    model.reset_parameters()
    # Every tensor is redrawn or reset to its initial constant (ones, zeros): none keeps 0.5.
    kept = [name for name, p in model.named_parameters() if bool((p == 0.5).all())]
    assert kept == []
    assert repr(model).startswith(f"RecallLM('{kind}', vocab_size=11, dim=16, layers=2)")
