r"""Collated graph storage and the on-disk cache of processed datasets.

A processed dataset is stored as plain tensors: one concatenated tensor per
attribute plus the PyG ``slices`` that cut it into graphs. Saving only
dictionaries of tensors keeps :func:`torch.load` safe with
``weights_only=True`` and independent of PyG's class layout.

Cache files live in ``<cache_dir>/<dataset>/<key>.pt`` where ``key`` hashes
the processing options and the raw files' names, sizes and modification
times, so a changed option or raw file never reuses stale data.
"""
import hashlib
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor
from torch_geometric.data import Data, InMemoryDataset

from brl_graph.io import atomic_write

#: Bumped whenever the layout of processed files changes.
FORMAT_VERSION = 1

PathLike = Union[str, os.PathLike]


def default_cache_dir() -> Path:
    """``$BRL_CACHE``, else ``$XDG_CACHE_HOME/brl_graph``, else
    ``~/.cache/brl_graph``."""
    if os.environ.get("BRL_CACHE"):
        return Path(os.environ["BRL_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "brl_graph"


class GraphStore(InMemoryDataset):
    r"""An in-memory dataset built directly from collated tensors.

    Args:
        data (Mapping[str, Tensor]): attribute name -> concatenated tensor.
        slices (Mapping[str, Tensor]): attribute name -> offsets of shape
            ``[num_graphs + 1]`` along the attribute's concatenation axis.
        transform (callable, optional): applied to each graph on access.
    """
    def __init__(self, data: Mapping[str, Tensor], slices: Mapping[str, Tensor],
                 transform: Optional[Callable] = None) -> None:
        super().__init__(None, transform)
        missing = set(data) ^ set(slices)
        if missing:
            raise ValueError(f"data and slices must have the same keys; "
                             f"mismatched: {sorted(missing)}")
        self._data = Data.from_dict(dict(data))
        self.slices = dict(slices)


def collate_graphs(
    num_nodes: Tensor,
    num_edges: Tensor,
    node_attrs: Mapping[str, Tensor],
    edge_index: Tensor,
    edge_attrs: Mapping[str, Tensor],
    graph_attrs: Mapping[str, Tensor],
) -> Tuple[Dict[str, Tensor], Dict[str, Tensor]]:
    r"""Builds ``(data, slices)`` from already concatenated per-graph arrays.

    Args:
        num_nodes (Tensor): nodes per graph, shape ``[G]``.
        num_edges (Tensor): edges per graph, shape ``[G]``.
        node_attrs: name -> tensor with ``sum(num_nodes)`` rows.
        edge_index (Tensor): local (per-graph) node indices, ``[2, sum(E)]``.
        edge_attrs: name -> tensor with ``sum(num_edges)`` rows.
        graph_attrs: name -> tensor with ``G`` rows (one per graph).

    Returns:
        ``(data, slices)`` as plain dictionaries of tensors.
    """
    g = num_nodes.numel()
    if num_edges.numel() != g:
        raise ValueError(f"num_nodes has {g} graphs but num_edges has "
                         f"{num_edges.numel()}")
    node_ptr = _offsets(num_nodes)
    edge_ptr = _offsets(num_edges)
    if edge_index.dim() != 2 or edge_index.size(0) != 2:
        raise ValueError(f"edge_index must have shape [2, E], got "
                         f"{tuple(edge_index.shape)}")
    if edge_index.size(1) != int(edge_ptr[-1]):
        raise ValueError(f"edge_index has {edge_index.size(1)} edges but "
                         f"num_edges sums to {int(edge_ptr[-1])}")
    data = {"edge_index": edge_index.long()}
    slices = {"edge_index": edge_ptr}
    for name, value in node_attrs.items():
        _check_rows(name, value, int(node_ptr[-1]), "sum(num_nodes)")
        data[name], slices[name] = value, node_ptr
    for name, value in edge_attrs.items():
        _check_rows(name, value, int(edge_ptr[-1]), "sum(num_edges)")
        data[name], slices[name] = value, edge_ptr
    graph_ptr = torch.arange(g + 1)
    for name, value in graph_attrs.items():
        _check_rows(name, value, g, "the number of graphs")
        data[name], slices[name] = value, graph_ptr
    return data, slices


def _offsets(counts: Tensor) -> Tensor:
    counts = counts.long().view(-1)
    if (counts < 0).any():
        raise ValueError("counts must be non-negative")
    return torch.cat([counts.new_zeros(1), counts.cumsum(0)])


def _check_rows(name: str, value: Tensor, expected: int, what: str) -> None:
    if value.size(0) != expected:
        raise ValueError(f"attribute '{name}' has {value.size(0)} rows but "
                         f"{what} is {expected}")


def recollate(graphs: Iterable[Data]) -> Tuple[Dict[str, Tensor], Dict[str, Tensor]]:
    """Collates transformed graphs back into ``(data, slices)`` dicts."""
    data, slices = InMemoryDataset.collate(list(graphs))
    out = {k: v for k, v in data.to_dict().items() if isinstance(v, Tensor)}
    return out, {k: slices[k] for k in out}


def file_fingerprint(paths: Sequence[Path]) -> List[List[Any]]:
    """Name, size and modification time of each raw file (for cache keys)."""
    out = []
    for p in paths:
        st = Path(p).stat()
        out.append([Path(p).name, st.st_size, st.st_mtime_ns])
    return out


def cache_key(options: Mapping[str, Any]) -> str:
    """A short stable hash of JSON-serialisable ``options``."""
    text = json.dumps({"format": FORMAT_VERSION, **options}, sort_keys=True,
                      default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def cache_path(cache_dir: Optional[PathLike], dataset: str,
               options: Mapping[str, Any]) -> Path:
    """``<cache_dir>/<dataset>/<cache_key(options)>.pt``."""
    root = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    return root / dataset / f"{cache_key(options)}.pt"


_SMALL_INTS = (torch.uint8, torch.int16, torch.int32)


def pack_integers(tensors: Mapping[str, Tensor]) -> Tuple[Dict[str, Tensor], Dict[str, str]]:
    """Stores each integer tensor in the smallest integer dtype holding its
    values (OGB features fit in a byte), returning the original dtypes."""
    packed, dtypes = {}, {}
    for name, t in tensors.items():
        dtypes[name] = str(t.dtype).replace("torch.", "")
        if t.dtype in (torch.int64, torch.int32) and t.numel() > 0:
            lo, hi = int(t.min()), int(t.max())
            for small in _SMALL_INTS:
                info = torch.iinfo(small)
                if info.min <= lo and hi <= info.max:
                    t = t.to(small)
                    break
        packed[name] = t
    return packed, dtypes


def unpack_integers(tensors: Mapping[str, Tensor],
                    dtypes: Mapping[str, str]) -> Dict[str, Tensor]:
    """Inverse of :func:`pack_integers`."""
    return {k: v.to(getattr(torch, dtypes[k])) if k in dtypes else v
            for k, v in tensors.items()}


def save_processed(path: Path, payload: Mapping[str, Any]) -> None:
    """Atomically writes ``payload`` (dicts of tensors, str, int, float);
    integer tensors under ``"data"`` are stored in a compact dtype.

    Raises:
        PermissionError: naming the cache folder when it is not writable.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=path.parent, suffix=".tmp")
        probe.close()
    except OSError as exc:
        raise PermissionError(
            f"cannot write processed data to {path.parent} ({exc}); pass a "
            f"writable cache_dir= or set $BRL_CACHE") from exc
    payload = dict(payload)
    if "data" in payload:
        payload["data"], payload["dtypes"] = pack_integers(payload["data"])
    atomic_write(path, lambda f: torch.save({"format": FORMAT_VERSION, **payload}, f))


def load_processed(path: Path) -> Optional[Dict[str, Any]]:
    """Loads a cache file with ``weights_only=True``; ``None`` when it is
    absent, unreadable or of an older format (it is then rebuilt)."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # A truncated or foreign file: rebuild it.
        return None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT_VERSION:
        return None
    if "data" in payload:
        payload["data"] = unpack_integers(payload["data"],
                                          payload.pop("dtypes", {}))
    return payload


def cached(path: Path, build: Callable[[], Dict[str, Any]],
           force_reload: bool = False) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """Returns the payload at ``path``, building and saving it if needed, and
    what happened: ``{"cache_file", "from_cache", "load_seconds"}`` plus
    ``"process_seconds"`` when it was built."""
    t0 = time.perf_counter()
    info: Dict[str, Any] = {"cache_file": str(path)}
    payload = None if force_reload else load_processed(path)
    if payload is None:
        payload = build()
        info["process_seconds"] = time.perf_counter() - t0
        save_processed(path, payload)
    info["from_cache"] = "process_seconds" not in info
    info["load_seconds"] = time.perf_counter() - t0
    return payload, info
