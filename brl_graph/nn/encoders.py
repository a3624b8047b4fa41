"""Input encoders: node and edge features, and positional/structural encodings."""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor
from torch.nn import Linear
from torch_geometric.nn.norm import BatchNorm


class FeatureEncoder(torch.nn.Module):
    r"""Embeds node or edge features into :obj:`channels`.

    :obj:`kind="atom"` / :obj:`"bond"` use OGB's :class:`AtomEncoder` /
    :class:`BondEncoder` on integer molecule features (:obj:`[N, 9]` /
    :obj:`[E, 3]`); :obj:`kind="linear"` applies a linear map to float features of
    width :obj:`in_channels`.

    Args:
        kind (str): :obj:`"atom"`, :obj:`"bond"` or :obj:`"linear"`.
        channels (int): Width of the embedding.
        in_channels (int, optional): Width of the float features; needed by
            :obj:`"linear"` only. (default: :obj:`None`)

    Shapes:
        - **input:** :math:`(N, F)` (a 1-D input counts as :math:`F = 1`):
          integer columns for :obj:`"atom"` (9) and :obj:`"bond"` (3), float
          for :obj:`"linear"` (:obj:`in_channels`)
        - **output:** :math:`(N, \text{channels})`
    """
    def __init__(self, kind: str, channels: int, in_channels: Optional[int] = None) -> None:
        super().__init__()
        self.kind = kind
        self.in_channels = in_channels
        if kind == "atom":
            from ogb.graphproppred.mol_encoder import AtomEncoder
            self.enc = AtomEncoder(channels)
        elif kind == "bond":
            from ogb.graphproppred.mol_encoder import BondEncoder
            self.enc = BondEncoder(channels)
        elif kind == "linear":
            if in_channels is None or in_channels <= 0:
                raise ValueError("a linear encoder needs in_channels > 0")
            self.enc = Linear(in_channels, channels)
        else:
            raise ValueError(f"unknown encoder kind {kind!r}; use 'atom', 'bond' or 'linear'")

    def reset_parameters(self) -> None:
        for m in self.enc.modules():
            if isinstance(m, (Linear, torch.nn.Embedding)):
                m.reset_parameters()

    def forward(self, x: Tensor) -> Tensor:
        if self.kind == "linear":
            if x.dim() == 1:
                x = x.unsqueeze(-1)
            if x.size(-1) != self.in_channels:
                raise ValueError(f"expected features of width {self.in_channels}, got {list(x.shape)}")
            return self.enc(x.float())
        if x.is_floating_point():
            raise ValueError(f"the {self.kind!r} encoder expects integer OGB features, got {x.dtype}")
        if x.dim() == 1:
            x = x.unsqueeze(-1)
        tables = self.enc.atom_embedding_list if self.kind == "atom" else self.enc.bond_embedding_list
        if x.size(1) != len(tables):
            raise ValueError(f"the {self.kind!r} encoder expects {len(tables)} feature columns, "
                             f"got {list(x.shape)}")
        if x.numel():
            sizes = torch.tensor([t.num_embeddings for t in tables], device=x.device)
            bad = (x.min(dim=0).values < 0) | (x.max(dim=0).values >= sizes)
            if bool(bad.any()):
                col = int(bad.nonzero()[0])
                raise ValueError(f"{self.kind} feature column {col} holds values outside "
                                 f"[0, {int(sizes[col]) - 1}]: not OGB molecule features?")
        return self.enc(x.long())

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.kind!r}, in_channels={self.in_channels})"


class PEEncoder(torch.nn.Module):
    r"""A linear embedding of a positional encoding (RWSE or LapPE), which the
    model adds to the node states. For Laplacian eigenvectors, whose sign is arbitrary, each
    eigenvector's sign is flipped at random per graph in training.

    With :obj:`norm=True` the raw encoding is batch-normalised, column by
    column, before the linear map (GraphGPS's ``raw_norm_type: BatchNorm``).
    RWSE columns are return probabilities of very different scales (zero for
    odd steps on bipartite graphs, a few hundredths for long walks), which a
    plain linear map sees as nearly constant inputs.

    Args:
        in_channels (int): Width of the encoding.
        channels (int): Width of the node states.
        sign_flip (bool, optional): Flip each column's sign at random per
            graph in training (Laplacian eigenvectors). (default: :obj:`False`)
        norm (bool, optional): Batch-normalise the raw encoding.
            (default: :obj:`False`)

    Shapes:
        - **input:** :obj:`pe` :math:`(N, \text{in})`, and :obj:`batch`
          :math:`(N)` (optional; the sign flip draws one sign per graph)
        - **output:** :math:`(N, \text{channels})`, the embedding alone: the
          model adds it to the node states
    """
    def __init__(self, in_channels: int, channels: int, sign_flip: bool = False,
                 norm: bool = False) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.sign_flip = sign_flip
        # PyG's batch norm: a batch of a single node in training is not an error
        self.norm = BatchNorm(in_channels, allow_single_element=True) if norm else None
        self.lin = Linear(in_channels, channels)

    def reset_parameters(self) -> None:
        if self.norm is not None:
            self.norm.reset_parameters()
        self.lin.reset_parameters()

    def forward(self, pe: Tensor, batch: Optional[Tensor] = None) -> Tensor:
        if pe.dim() != 2 or pe.size(1) != self.in_channels:
            raise ValueError(f"expected a positional encoding of shape [N, {self.in_channels}], "
                             f"got {list(pe.shape)}")
        pe = pe.float()
        if self.sign_flip and self.training:
            num_graphs = int(batch.max()) + 1 if batch is not None and batch.numel() else 1
            sign = torch.randint(0, 2, (num_graphs, self.in_channels), device=pe.device) * 2 - 1
            pe = pe * (sign[batch] if batch is not None else sign[0])
        if self.norm is not None:
            pe = self.norm(pe)
        return self.lin(pe)

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}({self.in_channels}, {self.lin.out_features}"
                + (", sign_flip=True" if self.sign_flip else "")
                + (", norm=True" if self.norm is not None else "") + ")")
