r"""The single entry point :func:`load_dataset`."""
import inspect
from typing import Callable, List

from .benchmark import Benchmark
from .lrgb import PEPTIDES, PYG_LRGB, load_peptides, load_pyg_lrgb
from .ogb import load_ogb, ogb_mol_names
from .smiles import load_smiles_csv
from .synthetic import ring_transfer, tree_neighbors_match


_SYNTHETIC_AND_CSV = ("tree-neighbors-match", "ring-transfer", "smiles-csv")


def _target(name: str) -> Callable[..., Benchmark]:
    if name.startswith("ogbg-"):
        return load_ogb
    if name in PEPTIDES:
        return load_peptides
    if name in PYG_LRGB:
        return load_pyg_lrgb
    return {"tree-neighbors-match": tree_neighbors_match,
            "ring-transfer": ring_transfer,
            "smiles-csv": load_smiles_csv}[name]


def available_datasets() -> List[str]:
    """Every name :func:`load_dataset` accepts. Without the ``ogb`` package the
    ``ogbg-*`` names are left out: the other datasets do not need it."""
    try:
        ogb = ogb_mol_names()
    except ImportError:
        ogb = []
    return sorted([*ogb, *PEPTIDES, *PYG_LRGB, *_SYNTHETIC_AND_CSV])


def load_dataset(name: str, root=None, cache_dir=None, **options) -> Benchmark:
    r"""Loads a benchmark by name.

    Args:
        name: an ``ogbg-mol*`` name (e.g. ``"ogbg-molhiv"``),
            ``"peptides-func"``, ``"peptides-struct"``, ``"pascalvoc-sp"``,
            ``"coco-sp"``, ``"pcqm-contact"``, ``"tree-neighbors-match"``,
            ``"ring-transfer"`` or ``"smiles-csv"``.
        root: folder of the raw files (default ``$BRL_DATA`` or the project's
            ``datasets/``); may be read-only.
        cache_dir: folder of processed files (default ``$BRL_CACHE`` or
            ``~/.cache/brl_graph``).
        **options: per dataset, e.g. ``depth=`` (tree), ``nodes=``,
            ``variant=`` (ring), ``path=``, ``target_columns=`` (smiles-csv);
            for all: ``pe="rwse"|"lap"|[...]``, ``rwse_dim``, ``lap_pe_dim``,
            ``pe_seed``; for files: ``download``, ``force_reload``.

    Raises:
        KeyError: unknown name. ValueError: an option the loader does not
        take (the message lists the accepted ones).
    """
    names = available_datasets()
    if name not in names:
        if name.startswith("ogbg-"):
            ogb_mol_names()  # raises ImportError when ogb is what is missing
        raise KeyError(f"unknown dataset '{name}'; available: {names}")
    target = _target(name)
    params = inspect.signature(target).parameters
    accepted = [p for p in params if p != "name"]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ValueError(f"unknown option(s) {unknown} for dataset '{name}'; "
                         f"accepted: {accepted}")
    if "root" in params:
        options["root"] = root
    if "cache_dir" in params:
        options["cache_dir"] = cache_dir
    if "name" in params:
        options["name"] = name
    return target(**options)
