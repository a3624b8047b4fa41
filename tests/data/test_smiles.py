import shutil

import numpy as np
import pandas as pd
import pytest
import torch

from brl_graph.data import RawDataError, load_dataset
from brl_graph.data.smiles import featurize_smiles, infer_task, random_split, scaffold_split

TARGET = "measured log solubility in mols per litre"


@pytest.fixture
def esol_with_bad_rows(shared_datasets, tmp_path):
    """The ESOL CSV plus an unparsable SMILES (data row 1128) and a valid
    one without target (row 1129)."""
    path = tmp_path / "esol.csv"
    shutil.copy(shared_datasets / "moleculenet" / "delaney-processed.csv", path)
    df = pd.read_csv(path)
    extra = pd.DataFrame([
        {**{c: 1 for c in df.columns}, "Compound ID": "bad", "smiles": "C1CC(=O", TARGET: -1.0},
        {**{c: 1 for c in df.columns}, "Compound ID": "no target", "smiles": "CCO", TARGET: np.nan},
    ])
    pd.concat([df, extra]).to_csv(path, index=False)
    return path


def test_bad_row_is_reported_and_skipped(esol_with_bad_rows, tmp_path):
    with pytest.warns(UserWarning, match=r"row 1128 \(line 1130\)") as rec:
        bench = load_dataset("smiles-csv", path=esol_with_bad_rows,
                             target_columns=[TARGET], cache_dir=tmp_path / "c")
    assert "'C1CC(=O'" in str(rec[0].message) and "1 row(s)" in str(rec[0].message)
    total = len(bench.train) + len(bench.valid) + len(bench.test)
    assert total == 1128 + 1  # the bad row is skipped, the unlabelled one kept
    ys = torch.cat([g.y for ds in (bench.train, bench.valid, bench.test) for g in ds])
    assert ys.shape == (total, 1) and int(ys.isnan().sum()) == 1
    assert (bench.task, bench.metric, bench.atom_features) == ("regression", "rmse", True)
    assert bench.info["skipped_rows"] == [1128]
    # A cached load reports the same rows again.
    with pytest.warns(UserWarning, match="row 1128"):
        again = load_dataset("smiles-csv", path=esol_with_bad_rows,
                             target_columns=TARGET, cache_dir=tmp_path / "c")
    assert again.info["from_cache"]


def test_scaffold_split_is_deterministic_and_disjoint(shared_datasets):
    smiles = pd.read_csv(shared_datasets / "moleculenet" / "delaney-processed.csv")["smiles"].tolist()
    a, b = scaffold_split(smiles), scaffold_split(smiles)
    assert all(torch.equal(a[k], b[k]) for k in a)
    sizes = [a[k].numel() for k in ("train", "valid", "test")]
    assert sum(sizes) == len(smiles) and sizes[0] <= 0.8 * len(smiles) + 1
    union = torch.cat(list(a.values()))
    assert union.unique().numel() == len(smiles)
    # No scaffold is shared between train and test.
    from rdkit.Chem.Scaffolds.MurckoScaffold import MurckoScaffoldSmiles

    def scaf(i):
        return MurckoScaffoldSmiles(smiles=smiles[i], includeChirality=True)

    train_scaffolds = {scaf(int(i)) for i in a["train"]}
    assert not train_scaffolds & {scaf(int(i)) for i in a["test"]}


def test_random_split_and_task_inference():
    s = random_split(100, (0.8, 0.1, 0.1), seed=1)
    assert [s[k].numel() for k in ("train", "valid", "test")] == [80, 10, 10]
    assert torch.equal(s["test"], random_split(100, seed=1)["test"])
    assert not torch.equal(s["test"], random_split(100, seed=2)["test"])
    assert infer_task(np.array([[0.0], [1.0], [np.nan]])) == "binary"
    assert infer_task(np.array([[0.0, 1.0], [1.0, np.nan]])) == "multilabel"
    assert infer_task(np.array([[0.5], [1.0]])) == "regression"


def test_binary_random_split_csv(tmp_path):
    path = tmp_path / "tiny.csv"
    rows = ["CCO", "CCN", "c1ccccc1", "CC(=O)O", "CCCl", "CCBr", "CCCC", "OCCO", "CNC", "CCOC"]
    pd.DataFrame({"mol": rows, "active": [0, 1] * 5,
                  "toxic": [1, 0, None, 1, 0, 1, 0, 1, 0, 1]}).to_csv(path, index=False)
    bench = load_dataset("smiles-csv", path=path, smiles_column="mol",
                         target_columns=["active", "toxic"], split="random",
                         seed=0, cache_dir=tmp_path / "c")
    assert (bench.task, bench.num_tasks, bench.metric) == ("multilabel", 2, "rocauc")
    assert len(bench.train) + len(bench.valid) + len(bench.test) == 10
    assert bench.train[0].x.dtype == torch.long and bench.train[0].y.shape == (1, 2)


def test_errors_name_the_problem(tmp_path, esol_with_bad_rows):
    with pytest.raises(RawDataError, match="not found"):
        load_dataset("smiles-csv", path=tmp_path / "nope.csv", target_columns="y")
    with pytest.raises(KeyError, match="solubility"):
        load_dataset("smiles-csv", path=esol_with_bad_rows, target_columns=["solubility"],
                     cache_dir=tmp_path / "c")
    with pytest.raises(ValueError, match="target_columns"):
        load_dataset("smiles-csv", path=esol_with_bad_rows)
    with pytest.raises(ValueError, match="split"):
        load_dataset("smiles-csv", path=esol_with_bad_rows, target_columns=TARGET, split="time")


def test_featurize_reasons_and_workers():
    smiles = ["CCO", "", "C1CC(", None, "c1ccccc1"] * 3
    serial = featurize_smiles(smiles)
    assert [g if isinstance(g, str) else "ok" for g in serial[:5]] == [
        "ok", "empty SMILES", "RDKit cannot parse it", "empty SMILES", "ok"]
    parallel = featurize_smiles(smiles, num_workers=2, chunk_size=4)
    for a, b in zip(serial, parallel):
        if isinstance(a, str):
            assert a == b
        else:
            assert all(np.array_equal(u, v) for u, v in zip(a, b))
