from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn import LayerNorm, Linear, Parameter

from brl_graph.nn.functional import NEG, prefix_softmax_pool
from brl_graph.nn.token_mixer import TokenMixer


class BRLAttention(torch.nn.Module):
    r"""BRL attention for dense sequences: a sliding window plus :math:`K`
    compressed tokens per sequence, under one softmax.

    Each position :math:`i` attends jointly over the positions of its local
    window :math:`\mathcal{W}(i)` and over :math:`K` tokens that summarise the
    whole sequence:

    .. math::
        \mathbf{y}_i = \mathbf{W}_O\Big(\sum_{j \in \mathcal{W}(i)} \alpha_{ij}
        \mathbf{v}_j + \sum_{k=1}^{K} \alpha_{ik} \mathbf{v}'_{k}\Big),
        \qquad \sum_{j} \alpha_{ij} + \sum_k \alpha_{ik} = 1,

    where :math:`\mathcal{W}(i) = \{j : |i-j| < w\}` for the encoder and
    :math:`\{j : i-w < j \le i\}` for the decoder. The tokens are built as in
    :class:`~brl_graph.nn.BRLConv`: learned seeds pool the sequence by
    attention (compress), then attend among themselves (mix). In causal mode
    the tokens read at position :math:`i` pool positions :math:`j \le i` only,
    through a stable prefix softmax, so :math:`\mathbf{y}_i` depends on
    :math:`\mathbf{x}_{j \le i}` alone, with exactly zero gradient to later
    positions. The cost is :math:`O(L (w + K) C)` for the encoder. The decoder
    keeps a reservoir per position (:math:`[B, L, K, C]`), whose projections and
    mixing cost :math:`O(L K C^2)`: still linear in :math:`L`, but with a larger
    constant (see ``benchmarks/results/causal_recall.json``). Because a prefix
    pooling is only linear when its queries are the same at every position, the
    decoder's pooling queries are the learned seeds; content-dependent retrieval
    then happens only when position :math:`i` reads the tokens.

    Args:
        dim (int): Model width :math:`C`.
        heads (int, optional): Attention heads; must divide :obj:`dim`.
            (default: :obj:`4`)
        window (int, optional): Local window :math:`w`. (default: :obj:`64`)
        num_tokens (int, optional): Compressed tokens :math:`K`; :obj:`0` gives
            sliding-window attention alone. (default: :obj:`8`)
        causal (bool, optional): Decoder mode. (default: :obj:`False`)
        dropout (float, optional): Dropout on attention weights.
            (default: :obj:`0.0`)
        prefix_block (int, optional): Block size of the causal prefix softmax.
            (default: :obj:`32`)

    Shapes:
        - **input:** :math:`(B, L, C)`, mask :math:`(B, L)` *(optional, bool,
          True = real position)*
        - **output:** :math:`(B, L, C)`; padded positions are zero.
    """
    def __init__(self, dim: int, heads: int = 4, window: int = 64, num_tokens: int = 8,
                 causal: bool = False, dropout: float = 0.0, prefix_block: int = 32) -> None:
        super().__init__()
        if heads <= 0 or dim % heads != 0:
            raise ValueError(f"heads ({heads}) must be positive and divide dim ({dim})")
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        if num_tokens < 0:
            raise ValueError(f"num_tokens must be >= 0, got {num_tokens}")
        self.dim, self.heads, self.window = dim, heads, window
        self.num_tokens, self.causal, self.dropout = num_tokens, causal, dropout
        self.prefix_block = prefix_block
        self.qkv = Linear(dim, 3 * dim)
        self.out = Linear(dim, dim)
        if num_tokens > 0:
            self.seeds = Parameter(torch.empty(num_tokens, dim))
            self.tok_norm_c = LayerNorm(dim)
            self.q_c = Linear(dim, dim)
            self.kv_c = Linear(dim, 2 * dim)
            self.o_c = Linear(dim, dim)
            self.mixer = TokenMixer(dim, heads, torch.nn.GELU())
            self.tok_norm_r = LayerNorm(dim)
            self.kv_t = Linear(dim, 2 * dim)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        r"""Resets all learnable parameters of the module."""
        for module in self.modules():
            if isinstance(module, (Linear, LayerNorm)):
                module.reset_parameters()
        if self.num_tokens > 0:
            torch.nn.init.normal_(self.seeds, std=1.0)

    def _split(self, t: Tensor) -> Tensor:
        return t.unflatten(-1, (self.heads, self.dim // self.heads))

    def _tokens(self, x: Tensor, mask: Tensor) -> Tensor:
        """Compress and mix. Returns ``[B, K, C]``, or ``[B, L, K, C]`` when causal."""
        B, L, C = x.shape
        H, K = self.heads, self.num_tokens
        D = C // H
        k, v = (self._split(t) for t in self.kv_c(x).chunk(2, dim=-1))  # [B, L, H, D]
        q = self._split(self.q_c(self.tok_norm_c(self.seeds)))  # [K, H, D]
        logits = torch.einsum("khd,blhd->bhkl", q, k) / math.sqrt(D)
        if self.causal:
            pooled = prefix_softmax_pool(logits, v.permute(0, 2, 1, 3).unsqueeze(2),
                                         mask=mask[:, None, None, :], block=self.prefix_block)
            T = self.seeds + self.o_c(pooled.permute(0, 3, 2, 1, 4).reshape(B, L, K, C))
        else:
            empty = ~mask.any(dim=1)
            logits = logits.masked_fill(~(mask | empty[:, None])[:, None, None, :], NEG)
            pooled = torch.einsum("bhkl,blhd->bkhd", torch.softmax(logits, dim=-1), v)
            pooled = pooled.reshape(B, K, C).masked_fill(empty[:, None, None], 0.0)
            T = self.seeds + self.o_c(pooled)
        return self.mixer(T)

    def _window_keys(self, t: Tensor, W: int, nb: int) -> Tensor:
        """``[B, L, ...]`` -> key blocks ``[B, nb, S, ...]``: block m sees positions
        ``[mW - W, mW + W)`` (causal) or ``[mW - W, mW + 2W)``."""
        L = t.size(1)
        after = nb * W - L + (0 if self.causal else W)
        pad = [0, 0] * (t.dim() - 2) + [W, after]
        tp = F.pad(t, pad)
        S = 2 * W if self.causal else 3 * W
        return tp.unfold(1, S, W).movedim(-1, 2)

    def forward(self, x: Tensor, mask: Optional[Tensor] = None) -> Tensor:
        if x.dim() != 3 or x.size(-1) != self.dim:
            raise ValueError(f"BRLAttention expected x of shape [batch, length, {self.dim}], "
                             f"got {list(x.shape)}")
        B, L, C = x.shape
        if mask is None:
            mask = torch.ones(B, L, dtype=torch.bool, device=x.device)
        elif mask.shape != (B, L) or mask.dtype != torch.bool:
            raise ValueError(f"mask must be a bool tensor of shape [{B}, {L}], got "
                             f"{mask.dtype} {list(mask.shape)}")
        if L == 0:
            return x.clone()
        H, K, W = self.heads, self.num_tokens, min(self.window, L)
        D = C // H
        nb = -(-L // W)
        q, k, v = (self._split(t) for t in self.qkv(x).chunk(3, dim=-1))  # [B, L, H, D]
        qb = F.pad(q, (0, 0, 0, 0, 0, nb * W - L)).view(B, nb, W, H, D)
        kb, vb = self._window_keys(k, W, nb), self._window_keys(v, W, nb)  # [B, nb, S, H, D]
        valid = self._window_keys(mask, W, nb)  # [B, nb, S]; False outside [0, L)
        S = kb.size(2)
        dist = (torch.arange(W, device=x.device)[:, None] + W
                - torch.arange(S, device=x.device)[None, :])  # query pos - key pos
        allowed = (dist >= 0) & (dist < W) if self.causal else dist.abs() < W
        allowed = allowed[None, None] & valid[:, :, None, :]  # [B, nb, W, S]
        logits = torch.einsum("bmrhd,bmshd->bmhrs", qb, kb) / math.sqrt(D)
        logits = logits.masked_fill(~allowed[:, :, None], NEG)
        if K > 0:
            T = self.tok_norm_r(self._tokens(x, mask))
            kt, vt = (self._split(t) for t in self.kv_t(T).chunk(2, dim=-1))
            if self.causal:  # [B, L, K, H, D]: each position reads its own prefix tokens
                tl = torch.einsum("blhd,blkhd->blhk", q, kt)
            else:  # [B, K, H, D]
                tl = torch.einsum("blhd,bkhd->blhk", q, kt)
            tl = F.pad(tl / math.sqrt(D), (0, 0, 0, 0, 0, nb * W - L)).view(B, nb, W, H, K)
            logits = torch.cat([logits, tl.transpose(2, 3)], dim=-1)
        w = torch.softmax(logits, dim=-1)
        w = F.dropout(w, p=self.dropout, training=self.training)
        out = torch.einsum("bmhrs,bmshd->bmrhd", w[..., :S], vb).reshape(B, nb * W, H, D)[:, :L]
        if K > 0:
            wt = w[..., S:].transpose(2, 3).reshape(B, nb * W, H, K)[:, :L]
            if self.causal:
                out = out + torch.einsum("blhk,blkhd->blhd", wt, vt)
            else:
                out = out + torch.einsum("blhk,bkhd->blhd", wt, vt)
        y = self.out(out.reshape(B, L, C))
        return y * mask.unsqueeze(-1)

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}({self.dim}, heads={self.heads}, window={self.window}, "
                f"num_tokens={self.num_tokens}, causal={self.causal})")
