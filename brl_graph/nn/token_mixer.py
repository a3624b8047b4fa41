from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import LayerNorm, Linear, Sequential

from brl_graph.nn.dropout import dropout


class TokenMixer(torch.nn.Module):
    r"""The *mix* step of a BRL reservoir: pre-norm self-attention among the
    :math:`K` tokens of each reservoir, then a pre-norm token MLP,

    .. math::
        \mathbf{T} \leftarrow \mathbf{T} + \mathrm{Attn}(\mathrm{LN}(\mathbf{T})),
        \qquad
        \mathbf{T} \leftarrow \mathbf{T} + \mathrm{MLP}(\mathrm{LN}(\mathbf{T})).

    Shared by :class:`~brl_graph.nn.BRLConv` and
    :class:`~brl_graph.nn.BRLAttention`.

    Args:
        channels (int): Token width :math:`C`.
        heads (int): Attention heads; must divide :obj:`channels`.
        act (torch.nn.Module, optional): MLP activation. (default: ReLU)
        dropout (float, optional): Dropout on both residual branches.
        attn_dropout (float, optional): Dropout on attention weights.

    Shapes:
        - **input / output:** :math:`(*, K, C)`; every leading index is an
          independent reservoir (a graph, or a position in causal mode).
    """
    def __init__(self, channels: int, heads: int, act: torch.nn.Module | None = None,
                 dropout: float = 0.0, attn_dropout: float = 0.0) -> None:
        super().__init__()
        if channels % heads != 0:
            raise ValueError(f"heads ({heads}) must divide channels ({channels})")
        self.channels, self.heads = channels, heads
        self.dropout, self.attn_dropout = dropout, attn_dropout
        self.norm_attn = LayerNorm(channels)
        self.qkv = Linear(channels, 3 * channels)
        self.out = Linear(channels, channels)
        self.norm_mlp = LayerNorm(channels)
        self.mlp = Sequential(Linear(channels, 2 * channels),
                              act if act is not None else torch.nn.ReLU(),
                              Linear(2 * channels, channels))

    def reset_parameters(self) -> None:
        for m in self.modules():
            if isinstance(m, (Linear, LayerNorm)):
                m.reset_parameters()

    def forward(self, T: Tensor) -> Tensor:
        *lead, K, C = T.shape
        H = self.heads
        D = C // H
        q, k, v = self.qkv(self.norm_attn(T)).view(-1, K, 3, H, D).permute(2, 0, 3, 1, 4).unbind(0)
        # Scores as [keys, queries] and a softmax over axis -2: PyTorch's CPU
        # softmax over a last axis of length K is several times slower.
        w = torch.softmax(torch.matmul(k, q.transpose(-1, -2)) * (D ** -0.5), dim=-2)
        w = dropout(w, p=self.attn_dropout if self.training else 0.0, training=self.training)
        a = torch.matmul(w.transpose(-1, -2), v).transpose(1, 2).reshape(*lead, K, C)
        T = T + dropout(self.out(a), p=self.dropout, training=self.training)
        return T + dropout(self.mlp(self.norm_mlp(T)), p=self.dropout, training=self.training)

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.channels}, heads={self.heads})"
