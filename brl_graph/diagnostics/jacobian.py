r"""Jacobian sensitivity: how much a model's output at one node responds to the
input at another.

For a map :math:`f: \mathbb{R}^{N \times C_{in}} \to \mathbb{R}^{N \times C_{out}}`
from node features to node states (a closure around any model), the sensitivity
of target :math:`t` to source :math:`u` is the norm of one Jacobian block,

.. math::
    S[t, u] = \left\lVert \frac{\partial f(X)_t}{\partial X_u} \right\rVert
    \in \mathbb{R}_{\ge 0}, \qquad
    \frac{\partial f(X)_t}{\partial X_u} \in \mathbb{R}^{C_{out} \times C_{in}}.

Over-squashing shows as :math:`S[t, u]` decaying fast with the hop distance
between :math:`t` and :math:`u` (Topping et al., 2022; Di Giovanni et al., 2023).
An :math:`L`-layer MPNN has :math:`S[t, u] = 0` exactly beyond :math:`L` hops;
BRL's compressed tokens make it non-zero at any distance.

Row :math:`c` of the block for target :math:`t` is one vector-Jacobian product
with the one-hot output vector :math:`e_t \otimes e_c`, so a target costs
:math:`C_{out}` backward passes (not :math:`N C_{out}` as a full Jacobian does); they
are batched with ``is_grads_batched`` (``torch.vmap`` underneath).
:func:`jacobian_sensitivity_estimate` replaces the :math:`C_{out}` one-hot vectors by
a few Gaussian probes, and both functions take a ``batch`` vector so that targets
in different graphs of a PyG mini-batch share backward passes.

PyG's :func:`torch_geometric.utils.total_influence` computes the per-hop *sum* of
the entrywise :math:`\ell_1` norm over the :math:`k`-hop subgraph of each node;
:func:`pyg_total_influence` calls it for a closure, and
``sensitivity_by_distance(jacobian_sensitivity(f, x, norm="l1"), ..., reduce="total")``
gives the same numbers whenever the :math:`k`-hop subgraph contains everything
:math:`f` sees.
"""
from __future__ import annotations

import contextlib
import io
import math
import warnings
from typing import Callable, Dict, Optional, Tuple

import torch
from torch import Tensor

from brl_graph.diagnostics._graph import check_graph, check_nodes, hop_distances

NodeMap = Callable[[Tensor], Tensor]
_NORMS = ("fro", "l1")
_REDUCE = ("mean", "total")
# Elements of one batch of output vectors (and of their gradients): ~64 MB in float32.
_MAX_ELEMENTS = 1 << 24


def _check_inputs(x: Tensor, targets: Optional[Tensor], batch: Optional[Tensor]
                  ) -> Tuple[Tensor, Optional[Tensor]]:
    if not isinstance(x, Tensor) or x.dim() != 2:
        raise ValueError(f"x must be a node feature tensor [N, C_in], got "
                         f"{list(x.shape) if isinstance(x, Tensor) else type(x).__name__}")
    if not x.is_floating_point():
        raise ValueError(f"x must be floating point to differentiate, got {x.dtype}")
    n = x.size(0)
    t = torch.arange(n) if targets is None else check_nodes(targets, n, "targets")
    if batch is not None:
        if batch.dim() != 1 or batch.numel() != n:
            raise ValueError(f"batch must have shape [N={n}], got {list(batch.shape)}")
        batch = batch.long().cpu()
    return t.to(x.device), batch


def _rounds(targets: Tensor, batch: Optional[Tensor]) -> Tensor:
    """Round of each target: targets of different graphs share a round."""
    if batch is None:
        return torch.arange(targets.numel(), device=targets.device)
    graph = batch[targets.cpu()]
    order = torch.argsort(graph, stable=True)
    _, counts = torch.unique_consecutive(graph[order], return_counts=True)
    starts = torch.repeat_interleave(torch.cumsum(counts, 0) - counts, counts)
    rank = torch.empty_like(graph)
    rank[order] = torch.arange(graph.numel()) - starts
    return rank.to(targets.device)


Coefficients = Callable[[int, Tensor], Tensor]


def _row_norms(f: NodeMap, x: Tensor, targets: Tensor, rounds: Tensor,
               make_coeffs: Callable[[int], Tuple[Coefficients, int]], norm: str,
               max_elements: int, vectorize: bool = True) -> Tensor:
    r"""``acc[r, u] = sum_b reduce(grad of <f(x), V[r, b]> at x_u)``, ``[num_rounds, N]``.

    ``make_coeffs(C_out)`` returns ``(coeffs, B)``: ``V[r, b]`` puts the rows of
    ``coeffs(b, mask)`` (``[mask.sum(), C_out]``) on the target rows of round ``r``
    (``mask = rounds == r``), for ``b < B``. ``reduce`` is the squared 2-norm
    (``"fro"``) or the 1-norm (``"l1"``) over input channels.
    """
    x_ = x.detach().requires_grad_(True)
    with torch.enable_grad():
        out = f(x_)
    if not isinstance(out, Tensor) or out.dim() != 2 or out.size(0) != x.size(0):
        raise ValueError(f"f must map x [N={x.size(0)}, C_in] to node states [N, C_out], "
                         f"got {list(out.shape) if isinstance(out, Tensor) else type(out).__name__}")
    n, c_out = out.shape
    num_rounds = int(rounds.max()) + 1 if rounds.numel() else 0
    acc = x.new_zeros(num_rounds, n)
    if num_rounds == 0 or not out.requires_grad:
        return acc  # f ignores x: every Jacobian block is zero
    coeffs, num_vectors = make_coeffs(c_out)
    total = num_rounds * num_vectors
    step = max(1, max_elements // max(1, n * max(c_out, x.size(1))))
    batched = vectorize
    for start in range(0, total, step):
        jobs = torch.arange(start, min(total, start + step), device=x.device)
        v = out.new_zeros(jobs.numel(), n, c_out)
        for i, job in enumerate(jobs.tolist()):
            r, b = divmod(job, num_vectors)
            mask = rounds == r
            v[i, targets[mask]] = coeffs(b, mask).to(out)
        grads = None
        if batched:
            try:
                grads = torch.autograd.grad(out, x_, v, retain_graph=True,
                                            is_grads_batched=True, allow_unused=True)[0]
            except (RuntimeError, NotImplementedError) as err:
                warnings.warn(f"batched vector-Jacobian products failed ({err}); "
                              f"falling back to one backward pass per vector (slower)")
                batched = False
        if not batched:
            rows = [torch.autograd.grad(out, x_, vi, retain_graph=True, allow_unused=True)[0]
                    for vi in v]
            grads = None if rows[0] is None else torch.stack(rows)
        if grads is None:
            continue
        red = grads.pow(2).sum(-1) if norm == "fro" else grads.abs().sum(-1)
        acc.index_add_(0, torch.div(jobs, num_vectors, rounding_mode="floor"), red.detach())
    return acc


def _gather(acc: Tensor, targets: Tensor, rounds: Tensor, batch: Optional[Tensor]) -> Tensor:
    s = acc[rounds]
    if batch is not None:
        # Rows were shared by targets of different graphs: keep each target's own graph.
        b = batch.to(s.device)
        s = s * (b[targets].unsqueeze(1) == b.unsqueeze(0)).to(s.dtype)
    return s


def jacobian_sensitivity(f: NodeMap, x: Tensor, targets: Optional[Tensor] = None,
                         norm: str = "fro", *, batch: Optional[Tensor] = None,
                         max_elements: int = _MAX_ELEMENTS, vectorize: bool = True) -> Tensor:
    r"""Exact Jacobian sensitivity :math:`S[t, u] = \lVert \partial f(X)_t / \partial X_u \rVert`.

    Args:
        f (callable): Maps node features ``[N, C_in]`` to node states
            ``[N, C_out]``; must be deterministic (call ``model.eval()``).
        x (Tensor): Node features ``[N, C_in]`` at which to differentiate.
        targets (Tensor, optional): Target nodes ``[T]``; all nodes if ``None``.
        norm (str): ``"fro"`` (Frobenius norm of the :math:`C_{out} \times C_{in}`
            block) or ``"l1"`` (sum of its absolute entries, as PyG's
            :func:`~torch_geometric.utils.total_influence` uses).
        batch (Tensor, optional): Graph of each node ``[N]`` for a PyG mini-batch.
            Then ``f`` must not mix graphs (true of per-graph models in eval
            mode): one target per graph shares each backward pass, and
            :math:`S[t, u] = 0` for :math:`u` outside :math:`t`'s graph.
        max_elements (int): Bound on the elements of one batch of output vectors.
        vectorize (bool): Batch the vector-Jacobian products with
            ``is_grads_batched`` (``torch.vmap``); ``False`` loops over them, which
            can be as fast for models whose backward ops lack vmap rules.

    Returns:
        Tensor: ``[T, N]``, in ``x``'s dtype. Cost: :math:`C_{out}` backward passes
        per target (per target *per graph* with ``batch``).
    """
    if norm not in _NORMS:
        raise ValueError(f"unknown norm {norm!r}; expected one of {_NORMS}")
    targets, batch = _check_inputs(x, targets, batch)
    rounds = _rounds(targets, batch)

    def one_hot(c_out: int) -> Tuple[Coefficients, int]:
        def coeffs(b: int, mask: Tensor) -> Tensor:
            rows = torch.zeros(int(mask.sum()), c_out)
            rows[:, b] = 1.0
            return rows
        return coeffs, c_out

    acc = _row_norms(f, x, targets, rounds, one_hot, norm, max_elements, vectorize)
    s = _gather(acc, targets, rounds, batch)
    return s.sqrt() if norm == "fro" else s


def jacobian_sensitivity_estimate(f: NodeMap, x: Tensor, targets: Optional[Tensor] = None,
                                  num_probes: int = 8, *, batch: Optional[Tensor] = None,
                                  generator: Optional[torch.Generator] = None,
                                  max_elements: int = _MAX_ELEMENTS,
                                  vectorize: bool = True) -> Tensor:
    r"""Random-projection estimate of the Frobenius sensitivity, for large graphs
    and many targets.

    With Gaussian probes :math:`z_1, \dots, z_P \sim \mathcal{N}(0, I_{C_{out}})`,
    :math:`\mathbb{E}\,\lVert z^{\top} J_{tu} \rVert^2 = \lVert J_{tu} \rVert_F^2`, so

    .. math::
        \hat S[t, u]^2 = \frac{1}{P} \sum_{p=1}^{P} \lVert z_p^{\top} J_{tu} \rVert^2

    is unbiased for :math:`S[t, u]^2` with relative standard deviation at most
    :math:`\sqrt{2/P}`, at :math:`P` backward passes per target instead of
    :math:`C_{out}`. Like the exact value it is exactly zero where the Jacobian
    block is. Other arguments as in :func:`jacobian_sensitivity`.

    Returns:
        Tensor: :math:`\hat S`, ``[T, N]``.
    """
    if isinstance(num_probes, bool) or not isinstance(num_probes, int) or num_probes < 1:
        raise ValueError(f"num_probes must be a positive int, got {num_probes!r}")
    targets, batch = _check_inputs(x, targets, batch)
    rounds = _rounds(targets, batch)

    def gaussian(c_out: int) -> Tuple[Coefficients, int]:
        probes = torch.randn(num_probes, targets.numel(), c_out, generator=generator,
                             dtype=x.dtype)
        return (lambda b, mask: probes[b][mask.cpu()]), num_probes

    acc = _row_norms(f, x, targets, rounds, gaussian, "fro", max_elements, vectorize)
    return (_gather(acc, targets, rounds, batch) / num_probes).sqrt()


def _distances(S: Tensor, edge_index: Tensor, targets: Optional[Tensor],
               num_nodes: Optional[int]) -> Tuple[Tensor, Tensor]:
    if S.dim() != 2:
        raise ValueError(f"S must be a [T, N] sensitivity matrix, got shape {list(S.shape)}")
    n = S.size(1) if num_nodes is None else num_nodes
    if S.size(1) != n:
        raise ValueError(f"S has {S.size(1)} columns but num_nodes={n}")
    check_graph(edge_index, n)
    t = torch.arange(n) if targets is None else check_nodes(targets, n, "targets")
    if t.numel() != S.size(0):
        raise ValueError(f"S has {S.size(0)} rows but {t.numel()} targets were given")
    return hop_distances(edge_index, n, t), S.detach().double().cpu()


def sensitivity_by_distance(S: Tensor, edge_index: Tensor, targets: Optional[Tensor] = None,
                            *, num_nodes: Optional[int] = None,
                            reduce: str = "mean") -> Dict[int, float]:
    r"""Sensitivity grouped by the hop distance between target and source.

    Args:
        S (Tensor): Sensitivities ``[T, N]`` from :func:`jacobian_sensitivity`.
        edge_index (Tensor): Edges ``[2, E]``, read as undirected.
        targets (Tensor, optional): The ``T`` targets of ``S``; all nodes if ``None``.
        num_nodes (int, optional): :math:`N`; ``S.size(1)`` if ``None``.
        reduce (str): ``"mean"``: the mean of :math:`S[t, u]` over pairs at hop
            :math:`h`; ``"total"``: :math:`\frac{1}{T}\sum_t \sum_{u: d(t,u)=h} S[t, u]`,
            the un-normalised per-hop influence of
            :func:`~torch_geometric.utils.total_influence`.

    Returns:
        dict: ``{hop: value}`` for every finite hop that occurs (hop 0 is the
        target itself), ascending. Pairs with no path (e.g. in different graphs
        of a batch) are left out; :func:`jacobian_mass_beyond` counts them.
    """
    if reduce not in _REDUCE:
        raise ValueError(f"unknown reduce {reduce!r}; expected one of {_REDUCE}")
    dist, s = _distances(S, edge_index, targets, num_nodes)
    finite = torch.isfinite(dist)
    hops = dist[finite].long()
    vals = s[finite]
    out: Dict[int, float] = {}
    for h in torch.unique(hops).tolist():
        sel = vals[hops == h]
        out[int(h)] = float(sel.mean() if reduce == "mean" else sel.sum() / s.size(0))
    return out


def jacobian_mass_beyond(S: Tensor, edge_index: Tensor, targets: Optional[Tensor] = None,
                         hops: int = 0, *, num_nodes: Optional[int] = None) -> float:
    r"""Fraction of sensitivity mass farther than ``hops`` from the target:
    :math:`\sum_{d(t,u) > h} S[t, u] / \sum S[t, u]`.

    Sources with no path to the target count as beyond. For an :math:`L`-layer
    MPNN and ``hops = L`` this is exactly ``0``; for BRL it is the share of
    influence carried by the tokens alone.

    Returns:
        float: In :math:`[0, 1]`; ``nan`` if ``S`` is all zeros.
    """
    if isinstance(hops, bool) or not isinstance(hops, int) or hops < 0:
        raise ValueError(f"hops must be an int >= 0, got {hops!r}")
    dist, s = _distances(S, edge_index, targets, num_nodes)
    total = float(s.sum())
    if total == 0.0:
        return math.nan
    return float(s[dist > hops].sum()) / total


class _EdgeIndexModel(torch.nn.Module):
    """Adapter: PyG's ``total_influence`` calls ``model(x, edge_index)``."""

    def __init__(self, fn: Callable[[Tensor, Tensor], Tensor]) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x: Tensor, edge_index: Tensor) -> Tensor:
        return self.fn(x, edge_index)


def pyg_total_influence(f: Callable[[Tensor, Tensor], Tensor], x: Tensor, edge_index: Tensor,
                        max_hops: int, num_samples: Optional[int] = None,
                        normalize: bool = False, quiet: bool = True) -> Tuple[Tensor, float]:
    r"""PyG's :func:`torch_geometric.utils.total_influence` for a closure.

    ``f(x, edge_index)`` is evaluated on each sampled node's ``max_hops``-hop
    subgraph (nodes relabelled), so this equals
    ``sensitivity_by_distance(jacobian_sensitivity(..., norm="l1"), reduce="total")``
    only when that subgraph holds everything ``f`` reads: ``max_hops`` at least
    the receptive field :math:`L` of a sum- or mean-aggregating MPNN, :math:`L + 1`
    for degree-normalised convolutions such as GCN (the outermost nodes need all
    their edges for their degree), or at least the eccentricity of every node for
    a model with global tokens.

    Args:
        f (callable): ``f(x, edge_index) -> [N, C_out]``.
        x (Tensor): Node features ``[N, C_in]``.
        edge_index (Tensor): Edges ``[2, E]``.
        max_hops (int): The hop radius :math:`k`.
        num_samples (int, optional): Random seed nodes; all nodes if ``None``.
        normalize (bool): Divide by the hop-0 influence, as PyG does by default.
            ``x`` must be ``float32`` (a PyG limitation).
        quiet (bool): Hide PyG's progress bar.

    Returns:
        (Tensor, float): The mean per-hop influence ``[k + 1]`` and PyG's
        influence-weighted receptive field.
    """
    from torch_geometric.data import Data
    from torch_geometric.utils import total_influence

    check_graph(edge_index, x.size(0))
    if x.dtype != torch.float32:
        # PyG builds its hop weights in float32 and cannot mix them with other dtypes.
        raise ValueError(f"total_influence needs float32 features, got {x.dtype}")
    data = Data(x=x.detach(), edge_index=edge_index)
    sink = contextlib.redirect_stderr(io.StringIO()) if quiet else contextlib.nullcontext()
    with sink:
        return total_influence(_EdgeIndexModel(f), data, max_hops=max_hops,
                               num_samples=num_samples, normalize=normalize, average=True,
                               device=x.device)
