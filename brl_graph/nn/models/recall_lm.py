r"""A small causal language model for sequence benchmarks, and its attention baselines.

:class:`RecallLM` puts one causal attention kind (see :data:`ATTENTION_KINDS`)
inside the same pre-norm decoder, so the kinds differ only in how a position
reads the past: BRL's reservoir or block tokens (:class:`~brl_graph.nn.BRLAttention`),
a sliding window, causal linear attention (:class:`LinearCausalAttention`) or
full causal attention (:class:`FullCausalAttention`). It is the model of the
associative-recall experiment (``experiments/causal_recall.py``).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn import Embedding, LayerNorm, Linear, Module, ModuleList, Sequential

from brl_graph.nn.brl_attention import BRLAttention

#: Every attention kind :func:`make_attention` builds.
ATTENTION_KINDS = ("brl", "window", "full", "blocks", "linear")
#: The token a sequence starts with; position 0 also sees it as its previous token.
BOS = 0


class FullCausalAttention(Module):
    r"""Multi-head causal self-attention through
    :func:`~torch.nn.functional.scaled_dot_product_attention` (``is_causal=True``),
    with the same input/output projections as :class:`BRLAttention`.

    Args:
        dim (int): Width :math:`C`.
        heads (int): Attention heads; must divide :obj:`dim`.

    Shapes:
        - **input:** :math:`(B, L, C)`
        - **output:** :math:`(B, L, C)`
    """
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        if heads <= 0 or dim % heads != 0:
            raise ValueError(f"heads ({heads}) must be positive and divide dim ({dim})")
        self.dim, self.heads = dim, heads
        self.qkv = Linear(dim, 3 * dim)
        self.out = Linear(dim, dim)

    def reset_parameters(self) -> None:
        self.qkv.reset_parameters()
        self.out.reset_parameters()

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.dim}, heads={self.heads})"

    def forward(self, x: Tensor) -> Tensor:
        B, L, C = x.shape
        q, k, v = (t.unflatten(-1, (self.heads, C // self.heads)).transpose(1, 2)
                   for t in self.qkv(x).chunk(3, dim=-1))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.out(y.transpose(1, 2).reshape(B, L, C))


class LinearCausalAttention(Module):
    r"""Causal linear attention (Katharopoulos et al., 2020), the fixed-state baseline:

    .. math::
        \mathbf{y}_i = \frac{\phi(\mathbf{q}_i)^\top \mathbf{S}_i}
        {\phi(\mathbf{q}_i)^\top \mathbf{z}_i + \epsilon},\qquad
        \mathbf{S}_i = \sum_{j \le i} \phi(\mathbf{k}_j)\mathbf{v}_j^\top,\quad
        \mathbf{z}_i = \sum_{j \le i} \phi(\mathbf{k}_j),

    per head, with :math:`\phi = \mathrm{elu} + 1` (positive, so the normaliser
    never vanishes). The state is :math:`D \times D` per head, :math:`C D` per
    layer. The prefix sums run in float32 as one cumulative sum (cost
    :math:`O(L C D)`), so position :math:`i` has exactly zero gradient from
    :math:`j > i`.

    Args:
        dim (int): Width :math:`C`.
        heads (int): Attention heads; must divide :obj:`dim`.
        eps (float, optional): Added to the normaliser. (default: :obj:`1e-6`)

    Shapes:
        - **input:** :math:`(B, L, C)`
        - **output:** :math:`(B, L, C)`
    """
    def __init__(self, dim: int, heads: int, eps: float = 1e-6) -> None:
        super().__init__()
        if heads <= 0 or dim % heads != 0:
            raise ValueError(f"heads ({heads}) must be positive and divide dim ({dim})")
        self.dim, self.heads, self.eps = dim, heads, eps
        self.qkv = Linear(dim, 3 * dim)
        self.out = Linear(dim, dim)

    def reset_parameters(self) -> None:
        self.qkv.reset_parameters()
        self.out.reset_parameters()

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.dim}, heads={self.heads})"

    def forward(self, x: Tensor) -> Tensor:
        B, L, C = x.shape
        q, k, v = (t.unflatten(-1, (self.heads, C // self.heads)).float()
                   for t in self.qkv(x).chunk(3, dim=-1))  # [B, L, H, D]
        q, k = F.elu(q) + 1.0, F.elu(k) + 1.0
        state = torch.cumsum(k.unsqueeze(-1) * v.unsqueeze(-2), dim=1)  # [B, L, H, D, D]
        norm = torch.cumsum(k, dim=1)  # [B, L, H, D]
        num = torch.einsum("blhd,blhde->blhe", q, state)
        den = (q * norm).sum(-1, keepdim=True) + self.eps
        return self.out((num / den).reshape(B, L, C).to(x.dtype))


def make_attention(kind: str, dim: int, heads: int, window: int, num_tokens: int,
                   block_size: int = 32, block_tokens: int = 1, top_k: int = 2) -> Module:
    """The causal attention module of one kind (see :data:`ATTENTION_KINDS`)."""
    if kind == "brl":
        return BRLAttention(dim, heads=heads, window=window, num_tokens=num_tokens, causal=True)
    if kind == "blocks":
        return BRLAttention(dim, heads=heads, window=window, causal=True, mode="blocks",
                            block_size=block_size, block_tokens=block_tokens, top_k=top_k)
    if kind == "linear":
        return LinearCausalAttention(dim, heads)
    if kind == "window":
        return BRLAttention(dim, heads=heads, window=window, num_tokens=0, causal=True)
    if kind == "full":
        return FullCausalAttention(dim, heads)
    raise ValueError(f"unknown attention kind {kind!r}; choose from {list(ATTENTION_KINDS)}")


class Block(Module):
    r"""Pre-norm transformer block: ``x + Attn(LN(x))`` then ``x + MLP(LN(x))``.

    Args:
        attn (torch.nn.Module): A causal attention module, :math:`(B, L, C)`
            to :math:`(B, L, C)` (see :func:`make_attention`).
        dim (int): Width :math:`C`; the MLP is :math:`C \to 2C \to C`.

    Shapes:
        - **input:** :math:`(B, L, C)`
        - **output:** :math:`(B, L, C)`
    """
    def __init__(self, attn: Module, dim: int) -> None:
        super().__init__()
        self.norm1, self.attn = LayerNorm(dim), attn
        self.norm2 = LayerNorm(dim)
        self.mlp = Sequential(Linear(dim, 2 * dim), torch.nn.GELU(), Linear(2 * dim, dim))

    def reset_parameters(self) -> None:
        for module in (self.norm1, self.attn, self.norm2, self.mlp[0], self.mlp[2]):
            module.reset_parameters()

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class RecallLM(Module):
    r"""Small causal LM: token + previous-token embeddings, pre-norm blocks, LM head.

    Args:
        kind (str): Attention kind, one of :data:`ATTENTION_KINDS`.
        vocab_size (int): Vocabulary size.
        dim (int): Width :math:`C`.
        layers (int): Number of blocks.
        heads (int): Attention heads.
        window (int): Sliding window (``brl`` and ``window`` kinds).
        num_tokens (int): Compressed tokens (``brl`` kind).
        block_size, block_tokens, top_k (int): Blocks mode (``blocks`` kind).

    Shapes:
        - **input:** tokens :math:`(B, L)` int64
        - **output:** logits :math:`(B, L, V)`
    """
    def __init__(self, kind: str, vocab_size: int, dim: int = 64, layers: int = 2,
                 heads: int = 4, window: int = 32, num_tokens: int = 8, block_size: int = 32,
                 block_tokens: int = 1, top_k: int = 2) -> None:
        super().__init__()
        self.kind = kind
        self.embed = Embedding(vocab_size, dim)
        self.embed_prev = Embedding(vocab_size, dim)
        self.blocks = ModuleList(
            Block(make_attention(kind, dim, heads, window, num_tokens, block_size, block_tokens,
                                 top_k), dim)
            for _ in range(layers))
        self.norm = LayerNorm(dim)
        self.head = Linear(dim, vocab_size)

    def reset_parameters(self) -> None:
        for module in (self.embed, self.embed_prev, *self.blocks, self.norm, self.head):
            module.reset_parameters()

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}({self.kind!r}, vocab_size={self.head.out_features}, "
                f"dim={self.head.in_features}, layers={len(self.blocks)})")

    def forward(self, tokens: Tensor) -> Tensor:
        if tokens.dim() != 2:
            raise ValueError(f"tokens must be [batch, length], got {list(tokens.shape)}")
        # Position 0 sees BOS as its "previous" token: the shift stays causal.
        prev = F.pad(tokens[:, :-1], (1, 0), value=BOS)
        x = self.embed(tokens) + self.embed_prev(prev)
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x))

