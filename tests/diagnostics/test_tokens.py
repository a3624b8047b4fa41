"""Tests for brl_graph.diagnostics.tokens: the token reservoirs' pooling weights."""
import math

import pytest
import torch
from torch_geometric.data import Batch, Data
from torch_geometric.nn import GINConv

from brl_graph.diagnostics import TokenFocus, token_attention, token_focus
from brl_graph.nn import BRLConv, BRLGraphModel, TokenReservoir


class OneLayer(torch.nn.Module):
    """A BRLConv behind the ``model(data)`` call that token_attention makes."""
    def __init__(self, channels: int, num_tokens: int, causal: bool = False):
        super().__init__()
        mlp = torch.nn.Sequential(torch.nn.Linear(channels, channels), torch.nn.ReLU())
        self.conv = BRLConv(channels, GINConv(mlp), num_tokens=num_tokens, heads=2,
                            causal=causal)

    def forward(self, data):
        return self.conv(data.x, data.edge_index)[0]


def path_graph(n: int, channels: int, seed: int = 0) -> Data:
    gen = torch.Generator().manual_seed(seed)
    src = torch.arange(n - 1)
    edge_index = torch.cat([torch.stack([src, src + 1]), torch.stack([src + 1, src])], dim=1)
    return Data(x=torch.randn(n, channels, generator=gen), edge_index=edge_index)


def test_weights_match_the_closed_form_softmax():
    torch.manual_seed(0)
    C, K, n = 8, 3, 6
    model, data = OneLayer(C, K), path_graph(n, C)
    (w,) = token_attention(model, data)
    assert w.shape == (K, n)
    res = model.conv.reservoir
    with torch.no_grad():
        q = res.query(res.norm(res.seeds))  # [K, C]
        k = res.key_value(data.x)[:, :C]  # [n, C]
        expected = torch.softmax(q @ k.t() / math.sqrt(C), dim=-1)
    torch.testing.assert_close(w, expected, rtol=1e-5, atol=1e-6)


def test_one_distribution_per_layer_and_token_equivariant_under_permutation():
    torch.manual_seed(1)
    C, K, n, layers = 16, 4, 9, 3
    model = BRLGraphModel(2, channels=C, num_layers=layers, num_tokens=K, in_channels=C)
    data = path_graph(n, C, seed=1)
    weights = token_attention(model, data)
    assert len(weights) == layers
    for w in weights:
        assert w.shape == (K, n) and bool((w >= 0).all())
        torch.testing.assert_close(w.sum(-1), torch.ones(K))
    # node i of the permuted graph is node perm[i] of the original
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(2))
    inverse = torch.empty_like(perm)
    inverse[perm] = torch.arange(n)
    permuted = Data(x=data.x[perm], edge_index=inverse[data.edge_index])
    for w, w_p in zip(weights, token_attention(model, permuted)):
        torch.testing.assert_close(w_p, w[:, perm], rtol=1e-5, atol=1e-6)


def test_leaves_the_model_as_it_found_it():
    model = BRLGraphModel(2, channels=8, num_layers=2, num_tokens=2, in_channels=8)
    model.train()
    token_attention(model, path_graph(5, 8))
    assert model.training
    for r in model.modules():
        if isinstance(r, TokenReservoir):
            assert r.keep_weights is False and r.last_weights is None
    # off, a forward keeps nothing
    model(path_graph(5, 8))
    assert all(r.last_weights is None for r in model.modules() if isinstance(r, TokenReservoir))


def test_refuses_what_it_cannot_read():
    twin = BRLGraphModel(2, channels=8, num_layers=2, num_tokens=0, in_channels=8)
    with pytest.raises(ValueError, match="no token reservoir"):
        token_attention(twin, path_graph(5, 8))
    with pytest.raises(ValueError, match="causal"):
        token_attention(OneLayer(8, 2, causal=True), path_graph(5, 8))
    model = BRLGraphModel(2, channels=8, num_layers=1, num_tokens=2, in_channels=8)
    batch = Batch.from_data_list([path_graph(5, 8), path_graph(4, 8)])
    with pytest.raises(ValueError, match="one graph at a time"):
        token_attention(model, batch)


def test_focus_tells_a_fixed_slot_from_a_content_lookup():
    uniform = torch.full((4,), 0.25)
    one_hot = torch.eye(4)
    # token 0 takes node 2 in both graphs; token 1 is uniform in one, node 0 in the other
    graph_a = [torch.stack([one_hot[2], uniform])]
    graph_b = [torch.stack([one_hot[2], one_hot[0]])]
    slot, lookup = token_focus([graph_a, graph_b])
    assert slot == TokenFocus(layer=0, token=0, top_node=2, top_mass=1.0, entropy=0.0,
                              variation=0.0)
    assert (lookup.layer, lookup.token, lookup.top_node) == (0, 1, 0)
    assert lookup.top_mass == pytest.approx(0.625)
    assert lookup.entropy == pytest.approx(math.log(4) / 2)
    # each graph is 0.375 in total variation from the mean [0.625, 0.125, 0.125, 0.125]
    assert lookup.variation == pytest.approx(0.375)


def test_focus_flattens_pooling_heads_and_checks_alignment():
    w = torch.softmax(torch.randn(2, 3, 5), dim=-1)  # [P, K, n]
    rows = token_focus([[w], [w]])
    assert [r.token for r in rows] == list(range(6))
    assert all(r.variation == pytest.approx(0.0, abs=1e-7) for r in rows)
    with pytest.raises(ValueError, match="same reservoirs and node count"):
        token_focus([[torch.rand(3, 5)], [torch.rand(3, 6)]])
    with pytest.raises(ValueError, match="at least one graph"):
        token_focus([])
