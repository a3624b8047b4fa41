r"""Synthetic long-range tasks, generated offline and deterministic in a seed.

Every graph of a task has the same structure, so a dataset stores the
structure once (plus any positional encoding, computed once) and only the
per-graph node features and labels. Generation is vectorised and takes well
under a second, so these tasks are not written to the cache.

**tree-neighbors-match** (Alon & Yahav, ICLR 2021), ``depth`` :math:`r`:
a complete binary tree with :math:`L = 2^r` leaves. Leaf :math:`j` holds the
key :math:`j+1` and a value :math:`\pi(j+1)` where :math:`\pi` is a random
permutation of :math:`1..L`; the root holds a query key :math:`k`. The label
is :math:`\pi(k) - 1` (:math:`2^r` classes), read out at the root. Every
permutation is used with all :math:`L` query keys; the number of
permutations is :math:`\min(1000, L!, \lfloor 32000/L \rfloor)` for
:math:`r > 3` and :math:`\min(1000, L!)` otherwise (16,000 examples for
:math:`r = 4`, 32,000 for :math:`r \ge 5`), split 80/10/10 stratified by
label. Node features are float one-hot codes ``[key | value]`` of width
:math:`2(L+1)` (0 = empty), expanded from compact integers on access.

**ring-transfer** (``nodes`` :math:`n`, ``variant`` ``"ring"`` or
``"crossed-ring"``): the readout node 0 has zero features, the source node
:math:`\lfloor n/2 \rfloor` (:math:`\lfloor n/2 \rfloor` hops away) holds the
one-hot label among ``classes`` (5), all other nodes hold ones. The crossed
ring adds the edges :math:`i \leftrightarrow n-i\pm1` for
:math:`1 \le i < n/2`, which cross between the two halves without shortening
the source-readout distance. 5,000 / 500 / 500 graphs with balanced labels.
"""
import itertools
import math
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch import Tensor
from torch_geometric.data import Data, Dataset

from ..attrs import READOUT_MASK
from .benchmark import Benchmark
from .transforms import PairOneHot, apply_pe, pe_dims, pe_options



class SharedStructureDataset(Dataset):
    r"""Graphs that share one structure and differ in features and labels.

    Args:
        edge_index (Tensor): the common edges, ``[2, E]``.
        x (Tensor): per-graph node features, ``[G, N, F]``.
        y (Tensor): per-graph labels, ``[G]``.
        shared (Dict[str, Tensor]): node attributes common to all graphs
            (e.g. the readout mask, encodings), each with ``N`` rows.
        transform (callable, optional): applied on access.
    """
    def __init__(self, edge_index: Tensor, x: Tensor, y: Tensor,
                 shared: Optional[Dict[str, Tensor]] = None,
                 transform=None) -> None:
        if x.dim() != 3 or x.size(0) != y.size(0):
            raise ValueError(f"x must be [G, N, F] and y [G]; got "
                             f"{tuple(x.shape)} and {tuple(y.shape)}")
        self.edge_index = edge_index
        self.node_x = x
        self.labels = y
        self.shared = dict(shared or {})
        super().__init__(None, transform)

    def len(self) -> int:
        return self.labels.size(0)

    def get(self, idx: int) -> Data:
        # Copies keep in-place edits of one graph from leaking into others.
        data = Data(x=self.node_x[idx].clone(), edge_index=self.edge_index.clone(),
                    y=self.labels[idx].view(1).clone())
        for name, value in self.shared.items():
            data[name] = value.clone()
        return data


def _undirected(pairs: Sequence[Tuple[int, int]]) -> Tensor:
    e = torch.tensor(sorted(set((min(a, b), max(a, b)) for a, b in pairs)),
                     dtype=torch.long).t()
    return torch.cat([e, e.flip(0)], dim=1)


def _shared_with_pe(template: Data, opts: Dict[str, object],
                    shared: Dict[str, Tensor]) -> Dict[str, Tensor]:
    if opts:
        done = apply_pe([template.clone()], opts)[0]
        for name in pe_dims(opts):
            shared[name] = done[name]
    return shared


def stratified_split(labels: Tensor, fractions: Sequence[float],
                     generator: torch.Generator) -> Dict[str, Tensor]:
    """Per class, shuffles its examples and cuts them by ``fractions``."""
    out: Dict[str, List[Tensor]] = {"train": [], "valid": [], "test": []}
    for c in labels.unique().tolist():
        idx = (labels == c).nonzero().view(-1)
        idx = idx[torch.randperm(idx.numel(), generator=generator)]
        n_valid = int(round(fractions[1] * idx.numel()))
        n_test = int(round(fractions[2] * idx.numel()))
        out["valid"].append(idx[:n_valid])
        out["test"].append(idx[n_valid:n_valid + n_test])
        out["train"].append(idx[n_valid + n_test:])
    return {k: torch.cat(v).sort().values for k, v in out.items()}


def tree_permutations(num_leaves: int, depth: int,
                      generator: torch.Generator) -> Tensor:
    """Distinct random permutations of ``1..num_leaves`` (sizes as in the
    paper), shape ``[P, num_leaves]``."""
    cap = 1000 if depth <= 3 else min(1000, 32000 // num_leaves)
    count = min(cap, math.factorial(num_leaves))
    if math.factorial(num_leaves) <= cap:
        perms = torch.tensor(list(itertools.permutations(range(1, num_leaves + 1))))
        return perms[torch.randperm(perms.size(0), generator=generator)]
    seen, rows = set(), []
    while len(rows) < count:
        p = torch.randperm(num_leaves, generator=generator) + 1
        key = tuple(p.tolist())
        if key not in seen:
            seen.add(key)
            rows.append(p)
    return torch.stack(rows)


TREE_EDGES = ("undirected", "upward")


def tree_neighbors_match(depth: int, seed: int = 0,
                         split_fractions: Sequence[float] = (0.8, 0.1, 0.1),
                         pe=None, rwse_dim: int = 16, lap_pe_dim: int = 8,
                         pe_seed: int = 0, edges: str = "undirected") -> Benchmark:
    r"""The Tree-NeighborsMatch task of depth ``depth`` (see module doc).

    Args:
        depth: tree depth :math:`r` (2..12); :math:`2^r` classes.
        seed: seeds the permutations and the split.
        edges: ``'undirected'`` (both directions of every tree edge) or
            ``'upward'``: child to parent only, as in Alon & Yahav's published
            setup, where information can only flow towards the root (the
            readout); self-information is each layer's own update.
        split_fractions: train/valid/test fractions (stratified by label).
        pe, rwse_dim, lap_pe_dim, pe_seed: see :mod:`.transforms`.
    """
    if not 2 <= int(depth) <= 12:
        raise ValueError(f"depth must be in 2..12, got {depth}")
    fr = tuple(float(f) for f in split_fractions)
    if len(fr) != 3 or min(fr) < 0 or abs(sum(fr) - 1) > 1e-6:
        raise ValueError(f"split_fractions must be three non-negative numbers "
                         f"summing to 1, got {split_fractions}")
    if edges not in TREE_EDGES:
        raise ValueError(f"edges must be one of {TREE_EDGES}, got {edges!r}")
    depth = int(depth)
    gen = torch.Generator().manual_seed(int(seed))
    num_leaves = 2**depth
    num_nodes = 2 * num_leaves - 1
    first_leaf = num_leaves - 1  # heap order: children of i are 2i+1, 2i+2
    if edges == "upward":
        child = torch.arange(1, num_nodes)
        edge_index = torch.stack([child, (child - 1) // 2])  # source child, target parent
    else:
        edge_index = _undirected([((c - 1) // 2, c) for c in range(1, num_nodes)])

    perms = tree_permutations(num_leaves, depth, gen)  # [P, L]
    num_perms = perms.size(0)
    keys = torch.arange(1, num_leaves + 1).repeat(num_perms)  # [P*L]
    values = perms.repeat_interleave(num_leaves, dim=0)  # [P*L, L]
    g = keys.numel()
    small = torch.uint8 if num_leaves < 256 else torch.int16
    x = torch.zeros(g, num_nodes, 2, dtype=small)
    x[:, 0, 0] = keys.to(small)
    x[:, first_leaf:, 0] = torch.arange(1, num_leaves + 1).to(small)
    x[:, first_leaf:, 1] = values.to(small)
    y = values.gather(1, (keys - 1).view(-1, 1)).view(-1) - 1

    readout = torch.zeros(num_nodes, dtype=torch.bool)
    readout[0] = True
    opts = pe_options(pe, rwse_dim, lap_pe_dim, pe_seed)
    shared = _shared_with_pe(Data(edge_index=edge_index, num_nodes=num_nodes),
                             opts, {READOUT_MASK: readout})
    full = SharedStructureDataset(edge_index, x, y, shared,
                                  transform=PairOneHot(num_leaves + 1))
    splits = stratified_split(y, fr, gen)
    return Benchmark(
        name="tree-neighbors-match", train=full[splits["train"]],
        valid=full[splits["valid"]], test=full[splits["test"]],
        task="multiclass", num_tasks=1, num_classes=num_leaves,
        metric="accuracy", level="readout", node_readout=READOUT_MASK,
        num_node_features=2 * (num_leaves + 1), num_edge_features=0,
        pe=pe_dims(opts),
        info={"depth": depth, "seed": int(seed), "num_graphs": g,
              "num_nodes": num_nodes, "edges": edges, "options": opts})


def ring_edges(nodes: int, variant: str) -> Tensor:
    """Undirected ``edge_index`` of a ring or crossed ring on ``nodes``."""
    pairs = [(i, (i + 1) % nodes) for i in range(nodes)]
    if variant == "crossed-ring":
        for i in range(1, (nodes + 1) // 2):
            for j in (nodes - i - 1, nodes - i + 1):
                if 0 < j < nodes and j != i and abs(j - i) not in (1, nodes - 1):
                    pairs.append((i, j))
    elif variant != "ring":
        raise ValueError(f"variant must be 'ring' or 'crossed-ring', got "
                         f"'{variant}'")
    return _undirected(pairs)


def ring_transfer(nodes: int, variant: str = "ring", seed: int = 0,
                  classes: int = 5, num_train: int = 5000, num_valid: int = 500,
                  num_test: int = 500, pe=None, rwse_dim: int = 16,
                  lap_pe_dim: int = 8, pe_seed: int = 0) -> Benchmark:
    r"""The RingTransfer task (see module doc).

    Args:
        nodes: ring size :math:`n \ge 4`; the source is :math:`n/2` hops away.
        variant: ``"ring"`` or ``"crossed-ring"``.
        seed: seeds the labels.
        classes: number of classes (one-hot width).
        num_train, num_valid, num_test: split sizes.
        pe, rwse_dim, lap_pe_dim, pe_seed: see :mod:`.transforms`.
    """
    nodes = int(nodes)
    if nodes < 4:
        raise ValueError(f"nodes must be >= 4, got {nodes}")
    if classes < 2:
        raise ValueError(f"classes must be >= 2, got {classes}")
    edge_index = ring_edges(nodes, variant)
    gen = torch.Generator().manual_seed(int(seed))
    sizes = {"train": num_train, "valid": num_valid, "test": num_test}
    labels = []
    for split, size in sizes.items():
        if size < 1:
            raise ValueError(f"num_{split} must be >= 1, got {size}")
        balanced = torch.arange(size) % classes
        labels.append(balanced[torch.randperm(size, generator=gen)])
    y = torch.cat(labels)
    source = nodes // 2
    x = torch.ones(y.numel(), nodes, classes)
    x[:, 0] = 0.0
    x[:, source] = torch.nn.functional.one_hot(y, classes).float()
    readout = torch.zeros(nodes, dtype=torch.bool)
    readout[0] = True
    opts = pe_options(pe, rwse_dim, lap_pe_dim, pe_seed)
    shared = _shared_with_pe(Data(edge_index=edge_index, num_nodes=nodes),
                             opts, {READOUT_MASK: readout})
    full = SharedStructureDataset(edge_index, x, y, shared)
    bounds = torch.tensor([0, num_train, num_train + num_valid, y.numel()])
    train, valid, test = (full[torch.arange(bounds[i], bounds[i + 1])]
                          for i in range(3))
    return Benchmark(
        name="ring-transfer", train=train, valid=valid, test=test,
        task="multiclass", num_tasks=1, num_classes=classes,
        metric="accuracy", level="readout", node_readout=READOUT_MASK,
        num_node_features=classes, num_edge_features=0, pe=pe_dims(opts),
        info={"nodes": nodes, "variant": variant, "seed": int(seed),
              "source_node": source, "options": opts})
