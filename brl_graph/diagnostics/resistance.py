r"""Effective resistance: how much a graph's geometry squashes information.

For a graph with weighted Laplacian :math:`L = D - W` and its pseudo-inverse
:math:`L^{+}`, the effective resistance between nodes :math:`u` and :math:`v` is

.. math::
    R(u, v) = (e_u - e_v)^{\top} L^{+} (e_u - e_v),

the voltage between :math:`u` and :math:`v` when a unit current is sent through the
graph read as an electrical network of conductances :math:`w_{uv}`. Large
resistance means few, long, or narrow paths: the over-squashing regime of
message passing (Black et al., 2023). The *total* effective resistance sums it over
unordered pairs, :math:`R_{tot} = \sum_{u<v} R(u, v) = n \operatorname{tr}(L^{+})`
for a connected graph on :math:`n` nodes.

Three ways to compute it, chosen by ``method``:

* **dense exact**: :math:`L^{+} = (L + \tfrac{1}{n}\mathbf{1}\mathbf{1}^{\top})^{-1}
  - \tfrac{1}{n}\mathbf{1}\mathbf{1}^{\top}`, applied per connected component; for
  graphs of at most ``dense_threshold`` nodes;
* **sparse exact**: one sparse LU factorisation of the *grounded* Laplacian (one
  node per component removed, which leaves it positive definite), then one solve
  per requested pair;
* **approximate** (Spielman and Srivastava, 2008): with the incidence matrix
  :math:`B` and a random :math:`k \times m` sign matrix :math:`Q/\sqrt{k}`, the rows
  of :math:`Z = Q W^{1/2} B L^{+}` cost :math:`k` Laplacian solves and give
  :math:`R(u, v) \approx \lVert Z (e_u - e_v) \rVert^2`, a Johnson--Lindenstrauss
  estimate whose relative standard deviation is about :math:`\sqrt{2/k}`.

**Disconnected graphs.** The resistance between nodes of different components is
``inf`` (no current can flow), so :func:`total_effective_resistance` is ``inf`` for a
disconnected node set; :func:`component_total_resistance` gives the finite total
of each component instead.

The graph is read as undirected; see :mod:`brl_graph.diagnostics._graph` for how
directions, duplicates and self-loops are merged.
"""
from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Optional, Tuple

import numpy as np
import scipy.linalg
import scipy.sparse as sp
from scipy.sparse.linalg import splu
import torch
from torch import Tensor

from brl_graph.diagnostics._graph import (check_graph, check_nodes, check_pairs,
                                          components, hop_distances, laplacian,
                                          undirected_edges)

_METHODS = ("auto", "exact", "approx")
#: Largest graph for which a full ``[N, N]`` resistance matrix is returned.
MAX_FULL_NODES = 8192
# Right-hand sides per sparse solve call: bounds the dense ``[N, chunk]`` blocks to ~32 MB.
_SOLVE_ELEMENTS = 1 << 22


class _GroundedSolver:
    r"""Solves :math:`L x = b` by grounding one node per component.

    Removing the first node of every component leaves a positive-definite
    block-diagonal matrix, factorised once. For :math:`b` that sums to zero on
    each component the grounded solution (zero at the grounds) solves
    :math:`L x = b` and differs from :math:`L^{+} b` by a constant per component,
    which cancels in every difference :math:`x_u - x_v` within a component.
    """

    def __init__(self, lap: sp.csr_matrix, labels: np.ndarray, num_comp: int) -> None:
        n = lap.shape[0]
        self.labels, self.num_comp = labels, num_comp
        _, first = np.unique(labels, return_index=True)
        keep = np.ones(n, dtype=bool)
        keep[first] = False
        self.keep = np.flatnonzero(keep)
        self.n = n
        self.lu = None
        if self.keep.size > 0:
            grounded = lap[self.keep][:, self.keep].tocsc()
            # The grounded Laplacian is symmetric positive definite: symmetric
            # ordering and no pivoting keep the factor sparse and exact.
            self.lu = splu(grounded, permc_spec="MMD_AT_PLUS_A", diag_pivot_thresh=0.0,
                           options=dict(SymmetricMode=True))

    def solve(self, b: np.ndarray) -> np.ndarray:
        """Grounded solution ``[N, k]`` for right-hand sides ``b`` ``[N, k]``."""
        x = np.zeros_like(b, dtype=np.float64)
        if self.lu is not None:
            # SuperLU works column-major; handing it Fortran order avoids a copy per call.
            x[self.keep] = self.lu.solve(np.asfortranarray(b[self.keep], dtype=np.float64))
        return x

    def _center(self, a: np.ndarray) -> np.ndarray:
        sizes = np.bincount(self.labels, minlength=self.num_comp).astype(np.float64)
        means = np.zeros((self.num_comp, a.shape[1]))
        np.add.at(means, self.labels, a)
        return a - (means / sizes[:, None])[self.labels]

    def pinv(self, b: np.ndarray) -> np.ndarray:
        r""":math:`L^{+} b` exactly, for any ``b`` ``[N, k]``."""
        return self._center(self.solve(self._center(b)))


@dataclass
class _Graph:
    """A checked graph with its Laplacian, components and lazily built solvers."""
    n: int
    u: np.ndarray
    v: np.ndarray
    w: np.ndarray
    lap: sp.csr_matrix
    num_comp: int
    labels: np.ndarray
    _pinv: Optional[np.ndarray] = field(default=None, repr=False)
    _solver: Optional[_GroundedSolver] = field(default=None, repr=False)

    @classmethod
    def build(cls, edge_index: Tensor, num_nodes: int,
              edge_weight: Optional[Tensor] = None) -> "_Graph":
        check_graph(edge_index, num_nodes, edge_weight)
        u, v, w = undirected_edges(edge_index, num_nodes, edge_weight)
        num_comp, labels = components(u, v, num_nodes)
        return cls(num_nodes, u, v, w, laplacian(u, v, w, num_nodes), num_comp, labels)

    def dense_pinv(self) -> np.ndarray:
        r""":math:`L^{+}` as a dense ``[N, N]`` array (block-diagonal over components)."""
        if self._pinv is None:
            sizes = np.bincount(self.labels, minlength=self.num_comp).astype(np.float64)
            same = self.labels[:, None] == self.labels[None, :]
            ones = same / sizes[self.labels][None, :]
            # (L + J)^{-1} - J with J the per-component averaging projector.
            m = self.lap.toarray() + ones
            self._pinv = scipy.linalg.inv(m, check_finite=False) - ones
        return self._pinv

    def solver(self) -> _GroundedSolver:
        if self._solver is None:
            self._solver = _GroundedSolver(self.lap, self.labels, self.num_comp)
        return self._solver

    def chunk(self) -> int:
        return max(1, _SOLVE_ELEMENTS // max(self.n, 1))


def _check_method(method: str) -> None:
    if method not in _METHODS:
        raise ValueError(f"unknown method {method!r}; expected one of {_METHODS}")


def _positive_int(value: int, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")


def _dense_resistance(g: _Graph, pairs: Optional[np.ndarray]) -> np.ndarray:
    p = g.dense_pinv()
    d = np.diag(p)
    if pairs is None:
        r = d[:, None] + d[None, :] - 2.0 * p
        np.fill_diagonal(r, 0.0)
        r = np.maximum(r, 0.0)  # round-off can dip below zero for near pairs
        r[g.labels[:, None] != g.labels[None, :]] = np.inf
        return r
    a, b = pairs
    r = np.maximum(d[a] + d[b] - 2.0 * p[a, b], 0.0)
    r[a == b] = 0.0
    r[g.labels[a] != g.labels[b]] = np.inf
    return r


def _sparse_pair_resistance(g: _Graph, pairs: np.ndarray) -> np.ndarray:
    a, b = pairs
    out = np.where(g.labels[a] != g.labels[b], np.inf, 0.0)
    todo = np.flatnonzero((a != b) & (g.labels[a] == g.labels[b]))
    if todo.size == 0:
        return out
    # Each unordered pair is solved once, however often it is asked for.
    lo, hi = np.minimum(a[todo], b[todo]), np.maximum(a[todo], b[todo])
    keys, inv = np.unique(lo * g.n + hi, return_inverse=True)
    ua, ub = keys // g.n, keys % g.n
    vals = np.empty(keys.size)
    solver, step = g.solver(), g.chunk()
    for s in range(0, keys.size, step):
        ca, cb = ua[s:s + step], ub[s:s + step]
        cols = np.arange(ca.size)
        rhs = np.zeros((g.n, ca.size))
        rhs[ca, cols] = 1.0
        rhs[cb, cols] = -1.0
        x = solver.solve(rhs)
        vals[s:s + step] = x[ca, cols] - x[cb, cols]
    out[todo] = vals[inv]
    return out


def _sketch(g: _Graph, rows: np.ndarray, num_projections: int,
            rng: np.random.Generator) -> np.ndarray:
    r"""Rows ``rows`` of :math:`Z^{\top} = L^{+} B^{\top} W^{1/2} Q^{\top}/\sqrt{k}`, ``[len(rows), k]``."""
    m = g.u.size
    out = np.zeros((rows.size, num_projections))
    if m == 0:
        return out
    e = np.arange(m)
    inc_t = sp.csr_matrix((np.concatenate([np.sqrt(g.w), -np.sqrt(g.w)]),
                           (np.concatenate([g.u, g.v]), np.concatenate([e, e]))),
                          shape=(g.n, m))  # B^T W^{1/2}, [N, m]
    solver = g.solver()
    step = min(g.chunk(), max(1, _SOLVE_ELEMENTS // m))
    for s in range(0, num_projections, step):
        k = min(step, num_projections - s)
        q = (2.0 * rng.integers(0, 2, size=(m, k)) - 1.0) / math.sqrt(num_projections)
        # Columns of B^T W^{1/2} q sum to zero per component: grounded solves suffice.
        out[:, s:s + k] = solver.solve(np.asarray(inc_t @ q))[rows]
    return out


def _approx_resistance(g: _Graph, pairs: Optional[np.ndarray], num_projections: int,
                       seed: Optional[int]) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if pairs is None:
        z = _sketch(g, np.arange(g.n), num_projections, rng)
        sq = (z * z).sum(1)
        r = np.maximum(sq[:, None] + sq[None, :] - 2.0 * z @ z.T, 0.0)
        np.fill_diagonal(r, 0.0)
        r[g.labels[:, None] != g.labels[None, :]] = np.inf
        return r
    a, b = pairs
    nodes, inv = np.unique(np.concatenate([a, b]), return_inverse=True)
    z = _sketch(g, nodes, num_projections, rng)
    ia, ib = inv[:a.size], inv[a.size:]
    r = ((z[ia] - z[ib]) ** 2).sum(1)
    r[a == b] = 0.0
    r[g.labels[a] != g.labels[b]] = np.inf
    return r


def effective_resistance(edge_index: Tensor, num_nodes: int, pairs: Optional[Tensor] = None,
                         method: str = "auto", edge_weight: Optional[Tensor] = None, *,
                         num_projections: int = 256, dense_threshold: int = 2048,
                         seed: Optional[int] = None) -> Tensor:
    r"""Effective resistance :math:`R(u, v) = (e_u - e_v)^{\top} L^{+} (e_u - e_v)`.

    Args:
        edge_index (Tensor): Edges ``[2, E]``, read as undirected.
        num_nodes (int): Number of nodes :math:`N`.
        pairs (Tensor, optional): Node pairs ``[2, P]``. If ``None``, all pairs
            (at most :data:`MAX_FULL_NODES` nodes).
        method (str): ``"exact"`` (dense pseudo-inverse for
            :math:`N \le` ``dense_threshold`` or when ``pairs`` is ``None``, sparse
            solves per pair otherwise), ``"approx"`` (Spielman--Srivastava sketch
            with ``num_projections`` Laplacian solves) or ``"auto"`` (dense for
            small graphs; on larger ones exact per-pair solves when there are at
            most ``num_projections`` distinct pairs, the sketch otherwise).
        edge_weight (Tensor, optional): Positive conductances ``[E]``.
        num_projections (int): Sketch size :math:`k`; relative error
            :math:`\approx \sqrt{2/k}`.
        dense_threshold (int): Largest :math:`N` for the dense pseudo-inverse in
            ``"auto"`` and ``"exact"`` modes.
        seed (int, optional): Seed of the sketch's random signs.

    Returns:
        Tensor: ``float64``, ``[N, N]`` if ``pairs`` is ``None`` else ``[P]``; ``inf``
        between different connected components, ``0`` on the diagonal.
    """
    _check_method(method)
    _positive_int(num_projections, "num_projections")
    g = _Graph.build(edge_index, num_nodes, edge_weight)
    p = None if pairs is None else check_pairs(pairs, num_nodes).numpy()
    if p is None and num_nodes > MAX_FULL_NODES:
        raise ValueError(f"a full resistance matrix for {num_nodes} nodes would hold "
                         f"{num_nodes}^2 entries (limit: {MAX_FULL_NODES} nodes); pass pairs")
    if num_nodes == 0:
        return torch.zeros((0, 0) if p is None else (p.shape[1],), dtype=torch.float64)
    if method == "approx":
        r = _approx_resistance(g, p, num_projections, seed)
    elif p is None or num_nodes <= dense_threshold:
        r = _dense_resistance(g, p)
    elif method == "exact" or np.unique(np.minimum(*p) * num_nodes
                                        + np.maximum(*p)).size <= num_projections:
        r = _sparse_pair_resistance(g, p)
    else:
        r = _approx_resistance(g, p, num_projections, seed)
    return torch.from_numpy(np.ascontiguousarray(r))


def _total(g: _Graph, nodes: np.ndarray, method: str, num_samples: int,
           dense_threshold: int, seed: Optional[int]) -> float:
    r""":math:`\sum_{u<v \in S} R(u, v)
    = |S| \operatorname{tr}(L^{+}_{SS}) - \mathbf{1}^{\top} L^{+}_{SS} \mathbf{1}`."""
    s = nodes.size
    if s <= 1:
        return 0.0
    if np.unique(g.labels[nodes]).size > 1:
        return math.inf
    if g.n <= dense_threshold and method != "approx":
        p = g.dense_pinv()[np.ix_(nodes, nodes)]
        return float(max(s * np.trace(p) - p.sum(), 0.0))
    solver = g.solver()
    ind = np.zeros((g.n, 1))
    ind[nodes] = 1.0
    cross = float(ind[:, 0] @ solver.pinv(ind)[:, 0])
    if method == "approx" or (method == "auto" and s > num_samples):
        # Hutchinson: E[z^T L^+ z] = tr(L^+_SS) for random signs z supported on S.
        rng = np.random.default_rng(seed)
        acc, step = 0.0, g.chunk()
        for start in range(0, num_samples, step):
            k = min(step, num_samples - start)
            z = np.zeros((g.n, k))
            z[nodes] = 2.0 * rng.integers(0, 2, size=(s, k)) - 1.0
            acc += float((z * solver.pinv(z)).sum())
        trace = acc / num_samples
    else:
        trace, step = 0.0, g.chunk()
        for start in range(0, s, step):
            cols = nodes[start:start + step]
            e = np.zeros((g.n, cols.size))
            e[cols, np.arange(cols.size)] = 1.0
            trace += float(solver.pinv(e)[cols, np.arange(cols.size)].sum())
    return float(max(s * trace - cross, 0.0))


def total_effective_resistance(edge_index: Tensor, num_nodes: int,
                               edge_weight: Optional[Tensor] = None, *,
                               nodes: Optional[Tensor] = None, method: str = "auto",
                               num_samples: int = 256, dense_threshold: int = 2048,
                               seed: Optional[int] = None) -> float:
    r"""Total effective resistance :math:`\sum_{u<v} R(u, v)`, which equals
    :math:`n \operatorname{tr}(L^{+})` on a connected graph.

    Args:
        edge_index (Tensor): Edges ``[2, E]``, read as undirected.
        num_nodes (int): Number of nodes :math:`N`.
        edge_weight (Tensor, optional): Positive conductances ``[E]``.
        nodes (Tensor, optional): Sum over pairs of these nodes only (e.g. the
            original nodes of a graph from :func:`add_global_tokens`); all if ``None``.
        method (str): ``"exact"`` (dense pseudo-inverse for
            :math:`N \le` ``dense_threshold``, else one sparse solve per node),
            ``"approx"`` (Hutchinson trace estimate with ``num_samples`` solves) or
            ``"auto"`` (dense when small, else whichever needs fewer solves).
        num_samples (int): Random sign vectors of the trace estimate.
        dense_threshold (int): Largest :math:`N` for the dense pseudo-inverse.
        seed (int, optional): Seed of the trace estimate.

    Returns:
        float: The total; ``inf`` if the node set spans several components (see
        :func:`component_total_resistance` for per-component totals).
    """
    _check_method(method)
    _positive_int(num_samples, "num_samples")
    g = _Graph.build(edge_index, num_nodes, edge_weight)
    idx = (np.arange(num_nodes) if nodes is None
           else np.unique(check_nodes(nodes, num_nodes, "nodes").numpy()))
    return _total(g, idx, method, num_samples, dense_threshold, seed)


def component_total_resistance(edge_index: Tensor, num_nodes: int,
                               edge_weight: Optional[Tensor] = None, *, method: str = "auto",
                               num_samples: int = 256, dense_threshold: int = 2048,
                               seed: Optional[int] = None) -> Tensor:
    r"""The total effective resistance of each connected component.

    Components are ordered by their smallest node index; an isolated node's
    total is ``0``. Arguments as in :func:`total_effective_resistance`.

    Returns:
        Tensor: ``float64`` totals ``[num_components]``, all finite.
    """
    _check_method(method)
    _positive_int(num_samples, "num_samples")
    g = _Graph.build(edge_index, num_nodes, edge_weight)
    return torch.tensor([_total(g, np.flatnonzero(g.labels == c), method, num_samples,
                                dense_threshold, seed) for c in range(g.num_comp)],
                        dtype=torch.float64)


def add_global_tokens(edge_index: Tensor, num_nodes: int,
                      num_tokens: int) -> Tuple[Tensor, int]:
    r"""The graph plus ``num_tokens`` new nodes, each joined to every original node.

    This is the geometry BRL's compressed tokens give message passing: every pair
    of nodes gains :math:`K` parallel two-edge paths, so
    :math:`R(u, v) \le 2/K` whatever the original distance.

    Args:
        edge_index (Tensor): Edges ``[2, E]``.
        num_nodes (int): Number of original nodes :math:`N`.
        num_tokens (int): Number of tokens :math:`K \ge 0`; tokens are the nodes
            ``N, ..., N + K - 1`` and are not joined to each other.

    Returns:
        (Tensor, int): The edges ``[2, E + 2 K N]`` (both directions of each
        token edge) and the new number of nodes :math:`N + K`.
    """
    check_graph(edge_index, num_nodes)
    if isinstance(num_tokens, bool) or not isinstance(num_tokens, (int, np.integer)) or num_tokens < 0:
        raise ValueError(f"num_tokens must be an int >= 0, got {num_tokens!r}")
    nodes = torch.arange(num_nodes, device=edge_index.device).repeat(num_tokens)
    tokens = (num_nodes + torch.arange(num_tokens, device=edge_index.device)
              ).repeat_interleave(num_nodes)
    extra = torch.stack([torch.cat([nodes, tokens]), torch.cat([tokens, nodes])])
    return torch.cat([edge_index, extra.to(edge_index.dtype)], dim=1), num_nodes + num_tokens


def commute_time(edge_index: Tensor, num_nodes: int, pairs: Optional[Tensor] = None,
                 method: str = "auto", edge_weight: Optional[Tensor] = None,
                 **kwargs: Any) -> Tensor:
    r"""Commute time :math:`C(u, v) = \operatorname{vol}(G)\, R(u, v)`: the expected
    number of steps of a random walk from :math:`u` to :math:`v` and back.

    :math:`\operatorname{vol}` is the sum of (weighted) degrees, :math:`2|E|` for an
    unweighted graph, taken over the component that holds :math:`u` and
    :math:`v` (the only edges the walk can see). Arguments as in
    :func:`effective_resistance`, whose extra keyword arguments are forwarded.

    Returns:
        Tensor: ``float64`` ``[N, N]`` or ``[P]``; ``inf`` across components.
    """
    r = effective_resistance(edge_index, num_nodes, pairs, method, edge_weight, **kwargs)
    g = _Graph.build(edge_index, num_nodes, edge_weight)
    vol = np.zeros(max(g.num_comp, 1))
    np.add.at(vol, g.labels[g.u], 2.0 * g.w)
    if pairs is None:
        scale = vol[g.labels][:, None]
    else:
        scale = vol[g.labels[check_pairs(pairs, num_nodes)[0].numpy()]]
    # inf * vol stays inf across components; 0 * vol stays 0 on the diagonal.
    return r * torch.from_numpy(np.asarray(scale, dtype=np.float64))


def resistance_by_hop(edge_index: Tensor, num_nodes: int, edge_weight: Optional[Tensor] = None,
                      *, num_pairs: Optional[int] = None, method: str = "auto",
                      dense_threshold: int = 2048, seed: Optional[int] = None,
                      **kwargs: Any) -> Dict[int, float]:
    r"""Mean effective resistance of node pairs at each hop distance.

    Over all pairs :math:`u < v` when ``num_pairs`` is ``None`` and
    :math:`N \le` ``dense_threshold``; otherwise over ``num_pairs`` (default 1000)
    pairs of distinct nodes drawn uniformly with ``seed``. Pairs in different
    components (infinite hop distance and resistance) are left out.

    Returns:
        dict: ``{hop: mean R}`` for every hop :math:`\ge 1` that occurs, ascending.
    """
    check_graph(edge_index, num_nodes, edge_weight)
    if num_nodes < 2:
        return {}
    if num_pairs is None and num_nodes <= dense_threshold:
        r = effective_resistance(edge_index, num_nodes, None, method, edge_weight,
                                 dense_threshold=dense_threshold, seed=seed, **kwargs).numpy()
        hops = hop_distances(edge_index, num_nodes).numpy()
        iu = np.triu_indices(num_nodes, k=1)
        r, hops = r[iu], hops[iu]
    else:
        count = 1000 if num_pairs is None else num_pairs
        _positive_int(count, "num_pairs")
        rng = np.random.default_rng(seed)
        a = rng.integers(0, num_nodes, size=count)
        b = (a + rng.integers(1, num_nodes, size=count)) % num_nodes  # b != a
        pairs = torch.from_numpy(np.stack([a, b]))
        r = effective_resistance(edge_index, num_nodes, pairs, method, edge_weight,
                                 dense_threshold=dense_threshold, seed=seed, **kwargs).numpy()
        src, inv = np.unique(a, return_inverse=True)
        dist = hop_distances(edge_index, num_nodes, torch.from_numpy(src)).numpy()
        hops = dist[inv, b]
    ok = np.isfinite(hops)
    r, hops = r[ok], hops[ok].astype(np.int64)
    return {int(h): float(r[hops == h].mean()) for h in np.unique(hops)}


def _stats(values: List[float]) -> Dict[str, Optional[float]]:
    finite = np.array([x for x in values if math.isfinite(x)], dtype=np.float64)
    if finite.size == 0:
        return {"mean": None, "median": None, "min": None, "max": None, "count": 0}
    return {"mean": float(finite.mean()), "median": float(np.median(finite)),
            "min": float(finite.min()), "max": float(finite.max()), "count": int(finite.size)}


def _pair_hops(edge_index: Tensor, n: int, dense_threshold: int, num_pairs: int,
               rng: np.random.Generator) -> Tuple[np.ndarray, np.ndarray]:
    """Pairs ``[2, P]`` of the first ``n`` nodes (all ``u < v``, or a sample for a
    large graph) and their hop distances in ``edge_index``."""
    if n <= dense_threshold:
        a, b = np.triu_indices(n, k=1)
    else:
        a = rng.integers(0, n, size=num_pairs)
        b = (a + rng.integers(1, n, size=num_pairs)) % n
    src, inv = np.unique(a, return_inverse=True)
    hops = hop_distances(edge_index, n, torch.from_numpy(src)).numpy()[inv, b]
    return np.stack([a, b]), hops


def _pair_resistance(g: _Graph, pairs: np.ndarray, dense_threshold: int, method: str,
                     seed: Optional[int]) -> np.ndarray:
    if method != "approx" and g.n <= dense_threshold:
        return _dense_resistance(g, pairs)  # reuses the pseudo-inverse of the totals
    if method == "approx":
        return _approx_resistance(g, pairs, 256, seed)
    return _sparse_pair_resistance(g, pairs)


def resistance_summary(graphs: Iterable[Any], num_tokens: int = 8, method: str = "auto", *,
                       by_hop: bool = False, num_pairs: int = 1000,
                       dense_threshold: int = 2048, seed: Optional[int] = None
                       ) -> Dict[str, Any]:
    r"""Per-dataset summary of total effective resistance, with and without tokens.

    For every graph (anything with ``edge_index`` and ``num_nodes``, e.g. a PyG
    :class:`~torch_geometric.data.Data`) it computes :math:`R_{tot}` and the
    mean pair resistance :math:`R_{tot} / \binom{n}{2}`, on the graph itself and on
    the graph from :func:`add_global_tokens` with ``num_tokens`` tokens. With
    tokens the sum still runs over pairs of *original* nodes only, so both
    numbers count the same pairs.

    A disconnected graph has :math:`R_{tot} = \infty` without tokens: it is counted
    in ``num_disconnected``, listed as ``inf`` in ``per_graph`` and left out of the
    statistics without tokens and of the ratios (tokens reconnect it, so its
    totals with tokens are kept).

    Args:
        graphs (iterable): The graphs.
        num_tokens (int): Tokens :math:`K` of the comparison.
        method (str): As in :func:`total_effective_resistance`.
        by_hop (bool): Also pool the mean resistance by hop distance (in the
            original graph) over all graphs, without and with tokens: over all
            pairs of graphs up to ``dense_threshold`` nodes (reusing the
            pseudo-inverse of the totals), over ``num_pairs`` sampled pairs of
            larger ones. Pairs in different components are left out.
        num_pairs (int): Sampled pairs per large graph for ``by_hop``.
        dense_threshold (int): As in :func:`total_effective_resistance`.
        seed (int, optional): Seed of sampled pairs and estimates.

    Returns:
        dict: ``num_graphs``, ``num_disconnected``, ``num_tokens``; statistics
        (``mean``, ``median``, ``min``, ``max``, ``count`` of the finite values)
        for ``r_tot``, ``r_tot_tokens``, ``r_avg``, ``r_avg_tokens`` and the drop
        ``ratio`` = ``r_tot / r_tot_tokens``; ``per_graph`` lists ``num_nodes``,
        ``r_tot`` and ``r_tot_tokens``; with ``by_hop``, ``by_hop`` maps
        ``"graph"`` and ``"tokens"`` to ``{hop: mean R}``.
    """
    _check_method(method)
    _positive_int(num_pairs, "num_pairs")
    per: Dict[str, List[float]] = {"num_nodes": [], "r_tot": [], "r_tot_tokens": []}
    avg, avg_tok, ratio = [], [], []
    rng = np.random.default_rng(seed)
    pooled = {key: (defaultdict(float), defaultdict(int)) for key in ("graph", "tokens")}
    for i, data in enumerate(graphs):
        ei, n = getattr(data, "edge_index", None), getattr(data, "num_nodes", None)
        if ei is None or n is None:
            raise ValueError(f"graph {i} has no edge_index or num_nodes")
        n = int(n)
        tei, tn = add_global_tokens(ei, n, num_tokens)
        g, gt = _Graph.build(ei, n), _Graph.build(tei, tn)
        orig = np.arange(n)
        r = _total(g, orig, method, 256, dense_threshold, seed)
        rt = _total(gt, orig, method, 256, dense_threshold, seed)
        pairs = n * (n - 1) / 2
        per["num_nodes"].append(n)
        per["r_tot"].append(r)
        per["r_tot_tokens"].append(rt)
        if pairs > 0:
            avg.append(r / pairs)
            avg_tok.append(rt / pairs)
            if math.isfinite(r) and rt > 0:
                ratio.append(r / rt)
        if by_hop and n >= 2:
            p, hops = _pair_hops(ei, n, dense_threshold, num_pairs, rng)
            ok = np.isfinite(hops)
            h_ok = hops[ok].astype(np.int64)
            for key, graph in (("graph", g), ("tokens", gt)):
                vals = _pair_resistance(graph, p, dense_threshold, method, seed)[ok]
                sums, counts = pooled[key]
                for h in np.unique(h_ok):
                    sel = h_ok == h
                    sums[int(h)] += float(vals[sel].sum())
                    counts[int(h)] += int(sel.sum())
    out: Dict[str, Any] = {
        "num_graphs": len(per["num_nodes"]),
        "num_disconnected": sum(1 for x in per["r_tot"] if not math.isfinite(x)),
        "num_tokens": num_tokens,
        "r_tot": _stats(per["r_tot"]),
        "r_tot_tokens": _stats(per["r_tot_tokens"]),
        "r_avg": _stats(avg),
        "r_avg_tokens": _stats(avg_tok),
        "ratio": _stats(ratio),
        "per_graph": per,
    }
    if by_hop:
        out["by_hop"] = {key: {h: s_[h] / c_[h] for h in sorted(c_)}
                         for key, (s_, c_) in pooled.items()}
    return out
