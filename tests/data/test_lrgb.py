import json
import os
import pickle
import shutil

import numpy as np
import pandas as pd
import pytest
import torch

from brl_graph.data import RawDataError, load_dataset
from brl_graph.data.lrgb import PEPTIDES

from .conftest import make_read_only, make_writable, snapshot

WORKERS = min(4, os.cpu_count() or 1)


@pytest.mark.slow
def test_peptides_func_official_recipe(load_once, ro_root):
    from ogb.utils import smiles2graph

    before = snapshot(ro_root)
    bench = load_once("peptides-func", num_workers=WORKERS)
    assert (len(bench.train), len(bench.valid), len(bench.test)) == (10873, 2331, 2331)
    assert (bench.task, bench.metric, bench.num_tasks) == ("multilabel", "ap", 10)
    assert bench.atom_features and bench.out_channels == 10
    assert snapshot(ro_root) == before

    # The split pickle's indices select the CSV rows; graphs are smiles2graph's.
    df = pd.read_csv(ro_root / "peptides-functional" / "raw" / "peptide_multi_class_dataset.csv.gz")
    with open(ro_root / "peptides-functional" / "splits_random_stratified_peptide.pickle", "rb") as f:
        split = pickle.load(f)
    for pos in (0, 1234, 2330):
        row = int(split["test"][pos])
        ref = smiles2graph(df["smiles"][row])
        g = bench.test[pos]
        assert np.array_equal(g.x.numpy(), ref["node_feat"])
        assert np.array_equal(g.edge_index.numpy(), ref["edge_index"])
        assert np.array_equal(g.edge_attr.numpy(), ref["edge_feat"])
        assert g.y.tolist() == [json.loads(df["labels"][row])]
    print(f"\npeptides-func: processed in {bench.info.get('process_seconds', float('nan')):.1f} s "
          f"with {WORKERS} worker(s)")


@pytest.mark.slow
def test_peptides_func_cached_load(load_once, ro_root, session_cache):
    load_once("peptides-func", num_workers=WORKERS)
    again = load_dataset("peptides-func", root=ro_root, cache_dir=session_cache)
    assert again.info["from_cache"]
    assert len(again.train) == 10873
    print(f"\npeptides-func: cached load {again.info['load_seconds']:.2f} s")


def test_peptides_md5_mismatch_before_unpickling(shared_datasets, tmp_path):
    folder = tmp_path / "peptides-functional"
    shutil.copytree(shared_datasets / "peptides-functional", folder)
    make_writable(folder)
    pkl = folder / "splits_random_stratified_peptide.pickle"
    pkl.write_bytes(b"not a pickle")
    with pytest.raises(RawDataError, match="md5") as err:
        load_dataset("peptides-func", root=tmp_path, cache_dir=tmp_path / "c")
    assert str(pkl) in str(err.value)
    assert PEPTIDES["peptides-func"]["split"].url in str(err.value)


def test_peptides_struct_missing_names_official_files(tmp_path):
    make_read_only(tmp_path)
    try:
        with pytest.raises(RawDataError) as err:
            load_dataset("peptides-struct", root=tmp_path, cache_dir=tmp_path / "c")
    finally:
        make_writable(tmp_path)
    msg = str(err.value)
    folder = tmp_path / "peptides-structural"
    assert str(folder / "raw" / "peptide_structure_normalized_dataset.csv.gz") in msg
    assert str(folder / "splits_random_stratified_peptide_structure.pickle") in msg
    assert "https://www.dropbox.com/s/0d4aalmq4b4e2nh/peptide_structure_normalized_dataset.csv.gz?dl=1" in msg
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["pascalvoc-sp", "coco-sp", "pcqm-contact"])
def test_pyg_lrgb_missing_raw_is_clear(name, tmp_path):
    with pytest.raises(RawDataError, match="download=False") as err:
        load_dataset(name, root=tmp_path, cache_dir=tmp_path / "c", download=False)
    assert str(tmp_path / name / "raw") in str(err.value)
    assert "https://www.dropbox.com/" in str(err.value)
    make_read_only(tmp_path)
    try:
        with pytest.raises(RawDataError, match="not writable"):
            load_dataset(name, root=tmp_path, cache_dir=tmp_path / "c")
    finally:
        make_writable(tmp_path)
    assert not (tmp_path / name).exists()


def _fake_voc_split(rng, graphs):
    out = []
    for _ in range(graphs):
        n = int(rng.integers(5, 9))
        src = torch.arange(n)
        edge_index = torch.stack([torch.cat([src, (src + 1) % n]),
                                  torch.cat([(src + 1) % n, src])])
        out.append((torch.rand(n, 14), torch.rand(edge_index.size(1), 2),
                    edge_index, torch.randint(0, 21, (n,)).tolist()))
    return out


def test_pascalvoc_through_pyg_writes_only_to_cache(tmp_path):
    rng = np.random.default_rng(0)
    raw = tmp_path / "root" / "pascalvoc-sp" / "raw"
    raw.mkdir(parents=True)
    for split, count in (("train", 6), ("val", 3), ("test", 2)):
        with open(raw / f"{split}.pickle", "wb") as f:
            pickle.dump(_fake_voc_split(rng, count), f)
    root = tmp_path / "root"
    make_read_only(root)
    before = snapshot(root)
    try:
        bench = load_dataset("pascalvoc-sp", root=root, cache_dir=tmp_path / "cache",
                             pe="rwse", rwse_dim=4)
    finally:
        make_writable(root)
    assert snapshot(root) == before
    assert (len(bench.train), len(bench.valid), len(bench.test)) == (6, 3, 2)
    assert (bench.task, bench.level, bench.num_classes, bench.metric) == ("multiclass", "node", 21, "f1")
    assert bench.out_channels == 21 and not bench.atom_features
    g = bench.train[0]
    assert g.x.shape[1] == bench.num_node_features == 14
    assert g.y.shape == (g.num_nodes,) and g.rwse.shape == (g.num_nodes, 4)
    assert any((tmp_path / "cache").rglob("train.pt"))
    y = torch.cat([d.y for d in bench.valid])
    assert bench.evaluate(y, torch.nn.functional.one_hot(y, 21).float()) == {"f1": 1.0}
