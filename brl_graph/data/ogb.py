r"""OGB graph property prediction: every ``ogbg-mol*`` dataset.

Reads OGB's raw layout directly (no ``PygGraphPropPredDataset``)::

    <root>/ogbg_molhiv/raw/{edge,num-node-list,num-edge-list,node-feat,
                            edge-feat,graph-label}.csv.gz
    <root>/ogbg_molhiv/split/scaffold/{train,valid,test}.csv.gz

The CSV files are parsed with pandas and turned into collated tensors in one
vectorised pass (no per-graph Python loop); edges are duplicated in both
directions exactly as OGB's ``read_csv_graph_raw(add_inverse_edge=True)``
does: edge :math:`e=(u,v)` becomes columns :math:`2e=(u,v)` and
:math:`2e+1=(v,u)`, both with the features of :math:`e`.

Dataset facts (tasks, metric, split, URL) come from OGB's own ``master.csv``.
"""
import os
import shutil
import tempfile
import zipfile
from functools import lru_cache
from pathlib import Path
from typing import Dict, List

import numpy as np
import pandas as pd
import torch

from .benchmark import Benchmark
from .cache import GraphStore, cache_path, cached, collate_graphs, file_fingerprint, recollate
from .raw import RawDataError, RawFile, is_writable, missing_error, resolve_root, verify_file
from .transforms import apply_pe, pe_dims, pe_options

RAW_FILES = ("edge.csv.gz", "num-node-list.csv.gz", "num-edge-list.csv.gz",
             "node-feat.csv.gz", "edge-feat.csv.gz", "graph-label.csv.gz")
SPLITS = ("train", "valid", "test")

# SHA-256 of the official ogbg-molhiv release (they match checksums
# published independently of this project); others are checked structurally.
KNOWN_SHA256: Dict[str, Dict[str, str]] = {
    "ogbg-molhiv": {
        "raw/edge-feat.csv.gz": "a59f5bcf890de811555f5d3819a96f713b4f8b6204801f286991c197afacf836",
        "raw/edge.csv.gz": "d279b2d408f553cdc6e8ff9712e8eb52ee8831e6f63d29431812e27bca119389",
        "raw/graph-label.csv.gz": "88f950d08c606556cca1c1ffef05229f46d64043ad7fa617e8938a3ae9779993",
        "raw/node-feat.csv.gz": "1e875d13c6442622d2b4f3763e7b0ef48cf2c769828b087ef0efe91c3bdb574b",
        "raw/num-edge-list.csv.gz": "fa058f23514328fd69bc9c4c31fd8f5938c4ce18726855489d0c0e2dfeaddd37",
        "raw/num-node-list.csv.gz": "e26f7e29de4a3985c7f47482838c62f870c90c4d01871c57bfeae1b8d993a24b",
        "split/scaffold/test.csv.gz": "27485729d83edd6f47eb3b8daff69fdb32c9df6b36b17204ef87f8dc1a30eab1",
        "split/scaffold/train.csv.gz": "9f1e46e77897b3de3d19452cbd47c312e2844a0ec664c1c9dc897c10d12e42f0",
        "split/scaffold/valid.csv.gz": "eaf4d6b4630f9e689d2b203669674d0dc309673319e8ac32daa9e9ca90e2e1fa",
    },
}


@lru_cache(maxsize=1)
def _master() -> pd.DataFrame:
    import importlib.util
    spec = importlib.util.find_spec("ogb")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("the ogb package is required for ogbg-* datasets")
    path = Path(list(spec.submodule_search_locations)[0]) / "graphproppred" / "master.csv"
    return pd.read_csv(path, index_col=0, keep_default_na=False)


def ogb_mol_names() -> List[str]:
    """All ``ogbg-mol*`` names listed in OGB's ``master.csv``."""
    return sorted(c for c in _master().columns if c.startswith("ogbg-mol"))


def ogb_meta(name: str) -> Dict[str, object]:
    """Facts about ``name`` from OGB's ``master.csv``."""
    if name not in ogb_mol_names():
        raise KeyError(f"unknown OGB molecule dataset '{name}'; available: "
                       f"{ogb_mol_names()}")
    m = _master()[name]
    return {
        "num_tasks": int(m["num tasks"]),
        "metric": str(m["eval metric"]),
        "task_type": str(m["task type"]),
        "url": str(m["url"]),
        "split": str(m["split"]),
        "download_name": str(m["download_name"]),
        "add_inverse_edge": str(m["add_inverse_edge"]) == "True",
    }


def raw_specs(name: str) -> List[RawFile]:
    """The raw and split files of ``name`` with their URL and checksums."""
    meta = ogb_meta(name)
    sha = KNOWN_SHA256.get(name, {})
    rels = [f"raw/{f}" for f in RAW_FILES]
    rels += [f"split/{meta['split']}/{s}.csv.gz" for s in SPLITS]
    return [RawFile(r, str(meta["url"]), sha256=sha.get(r)) for r in rels]


def _download_archive(name: str, root: Path) -> None:
    """Downloads and unpacks OGB's zip into ``<root>/<ogbg_name>``."""
    from torch_geometric.data import download_url

    meta = ogb_meta(name)
    target = root / name.replace("-", "_")
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=".download-"))
    try:
        try:
            archive = download_url(str(meta["url"]), str(tmp), log=False)
            with zipfile.ZipFile(archive) as zf:
                zf.extractall(tmp)
        except Exception as exc:
            raise RawDataError(f"downloading {meta['url']} for {name} into "
                               f"{target} failed: {exc}") from exc
        unpacked = tmp / str(meta["download_name"])
        if not unpacked.is_dir():
            raise RawDataError(f"{meta['url']} did not contain the folder "
                               f"'{meta['download_name']}'")
        os.replace(unpacked, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def ensure_raw(name: str, root: Path, download: bool = True,
               verify: bool = True) -> Path:
    """Returns ``<root>/<ogbg_name>``, downloading it if absent.

    Raises:
        RawDataError: a file is missing (naming the path and URL), the folder
            is incomplete, not writable, or a known checksum differs.
    """
    folder = root / name.replace("-", "_")
    specs = raw_specs(name)
    missing = [s for s in specs if not (folder / s.path).is_file()]
    if missing:
        if folder.exists():
            raise missing_error(folder, missing, f"{folder} exists but is "
                                "incomplete; remove it (to download it again) "
                                "or restore the files.")
        if not download:
            raise missing_error(folder, missing,
                                "Downloads are disabled (download=False).")
        if not is_writable(root):
            raise missing_error(folder, missing, f"{root} is not writable, so "
                                "the dataset cannot be downloaded there; "
                                "download it yourself or pass a writable root=.")
        _download_archive(name, root)
        verify = True  # always check what was downloaded
    if verify:
        for s in specs:
            verify_file(folder / s.path, s)
    return folder


def _read_csv(path: Path, url: str, dtype=None) -> np.ndarray:
    try:
        return pd.read_csv(path, compression="gzip", header=None,
                           dtype=dtype).values
    except Exception as exc:
        raise RawDataError(f"cannot parse {path} ({type(exc).__name__}: "
                           f"{exc}); the file is corrupt. Official URL: "
                           f"{url}") from exc


def read_raw(folder: Path, name: str) -> Dict[str, object]:
    r"""Parses OGB's raw CSV files into collated tensors.

    Returns:
        ``{"data": ..., "slices": ..., "splits": {split: index tensor}}``
        with ``x`` long ``[N, 9]``, ``edge_attr`` long ``[E, 3]`` (both
        directions), ``y`` float ``[G, T]`` (``NaN`` = missing).
    """
    meta = ogb_meta(name)
    url = str(meta["url"])
    r = folder / "raw"
    edge = _read_csv(r / "edge.csv.gz", url).astype(np.int64)
    num_nodes = _read_csv(r / "num-node-list.csv.gz", url).astype(np.int64).reshape(-1)
    num_edges = _read_csv(r / "num-edge-list.csv.gz", url).astype(np.int64).reshape(-1)
    node_feat = _read_csv(r / "node-feat.csv.gz", url).astype(np.int64)
    edge_feat = _read_csv(r / "edge-feat.csv.gz", url).astype(np.int64)
    labels = _read_csv(r / "graph-label.csv.gz", url).astype(np.float32)

    g = num_nodes.shape[0]
    checks = [
        (num_edges.shape[0] == g, "num-edge-list and num-node-list differ in length"),
        (node_feat.shape[0] == num_nodes.sum(), "node-feat rows != sum(num-node-list)"),
        (edge.shape[0] == num_edges.sum(), "edge rows != sum(num-edge-list)"),
        (edge_feat.shape[0] == edge.shape[0], "edge-feat rows != edge rows"),
        (labels.shape[0] == g, "graph-label rows != number of graphs"),
        (labels.shape[1] == meta["num_tasks"], "graph-label columns != num tasks"),
    ]
    for ok, what in checks:
        if not ok:
            raise RawDataError(f"{r} is inconsistent: {what}; the files are "
                               f"corrupt. Official URL: {url}")
    # Local node indices must lie inside their own graph.
    owner_size = np.repeat(num_nodes, num_edges)
    if edge.size and ((edge < 0).any() or (edge.max(1) >= owner_size).any()):
        raise RawDataError(f'{r / "edge.csv.gz"} has node indices outside '
                           f'their graph; the file is corrupt. URL: {url}')

    edge_index = torch.from_numpy(edge.T.copy())
    edge_attr = torch.from_numpy(edge_feat)
    if meta["add_inverse_edge"]:
        both = torch.empty(2, 2 * edge.shape[0], dtype=torch.long)
        both[:, 0::2] = edge_index
        both[:, 1::2] = edge_index.flip(0)
        edge_index = both
        edge_attr = edge_attr.repeat_interleave(2, dim=0)
        num_edges = 2 * num_edges

    data, slices = collate_graphs(
        torch.from_numpy(num_nodes), torch.from_numpy(num_edges),
        {"x": torch.from_numpy(node_feat)}, edge_index,
        {"edge_attr": edge_attr}, {"y": torch.from_numpy(labels)})

    splits = {}
    for s in SPLITS:
        path = folder / "split" / str(meta["split"]) / f"{s}.csv.gz"
        idx = torch.from_numpy(_read_csv(path, url).astype(np.int64).reshape(-1))
        if idx.numel() and (idx.min() < 0 or idx.max() >= g):
            raise RawDataError(f"{path} has graph indices outside [0, {g}); "
                               f"the file is corrupt. URL: {url}")
        splits[s] = idx
    return {"data": data, "slices": slices, "splits": splits}


def with_pe(payload: Dict[str, object], opts: Dict[str, object]) -> Dict[str, object]:
    """Adds the encodings of ``opts`` to every graph of a payload."""
    if not opts:
        return payload
    store = GraphStore(payload["data"], payload["slices"])
    data, slices = recollate(apply_pe((store[i] for i in range(len(store))), opts))
    return {**payload, "data": data, "slices": slices}


def split_benchmark_sets(payload: Dict[str, object], transform=None):
    """``(train, valid, test)`` views of the stored graphs."""
    store = GraphStore(payload["data"], payload["slices"], transform=transform)
    return tuple(store[payload["splits"][s]] for s in SPLITS)


def load_ogb(name: str, root=None, cache_dir=None, download: bool = True,
             verify: bool = True, force_reload: bool = False, pe=None,
             rwse_dim: int = 16, lap_pe_dim: int = 8,
             pe_seed: int = 0) -> Benchmark:
    r"""Loads an ``ogbg-mol*`` dataset with its official split.

    Args:
        name: e.g. ``"ogbg-molhiv"``.
        root: folder holding ``ogbg_molhiv/`` (may be read-only).
        cache_dir: where processed tensors are cached.
        download: download the official zip when files are missing.
        verify: check known checksums of present files.
        force_reload: rebuild the cache.
        pe, rwse_dim, lap_pe_dim, pe_seed: see :mod:`.transforms`.
    """
    meta = ogb_meta(name)
    folder = ensure_raw(name, resolve_root(root), download, verify)
    opts = pe_options(pe, rwse_dim, lap_pe_dim, pe_seed)
    files = [folder / s.path for s in raw_specs(name)]
    path = cache_path(cache_dir, name, {"dataset": name, "raw": file_fingerprint(files), **opts})

    payload, info = cached(path, lambda: with_pe(read_raw(folder, name), opts), force_reload)
    train, valid, test = split_benchmark_sets(payload)
    binary = "classification" in str(meta["task_type"])
    num_tasks = int(meta["num_tasks"])
    task = ("regression" if not binary else
            "binary" if num_tasks == 1 else "multilabel")
    info = {"root": str(folder), **info, "options": opts}
    return Benchmark(
        name=name, train=train, valid=valid, test=test, task=task,
        num_tasks=num_tasks, num_classes=2 if binary else 0,
        metric=str(meta["metric"]), level="graph", atom_features=True,
        num_node_features=9, num_edge_features=3, pe=pe_dims(opts), info=info)
