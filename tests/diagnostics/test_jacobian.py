import math

import networkx as nx
import pytest
import torch
from torch.nn import Linear, ReLU, Sequential
from torch_geometric.data import Batch, Data
from torch_geometric.nn import GCNConv, GINConv

from brl_graph.diagnostics import (hop_distances, jacobian_mass_beyond, jacobian_sensitivity,
                                   jacobian_sensitivity_estimate, pyg_total_influence,
                                   sensitivity_by_distance)
from brl_graph.nn.model import BRLGraphModel


def path(n: int) -> torch.Tensor:
    ei = torch.stack([torch.arange(n - 1), torch.arange(1, n)])
    return torch.cat([ei, ei.flip(0)], dim=1)


def random_graph(n: int, seed: int) -> torch.Tensor:
    g = nx.connected_watts_strogatz_graph(n, 4, 0.3, seed=seed)
    ei = torch.tensor(list(g.edges()), dtype=torch.long).t()
    return torch.cat([ei, ei.flip(0)], dim=1)


class TwoLayer(torch.nn.Module):
    """A 2-layer MPNN: receptive field of exactly 2 hops."""

    def __init__(self, kind: str, c_in: int, hidden: int, c_out: int) -> None:
        super().__init__()
        if kind == "gcn":
            self.c1, self.c2 = GCNConv(c_in, hidden), GCNConv(hidden, c_out)
        else:
            self.c1 = GINConv(Sequential(Linear(c_in, hidden), ReLU(), Linear(hidden, hidden)))
            self.c2 = GINConv(Sequential(Linear(hidden, c_out), ReLU(), Linear(c_out, c_out)))

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        return self.c2(self.c1(x, edge_index).tanh(), edge_index)


def full_block_norms(f, x, norm):
    jac = torch.autograd.functional.jacobian(f, x)  # [N, C_out, N, C_in]
    return jac.pow(2).sum((1, 3)).sqrt() if norm == "fro" else jac.abs().sum((1, 3))


@pytest.mark.parametrize("norm", ["fro", "l1"])
@pytest.mark.parametrize("kind", ["gcn", "gin"])
def test_equals_full_autograd_jacobian(kind, norm):
    torch.manual_seed(0)
    n = 14
    ei = random_graph(n, seed=2)
    model = TwoLayer(kind, 3, 6, 5).double()
    x = torch.randn(n, 3, dtype=torch.float64)
    f = lambda z: model(z, ei)  # noqa: E731
    ref = full_block_norms(f, x, norm)
    assert torch.allclose(jacobian_sensitivity(f, x, norm=norm), ref, rtol=1e-10, atol=1e-12)
    targets = torch.tensor([3, 0, 11])
    assert torch.allclose(jacobian_sensitivity(f, x, targets, norm=norm), ref[targets],
                          rtol=1e-10, atol=1e-12)
    # A tiny batching bound forces one output vector per backward pass.
    assert torch.allclose(jacobian_sensitivity(f, x, targets, norm=norm, max_elements=1),
                          ref[targets], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("kind", ["gcn", "gin"])
def test_exactly_zero_beyond_receptive_field(kind):
    torch.manual_seed(1)
    n = 30
    ei = random_graph(n, seed=4)
    model = TwoLayer(kind, 4, 8, 8)
    x = torch.randn(n, 4)
    f = lambda z: model(z, ei)  # noqa: E731
    s = jacobian_sensitivity(f, x)
    dist = hop_distances(ei, n)
    assert (dist > 2).any() and bool((s[dist > 2] == 0).all())
    assert bool((s[dist <= 2] > 0).all())
    assert jacobian_mass_beyond(s, ei, hops=2) == 0.0
    assert jacobian_mass_beyond(s, ei, hops=1) > 0.0
    by_hop = sensitivity_by_distance(s, ei)
    assert all(by_hop[h] == 0.0 for h in by_hop if h > 2)
    assert all(by_hop[h] > 0.0 for h in (0, 1, 2))
    est = jacobian_sensitivity_estimate(f, x, num_probes=4, generator=torch.Generator().manual_seed(0))
    assert bool((est[dist > 2] == 0).all())


def brl_models(num_layers: int = 2):
    torch.manual_seed(3)
    kw = dict(channels=16, num_layers=num_layers, heads=2, in_channels=5, node_encoder="linear")
    return (BRLGraphModel(3, num_tokens=4, **kw).eval(),
            BRLGraphModel(3, num_tokens=0, **kw).eval())


def test_tokens_give_nonzero_far_sensitivity():
    brl, twin = brl_models(num_layers=2)
    n = 16
    data = Data(x=torch.randn(n, 5), edge_index=path(n))
    far = hop_distances(data.edge_index, n, torch.tensor([0]))[0] > 2
    for model, expect_far in ((brl, True), (twin, False)):
        x = model.encode(data).detach()
        s = jacobian_sensitivity(lambda z: model.node_states(data, x_encoded=z), x,
                                 torch.tensor([0]))
        assert bool((s[0, far] > 0).all()) == expect_far
        if not expect_far:
            assert bool((s[0, far] == 0).all())
            assert jacobian_mass_beyond(s, data.edge_index, torch.tensor([0]), hops=2) == 0.0
        else:
            assert jacobian_mass_beyond(s, data.edge_index, torch.tensor([0]), hops=2) > 0.0


def test_batch_shares_backward_passes_and_matches_per_graph():
    brl, _ = brl_models(num_layers=2)
    graphs = [Data(x=torch.randn(n, 5), edge_index=random_graph(n, seed=n)) for n in (9, 13, 11)]
    batch = Batch.from_data_list(graphs)
    x = brl.encode(batch).detach()
    f = lambda z: brl.node_states(batch, x_encoded=z)  # noqa: E731
    targets = torch.tensor([0, 4, 9, 10, 25])  # two in graph 0, two in graph 1, one in graph 2
    s = jacobian_sensitivity(f, x, targets, batch=batch.batch)
    ref = jacobian_sensitivity(f, x, targets)  # one target per backward-pass set
    assert torch.allclose(s, ref, rtol=1e-5, atol=1e-7)
    other = batch.batch[targets].unsqueeze(1) != batch.batch.unsqueeze(0)
    assert bool((s[other] == 0).all()) and bool((s[~other] > 0).all())
    # Per graph, on its own, gives the same rows.
    g1 = graphs[1]
    x1 = brl.encode(g1).detach()
    s1 = jacobian_sensitivity(lambda z: brl.node_states(g1, x_encoded=z), x1, torch.tensor([0, 1]))
    assert torch.allclose(s[2:4, 9:22], s1, rtol=1e-4, atol=1e-6)


def test_estimate_is_close_with_many_probes():
    torch.manual_seed(5)
    n = 12
    ei = random_graph(n, seed=6)
    model = TwoLayer("gin", 3, 8, 8).double()
    x = torch.randn(n, 3, dtype=torch.float64)
    f = lambda z: model(z, ei)  # noqa: E731
    exact = jacobian_sensitivity(f, x)
    est = jacobian_sensitivity_estimate(f, x, num_probes=400,
                                        generator=torch.Generator().manual_seed(0))
    nz = exact > 0
    assert bool((est[~nz] == 0).all())
    ratio = est[nz] / exact[nz]
    assert abs(ratio.mean().item() - 1.0) < 0.05 and ratio.min().item() > 0.6


def test_matches_pyg_total_influence():
    torch.manual_seed(7)
    n = 18
    ei = random_graph(n, seed=8)
    model = TwoLayer("gcn", 4, 6, 5)
    x = torch.randn(n, 4)
    ours = sensitivity_by_distance(jacobian_sensitivity(lambda z: model(z, ei), x, norm="l1"),
                                   ei, reduce="total")
    # GCN normalises by degrees, and hop-2 nodes need their hop-3 edges for theirs:
    # three hops hold everything a 2-layer GCN reads, so PyG's subgraphs are exact.
    pyg, breadth = pyg_total_influence(lambda z, e: model(z, e), x, ei, max_hops=3)
    assert pyg.shape == (4,) and math.isfinite(breadth)
    assert [ours[h] for h in range(4)] == pytest.approx(pyg.tolist(), rel=1e-4)
    assert all(ours[h] == 0.0 for h in ours if h > 2)
    # With two hops the truncated degrees change the numbers: why the hop radius matters.
    short, _ = pyg_total_influence(lambda z, e: model(z, e), x, ei, max_hops=2)
    assert short.tolist() != pytest.approx(pyg[:3].tolist(), rel=1e-4)


def test_sensitivity_by_distance_on_known_matrix():
    n = 6
    ei = path(n)
    dist = hop_distances(ei, n)
    s = 1.0 / (1.0 + dist)
    assert sensitivity_by_distance(s, ei) == pytest.approx({h: 1 / (1 + h) for h in range(n)})
    total = sensitivity_by_distance(s, ei, reduce="total")
    # Hop 1 on a path: 2 neighbours except at both ends.
    assert total[1] == pytest.approx((2 * 1 + 4 * 2) * 0.5 / n)
    assert jacobian_mass_beyond(s, ei, hops=n) == 0.0
    # Different components: left out of the hop table, counted as beyond.
    two = torch.cat([path(2), path(2) + 2], dim=1)
    ones = torch.ones(4, 4)
    assert sensitivity_by_distance(ones, two) == pytest.approx({0: 1.0, 1: 1.0})
    assert jacobian_mass_beyond(ones, two, hops=5) == pytest.approx(0.5)


def test_unused_input_gives_zeros_and_bad_inputs_are_named():
    x = torch.randn(5, 3)
    assert bool((jacobian_sensitivity(lambda z: torch.ones(5, 2), x) == 0).all())
    with pytest.raises(ValueError, match="node states"):
        jacobian_sensitivity(lambda z: z.sum(0, keepdim=True), x)
    with pytest.raises(ValueError, match="norm"):
        jacobian_sensitivity(lambda z: z, x, norm="spectral")
    with pytest.raises(ValueError, match="targets"):
        jacobian_sensitivity(lambda z: z, x, torch.tensor([7]))
    with pytest.raises(ValueError, match="batch"):
        jacobian_sensitivity(lambda z: z, x, batch=torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="rows"):
        sensitivity_by_distance(torch.ones(2, 5), path(5))
    with pytest.raises(ValueError, match="float32"):
        pyg_total_influence(lambda z, e: z, x.double(), path(5), max_hops=1)
