"""Small in-memory benchmarks (through the public ``from_pyg``) for engine tests."""
import math
from typing import List

import pytest
import torch
from torch_geometric.data import Data

from brl_graph.data.benchmark import from_pyg


def _ring(n: int, label: int, num_classes: int) -> Data:
    # The class sits on node 0; the readout node is n/2 hops away.
    x = torch.zeros(n, num_classes)
    x[0, label] = 1.0
    src = torch.arange(n)
    ring = torch.stack([src, (src + 1) % n])
    mark = torch.zeros(n, dtype=torch.bool)
    mark[n // 2] = True
    return Data(x=x, edge_index=torch.cat([ring, ring.flip(0)], 1), y=torch.tensor([label]),
                readout_mask=mark)


def toy_readout_bench(num_graphs: int = 240, nodes: int = 8, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 4, (num_graphs,), generator=gen).tolist()
    graphs = [_ring(nodes, c, 4) for c in labels]
    a, b = int(num_graphs * 0.7), int(num_graphs * 0.85)
    return from_pyg(graphs[:a], graphs[a:b], graphs[b:], task="multiclass", num_classes=4,
                    node_readout="readout_mask", name="toy-ring")


def toy_regression_bench(num_graphs: int = 160, seed: int = 0, inf_label: bool = False):
    gen = torch.Generator().manual_seed(seed)
    graphs: List[Data] = []
    for i in range(num_graphs):
        n = int(torch.randint(4, 9, (1,), generator=gen))
        x = torch.randn(n, 3, generator=gen)
        src = torch.arange(n - 1)
        ei = torch.cat([torch.stack([src, src + 1]), torch.stack([src + 1, src])], 1)
        y = torch.tensor([[float(x[:, 0].sum()), float("nan") if i % 5 == 0 else float(n)]])
        graphs.append(Data(x=x, edge_index=ei, edge_attr=torch.ones(ei.size(1), 2), y=y))
    if inf_label:
        graphs[7].y[0, 0] = math.inf
    a, b = int(num_graphs * 0.7), int(num_graphs * 0.85)
    return from_pyg(graphs[:a], graphs[a:b], graphs[b:], task="regression", metric="mae",
                    name="toy-regression")


@pytest.fixture(autouse=True)
def one_thread():
    """Engine tests run single-threaded: tiny graphs gain nothing from two
    threads, and spinning OpenMP threads on a CPU shared with other jobs can
    make every step 100x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def readout_bench():
    return toy_readout_bench()


@pytest.fixture
def regression_bench():
    return toy_regression_bench()


def tiny_config(out_dir, **train):
    return {"out_dir": str(out_dir),
            "model": {"num_layers": 2, "channels": 16, "heads": 2, "num_tokens": 2},
            "train": {"epochs": 3, "batch_size": 16, "device": "cpu", "progress": False,
                      "lr": 3e-3, **train}}
