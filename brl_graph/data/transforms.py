r"""Positional/structural encodings and feature transforms.

PE options accepted by :func:`~brl_graph.data.load_dataset`:

* ``pe``: ``None``, ``"rwse"``, ``"lap"``, or a list of them.
* ``rwse_dim`` (default 16): random-walk steps of RWSE, stored in ``rwse``
  (``[N, rwse_dim]``), via PyG's :class:`AddRandomWalkPE`.
* ``lap_pe_dim`` (default 8): Laplacian eigenvectors, stored in ``lap_pe``
  (``[N, lap_pe_dim]``), via PyG's :class:`AddLaplacianEigenvectorPE`.
  Graphs with :math:`N \le k` nodes get their :math:`N-1` non-trivial
  eigenvectors padded with zeros. Eigenvector signs are drawn from a
  generator seeded by ``pe_seed`` so that processing is reproducible; a model
  may flip them at training time.
"""
from contextlib import contextmanager
from typing import Dict, Iterable, Iterator, List, Sequence, Union

import torch
from torch_geometric.data import Data
from torch_geometric.transforms import (
    AddLaplacianEigenvectorPE,
    AddRandomWalkPE,
    BaseTransform,
)
from torch_geometric.utils import is_undirected

from ..attrs import LAP_PE, PE_ATTRS, PE_KINDS, RWSE  # noqa: F401 (PE_ATTRS re-exported)



def normalize_pe(pe: Union[None, str, Sequence[str]]) -> List[str]:
    """``pe`` as a sorted list of kinds; raises on unknown kinds."""
    if pe is None:
        return []
    kinds = [pe] if isinstance(pe, str) else list(pe)
    bad = [k for k in kinds if k not in PE_KINDS]
    if bad:
        raise ValueError(f"unknown pe kind(s) {bad}; choose from {PE_KINDS}")
    return sorted(set(kinds))


def pe_options(pe, rwse_dim: int = 16, lap_pe_dim: int = 8,
               pe_seed: int = 0) -> Dict[str, object]:
    """The PE options that matter for caching (empty when no PE)."""
    kinds = normalize_pe(pe)
    opts: Dict[str, object] = {}
    if "rwse" in kinds:
        if int(rwse_dim) < 1:
            raise ValueError(f"rwse_dim must be >= 1, got {rwse_dim}")
        opts["rwse_dim"] = int(rwse_dim)
    if "lap" in kinds:
        if int(lap_pe_dim) < 1:
            raise ValueError(f"lap_pe_dim must be >= 1, got {lap_pe_dim}")
        opts["lap_pe_dim"] = int(lap_pe_dim)
        opts["pe_seed"] = int(pe_seed)
    return opts


def pe_dims(opts: Dict[str, object]) -> Dict[str, int]:
    """Attribute name -> width, from :func:`pe_options`' output."""
    dims = {}
    if "rwse_dim" in opts:
        dims[PE_ATTRS["rwse"]] = int(opts["rwse_dim"])
    if "lap_pe_dim" in opts:
        dims[PE_ATTRS["lap"]] = int(opts["lap_pe_dim"])
    return dims


class PaddedLaplacianPE(BaseTransform):
    r"""PyG's :class:`AddLaplacianEigenvectorPE` for graphs of any size.

    Stores the :math:`k` eigenvectors of the symmetric normalised Laplacian
    :math:`L = I - D^{-1/2} A D^{-1/2}` with the smallest non-zero
    eigenvalues in ``data[attr_name]`` (shape ``[N, k]``); when
    :math:`N \le k` the missing columns are zeros.
    """
    def __init__(self, k: int, attr_name: str = LAP_PE) -> None:
        self.k = k
        self.attr_name = attr_name

    def forward(self, data: Data) -> Data:
        n = int(data.num_nodes)
        undirected = is_undirected(data.edge_index, num_nodes=n)
        if n > self.k + 1:
            out = AddLaplacianEigenvectorPE(self.k, attr_name=self.attr_name,
                                            is_undirected=undirected)(data)
            out[self.attr_name] = out[self.attr_name].float()
            return out
        pe = torch.zeros(n, self.k)
        if n > 1:
            # The dense path of PyG's transform handles k = n - 1 exactly.
            small = AddLaplacianEigenvectorPE(n - 1, attr_name="_lap",
                                              is_undirected=undirected)(
                                                  Data(edge_index=data.edge_index,
                                                       num_nodes=n))
            pe[:, :n - 1] = small["_lap"].float()
        data[self.attr_name] = pe
        return data


class PETransform(BaseTransform):
    """Adds the encodings described by :func:`pe_options` output."""
    def __init__(self, opts: Dict[str, object]) -> None:
        self.opts = dict(opts)
        self.rwse = (AddRandomWalkPE(int(opts["rwse_dim"]), attr_name=RWSE)
                     if "rwse_dim" in opts else None)
        self.lap = (PaddedLaplacianPE(int(opts["lap_pe_dim"]), LAP_PE)
                    if "lap_pe_dim" in opts else None)

    def forward(self, data: Data) -> Data:
        if self.rwse is not None:
            data = self.rwse(data)
            data[RWSE] = data[RWSE].float()
        if self.lap is not None:
            data = self.lap(data)
        return data

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.opts})"


@contextmanager
def single_threaded() -> Iterator[None]:
    """Runs the body with one torch and one BLAS thread.

    Per-graph encodings are tiny matrix products and eigen-decompositions;
    thread start-up dominates them (measured: 4-6x slower with 2 threads).
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:  # pragma: no cover - threadpoolctl comes with sklearn
            yield
        else:
            with threadpool_limits(1):
                yield
    finally:
        torch.set_num_threads(before)


def apply_pe(graphs: Iterable[Data], opts: Dict[str, object]) -> List[Data]:
    """Applies :class:`PETransform` to every graph, with a fixed RNG seed so
    the Laplacian eigenvector signs are reproducible."""
    transform = PETransform(opts)
    with torch.random.fork_rng(devices=[]), single_threaded():
        torch.manual_seed(int(opts.get("pe_seed", 0)))
        return [transform(g) for g in graphs]


class PairOneHot(BaseTransform):
    r"""Turns integer node features ``x`` of shape ``[N, F]`` (long) into
    float one-hot features of shape ``[N, F * num_values]``: column block
    :math:`f` is the one-hot code of ``x[:, f]``.

    Synthetic tasks store compact integers and expand them on access. A
    ``ValueError`` names features that are not ``[N, F]`` or not in
    ``0..num_values - 1``; float features pass unchanged (already expanded).
    """
    def __init__(self, num_values: int) -> None:
        self.num_values = num_values

    def forward(self, data: Data) -> Data:
        x = data.x
        if x.dtype.is_floating_point:
            return data  # already expanded
        if x.dim() != 2:
            raise ValueError(f"PairOneHot expects x of shape [N, F]; got {tuple(x.shape)}")
        x = x.long()
        if x.numel():
            low, high = (int(v) for v in torch.aminmax(x))
            if low < 0 or high >= self.num_values:
                raise ValueError(f"PairOneHot({self.num_values}) needs integer features in "
                                 f"0..{self.num_values - 1}; got {low}..{high}")
        # A scatter into float zeros: one_hot's int64 intermediate is 8 times the
        # result and made a batch of 1,024 trees at r = 6 cost 0.15 s to expand.
        offsets = torch.arange(x.size(1), device=x.device) * self.num_values
        out = torch.zeros(x.size(0), x.size(1) * self.num_values, dtype=torch.float32,
                          device=x.device)
        data.x = out.scatter_(1, x + offsets, 1.0)
        return data

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.num_values})"

