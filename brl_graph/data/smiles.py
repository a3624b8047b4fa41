r"""SMILES -> OGB-featurised graphs, and the ``smiles-csv`` loader.

Graphs are built by OGB's ``smiles2graph`` (RDKit), so they have the same
integer atom features (``x``: long ``[N, 9]``) and bond features
(``edge_attr``: long ``[E, 3]``, both directions) as the ``ogbg-mol*`` sets.
"""
import multiprocessing
import warnings
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import pandas as pd
import torch

from .benchmark import DEFAULT_METRIC, Benchmark
from .cache import cache_path, cached, collate_graphs, file_fingerprint
from .ogb import split_benchmark_sets, with_pe
from .raw import RawDataError
from .transforms import pe_dims, pe_options

Graph = Tuple[np.ndarray, np.ndarray, np.ndarray]  # x, edge_index, edge_attr


def _featurize_chunk(smiles: Sequence[object]) -> List[Union[Graph, str]]:
    """Graphs of a chunk; a string (the reason) for each unusable SMILES."""
    from ogb.utils import smiles2graph
    from rdkit import rdBase

    blocker = rdBase.BlockLogs()  # we report bad rows ourselves
    out: List[Union[Graph, str]] = []
    for s in smiles:
        if not isinstance(s, str) or not s.strip():
            out.append("empty SMILES")
            continue
        try:
            g = smiles2graph(s)
        except Exception:
            out.append("RDKit cannot parse it")
            continue
        if g["num_nodes"] == 0:
            out.append("molecule has no atoms")
            continue
        out.append((g["node_feat"], g["edge_index"], g["edge_feat"]))
    del blocker
    return out


def featurize_smiles(smiles: Sequence[object], num_workers: int = 0,
                     chunk_size: int = 512) -> List[Union[Graph, str]]:
    r"""Runs OGB's ``smiles2graph`` on every SMILES.

    Args:
        smiles: the strings (non-strings count as empty).
        num_workers: worker processes (0 = in this process). The output does
            not depend on it.
        chunk_size: SMILES per task sent to a worker.

    Returns:
        per input, ``(x, edge_index, edge_attr)`` arrays, or a string saying
        why the SMILES is unusable.
    """
    smiles = list(smiles)
    if num_workers < 0:
        raise ValueError(f"num_workers must be >= 0, got {num_workers}")
    if num_workers == 0 or len(smiles) <= chunk_size:
        return _featurize_chunk(smiles)
    chunks = [smiles[i:i + chunk_size] for i in range(0, len(smiles), chunk_size)]
    # fork is cheap and the workers only use RDKit and NumPy.
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    with multiprocessing.get_context(method).Pool(num_workers) as pool:
        parts = pool.map(_featurize_chunk, chunks)
    return [g for part in parts for g in part]


def stack_graphs(graphs: Sequence[Graph]) -> Dict[str, torch.Tensor]:
    """Concatenates per-graph arrays into collate-ready tensors."""
    return {
        "num_nodes": torch.tensor([g[0].shape[0] for g in graphs], dtype=torch.long),
        "num_edges": torch.tensor([g[1].shape[1] for g in graphs], dtype=torch.long),
        "x": torch.from_numpy(np.concatenate([g[0] for g in graphs]).astype(np.int64)),
        "edge_index": torch.from_numpy(
            np.concatenate([g[1] for g in graphs], axis=1).astype(np.int64)),
        "edge_attr": torch.from_numpy(
            np.concatenate([g[2] for g in graphs]).astype(np.int64).reshape(-1, 3)),
    }


def scaffold_split(smiles: Sequence[str],
                   fractions: Tuple[float, float, float] = (0.8, 0.1, 0.1)
                   ) -> Dict[str, torch.Tensor]:
    r"""Deterministic Bemis-Murcko scaffold split, in the style of OGB and
    MoleculeNet.

    Molecules are grouped by scaffold (with chirality); groups are taken from
    the largest to the smallest (ties: earliest first) and each goes to
    train while it fits under ``fractions[0]``, else to valid while it fits
    under ``fractions[0] + fractions[1]``, else to test.
    """
    from rdkit import Chem
    from rdkit.Chem.Scaffolds.MurckoScaffold import MurckoScaffoldSmiles

    groups: Dict[str, List[int]] = {}
    for i, s in enumerate(smiles):
        mol = Chem.MolFromSmiles(s)
        scaffold = MurckoScaffoldSmiles(mol=mol, includeChirality=True)
        groups.setdefault(scaffold, []).append(i)
    ordered = sorted(groups.values(), key=lambda g: (len(g), -g[0]), reverse=True)
    n = len(smiles)
    train_cut, valid_cut = fractions[0] * n, (fractions[0] + fractions[1]) * n
    out: Dict[str, List[int]] = {"train": [], "valid": [], "test": []}
    for group in ordered:
        if len(out["train"]) + len(group) <= train_cut:
            out["train"] += group
        elif len(out["train"]) + len(out["valid"]) + len(group) <= valid_cut:
            out["valid"] += group
        else:
            out["test"] += group
    return {k: torch.tensor(sorted(v), dtype=torch.long) for k, v in out.items()}


def random_split(n: int, fractions: Tuple[float, float, float] = (0.8, 0.1, 0.1),
                 seed: int = 0) -> Dict[str, torch.Tensor]:
    """A seeded random split of ``range(n)`` with the given fractions."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_train = int(round(fractions[0] * n))
    n_valid = int(round(fractions[1] * n))
    parts = perm[:n_train], perm[n_train:n_train + n_valid], perm[n_train + n_valid:]
    return {k: p.sort().values for k, p in zip(("train", "valid", "test"), parts)}


def _check_fractions(fractions: Sequence[float]) -> Tuple[float, float, float]:
    f = tuple(float(v) for v in fractions)
    if len(f) != 3 or min(f) < 0 or abs(sum(f) - 1.0) > 1e-6:
        raise ValueError(f"split_fractions must be three non-negative numbers "
                         f"summing to 1, got {fractions}")
    return f  # type: ignore[return-value]


def infer_task(y: np.ndarray) -> str:
    """``binary``/``multilabel`` if every known target is 0 or 1, else
    ``regression``."""
    known = y[~np.isnan(y)]
    if known.size and np.isin(known, (0.0, 1.0)).all():
        return "binary" if y.shape[1] == 1 else "multilabel"
    return "regression"


def _targets(df: pd.DataFrame, columns: List[str], path: Path) -> np.ndarray:
    out = np.empty((len(df), len(columns)), dtype=np.float64)
    for j, c in enumerate(columns):
        values = pd.to_numeric(df[c], errors="coerce")
        bad = values.isna() & df[c].notna()
        if bad.any():
            rows = bad.to_numpy().nonzero()[0][:10].tolist()
            raise ValueError(f"{path}: column '{c}' has non-numeric values in "
                             f"rows {rows} (0-based data rows)")
        out[:, j] = values.to_numpy(dtype=np.float64)
    return out


def _report_bad(path: Path, bad: List[Tuple[int, object, str]]) -> None:
    if not bad:
        return
    shown = "; ".join(f"row {i} (line {i + 2}): {s!r}: {why}"
                      for i, s, why in bad[:20])
    more = f" and {len(bad) - 20} more" if len(bad) > 20 else ""
    warnings.warn(f"{path}: skipped {len(bad)} row(s) with unusable SMILES "
                  f"(rows are 0-based data rows, lines 1-based with the "
                  f"header on line 1): {shown}{more}", UserWarning, stacklevel=3)


def load_smiles_csv(path, smiles_column: str = "smiles",
                    target_columns: Union[str, Sequence[str], None] = None,
                    split: str = "scaffold", task: Optional[str] = None,
                    metric: Optional[str] = None, seed: int = 0,
                    split_fractions: Sequence[float] = (0.8, 0.1, 0.1),
                    num_workers: int = 0, root=None, cache_dir=None,
                    force_reload: bool = False, pe=None, rwse_dim: int = 16,
                    lap_pe_dim: int = 8, pe_seed: int = 0) -> Benchmark:
    r"""Builds a benchmark from any CSV with a SMILES column.

    Rows whose SMILES cannot be parsed are skipped with a warning that names
    their row numbers; missing targets become ``NaN``.

    Args:
        path: the CSV file (relative paths are also tried under ``root``).
        smiles_column: the column with SMILES strings.
        target_columns: one or more numeric target columns (required).
        split: ``"scaffold"`` (deterministic) or ``"random"`` (uses ``seed``).
        task: ``"binary"``, ``"multilabel"``, ``"multiclass"`` or
            ``"regression"``; inferred from the targets when omitted.
        metric: defaults by task (``rocauc``, ``accuracy``, ``rmse``).
        seed: seed of the random split.
        split_fractions: train/valid/test fractions.
        num_workers: processes used to featurise SMILES.
        root, cache_dir, force_reload, pe, rwse_dim, lap_pe_dim, pe_seed:
            as for the other loaders.
    """
    if path is None:
        raise ValueError("smiles-csv needs path= (the CSV file)")
    path = Path(path).expanduser()
    if not path.is_absolute() and not path.is_file() and root is not None:
        path = Path(root).expanduser() / path
    if not path.is_file():
        raise RawDataError(f"SMILES CSV not found: {path}")
    if target_columns is None:
        raise ValueError("smiles-csv needs target_columns= (one or more "
                         "numeric columns of the CSV)")
    columns = [target_columns] if isinstance(target_columns, str) else list(target_columns)
    if split not in ("scaffold", "random"):
        raise ValueError(f"split must be 'scaffold' or 'random', got '{split}'")
    if task is not None and task not in DEFAULT_METRIC:
        raise ValueError(f"unknown task '{task}'; choose from {sorted(DEFAULT_METRIC)}")
    fractions = _check_fractions(split_fractions)
    opts = pe_options(pe, rwse_dim, lap_pe_dim, pe_seed)
    key = {"dataset": "smiles-csv", "file": str(path.resolve()),
           "raw": file_fingerprint([path]), "smiles_column": smiles_column,
           "targets": columns, "split": split, "task": task,
           "seed": seed if split == "random" else None,
           "fractions": list(fractions), **opts}
    cpath = cache_path(cache_dir, "smiles-csv", key)
    def build():
        try:
            df = pd.read_csv(path)
        except Exception as exc:
            raise RawDataError(f"cannot parse CSV {path}: {exc}") from exc
        absent = [c for c in [smiles_column, *columns] if c not in df.columns]
        if absent:
            raise KeyError(f"{path} has no column(s) {absent}; its columns "
                           f"are {list(df.columns)}")
        y = _targets(df, columns, path)
        graphs = featurize_smiles(df[smiles_column].tolist(), num_workers)
        bad = [(i, df[smiles_column].iloc[i], g) for i, g in enumerate(graphs)
               if isinstance(g, str)]
        keep = [i for i, g in enumerate(graphs) if not isinstance(g, str)]
        if not keep:
            raise RawDataError(f"{path}: no row has a usable SMILES")
        the_task = task or infer_task(y[keep])
        y_kept = y[keep]
        if the_task == "multiclass":
            if len(columns) != 1:
                raise ValueError("a multiclass task needs exactly one target column")
            yk = y_kept[:, 0]
            if np.isnan(yk).any() or (yk < 0).any() or (yk != np.round(yk)).any():
                raise ValueError(f"{path}: multiclass targets must be "
                                 f"non-negative integers without gaps")
            y_tensor = torch.from_numpy(yk.astype(np.int64))
        else:
            y_tensor = torch.from_numpy(y_kept.astype(np.float32))
        arrays = stack_graphs([graphs[i] for i in keep])
        data, slices = collate_graphs(
            arrays["num_nodes"], arrays["num_edges"], {"x": arrays["x"]},
            arrays["edge_index"], {"edge_attr": arrays["edge_attr"]},
            {"y": y_tensor})
        kept_smiles = [str(df[smiles_column].iloc[i]) for i in keep]
        splits = (scaffold_split(kept_smiles, fractions) if split == "scaffold"
                  else random_split(len(keep), fractions, seed))
        payload = {"data": data, "slices": slices, "splits": splits,
                   "meta": {"task": the_task,
                            "bad_rows": [[int(i), str(s), w] for i, s, w in bad],
                            "num_classes": int(y_tensor.max()) + 1
                            if the_task == "multiclass" else 0}}
        return with_pe(payload, opts)

    payload, info = cached(cpath, build, force_reload)
    meta = payload["meta"]
    _report_bad(path, [tuple(b) for b in meta["bad_rows"]])
    the_task = meta["task"]
    train, valid, test = split_benchmark_sets(payload)
    num_classes = (meta["num_classes"] if the_task == "multiclass" else
                   0 if the_task == "regression" else 2)
    return Benchmark(
        name="smiles-csv", train=train, valid=valid, test=test, task=the_task,
        num_tasks=1 if the_task == "multiclass" else len(columns),
        num_classes=num_classes, metric=metric or DEFAULT_METRIC[the_task],
        level="graph", atom_features=True, num_node_features=9,
        num_edge_features=3, pe=pe_dims(opts),
        info={"file": str(path), **info, "options": opts,
              "skipped_rows": [b[0] for b in meta["bad_rows"]],
              "target_columns": columns})
