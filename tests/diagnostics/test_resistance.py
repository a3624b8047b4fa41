import math
import time

import networkx as nx
import numpy as np
import pytest
import torch
from torch_geometric.data import Data

from brl_graph.diagnostics import (add_global_tokens, commute_time, component_total_resistance,
                                   effective_resistance, resistance_by_hop, resistance_summary,
                                   total_effective_resistance)


def path(n: int) -> torch.Tensor:
    ei = torch.stack([torch.arange(n - 1), torch.arange(1, n)])
    return torch.cat([ei, ei.flip(0)], dim=1)


def cycle(n: int) -> torch.Tensor:
    ei = torch.stack([torch.arange(n), (torch.arange(n) + 1) % n])
    return torch.cat([ei, ei.flip(0)], dim=1)


def complete(n: int) -> torch.Tensor:
    a, b = torch.triu_indices(n, n, offset=1)
    return torch.stack([a, b])


def from_nx(g: nx.Graph) -> torch.Tensor:
    return torch.tensor(list(g.edges()), dtype=torch.long).t().contiguous()


# Every exact code path: dense pseudo-inverse, and sparse grounded solves.
EXACT = [dict(method="exact"), dict(method="exact", dense_threshold=1)]


@pytest.mark.parametrize("kw", EXACT)
def test_path_closed_forms(kw):
    n = 30
    ei = path(n)
    r = effective_resistance(ei, n, torch.tensor([[0, 3], [n - 1, 10]]), **kw)
    assert r.dtype == torch.float64
    assert r.tolist() == pytest.approx([n - 1, 7], abs=1e-9)
    assert total_effective_resistance(ei, n, **kw) == pytest.approx((n ** 3 - n) / 6, rel=1e-9)


@pytest.mark.parametrize("kw", EXACT)
def test_cycle_closed_form(kw):
    n = 17
    k = torch.arange(n)
    r = effective_resistance(cycle(n), n, torch.stack([torch.zeros(n, dtype=torch.long), k]), **kw)
    expected = (k * (n - k)).double() / n
    assert torch.allclose(r, expected, atol=1e-9)


@pytest.mark.parametrize("kw", EXACT)
def test_complete_graph_closed_form(kw):
    n = 12
    ei = complete(n)  # one direction only: still read as undirected
    assert total_effective_resistance(ei, n, **kw) == pytest.approx(n - 1, rel=1e-9)
    full = effective_resistance(ei, n)
    off = ~torch.eye(n, dtype=torch.bool)
    assert torch.allclose(full[off], torch.full((n * (n - 1),), 2.0 / n, dtype=torch.float64))
    assert bool((full.diagonal() == 0).all())


def test_full_matrix_matches_networkx():
    g = nx.connected_watts_strogatz_graph(40, 4, 0.3, seed=1)
    ei = from_nx(g)
    r = effective_resistance(ei, 40)
    ref = nx.resistance_distance(g)  # all pairs at once
    for u in range(40):
        for v in range(40):
            assert r[u, v].item() == pytest.approx(ref[u][v], abs=1e-6)


@pytest.mark.parametrize("kw", EXACT)
def test_weighted_pairs_match_networkx(kw):
    rng = np.random.default_rng(0)
    g = nx.connected_watts_strogatz_graph(60, 4, 0.2, seed=3)
    for a, b in g.edges():
        g[a][b]["weight"] = float(rng.uniform(0.2, 3.0))
    ei = from_nx(g)
    w = torch.tensor([g[a][b]["weight"] for a, b in g.edges()], dtype=torch.float64)
    pairs = torch.from_numpy(rng.integers(0, 60, size=(2, 40)))
    pairs = pairs[:, pairs[0] != pairs[1]]
    r = effective_resistance(ei, 60, pairs, edge_weight=w, **kw)
    ref = [nx.resistance_distance(g, int(a), int(b), weight="weight", invert_weight=False)
           for a, b in pairs.t()]
    assert r.tolist() == pytest.approx(ref, abs=1e-6)


def test_both_directions_equal_one_direction():
    g = nx.connected_watts_strogatz_graph(25, 4, 0.3, seed=5)
    one = from_nx(g)
    both = torch.cat([one, one.flip(0), one], dim=1)  # duplicates merge too
    assert torch.allclose(effective_resistance(one, 25), effective_resistance(both, 25))


def test_approx_on_small_grid():
    side = 30
    ei = from_nx(nx.convert_node_labels_to_integers(nx.grid_2d_graph(side, side)))
    n = side * side
    rng = np.random.default_rng(1)
    pairs = torch.from_numpy(rng.integers(0, n, size=(2, 100)))
    pairs = pairs[:, pairs[0] != pairs[1]]
    exact = effective_resistance(ei, n, pairs, method="exact")
    approx = effective_resistance(ei, n, pairs, method="approx", seed=0)
    rel = ((approx - exact).abs() / exact)
    assert rel.median().item() <= 0.10
    # The full-matrix sketch agrees with the pair sketch for the same seed.
    full = effective_resistance(ei, n, method="approx", seed=0)
    assert torch.allclose(full[pairs[0], pairs[1]], approx, rtol=1e-6)


def test_approx_200x200_grid_median_error_and_time():
    side = 200
    ei = from_nx(nx.convert_node_labels_to_integers(nx.grid_2d_graph(side, side)))
    n = side * side
    rng = np.random.default_rng(2)
    pairs = torch.from_numpy(rng.integers(0, n, size=(2, 100)))
    pairs = pairs[:, pairs[0] != pairs[1]]
    start = time.perf_counter()
    approx = effective_resistance(ei, n, pairs, method="approx", seed=0)
    elapsed = time.perf_counter() - start
    exact = effective_resistance(ei, n, pairs, method="exact")
    rel = ((approx - exact).abs() / exact)
    assert rel.median().item() <= 0.10
    assert elapsed < 60.0, f"approx took {elapsed:.1f} s"


def test_disconnected_graph_is_inf_and_per_component():
    # A 3-node path, a 4-node path and an isolated node.
    ei = torch.cat([path(3), path(4) + 3], dim=1)
    n = 8
    pairs = torch.tensor([[0, 0, 3, 7], [2, 3, 6, 7]])
    for kw in EXACT + [dict(method="approx", seed=0)]:
        r = effective_resistance(ei, n, pairs, **kw)
        assert r[0].item() == pytest.approx(2.0, rel=0.5)  # approx is loose here
        assert math.isinf(r[1].item())
        assert r[3].item() == 0.0
    full = effective_resistance(ei, n)
    assert math.isinf(full[0, 5].item()) and full[3, 6].item() == pytest.approx(3.0)
    assert math.isinf(total_effective_resistance(ei, n))
    assert component_total_resistance(ei, n).tolist() == pytest.approx([4.0, 10.0, 0.0])
    # Restricting the sum to one component gives its finite total.
    assert total_effective_resistance(ei, n, nodes=torch.arange(3, 7)) == pytest.approx(10.0)


def test_tokens_drop_path_resistance_50x():
    n, k = 400, 4
    ei = path(n)
    tei, tn = add_global_tokens(ei, n, k)
    assert tn == n + k and tei.size(1) == ei.size(1) + 2 * k * n
    before = total_effective_resistance(ei, n)
    after = total_effective_resistance(tei, tn)
    after_orig = total_effective_resistance(tei, tn, nodes=torch.arange(n))
    assert before == pytest.approx((n ** 3 - n) / 6, rel=1e-9)
    assert before / after >= 50.0
    assert before / after_orig >= 50.0
    # K parallel two-edge paths bound every pair's resistance by 2 / K.
    ends = effective_resistance(tei, tn, torch.tensor([[0], [n - 1]]))
    assert ends.item() <= 2.0 / k


def test_total_approx_on_grid():
    side = 40
    ei = from_nx(nx.convert_node_labels_to_integers(nx.grid_2d_graph(side, side)))
    n = side * side
    exact = total_effective_resistance(ei, n, method="exact")
    # The per-node sparse solves agree with the dense pseudo-inverse.
    assert total_effective_resistance(ei, n, method="exact", dense_threshold=1) == \
        pytest.approx(exact, rel=1e-8)
    approx = total_effective_resistance(ei, n, method="approx", num_samples=128, seed=0)
    assert approx == pytest.approx(exact, rel=0.1)


def test_commute_time_closed_form():
    n = 9
    ei = path(n)
    c = commute_time(ei, n, torch.tensor([[0, 2], [n - 1, 3]]))
    # Path: 2|E| R with |E| = n - 1.
    assert c.tolist() == pytest.approx([2 * (n - 1) * (n - 1), 2 * (n - 1) * 1])
    # Two components: each uses its own volume; across them it is inf.
    two = torch.cat([path(3), cycle(4) + 3], dim=1)
    c2 = commute_time(two, 7, torch.tensor([[0, 3, 0], [2, 5, 4]]))
    assert c2[0].item() == pytest.approx(2 * 2 * 2.0)
    assert c2[1].item() == pytest.approx(2 * 4 * (2 * 2 / 4))
    assert math.isinf(c2[2].item())


def test_resistance_by_hop():
    n = 15
    assert resistance_by_hop(path(n), n) == pytest.approx({h: float(h) for h in range(1, n)})
    by_hop = resistance_by_hop(cycle(n), n)
    assert by_hop == pytest.approx({h: h * (n - h) / n for h in range(1, n // 2 + 1)})
    sampled = resistance_by_hop(path(n), n, num_pairs=200, seed=0)
    assert all(sampled[h] == pytest.approx(h) for h in sampled) and len(sampled) > 5


def test_resistance_summary():
    graphs = [Data(edge_index=path(10), num_nodes=10),
              Data(edge_index=cycle(8), num_nodes=8),
              Data(edge_index=torch.cat([path(3), path(3) + 3], dim=1), num_nodes=6)]
    s = resistance_summary(graphs, num_tokens=2)
    assert s["num_graphs"] == 3 and s["num_disconnected"] == 1
    assert s["per_graph"]["r_tot"][0] == pytest.approx(165.0)
    assert math.isinf(s["per_graph"]["r_tot"][2])
    assert s["r_tot"]["count"] == 2 and s["r_tot"]["max"] == pytest.approx(165.0)
    assert s["r_tot_tokens"]["count"] == 3
    tei, tn = add_global_tokens(path(10), 10, 2)
    assert s["per_graph"]["r_tot_tokens"][0] == pytest.approx(
        total_effective_resistance(tei, tn, nodes=torch.arange(10)))
    assert s["ratio"]["min"] > 1.0


def test_bad_inputs_are_named():
    ei = path(5)
    with pytest.raises(ValueError, match="outside"):
        effective_resistance(ei, 4)
    with pytest.raises(ValueError, match=r"\[2, E\]"):
        effective_resistance(ei.t(), 5)
    with pytest.raises(ValueError, match="method"):
        effective_resistance(ei, 5, method="fast")
    with pytest.raises(ValueError, match="pairs"):
        effective_resistance(ei, 5, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="pairs"):
        effective_resistance(ei, 5, torch.tensor([[0], [9]]))
    with pytest.raises(ValueError, match="edge_weight"):
        effective_resistance(ei, 5, edge_weight=-torch.ones(ei.size(1)))
    with pytest.raises(ValueError, match="num_tokens"):
        add_global_tokens(ei, 5, -1)
    with pytest.raises(ValueError, match="pass pairs"):
        effective_resistance(torch.zeros(2, 0, dtype=torch.long), 10_000)
