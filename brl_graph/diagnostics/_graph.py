r"""Graph helpers shared by the diagnostics: input checks, the weighted Laplacian,
connected components and hop (shortest-path) distances.

Every diagnostic reads :obj:`edge_index` as an **undirected** graph: each unordered
pair :math:`\{u, v\}` with :math:`u \ne v` is one edge, whatever directions are
listed. Its weight is the mean of the weights given for :math:`(u, v)` and
:math:`(v, u)` (parallel entries are merged the same way), so a PyG graph that
stores both directions with equal weights keeps that weight. Self-loops are
dropped: they do not change the Laplacian.
"""
from __future__ import annotations

from typing import Optional, Tuple

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components, shortest_path
import torch
from torch import Tensor


def check_graph(edge_index: Tensor, num_nodes: int,
                edge_weight: Optional[Tensor] = None) -> None:
    """Raises :class:`ValueError` naming the problem if the graph is malformed."""
    if not isinstance(edge_index, Tensor):
        raise TypeError(f"edge_index must be a torch.Tensor, got {type(edge_index).__name__}")
    if edge_index.dim() != 2 or edge_index.size(0) != 2:
        raise ValueError(f"edge_index must have shape [2, E], got {list(edge_index.shape)}")
    if edge_index.dtype not in (torch.int64, torch.int32):
        raise ValueError(f"edge_index must be an integer tensor, got {edge_index.dtype}")
    if isinstance(num_nodes, bool) or not isinstance(num_nodes, (int, np.integer)):
        raise TypeError(f"num_nodes must be an int, got {type(num_nodes).__name__}")
    if num_nodes < 0:
        raise ValueError(f"num_nodes must be >= 0, got {num_nodes}")
    if edge_index.numel() > 0:
        lo, hi = int(edge_index.min()), int(edge_index.max())
        if lo < 0 or hi >= num_nodes:
            raise ValueError(f"edge_index holds node indices in [{lo}, {hi}], "
                             f"outside [0, num_nodes={num_nodes})")
    if edge_weight is not None:
        if edge_weight.dim() != 1 or edge_weight.numel() != edge_index.size(1):
            raise ValueError(f"edge_weight must have shape [E={edge_index.size(1)}], "
                             f"got {list(edge_weight.shape)}")
        w = edge_weight.detach().double()
        if not bool(torch.isfinite(w).all()) or bool((w <= 0).any()):
            raise ValueError("edge_weight must be finite and strictly positive "
                             "(a zero weight is a missing edge: drop it instead)")


def check_nodes(index: Tensor, num_nodes: int, name: str) -> Tensor:
    """Checks a 1-D tensor of node indices and returns it as ``int64`` on the CPU."""
    if not isinstance(index, Tensor):
        index = torch.as_tensor(index)
    if index.dim() != 1:
        raise ValueError(f"{name} must be a 1-D tensor of node indices, got shape {list(index.shape)}")
    if index.numel() > 0 and index.is_floating_point():
        raise ValueError(f"{name} must hold integer node indices, got {index.dtype}")
    index = index.long().cpu()
    if index.numel() > 0 and (int(index.min()) < 0 or int(index.max()) >= num_nodes):
        raise ValueError(f"{name} holds indices in [{int(index.min())}, {int(index.max())}], "
                         f"outside [0, num_nodes={num_nodes})")
    return index


def check_pairs(pairs: Tensor, num_nodes: int) -> Tensor:
    """Checks node pairs given as ``[2, P]`` and returns them as ``int64`` NumPy-ready CPU tensor."""
    if not isinstance(pairs, Tensor):
        pairs = torch.as_tensor(pairs)
    if pairs.dim() != 2 or pairs.size(0) != 2:
        raise ValueError(f"pairs must have shape [2, P] (like edge_index), got {list(pairs.shape)}")
    if pairs.numel() > 0 and pairs.is_floating_point():
        raise ValueError(f"pairs must hold integer node indices, got {pairs.dtype}")
    pairs = pairs.long().cpu()
    if pairs.numel() > 0 and (int(pairs.min()) < 0 or int(pairs.max()) >= num_nodes):
        raise ValueError(f"pairs holds node indices in [{int(pairs.min())}, {int(pairs.max())}], "
                         f"outside [0, num_nodes={num_nodes})")
    return pairs


def undirected_edges(edge_index: Tensor, num_nodes: int,
                     edge_weight: Optional[Tensor] = None
                     ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The unordered edges ``(u, v, w)`` with ``u < v``, merged as the module describes."""
    ei = edge_index.detach().cpu().numpy().astype(np.int64, copy=False)
    w = (np.ones(ei.shape[1]) if edge_weight is None
         else edge_weight.detach().cpu().double().numpy())
    u, v = np.minimum(ei[0], ei[1]), np.maximum(ei[0], ei[1])
    keep = u != v
    u, v, w = u[keep], v[keep], w[keep]
    if u.size == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, np.zeros(0)
    key = u * max(num_nodes, 1) + v
    uniq, inv = np.unique(key, return_inverse=True)
    w = np.bincount(inv, weights=w) / np.bincount(inv)
    return uniq // max(num_nodes, 1), uniq % max(num_nodes, 1), w


def adjacency(u: np.ndarray, v: np.ndarray, w: np.ndarray, num_nodes: int) -> sp.csr_matrix:
    """The symmetric weighted adjacency matrix of unordered edges ``(u, v, w)``."""
    a = sp.coo_matrix((np.concatenate([w, w]), (np.concatenate([u, v]), np.concatenate([v, u]))),
                      shape=(num_nodes, num_nodes))
    return a.tocsr()


def laplacian(u: np.ndarray, v: np.ndarray, w: np.ndarray, num_nodes: int) -> sp.csr_matrix:
    r"""The weighted Laplacian :math:`L = D - W` as a float64 CSR matrix."""
    a = adjacency(u, v, w, num_nodes)
    deg = np.asarray(a.sum(axis=1)).ravel()
    return (sp.diags(deg, dtype=np.float64) - a).tocsr()


def components(u: np.ndarray, v: np.ndarray, num_nodes: int) -> Tuple[int, np.ndarray]:
    """Connected components: their number and each node's label.

    Labels follow :func:`scipy.sparse.csgraph.connected_components`, which numbers
    components in the order of their smallest node index.
    """
    if num_nodes == 0:
        return 0, np.zeros(0, dtype=np.int64)
    a = adjacency(u, v, np.ones(u.size), num_nodes)
    n, labels = connected_components(a, directed=False)
    return int(n), labels.astype(np.int64)


def hop_distances(edge_index: Tensor, num_nodes: int,
                  sources: Optional[Tensor] = None) -> Tensor:
    r"""Shortest-path (hop) distances from ``sources`` to every node, on the
    undirected graph.

    Args:
        edge_index (Tensor): Edges ``[2, E]``.
        num_nodes (int): Number of nodes :math:`N`.
        sources (Tensor, optional): Source nodes ``[S]``; all nodes if ``None``.

    Returns:
        Tensor: ``float64`` distances ``[S, N]``; ``inf`` where no path exists.
    """
    check_graph(edge_index, num_nodes)
    src = (torch.arange(num_nodes) if sources is None
           else check_nodes(sources, num_nodes, "sources"))
    if src.numel() == 0:
        return torch.zeros(0, num_nodes, dtype=torch.float64)
    u, v, _ = undirected_edges(edge_index, num_nodes)
    a = adjacency(u, v, np.ones(u.size), num_nodes)
    d = shortest_path(a, method="D", directed=False, unweighted=True, indices=src.numpy())
    return torch.from_numpy(np.atleast_2d(d).astype(np.float64))
