import torch
from torch_geometric.data import Data, InMemoryDataset

from brl_graph.data.cache import (
    GraphStore,
    cache_path,
    cached,
    collate_graphs,
    load_processed,
    pack_integers,
    save_processed,
    unpack_integers,
)


def test_collate_graphs_matches_pyg_collate():
    graphs = []
    for n, e in ((3, 4), (1, 0), (5, 6)):
        graphs.append(Data(x=torch.randint(0, 9, (n, 2)),
                           edge_index=torch.randint(0, n, (2, e)),
                           edge_attr=torch.rand(e, 3), y=torch.rand(1, 2)))
    data, slices = collate_graphs(
        torch.tensor([3, 1, 5]), torch.tensor([4, 0, 6]),
        {"x": torch.cat([g.x for g in graphs])},
        torch.cat([g.edge_index for g in graphs], 1),
        {"edge_attr": torch.cat([g.edge_attr for g in graphs])},
        {"y": torch.cat([g.y for g in graphs])})
    ref_data, ref_slices = InMemoryDataset.collate(graphs)
    for k in ("x", "edge_index", "edge_attr", "y"):
        assert torch.equal(data[k], ref_data[k]) and torch.equal(slices[k], ref_slices[k])
    store = GraphStore(data, slices)
    for i, g in enumerate(graphs):
        assert all(torch.equal(store[i][k], g[k]) for k in ("x", "edge_index", "edge_attr", "y"))


def test_collate_graphs_rejects_mismatched_counts():
    import pytest
    with pytest.raises(ValueError, match="attribute 'x'"):
        collate_graphs(torch.tensor([2]), torch.tensor([0]), {"x": torch.zeros(3, 1)},
                       torch.zeros(2, 0, dtype=torch.long), {}, {})


def test_pack_roundtrip_and_weights_only_load(tmp_path):
    tensors = {"x": torch.tensor([[0, 200], [3, 4]]), "e": torch.tensor([-5, 40000]),
               "f": torch.rand(3), "m": torch.tensor([True, False])}
    packed, dtypes = pack_integers(tensors)
    assert packed["x"].dtype == torch.uint8 and packed["e"].dtype == torch.int32
    back = unpack_integers(packed, dtypes)
    assert all(torch.equal(back[k], tensors[k]) and back[k].dtype == tensors[k].dtype for k in tensors)

    path = tmp_path / "a" / "b.pt"
    save_processed(path, {"data": tensors, "meta": {"task": "binary"}})
    assert [p.name for p in path.parent.iterdir()] == ["b.pt"]  # no temp file left
    raw = torch.load(path, weights_only=True)  # plain containers only
    assert raw["data"]["x"].dtype == torch.uint8
    loaded = load_processed(path)
    assert torch.equal(loaded["data"]["x"], tensors["x"]) and loaded["meta"] == {"task": "binary"}


def test_cache_key_and_rebuild(tmp_path):
    a = cache_path(tmp_path, "ds", {"rwse_dim": 8})
    assert a != cache_path(tmp_path, "ds", {"rwse_dim": 16})
    assert a == cache_path(tmp_path, "ds", {"rwse_dim": 8})
    calls = []

    def build():
        calls.append(1)
        return {"data": {"y": torch.ones(2)}}
    cached(a, build)
    cached(a, build)
    assert len(calls) == 1
    a.write_bytes(b"truncated")  # a broken cache file is rebuilt, not trusted
    cached(a, build)
    assert len(calls) == 2
    cached(a, build, force_reload=True)
    assert len(calls) == 3
