import pytest
import torch
from torch_geometric.data import Data
from torch_geometric.loader import DataLoader

from brl_graph.data import Benchmark, from_pyg


def _graph(n, y, **extra):
    ei = torch.stack([torch.arange(n - 1), torch.arange(1, n)])
    return Data(x=torch.randn(n, 3), edge_index=torch.cat([ei, ei.flip(0)], 1), y=y, **extra)


def test_from_pyg_graph_regression():
    graphs = [_graph(4 + i % 3, torch.randn(1, 2)) for i in range(12)]
    bench = from_pyg(graphs[:8], graphs[8:10], graphs[10:], task="regression")
    assert (bench.num_tasks, bench.metric, bench.level, bench.out_channels) == (2, "rmse", "graph", 2)
    assert (bench.num_node_features, bench.num_edge_features, bench.atom_features) == (3, 0, False)
    batch = next(iter(DataLoader(bench.train, batch_size=4)))
    assert batch.y.shape == (4, 2)
    assert not bench.higher_is_better


def test_from_pyg_readout_and_node_levels():
    def readout_graph(label):
        mask = torch.zeros(5, dtype=torch.bool)
        mask[0] = True
        return _graph(5, torch.tensor([label]), readout_mask=mask)
    graphs = [readout_graph(i % 3) for i in range(9)]
    bench = from_pyg(graphs[:6], graphs[6:8], graphs[8:], task="multiclass",
                     node_readout="readout_mask")
    assert (bench.level, bench.num_classes, bench.out_channels, bench.metric) == ("readout", 3, 3, "accuracy")
    nodes = [_graph(6, torch.randint(0, 4, (6,))) for _ in range(3)]
    node_bench = from_pyg(nodes[:1], nodes[1:2], nodes[2:], task="multiclass", num_classes=4, metric="f1")
    assert (node_bench.level, node_bench.num_classes, node_bench.metric) == ("node", 4, "f1")


def test_from_pyg_atom_features_and_pe():
    g = Data(x=torch.randint(0, 5, (4, 9)), edge_index=torch.tensor([[0, 1], [1, 0]]),
             edge_attr=torch.randint(0, 3, (2, 3)), y=torch.tensor([[1.0, float("nan")]]))
    bench = from_pyg([g], [g], [g], task="multilabel", pe="rwse", rwse_dim=3)
    assert bench.atom_features and bench.num_tasks == 2 and bench.metric == "rocauc"
    assert bench.train[0].rwse.shape == (4, 3) and "rwse" not in g  # input untouched


def test_from_pyg_errors():
    g = _graph(4, torch.tensor([1]))
    with pytest.raises(ValueError, match="task"):
        from_pyg([g], [g], [g], task="classification")
    with pytest.raises(ValueError, match="empty"):
        from_pyg([g], [], [g], task="multiclass")
    with pytest.raises(ValueError, match="boolean node attribute"):
        from_pyg([g], [g], [g], task="multiclass", node_readout="mask")
    two = _graph(4, torch.tensor([1]), mask=torch.tensor([True, True, False, False]))
    with pytest.raises(ValueError, match="exactly one"):
        from_pyg([two], [two], [two], task="multiclass", node_readout="mask")


def test_benchmark_validates_fields():
    with pytest.raises(ValueError, match="metric"):
        Benchmark(name="x", train=[], valid=[], test=[], task="binary", num_tasks=1, metric="auc")
    with pytest.raises(ValueError, match="node_readout"):
        Benchmark(name="x", train=[], valid=[], test=[], task="multiclass", num_tasks=1,
                  num_classes=3, metric="accuracy", level="readout")
