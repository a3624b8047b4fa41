import shutil

import numpy as np
import pytest
import torch
from torch_geometric.loader import DataLoader

from brl_graph.data import RawDataError, load_dataset
from brl_graph.data.ogb import ogb_meta, ogb_mol_names, read_raw

from .conftest import make_read_only, make_writable, snapshot, split_labels


def test_names_and_meta_from_ogb_master():
    names = ogb_mol_names()
    assert {"ogbg-molhiv", "ogbg-molesol", "ogbg-molpcba", "ogbg-moltox21"} <= set(names)
    assert ogb_meta("ogbg-molpcba")["num_tasks"] == 128
    assert ogb_meta("ogbg-molpcba")["metric"] == "ap"
    with pytest.raises(KeyError, match="ogbg-molfoo"):
        ogb_meta("ogbg-molfoo")


def test_molhiv_split_sizes_and_conventions(load_once, ro_root):
    before = snapshot(ro_root)
    bench = load_once("ogbg-molhiv")
    assert (len(bench.train), len(bench.valid), len(bench.test)) == (32901, 4113, 4113)
    assert (bench.task, bench.metric, bench.num_tasks, bench.out_channels) == ("binary", "rocauc", 1, 1)
    assert bench.atom_features and bench.level == "graph" and bench.node_readout is None
    assert (bench.num_node_features, bench.num_edge_features) == (9, 3)
    g = bench.train[0]
    assert g.x.dtype == torch.long and g.x.shape[1] == 9
    assert g.edge_attr.dtype == torch.long and g.edge_attr.shape[1] == 3
    assert g.y.dtype == torch.float32 and g.y.shape == (1, 1)
    positives = sum(int(split_labels(ds).sum()) for ds in (bench.train, bench.valid, bench.test))
    assert positives == 1443
    batch = next(iter(DataLoader(bench.train, batch_size=32)))
    assert batch.y.shape == (32, 1) and batch.num_graphs == 32
    # The read-only root is untouched; everything went to the cache.
    assert snapshot(ro_root) == before
    print(f"\nogbg-molhiv: processed in {bench.info.get('process_seconds', float('nan')):.2f} s")


def test_molhiv_second_load_uses_cache(load_once, ro_root, session_cache):
    first = load_once("ogbg-molhiv")
    again = load_dataset("ogbg-molhiv", root=ro_root, cache_dir=session_cache)
    assert again.info["from_cache"] and again.info["cache_file"] == first.info["cache_file"]
    assert torch.equal(again.test[5].x, first.test[5].x)
    assert again.info["cache_file"].startswith(str(session_cache))
    print(f"\nogbg-molhiv: cached load {again.info['load_seconds']:.2f} s")


def test_molesol_graphs_equal_ogb_reader(ro_root):
    from ogb.io.read_graph_raw import read_csv_graph_raw
    import pandas as pd

    payload = read_raw(ro_root / "ogbg_molesol", "ogbg-molesol")
    from brl_graph.data.cache import GraphStore
    store = GraphStore(payload["data"], payload["slices"])
    reference = read_csv_graph_raw(str(ro_root / "ogbg_molesol" / "raw"), add_inverse_edge=True)
    labels = pd.read_csv(ro_root / "ogbg_molesol" / "raw" / "graph-label.csv.gz", header=None).values
    assert len(store) == len(reference) == 1128
    for i, ref in enumerate(reference):
        g = store[i]
        assert g.num_nodes == ref["num_nodes"]
        assert np.array_equal(g.edge_index.numpy(), ref["edge_index"])
        assert np.array_equal(g.x.numpy(), ref["node_feat"])
        assert np.array_equal(g.edge_attr.numpy(), ref["edge_feat"])
        assert np.allclose(g.y.numpy(), labels[i:i + 1])
    sizes = {k: v.numel() for k, v in payload["splits"].items()}
    assert sizes == {"train": 902, "valid": 113, "test": 113}


def test_molesol_regression_and_pe(load_once):
    # LapPE is covered on small graphs elsewhere; eigh on 1k graphs is slow.
    bench = load_once("ogbg-molesol", pe="rwse", rwse_dim=8)
    assert (bench.task, bench.metric, bench.higher_is_better) == ("regression", "rmse", False)
    assert bench.pe == {"rwse": 8}
    from torch_geometric.transforms import AddRandomWalkPE
    g = bench.valid[3]
    assert g.rwse.shape == (g.num_nodes, 8)
    expected = AddRandomWalkPE(8, attr_name="r")(g.clone()).r
    assert torch.allclose(g.rwse, expected.float())
    plain = load_once("ogbg-molesol")
    assert plain.info["cache_file"] != bench.info["cache_file"]  # options are in the key
    assert torch.equal(plain.valid[3].x, g.x)


def test_missing_dataset_names_path_and_url(tmp_path):
    make_read_only(tmp_path)
    try:
        with pytest.raises(RawDataError) as err:
            load_dataset("ogbg-molbace", root=tmp_path, cache_dir=tmp_path / "c")
    finally:
        make_writable(tmp_path)
    msg = str(err.value)
    assert str(tmp_path / "ogbg_molbace" / "raw" / "edge.csv.gz") in msg
    assert "http://snap.stanford.edu/ogb/data/graphproppred/csv_mol_download/bace.zip" in msg
    assert "not writable" in msg
    with pytest.raises(RawDataError, match="download=False"):
        load_dataset("ogbg-molbace", root=tmp_path, download=False)
    assert list(tmp_path.iterdir()) == []


def test_incomplete_and_corrupt_files(shared_datasets, tmp_path):
    folder = tmp_path / "ogbg_molesol"
    shutil.copytree(shared_datasets / "ogbg_molesol", folder)
    make_writable(folder)
    (folder / "split" / "scaffold" / "test.csv.gz").unlink()
    with pytest.raises(RawDataError, match="incomplete") as err:
        load_dataset("ogbg-molesol", root=tmp_path, cache_dir=tmp_path / "c")
    assert "test.csv.gz" in str(err.value) and "esol.zip" in str(err.value)
    shutil.copy(shared_datasets / "ogbg_molesol" / "split" / "scaffold" / "test.csv.gz",
                folder / "split" / "scaffold" / "test.csv.gz")
    (folder / "raw" / "node-feat.csv.gz").write_bytes(b"\x1f\x8b garbage")
    with pytest.raises(RawDataError, match="node-feat.csv.gz") as err:
        load_dataset("ogbg-molesol", root=tmp_path, cache_dir=tmp_path / "c")
    assert "corrupt" in str(err.value) and "esol.zip" in str(err.value)


def test_known_checksum_mismatch_is_reported(shared_datasets, tmp_path):
    folder = tmp_path / "ogbg_molhiv"
    shutil.copytree(shared_datasets / "ogbg_molhiv", folder)
    make_writable(folder)
    path = folder / "split" / "scaffold" / "valid.csv.gz"
    path.write_bytes(path.read_bytes()[:-3])
    with pytest.raises(RawDataError, match="sha256") as err:
        load_dataset("ogbg-molhiv", root=tmp_path, cache_dir=tmp_path / "c")
    assert str(path) in str(err.value) and "hiv.zip" in str(err.value)


def _write_csv_gz(path, rows):
    import pandas as pd
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(path, header=False, index=False, compression="gzip")


def test_multitask_missing_labels_stay_nan(tmp_path):
    """A tiny ogbg-moltox21 in OGB's raw layout with blank label cells."""
    folder = tmp_path / "ogbg_moltox21"
    raw = folder / "raw"
    # Graph 0: 3 atoms, bonds 0-1, 1-2. Graph 1: 2 atoms, bond 0-1. Graph 2: 1 atom.
    _write_csv_gz(raw / "num-node-list.csv.gz", [[3], [2], [1]])
    _write_csv_gz(raw / "num-edge-list.csv.gz", [[2], [1], [0]])
    _write_csv_gz(raw / "edge.csv.gz", [[0, 1], [1, 2], [0, 1]])
    _write_csv_gz(raw / "node-feat.csv.gz", [[5, 0, 2, 5, 1, 0, 2, 0, 0]] * 6)
    _write_csv_gz(raw / "edge-feat.csv.gz", [[0, 0, 0], [1, 0, 1], [2, 0, 0]])
    labels = [[1, 0, None, 1, 0, 0, 1, None, 0, 1, 0, 1],
              [0, 1, 1, None, None, 1, 0, 0, 1, 0, 1, 0],
              [1, None, 0, 0, 1, None, 1, 1, 0, 1, 0, 1]]
    _write_csv_gz(raw / "graph-label.csv.gz", labels)
    for split, idx in (("train", [0]), ("valid", [1]), ("test", [2])):
        _write_csv_gz(folder / "split" / "scaffold" / f"{split}.csv.gz", [[i] for i in idx])
    bench = load_dataset("ogbg-moltox21", root=tmp_path, cache_dir=tmp_path / "c")
    assert (bench.task, bench.num_tasks, bench.metric) == ("multilabel", 12, "rocauc")
    y = torch.cat([bench.train[0].y, bench.valid[0].y, bench.test[0].y])
    expected = torch.tensor([[float("nan") if v is None else v for v in row] for row in labels])
    assert torch.equal(y.isnan(), expected.isnan())
    assert torch.equal(y.nan_to_num(-1), expected.nan_to_num(-1))
    # Edges are stored in both directions, each copy with its bond features.
    g = bench.train[0]
    assert g.edge_index.tolist() == [[0, 1, 1, 2], [1, 0, 2, 1]]
    assert g.edge_attr.tolist() == [[0, 0, 0], [0, 0, 0], [1, 0, 1], [1, 0, 1]]
    assert bench.test[0].edge_index.shape == (2, 0)
