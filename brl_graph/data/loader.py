r"""A loader for graphs that share one structure: batches sliced from stacked
tensors instead of collated graph by graph.

PyG's :class:`~torch_geometric.loader.DataLoader` builds every graph of a
batch as its own :class:`~torch_geometric.data.Data` (clone, transform) and
then concatenates them. For the synthetic tasks, whose graphs all share one
structure (:class:`~brl_graph.data.synthetic.SharedStructureDataset`), that
is most of a small model's step: a pass over Tree-NeighborsMatch at r = 4
(12,800 trees) spends about a second in collation alone. Here a batch is one
index into the stacked features, one one-hot expansion and one repeat of the
structure.

The batches are *equal* to the DataLoader's, key for key and dtype for dtype,
and in the same order: the loader draws from its ``generator`` exactly as
the DataLoader does (a base seed per pass, then the sampler's permutation),
so a run may switch loaders between a checkpoint and its resume.

.. code-block:: python

    from brl_graph.data.loader import SharedStructureLoader, stackable
    if stackable(bench.train):
        loader = SharedStructureLoader(bench.train, batch_size=1024, shuffle=True,
                                       generator=torch.Generator().manual_seed(0))
"""
from __future__ import annotations

from typing import Iterator, List, Optional, Sequence, Tuple

import torch
from torch import Tensor
from torch.utils.data import BatchSampler, Dataset, RandomSampler, SequentialSampler, Subset
from torch_geometric.data import Batch, Data

from .synthetic import SharedStructureDataset
from .transforms import PairOneHot

#: Transforms that act on each node's features alone, so that applying them
#: to a batch equals applying them graph by graph.
NODEWISE_TRANSFORMS = (PairOneHot,)


def _unwrap(dataset: Dataset) -> Tuple[Optional[SharedStructureDataset], List[int]]:
    """The shared-structure dataset under ``dataset`` (a ``torch`` ``Subset``
    chain is followed) and the stacked rows its positions stand for."""
    positions: Optional[List[int]] = None
    while isinstance(dataset, Subset):
        inner = [int(i) for i in dataset.indices]
        positions = inner if positions is None else [inner[p] for p in positions]
        dataset = dataset.dataset
    # Exact types: a subclass may override get(), which stacking would bypass.
    if type(dataset) is not SharedStructureDataset:
        return None, []
    rows = [int(i) for i in dataset.indices()]
    return dataset, rows if positions is None else [rows[p] for p in positions]


def stackable(dataset: Dataset) -> bool:
    """Whether :class:`SharedStructureLoader` can batch ``dataset``: a
    :class:`SharedStructureDataset` (or a ``Subset`` of one) whose transform is
    none or node-wise and whose shared attributes are node attributes (one row
    per node) that PyG concatenates without an offset."""
    base, _ = _unwrap(dataset)
    if base is None:
        return False
    if base.transform is not None and type(base.transform) not in NODEWISE_TRANSFORMS:
        return False
    return all(_node_attribute(base, key, value) for key, value in base.shared.items())


def _node_attribute(base: SharedStructureDataset, key: str, value: object) -> bool:
    """Whether PyG batches shared ``key`` by stacking its node rows unchanged."""
    nodes = base.node_x.size(1)
    if not isinstance(value, Tensor) or value.dim() == 0 or value.size(0) != nodes:
        return False  # graph-level or non-tensor: sliced per graph otherwise
    template = Data(edge_index=base.edge_index, num_nodes=nodes)
    increment = torch.as_tensor(template.__inc__(key, value))
    return template.__cat_dim__(key, value) == 0 and not bool(increment.ne(0).any())


class SharedStructureLoader:
    r"""Mini-batches of a shared-structure dataset, equal to those of PyG's
    ``DataLoader(dataset, batch_size, shuffle, generator=generator)`` with
    ``num_workers=0``, built from stacked tensors.

    Args:
        dataset: a :class:`~brl_graph.data.synthetic.SharedStructureDataset`,
            an ``index_select`` of one, or a ``torch`` ``Subset`` of either;
            :func:`stackable` must hold.
        batch_size (int): graphs per batch (the last may be smaller).
        shuffle (bool): a fresh permutation each pass, drawn from ``generator``.
        generator (torch.Generator, optional): the shuffling stream. Without
            one, each pass seeds a private generator from the global RNG, as
            ``RandomSampler`` does.
    """

    def __init__(self, dataset: Dataset, batch_size: int = 1, shuffle: bool = False,
                 generator: Optional[torch.Generator] = None) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if not stackable(dataset):
            raise ValueError(f"{type(dataset).__name__} cannot be batched by stacking: it must be a "
                             f"SharedStructureDataset (or a Subset of one) with no transform or a "
                             f"node-wise one {tuple(t.__name__ for t in NODEWISE_TRANSFORMS)}")
        self.dataset = dataset
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.generator = generator
        self._base, rows = _unwrap(dataset)
        self._rows = torch.tensor(rows, dtype=torch.long)
        sampler = (RandomSampler(dataset, generator=generator) if shuffle
                   else SequentialSampler(dataset))
        self.batch_sampler = BatchSampler(sampler, self.batch_size, drop_last=False)
        self._edges = _BatchedEdges(self._base.edge_index, self._base.node_x.size(1))

    def __len__(self) -> int:
        return len(self.batch_sampler)

    def __iter__(self) -> Iterator[Batch]:
        batches = iter(self.batch_sampler)
        # torch's DataLoader draws a worker base seed from the generator when its
        # iterator is made, before the sampler's permutation (drawn at the first batch);
        # drawing it here too, not lazily, keeps the generator's stream equal.
        torch.empty((), dtype=torch.int64).random_(generator=self.generator)
        return (self.collate(positions) for positions in batches)

    def collate(self, positions: Sequence[int]) -> Batch:
        """The batch of the graphs at ``positions`` of the dataset."""
        base = self._base
        rows = self._rows[torch.as_tensor(positions, dtype=torch.long)]
        count, nodes = rows.numel(), base.node_x.size(1)
        x = base.node_x[rows].flatten(0, 1)
        graph = torch.arange(count).repeat_interleave(nodes)
        data = Batch(x=x, edge_index=self._edges(count), y=base.labels[rows].view(-1),
                     batch=graph, ptr=torch.arange(count + 1) * nodes)
        for name, value in base.shared.items():
            data[name] = value.repeat(count, *([1] * (value.dim() - 1)))
        if base.transform is not None:
            data = base.transform(data)
        # What Batch.from_data_list records, so that batch[i] and to_data_list() work.
        graphs = torch.arange(count + 1)
        keys = [key for key in data.keys() if key not in ("batch", "ptr")]
        data._slice_dict = {key: graphs * self._rows_per_graph(key) for key in keys}
        data._inc_dict = {key: graphs[:-1] * nodes if key == "edge_index"
                          else torch.zeros(count, dtype=torch.long) for key in keys}
        data._num_graphs = count
        return data

    def _rows_per_graph(self, key: str) -> int:
        """How many entries of batched ``key`` (along its cat dim) one graph has."""
        if key == "y":
            return 1
        if key == "edge_index":
            return self._edges.num_edges
        return self._base.node_x.size(1)  # x and the shared node attributes

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}({len(self.dataset)} graphs, "
                f"batch_size={self.batch_size}, shuffle={self.shuffle})")


class _BatchedEdges:
    """The shared ``edge_index`` of ``count`` graphs, offset per graph; the
    largest batch's is kept and sliced for smaller ones."""

    def __init__(self, edge_index: Tensor, num_nodes: int) -> None:
        self.edge_index = edge_index
        self.num_nodes = num_nodes
        self.num_edges = edge_index.size(1)
        self._cache = edge_index.new_empty(2, 0)
        self._count = 0

    def __call__(self, count: int) -> Tensor:
        """The ``[2, count * E]`` edges of ``count`` graphs, graph after graph."""
        if count > self._count:
            offsets = torch.arange(count, dtype=self.edge_index.dtype) * self.num_nodes
            self._cache = (self.edge_index.unsqueeze(1) + offsets.view(1, -1, 1)).flatten(1)
            self._count = count
        # A copy: a model that edits its batch in place must not edit the next one's.
        return self._cache[:, :count * self.num_edges].clone()
