import pytest
import torch
from torch_geometric.data import Data
from torch_geometric.transforms import AddLaplacianEigenvectorPE

from brl_graph.data.transforms import (
    PaddedLaplacianPE,
    PairOneHot,
    apply_pe,
    normalize_pe,
    pe_options,
)


def _path(n):
    ei = torch.stack([torch.arange(n - 1), torch.arange(1, n)])
    return Data(edge_index=torch.cat([ei, ei.flip(0)], 1), num_nodes=n)


def test_lap_pe_pads_small_graphs_and_matches_pyg_up_to_sign():
    for n in (1, 2, 3):
        pe = PaddedLaplacianPE(4)(_path(n)).lap_pe
        assert pe.shape == (n, 4) and torch.all(pe[:, n - 1:] == 0)
    g = _path(12)
    ours = PaddedLaplacianPE(4)(g.clone()).lap_pe
    ref = AddLaplacianEigenvectorPE(4, attr_name="r", is_undirected=True)(g.clone()).r.float()
    assert torch.allclose(ours.abs(), ref.abs(), atol=1e-5)
    # Each column is an eigenvector of the normalised Laplacian.
    from torch_geometric.utils import get_laplacian, to_dense_adj
    ei, w = get_laplacian(g.edge_index, normalization="sym", num_nodes=12)
    lap = to_dense_adj(ei, edge_attr=w, max_num_nodes=12)[0]
    lv = lap @ ours
    ratio = (lv * ours).sum(0) / (ours * ours).sum(0)
    assert torch.allclose(lv, ours * ratio, atol=1e-4)


def test_pe_is_reproducible_in_seed():
    graphs = [_path(15) for _ in range(3)]
    a = apply_pe([g.clone() for g in graphs], pe_options("lap", lap_pe_dim=3, pe_seed=1))
    b = apply_pe([g.clone() for g in graphs], pe_options("lap", lap_pe_dim=3, pe_seed=1))
    assert all(torch.equal(x.lap_pe, y.lap_pe) for x, y in zip(a, b))


def test_options_and_one_hot():
    assert normalize_pe(None) == [] and normalize_pe(["lap", "rwse", "lap"]) == ["lap", "rwse"]
    assert pe_options(None) == {}
    with pytest.raises(ValueError, match="rwse_dim"):
        pe_options("rwse", rwse_dim=0)
    g = Data(x=torch.tensor([[0, 2], [1, 0]], dtype=torch.uint8), num_nodes=2)
    out = PairOneHot(3)(g).x
    assert out.dtype == torch.float32
    assert out.tolist() == [[1, 0, 0, 0, 0, 1], [0, 1, 0, 1, 0, 0]]
