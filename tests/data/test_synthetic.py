import networkx as nx
import pytest
import torch
from torch_geometric.loader import DataLoader
from torch_geometric.utils import to_networkx

from brl_graph.data import load_dataset
from brl_graph.data.synthetic import ring_edges


def read_tree_label(data, num_leaves):
    """Brute force: find the leaf whose one-hot key equals the root's query
    key and return its one-hot value, minus one."""
    width = num_leaves + 1
    key_block, value_block = data.x[:, :width], data.x[:, width:]
    root = int(data.readout_mask.nonzero())
    query = key_block[root]
    matches = [i for i in range(data.num_nodes)
               if i != root and torch.equal(key_block[i], query)]
    assert len(matches) == 1
    return int(value_block[matches[0]].argmax()) - 1


@pytest.mark.parametrize("depth,expected", [(2, 96), (3, 8000), (4, 16000), (5, 32000)])
def test_tree_sizes_follow_the_paper(depth, expected):
    bench = load_dataset("tree-neighbors-match", depth=depth)
    total = len(bench.train) + len(bench.valid) + len(bench.test)
    assert total == expected
    assert bench.num_classes == 2**depth == bench.out_channels
    assert len(bench.valid) == pytest.approx(0.1 * total, abs=2**depth)


def test_tree_structure_readout_and_recoverable_labels():
    depth = 3
    bench = load_dataset("tree-neighbors-match", depth=depth, seed=1)
    assert (bench.task, bench.level, bench.node_readout, bench.metric) == (
        "multiclass", "readout", "readout_mask", "accuracy")
    assert bench.num_node_features == 2 * (2**depth + 1)
    for ds in (bench.train, bench.valid, bench.test):
        for i in range(0, len(ds), max(1, len(ds) // 25)):
            g = ds[i]
            assert g.x.dtype == torch.float32 and g.x.shape == (2**(depth + 1) - 1, bench.num_node_features)
            assert int(g.readout_mask.sum()) == 1
            tree = to_networkx(g, to_undirected=True)
            assert nx.is_tree(tree)
            root = int(g.readout_mask.nonzero())
            dist = nx.single_source_shortest_path_length(tree, root)
            leaves = [v for v in tree if tree.degree(v) == 1]
            assert len(leaves) == 2**depth and {dist[v] for v in leaves} == {depth}
            assert read_tree_label(g, 2**depth) == int(g.y)
    batch = next(iter(DataLoader(bench.train, batch_size=16)))
    assert batch.y.shape == (16,) and int(batch.readout_mask.sum()) == 16


def test_tree_split_is_stratified_and_disjoint():
    bench = load_dataset("tree-neighbors-match", depth=4)
    counts = []
    for ds in (bench.train, bench.valid, bench.test):
        # Labels straight from the storage: reading 16k graphs one by one is slow.
        y = ds.labels[torch.tensor(ds.indices())]
        assert int(ds[0].y) == int(y[0])
        counts.append(torch.bincount(y, minlength=16))
    for c in counts:
        assert c.min() >= 0.9 * c.float().mean()  # every class equally present
    idx = [set(ds.indices()) for ds in (bench.train, bench.valid, bench.test)]
    assert not (idx[0] & idx[1]) and not (idx[0] & idx[2]) and not (idx[1] & idx[2])


def test_tree_is_deterministic_in_seed():
    a = load_dataset("tree-neighbors-match", depth=3, seed=7)
    b = load_dataset("tree-neighbors-match", depth=3, seed=7)
    c = load_dataset("tree-neighbors-match", depth=3, seed=8)
    assert a.train.indices() == b.train.indices()
    assert all(torch.equal(a.train[i].x, b.train[i].x) for i in range(0, 500, 50))
    assert any(not torch.equal(a.train[i].x, c.train[i].x) for i in range(0, 500, 50))


@pytest.mark.parametrize("variant", ["ring", "crossed-ring"])
@pytest.mark.parametrize("nodes", [4, 5, 10, 17])
def test_ring_readout_is_half_the_ring_away(variant, nodes):
    bench = load_dataset("ring-transfer", nodes=nodes, variant=variant)
    g = bench.train[0]
    graph = to_networkx(g, to_undirected=True)
    readout = int(g.readout_mask.nonzero())
    sources = [i for i in range(nodes) if g.x[i].sum() == 1]
    assert int(g.readout_mask.sum()) == 1 and len(sources) == 1
    assert nx.shortest_path_length(graph, readout, sources[0]) == nodes // 2
    assert not any(u == v for u, v in graph.edges)
    if variant == "crossed-ring" and nodes >= 5:
        assert graph.number_of_edges() > nodes  # crossings were added


def test_ring_sizes_balance_and_recoverable_labels():
    bench = load_dataset("ring-transfer", nodes=12, variant="crossed-ring", seed=3)
    assert (len(bench.train), len(bench.valid), len(bench.test)) == (5000, 500, 500)
    assert (bench.num_classes, bench.num_node_features, bench.level) == (5, 5, "readout")
    y = torch.cat([g.y for g in bench.train])
    assert torch.equal(torch.bincount(y), torch.full((5,), 1000))
    for i in range(0, 500, 37):
        g = bench.test[i]
        source = [j for j in range(12) if g.x[j].sum() == 1][0]
        assert int(g.x[source].argmax()) == int(g.y)
        assert g.x[g.readout_mask].abs().sum() == 0
    again = load_dataset("ring-transfer", nodes=12, variant="crossed-ring", seed=3)
    assert torch.equal(torch.cat([g.y for g in again.valid]), torch.cat([g.y for g in bench.valid]))


def test_crossed_ring_edges_cross_between_halves():
    edges = ring_edges(8, "crossed-ring")
    pairs = {tuple(p) for p in edges.t().tolist()}
    assert (1, 6) in pairs and (2, 5) in pairs and (2, 7) in pairs and (3, 6) in pairs
    assert all((b, a) in pairs for a, b in pairs)
    with pytest.raises(ValueError, match="variant"):
        ring_edges(8, "square")


def test_synthetic_pe_is_shared_and_correct():
    from torch_geometric.transforms import AddRandomWalkPE
    bench = load_dataset("ring-transfer", nodes=9, pe=["rwse", "lap"], rwse_dim=5, lap_pe_dim=3)
    g = bench.valid[2]
    assert bench.pe == {"rwse": 5, "lap_pe": 3}
    assert torch.allclose(g.rwse, AddRandomWalkPE(5, attr_name="r")(g.clone()).r.float())
    assert g.lap_pe.shape == (9, 3)
    tree = load_dataset("tree-neighbors-match", depth=2, pe="rwse", rwse_dim=4)
    assert tree.train[0].rwse.shape == (7, 4)


def test_bad_options_raise():
    with pytest.raises(ValueError, match="depth"):
        load_dataset("tree-neighbors-match", depth=1)
    with pytest.raises(ValueError, match="nodes"):
        load_dataset("ring-transfer", nodes=3)
    with pytest.raises(ValueError, match="unknown option"):
        load_dataset("ring-transfer", nodes=8, depth=3)


def test_tree_upward_edges_point_from_children_to_the_root():
    depth = 3
    up = load_dataset("tree-neighbors-match", depth=depth, seed=1, edges="upward")
    both = load_dataset("tree-neighbors-match", depth=depth, seed=1)
    g, h = up.train[0], both.train[0]
    assert torch.equal(g.x, h.x) and torch.equal(g.y, h.y)  # same task, other edges
    n = 2**(depth + 1) - 1
    assert g.edge_index.size(1) == n - 1 == h.edge_index.size(1) // 2
    src, dst = g.edge_index
    assert torch.equal(dst, (src - 1) // 2)  # each child sends to its parent only
    # every node reaches the readout (root) along the edges, and the root sends nothing
    graph = to_networkx(g)
    root = int(g.readout_mask.nonzero())
    assert all(nx.has_path(graph, v, root) for v in graph)
    assert graph.out_degree(root) == 0
    assert up.info["edges"] == "upward"
    with pytest.raises(ValueError, match="edges must be one of"):
        load_dataset("tree-neighbors-match", depth=depth, edges="down")
