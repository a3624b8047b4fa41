r"""The per-batch plan of the global branch: checks and dense padding, done once.

Every :class:`~brl_graph.nn.BRLConv` of a model sees the same ``batch`` and
``edge_index``. Checking them (index ranges, a sorted ``batch``, no edge
between graphs) and working out how the graphs are padded into dense groups
both read tensor *values*, which costs host synchronisations and dozens of small
ops. :func:`plan_batch` does it once; the layers then take the
:class:`BatchPlan` and only check shapes.

A :class:`DenseGroup` holds graphs padded together to ``[G, L, ...]``:
:func:`to_dense` and :func:`from_dense` move node rows in and out of that
layout with one ``index_copy`` / ``index_select`` each (or a free ``view`` when
the group needs no padding).
"""
from __future__ import annotations

from typing import List, NamedTuple, Optional

import torch
from torch import Tensor

from brl_graph.nn.functional import NEG, split_length

# Padding a group to its largest graph is accepted when it costs at most
# SLACK times the real rows, or at most MIN_ROWS rows in all. The second bound
# keeps small batches (a few thousand rows, e.g. 32 molecules) in one group:
# each extra group repeats the whole global branch, about a hundred small ops
# forward and backward, which costs more than thousands of padded rows.
SLACK = 2.0
MIN_ROWS = 4096


class DenseGroup(NamedTuple):
    """Graphs padded together to ``[num_graphs, max_nodes, ...]``; ``max_nodes``
    is the largest graph's node count, rounded up off the CPU in a plan made for
    layers whose token-node products split the node axis into blocks
    (``plan_batch(..., split=True)``, :func:`~brl_graph.nn.functional.split_length`).

    ``graph_index`` / ``node_index`` select the group's graphs and nodes in the
    batch (``None``: all of them); ``batch`` is each node's graph within the
    group. ``dense_index`` is each node's row in the flat ``[G * L]`` layout and
    ``mask`` ``[G, L]`` marks real rows; both are ``None`` when no row is padding
    (one graph, or graphs of equal size, unless rounded up), and the layout is
    then a plain view.
    ``mask_bias`` ``[G, 1, L]`` is the same mask as an additive float bias
    (0 for real rows, :data:`NEG` for padding) that attention adds to its logits
    in the same op as the product; ``empty`` ``[G]`` marks graphs without nodes
    (``None`` when there are none).
    """
    graph_index: Optional[Tensor]
    node_index: Optional[Tensor]
    batch: Tensor
    num_graphs: int
    max_nodes: int
    dense_index: Optional[Tensor] = None
    mask: Optional[Tensor] = None
    mask_bias: Optional[Tensor] = None
    empty: Optional[Tensor] = None


class BatchPlan(NamedTuple):
    """What :func:`plan_batch` found: the sorted ``batch``, the graph count and
    the dense groups (empty when the plan was made without them)."""
    batch: Tensor
    num_graphs: int
    groups: List[DenseGroup]


def _length(counts: Tensor, split: bool) -> int:
    """The padded node axis of graphs with ``counts`` nodes: the largest count, off
    the CPU rounded up to whole blocks of the token-node products when ``split``
    (functional.split_length): one masked copy here, not one per product."""
    L = int(counts.max()) if counts.numel() else 0
    return split_length(L, counts.device) if split else L


def _layout(graph_index: Optional[Tensor], node_index: Optional[Tensor], batch: Tensor,
            counts: Tensor, L: int) -> DenseGroup:
    """The dense layout, ``L`` rows per graph (:func:`_length`), of graphs with
    ``counts`` nodes, nodes listed by ``batch``."""
    G = counts.numel()
    n = batch.numel()
    if G * L == n:  # no padding at all: a contiguous [G, L] view
        return DenseGroup(graph_index, node_index, batch, G, L)
    start = torch.cumsum(counts, 0) - counts
    position = torch.arange(n, device=batch.device) - start[batch]
    dense_index = batch * L + position
    mask = torch.zeros(G * L, dtype=torch.bool, device=batch.device)
    mask[dense_index] = True
    mask = mask.view(G, L)
    mask_bias = torch.zeros(G, 1, L, device=batch.device).masked_fill_(~mask[:, None, :], NEG)
    empty = counts == 0
    return DenseGroup(graph_index, node_index, batch, G, L, dense_index, mask, mask_bias,
                      empty if bool(empty.any()) else None)


def dense_groups(batch: Tensor, num_graphs: int, slack: float = SLACK,
                 min_rows: int = MIN_ROWS, split: bool = False) -> List[DenseGroup]:
    r"""Plans the dense padding of a sorted ``batch`` vector.

    When padding every graph to the largest one costs at most ``slack`` times
    the real node count (or at most ``min_rows`` rows), a single group is
    returned. Otherwise graphs are bucketed by :math:`\lfloor \log_2 n_g
    \rfloor`, which bounds the padding of each bucket to a factor of two, so the
    global branch stays :math:`O(N K C)` even for a batch with one huge graph
    and many tiny ones. With ``split``, a group's node axis is rounded up as
    :func:`~brl_graph.nn.functional.split_length` says (off the CPU only).
    """
    counts = torch.bincount(batch, minlength=num_graphs) if batch.numel() else \
        torch.zeros(num_graphs, dtype=torch.long, device=batch.device)
    n = batch.numel()
    L = _length(counts, split)  # a host sync: once for the single-group test and its layout
    if num_graphs * L <= max(slack * n, min_rows):
        return [_layout(None, None, batch, counts, L)]
    bucket = torch.floor(torch.log2(counts.clamp(min=1).float())).long()
    groups = []
    for b in torch.unique(bucket).tolist():
        graph_index = (bucket == b).nonzero().view(-1)
        remap = torch.full((num_graphs,), -1, dtype=torch.long, device=batch.device)
        remap[graph_index] = torch.arange(graph_index.numel(), device=batch.device)
        local = remap[batch]
        node_index = (local >= 0).nonzero().view(-1)
        sizes = counts[graph_index]
        groups.append(_layout(graph_index, node_index, local[node_index], sizes,
                              _length(sizes, split)))
    return groups


def check_batch(num_nodes: int, edge_index: Tensor, batch: Optional[Tensor]) -> int:
    """Checks the *values* of ``edge_index`` and ``batch`` for ``num_nodes`` nodes
    and returns the number of graphs. Raises :class:`ValueError` naming the
    problem."""
    N = num_nodes
    if edge_index.numel() > 0:
        lo, hi = int(edge_index.min()), int(edge_index.max())
        if lo < 0 or hi >= N:
            raise ValueError(f"edge_index holds node indices in [{lo}, {hi}] but x has "
                             f"{N} nodes (valid range [0, {N - 1}])")
    if batch is None:  # one graph, even without nodes (as data.num_graphs counts it)
        return 1
    if N == 0:
        return 0
    if int(batch.min()) < 0:
        raise ValueError("batch holds negative graph indices")
    if bool((batch[1:] < batch[:-1]).any()):
        raise ValueError("batch must be sorted (nodes of a graph contiguous, "
                         "as produced by torch_geometric.data.Batch)")
    if edge_index.numel() > 0 and bool((batch[edge_index[0]] != batch[edge_index[1]]).any()):
        raise ValueError("edge_index joins nodes of different graphs in batch")
    return int(batch[-1]) + 1


def check_shapes(num_nodes: int, edge_index: Tensor, batch: Optional[Tensor]) -> None:
    """The metadata checks (shapes and dtypes) of ``edge_index`` and ``batch``."""
    if edge_index.dim() != 2 or edge_index.size(0) != 2:
        raise ValueError(f"edge_index must have shape [2, num_edges], got {list(edge_index.shape)}")
    if edge_index.dtype not in (torch.long, torch.int):
        raise ValueError(f"edge_index must be an integer tensor, got {edge_index.dtype}")
    if batch is not None and (batch.dim() != 1 or batch.numel() != num_nodes):
        raise ValueError(f"batch must be a vector with one entry per node "
                         f"({num_nodes}), got shape {list(batch.shape)}")


def plan_batch(num_nodes: int, edge_index: Tensor, batch: Optional[Tensor] = None,
               num_graphs: Optional[int] = None, validate: bool = True,
               dense: bool = True, split: bool = False) -> BatchPlan:
    r"""Checks a batch once and plans its dense groups.

    Args:
        num_nodes (int): Number of nodes :math:`N`.
        edge_index (torch.Tensor): Edges :obj:`[2, E]`.
        batch (torch.Tensor, optional): Sorted graph assignment :obj:`[N]`;
            :obj:`None` for one graph.
        num_graphs (int, optional): The graph count when known (e.g.
            :obj:`data.num_graphs`, which counts trailing empty graphs);
            otherwise read from :obj:`batch`.
        validate (bool, optional): Check index ranges, a sorted :obj:`batch`
            and that no edge joins two graphs. (default: :obj:`True`)
        dense (bool, optional): Plan the dense groups (only layers with a
            global branch need them). (default: :obj:`True`)
        split (bool, optional): Round each group's node axis up to whole
            blocks of the token-node products off the CPU
            (:func:`~brl_graph.nn.functional.split_length`), for layers that
            run them (non-causal reservoirs): they then pad no copy of their
            own. (default: :obj:`False`)
    """
    check_shapes(num_nodes, edge_index, batch)
    if validate:
        found = check_batch(num_nodes, edge_index, batch)
    elif batch is None or num_nodes == 0:
        found = 1 if batch is None else 0
    else:
        found = int(batch[-1]) + 1
    if num_graphs is None:
        num_graphs = found
    elif num_graphs < found:
        raise ValueError(f"num_graphs={num_graphs} but batch holds graph index {found - 1}")
    if batch is None:
        batch = torch.zeros(num_nodes, dtype=torch.long, device=edge_index.device)
    groups = dense_groups(batch, num_graphs, split=split) if dense else []
    return BatchPlan(batch, num_graphs, groups)


def to_dense(x: Tensor, group: DenseGroup) -> Tensor:
    """Rows ``[n, *]`` of the group's nodes -> ``[G, L, *]``, zeros in the padding."""
    G, L = group.num_graphs, group.max_nodes
    if group.dense_index is None:
        return x.view(G, L, *x.shape[1:])
    # in place into a fresh buffer: the out-of-place index_copy would copy the
    # whole padded layout once more
    buf = x.new_zeros(G * L, *x.shape[1:])
    return buf.index_copy_(0, group.dense_index, x).view(G, L, *x.shape[1:])


def from_dense(x: Tensor, group: DenseGroup) -> Tensor:
    """``[G, L, *]`` -> the rows ``[n, *]`` of the group's real nodes."""
    flat = x.reshape(group.num_graphs * group.max_nodes, *x.shape[2:])
    return flat if group.dense_index is None else flat.index_select(0, group.dense_index)
