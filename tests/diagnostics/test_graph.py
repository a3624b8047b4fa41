import math

import networkx as nx
import pytest
import torch

from brl_graph.diagnostics import hop_distances
from brl_graph.diagnostics._graph import check_graph, undirected_edges


def test_hop_distances_match_networkx():
    g = nx.connected_watts_strogatz_graph(30, 4, 0.3, seed=0)
    ei = torch.tensor(list(g.edges()), dtype=torch.long).t()  # one direction is enough
    d = hop_distances(ei, 30)
    ref = dict(nx.all_pairs_shortest_path_length(g))
    assert all(d[u, v].item() == ref[u][v] for u in range(30) for v in range(30))
    sub = hop_distances(ei, 30, torch.tensor([4, 0]))
    assert torch.equal(sub, d[[4, 0]])


def test_unreachable_is_inf():
    ei = torch.tensor([[0, 2], [1, 3]])
    d = hop_distances(ei, 5)
    assert d[0, 1].item() == 1 and math.isinf(d[0, 2].item()) and math.isinf(d[4, 0].item())
    assert d[4, 4].item() == 0


def test_undirected_merge_rules():
    ei = torch.tensor([[0, 1, 1, 2, 2], [1, 0, 2, 1, 2]])  # both directions, one one-way, a loop
    w = torch.tensor([1.0, 3.0, 2.0, 2.0, 5.0])
    u, v, weight = undirected_edges(ei, 3, w)
    assert u.tolist() == [0, 1] and v.tolist() == [1, 2]
    assert weight.tolist() == [2.0, 2.0]  # mean of (0,1) and (1,0); self-loop dropped


def test_check_graph_names_problems():
    with pytest.raises(ValueError, match="integer"):
        check_graph(torch.zeros(2, 3), 4)
    with pytest.raises(ValueError, match="outside"):
        check_graph(torch.tensor([[0], [-1]]), 4)
    with pytest.raises(TypeError, match="num_nodes"):
        check_graph(torch.tensor([[0], [1]]), 4.0)
    with pytest.raises(ValueError, match="edge_weight"):
        check_graph(torch.tensor([[0], [1]]), 4, torch.tensor([0.0]))
    with pytest.raises(ValueError, match="sources"):
        hop_distances(torch.tensor([[0], [1]]), 2, torch.tensor([2]))
