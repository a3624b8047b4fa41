r"""Long Range Graph Benchmark (LRGB) datasets.

* ``peptides-func`` / ``peptides-struct`` follow the official recipe: raw CSV
  -> OGB's ``smiles2graph`` -> official split pickle (keys ``train``,
  ``val``, ``test``), with the official file names, URLs and MD5 checks::

      <root>/peptides-functional/raw/peptide_multi_class_dataset.csv.gz
      <root>/peptides-functional/splits_random_stratified_peptide.pickle
      <root>/peptides-structural/raw/peptide_structure_normalized_dataset.csv.gz
      <root>/peptides-structural/splits_random_stratified_peptide_structure.pickle

  Peptides-func: 10 binary tasks, metric AP. Peptides-struct: 11 regression
  targets, already standardised to zero mean and unit variance in the
  official file, metric MAE on those standardised targets.

* ``pascalvoc-sp``, ``coco-sp`` and ``pcqm-contact`` go through PyG's
  :class:`~torch_geometric.datasets.LRGBDataset`, reading
  ``<root>/<name>/raw/`` and writing processed files to the cache folder.
"""
import json
import pickle
import shutil
import time
from pathlib import Path
from typing import Dict

import numpy as np
import pandas as pd
import torch

from .benchmark import Benchmark
from .cache import cache_path, cached, collate_graphs, file_fingerprint
from .ogb import split_benchmark_sets, with_pe
from .raw import (RawDataError, RawFile, ensure_files, is_writable, missing_error,
                  removed_on_failure, resolve_root)
from .smiles import featurize_smiles, stack_graphs
from .transforms import PETransform, pe_dims, pe_options, single_threaded

PEPTIDES: Dict[str, Dict[str, object]] = {
    "peptides-func": {
        "folder": "peptides-functional",
        "csv": RawFile(
            "raw/peptide_multi_class_dataset.csv.gz",
            "https://www.dropbox.com/s/ol2v01usvaxbsr8/peptide_multi_class_dataset.csv.gz?dl=1",
            md5="701eb743e899f4d793f0e13c8fa5a1b4"),
        "split": RawFile(
            "splits_random_stratified_peptide.pickle",
            "https://www.dropbox.com/s/j4zcnx2eipuo0xz/splits_random_stratified_peptide.pickle?dl=1",
            md5="5a0114bdadc80b94fc7ae974f13ef061"),
        "task": "multilabel", "num_tasks": 10, "metric": "ap",
    },
    "peptides-struct": {
        "folder": "peptides-structural",
        "csv": RawFile(
            "raw/peptide_structure_normalized_dataset.csv.gz",
            "https://www.dropbox.com/s/0d4aalmq4b4e2nh/peptide_structure_normalized_dataset.csv.gz?dl=1",
            md5="c240c1c15466b5c907c63e180fa8aa89"),
        "split": RawFile(
            "splits_random_stratified_peptide_structure.pickle",
            "https://www.dropbox.com/s/9dfifzft1hqgow6/splits_random_stratified_peptide_structure.pickle?dl=1",
            md5="5a0114bdadc80b94fc7ae974f13ef061"),
        "task": "regression", "num_tasks": 11, "metric": "mae",
        "targets": ["Inertia_mass_a", "Inertia_mass_b", "Inertia_mass_c",
                    "Inertia_valence_a", "Inertia_valence_b",
                    "Inertia_valence_c", "length_a", "length_b", "length_c",
                    "Spherocity", "Plane_best_fit"],
    },
}

#: name -> (task, num_tasks, num_classes, metric, level, atom features,
#: node feature width, edge feature width).
PYG_LRGB = {
    "pascalvoc-sp": ("multiclass", 1, 21, "f1", "node", False, 14, 2),
    "coco-sp": ("multiclass", 1, 81, "f1", "node", False, 14, 2),
    "pcqm-contact": ("binary", 1, 2, "mrr", "link", True, 9, 3),
}


def _read_peptides(name: str, folder: Path, num_workers: int = 0) -> Dict[str, object]:
    spec = PEPTIDES[name]
    csv: RawFile = spec["csv"]
    path = folder / csv.path
    try:
        df = pd.read_csv(path)
        smiles = df["smiles"].tolist()
        if name == "peptides-func":
            y = np.array([json.loads(v) for v in df["labels"]], dtype=np.float32)
        else:
            y = df[spec["targets"]].to_numpy(dtype=np.float32)
    except Exception as exc:
        raise RawDataError(f"cannot parse {path} ({type(exc).__name__}: {exc});"
                           f" the file is corrupt. Official URL: {csv.url}") from exc
    if y.ndim != 2 or y.shape[1] != spec["num_tasks"]:
        raise RawDataError(f'{path}: expected {spec["num_tasks"]} targets per '
                           f'row, got shape {y.shape}. Official URL: {csv.url}')
    graphs = featurize_smiles(smiles, num_workers)
    for i, g in enumerate(graphs):
        if isinstance(g, str):
            raise RawDataError(f"{path}: row {i} has an unusable SMILES "
                               f"({g}); the file is corrupt. Official URL: "
                               f"{csv.url}")
    arrays = stack_graphs(graphs)
    data, slices = collate_graphs(
        arrays["num_nodes"], arrays["num_edges"], {"x": arrays["x"]},
        arrays["edge_index"], {"edge_attr": arrays["edge_attr"]},
        {"y": torch.from_numpy(y)})
    split_spec: RawFile = spec["split"]
    # The MD5 was verified before this point, so unpickling is safe.
    with open(folder / split_spec.path, "rb") as f:
        raw_split = pickle.load(f)
    splits = {}
    for ours, theirs in (("train", "train"), ("valid", "val"), ("test", "test")):
        if theirs not in raw_split:
            raise RawDataError(f"{folder / split_spec.path} has no '{theirs}' "
                               f"key. Official URL: {split_spec.url}")
        idx = torch.as_tensor(np.asarray(raw_split[theirs]), dtype=torch.long)
        if idx.numel() and (idx.min() < 0 or idx.max() >= len(smiles)):
            raise RawDataError(f"{folder / split_spec.path}: indices outside "
                               f"[0, {len(smiles)})")
        splits[ours] = idx
    return {"data": data, "slices": slices, "splits": splits}


def load_peptides(name: str, root=None, cache_dir=None, download: bool = True,
                  verify: bool = True, force_reload: bool = False,
                  num_workers: int = 0, pe=None, rwse_dim: int = 16,
                  lap_pe_dim: int = 8, pe_seed: int = 0) -> Benchmark:
    r"""Loads ``peptides-func`` or ``peptides-struct`` (official recipe).

    Args:
        name: ``"peptides-func"`` or ``"peptides-struct"``.
        root: folder holding ``peptides-functional/`` or
            ``peptides-structural/`` (may be read-only).
        cache_dir: where processed tensors are cached.
        download: fetch missing files from the official URLs (MD5-checked).
        verify: check the MD5 of present files.
        force_reload: rebuild the cache.
        num_workers: processes running ``smiles2graph`` (0 = this one); the
            15,535 molecules take about 25 s on one free core.
        pe, rwse_dim, lap_pe_dim, pe_seed: see :mod:`.transforms`.
    """
    spec = PEPTIDES[name]
    folder = resolve_root(root) / str(spec["folder"])
    files = [spec["csv"], spec["split"]]
    ensure_files(folder, files, download, verify)
    opts = pe_options(pe, rwse_dim, lap_pe_dim, pe_seed)
    fingerprint = file_fingerprint([folder / f.path for f in files])
    path = cache_path(cache_dir, name, {"dataset": name, "raw": fingerprint, **opts})
    payload, info = cached(
        path, lambda: with_pe(_read_peptides(name, folder, num_workers), opts), force_reload)
    train, valid, test = split_benchmark_sets(payload)
    task = str(spec["task"])
    return Benchmark(
        name=name, train=train, valid=valid, test=test, task=task,
        num_tasks=int(spec["num_tasks"]),
        num_classes=2 if task == "multilabel" else 0,
        metric=str(spec["metric"]), level="graph", atom_features=True,
        num_node_features=9, num_edge_features=3, pe=pe_dims(opts),
        info={"root": str(folder), **info, "options": opts})


def _lrgb_class():
    from torch_geometric.datasets import LRGBDataset

    class CachedLRGBDataset(LRGBDataset):
        """PyG's LRGB dataset reading ``<root>/<name>/raw`` and writing its
        processed files to a separate (cache) folder."""
        def __init__(self, root: str, name: str, split: str,
                     processed_folder: str, pre_transform=None) -> None:
            self._processed_folder = processed_folder
            super().__init__(root, name, split, pre_transform=pre_transform)

        @property
        def processed_dir(self) -> str:
            return self._processed_folder

    return CachedLRGBDataset


def load_pyg_lrgb(name: str, root=None, cache_dir=None, download: bool = True,
                  force_reload: bool = False, pe=None, rwse_dim: int = 16,
                  lap_pe_dim: int = 8, pe_seed: int = 0) -> Benchmark:
    r"""Loads ``pascalvoc-sp``, ``coco-sp`` or ``pcqm-contact`` via PyG.

    Raw files are read from ``<root>/<name>/raw`` (PyG's layout); processed
    files go to ``<cache_dir>/<name>/<key>/``. PE options are applied as a
    PyG ``pre_transform``, so they are cached too.

    Evaluation: macro F1 over all nodes for the superpixel sets; for
    PCQM-Contact :attr:`Benchmark.evaluate` takes lists of positive pairs and
    score matrices (see :func:`.metrics.filtered_mrr`).
    """
    from torch_geometric.datasets import LRGBDataset

    root = resolve_root(root)
    raw_dir = root / name / "raw"
    names = (["train.pickle", "val.pickle", "test.pickle"] if name.endswith("-sp")
             else ["train.pt", "val.pt", "test.pt"])
    url = LRGBDataset.urls[name]
    missing = [RawFile(n, url) for n in names if not (raw_dir / n).is_file()]
    if missing and not download:
        raise missing_error(raw_dir, missing, "Downloads are disabled "
                            "(download=False); they come from the zip archive "
                            "at the URL.")
    if missing and not is_writable(root):
        raise missing_error(raw_dir, missing, f"{root} is not writable, so "
                            "they cannot be downloaded there; download and "
                            "unzip the archive at the URL yourself or pass a "
                            "writable root=.")
    opts = pe_options(pe, rwse_dim, lap_pe_dim, pe_seed)
    key_path = cache_path(cache_dir, name, {"dataset": name, "pyg_lrgb": True,
                                            **opts})
    processed = key_path.with_suffix("")
    if force_reload and processed.exists():
        shutil.rmtree(processed)
    pre = PETransform(opts) if opts else None
    cls = _lrgb_class()
    t0 = time.perf_counter()
    try:
        with removed_on_failure(root / name), torch.random.fork_rng(devices=[]), \
                single_threaded():
            torch.manual_seed(int(opts.get("pe_seed", 0)))
            sets = [cls(str(root), name, split, str(processed), pre)
                    for split in ("train", "val", "test")]
    except Exception as exc:
        raise RawDataError(f"loading {name} from {raw_dir} failed ({exc}); "
                           f"the official archive is {url}") from exc
    task, num_tasks, num_classes, metric, level, atom, nf, ef = PYG_LRGB[name]
    return Benchmark(
        name=name, train=sets[0], valid=sets[1], test=sets[2], task=task,
        num_tasks=num_tasks, num_classes=num_classes, metric=metric,
        level=level, atom_features=atom, num_node_features=nf,
        num_edge_features=ef, pe=pe_dims(opts),
        info={"root": str(root / name), "cache_folder": str(processed),
              "load_seconds": time.perf_counter() - t0, "options": opts})
