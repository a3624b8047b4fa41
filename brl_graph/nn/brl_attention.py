from __future__ import annotations

import math
import warnings
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn import LayerNorm, Linear

from brl_graph.nn.blocks import block_attention, check_block_args, window_allowed, window_keys
from brl_graph.nn.dropout import dropout
from brl_graph.nn.functional import NEG
from brl_graph.nn.reservoir import TokenReservoir

MODES = ("reservoir", "blocks")
_DROPOUT_WARNED = False


def _warn_dropout_meaning() -> None:
    """Once per process: ``dropout`` changed meaning (see :class:`BRLAttention`)."""
    global _DROPOUT_WARNED
    if not _DROPOUT_WARNED:
        _DROPOUT_WARNED = True
        warnings.warn("BRLAttention(dropout=...) is now dropout on the layer's output, as in "
                      "BRLConv; dropout on attention weights is attn_dropout (pass it, even "
                      "as 0.0, to silence this warning)", FutureWarning, stacklevel=3)


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
    :class:`~brl_graph.nn.BRLConv`, by a :class:`~brl_graph.nn.TokenReservoir`:
    learned seeds pool the sequence by attention (compress, with :obj:`heads`
    heads per token), then attend among themselves (mix). In causal mode
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

    **Two modes for the tokens.** ``mode="reservoir"`` (the default) is the
    above: :math:`K` tokens for the whole sequence. Its state is fixed
    (:math:`K \times C` per layer, strictly linear cost), and in causal mode it
    is an ABC-style reservoir: the learned seeds decide what each token keeps
    before any query arrives, and one stored item is diluted by the whole
    prefix, so its recall of an arbitrary item falls as the sequence grows,
    as for any fixed-size state (``docs/RESULTS.md``, section 5: recall
    against state size).

    ``mode="blocks"`` cuts the sequence into blocks of :math:`b` positions
    (``block_size``) and compresses every block :math:`m` into :math:`c` tokens
    (``block_tokens``) by a learned softmax pooling *inside* the block, applied
    to the layer's own keys and values:

    .. math::
        \mathbf{k}'_{m,t} = \sum_{j \in m} \beta_{tj}\, \mathbf{k}_j, \quad
        \mathbf{v}'_{m,t} = \sum_{j \in m} \beta_{tj}\, \mathbf{v}_j, \quad
        \beta_{t\cdot} = \mathrm{softmax}_{j \in m}\big((\mathbf{W}_P\mathbf{x}_j)_t\big).

    Position :math:`i` then attends, under one softmax, to its window, to the
    tokens of every block :math:`m` it may see (causal: the block *ended* at or
    before :math:`i`, :math:`(m+1)b - 1 \le i`; encoder: every block), and,
    with ``top_k`` :math:`= s > 0`, to the full-resolution keys of the
    :math:`s` visible blocks whose tokens score highest for this query
    (:math:`\mathrm{logsumexp}_t\, \mathbf{q}_i^\top\mathbf{k}'_{m,t}`, per
    head), minus the positions already in the window. Reading is
    content-based, so a query finds an item written anywhere before it; with
    ``top_k > 0`` the item's own key and value enter the softmax, which makes
    retrieval exact once the right block is selected (NSA's compression and
    selection branches, Landmark attention and MoBA build on the same idea).
    The cost is :math:`O\big(L\,(w + cL/b + s b)\,C\big)` time, i.e.
    quadratic with a :math:`c/b` constant, and keys and values are kept for
    every position (a full KV cache) when ``top_k > 0``; without top-k the
    state is :math:`w + cL/b` tokens. The selection itself passes no
    gradient (the block tokens, under the same softmax, learn to score).
    Keys are bound to values *before* compressing by whatever the layer input
    carries (the local window of the layer below, or a token shift), so a
    block token summarises key-value pairs rather than loose keys. Queries are
    processed in chunks so that memory stays bounded at :math:`L = 8192`.

    Args:
        dim (int): Model width :math:`C`.
        heads (int, optional): Attention heads; must divide :obj:`dim`.
            (default: :obj:`4`)
        window (int, optional): Local window :math:`w`. (default: :obj:`64`)
        num_tokens (int, optional): Compressed tokens :math:`K`; :obj:`0` gives
            sliding-window attention alone. (default: :obj:`8`)
        causal (bool, optional): Decoder mode. (default: :obj:`False`)
        dropout (float, optional): Dropout on the layer's output (and on the
            reservoir's residual branches), as :obj:`dropout` of
            :class:`~brl_graph.nn.BRLConv`. Up to 0.1.0 it was the dropout on
            attention weights, now :obj:`attn_dropout`; giving
            :obj:`dropout > 0` without :obj:`attn_dropout` warns once of the
            change. (default: :obj:`0.0`)
        attn_dropout (float, optional): Dropout on attention weights (window,
            tokens and, in reservoir mode, the pooling and mixing).
            (default: :obj:`0.0`)
        prefix_block (int, optional): Block size of the causal prefix softmax
            (reservoir mode). (default: :obj:`32`)
        mode (str, optional): ``"reservoir"`` (:math:`K` tokens per sequence;
            uses :obj:`num_tokens`) or ``"blocks"`` (:math:`c` tokens per
            block of :math:`b` positions; :obj:`num_tokens` is not used).
            (default: :obj:`"reservoir"`)
        block_size (int, optional): Block length :math:`b` (blocks mode); the
            window must be at least this long, so that every earlier position
            is in the window or in a completed block. (default: :obj:`32`)
        block_tokens (int, optional): Tokens :math:`c` per block (blocks
            mode). (default: :obj:`1`)
        top_k (int, optional): Blocks :math:`s` read at full resolution by
            each query (blocks mode); :obj:`0` reads the block tokens only.
            (default: :obj:`0`)

    Shapes:
        - **input:** :math:`(B, L, C)`, mask :math:`(B, L)` *(optional, bool,
          True = real position)*
        - **output:** :math:`(B, L, C)`; padded positions are zero.
    """
    def __init__(self, dim: int, heads: int = 4, window: int = 64, num_tokens: int = 8,
                 causal: bool = False, dropout: float = 0.0, prefix_block: int = 32,
                 mode: str = "reservoir", block_size: int = 32, block_tokens: int = 1,
                 top_k: int = 0, attn_dropout: Optional[float] = None) -> None:
        super().__init__()
        if heads <= 0 or dim % heads != 0:
            raise ValueError(f"heads ({heads}) must be positive and divide dim ({dim})")
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        if num_tokens < 0:
            raise ValueError(f"num_tokens must be >= 0, got {num_tokens}")
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; choose from {list(MODES)}")
        if mode == "blocks":
            check_block_args(window, block_size, block_tokens, top_k, "positions")
            num_tokens = 0  # the reservoir is not built in this mode
        self.dim, self.heads, self.window = dim, heads, window
        if attn_dropout is None:
            if dropout > 0:
                _warn_dropout_meaning()
            attn_dropout = 0.0
        self.num_tokens, self.causal = num_tokens, causal
        self.dropout, self.attn_dropout = dropout, attn_dropout
        self.prefix_block, self.mode = prefix_block, mode
        self.block_size, self.block_tokens, self.top_k = block_size, block_tokens, top_k
        self.qkv = Linear(dim, 3 * dim)
        self.out = Linear(dim, dim)
        if mode == "blocks":
            # One pooling score per (head, block token) and position.
            self.pool = Linear(dim, heads * block_tokens)
        if num_tokens > 0:
            # compress (each token pools with `heads` heads) and mix
            self.reservoir = TokenReservoir(dim, num_tokens, heads, torch.nn.GELU(),
                                            dropout=dropout, attn_dropout=attn_dropout,
                                            prefix_block=prefix_block, pool_heads=heads)
            self.tok_norm_r = LayerNorm(dim)
            self.kv_t = Linear(dim, 2 * dim)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        r"""Resets all learnable parameters of the module."""
        for module in (self.qkv, self.out, getattr(self, "pool", None),
                       getattr(self, "reservoir", None), getattr(self, "tok_norm_r", None),
                       getattr(self, "kv_t", None)):
            if module is not None:
                module.reset_parameters()

    def _split(self, t: Tensor) -> Tensor:
        return t.unflatten(-1, (self.heads, self.dim // self.heads))

    @property
    def seeds(self) -> Optional[Tensor]:
        """The learned seed tokens ``[K, C]`` (``None`` without a reservoir)."""
        return self.reservoir.seeds if self.num_tokens > 0 else None

    def _tokens(self, x: Tensor, mask: Tensor) -> Tensor:
        """Compress and mix. Returns ``[B, K, C]``, or ``[B, L, K, C]`` when causal."""
        if self.causal:
            return self.reservoir.compress_causal(x, None, mask)
        bias = torch.zeros(mask.shape, dtype=x.dtype, device=x.device).masked_fill(~mask, NEG)
        empty = ~mask.any(dim=1)
        return self.reservoir.compress(x, self.reservoir.initial(x.size(0)), bias[:, None],
                                       empty if bool(empty.any()) else None)

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
        if self.mode == "blocks":
            return self._forward_blocks(x, mask)
        H, K, W = self.heads, self.num_tokens, min(self.window, L)
        D = C // H
        nb = -(-L // W)
        q, k, v = (self._split(t) for t in self.qkv(x).chunk(3, dim=-1))  # [B, L, H, D]
        qb = F.pad(q, (0, 0, 0, 0, 0, nb * W - L)).view(B, nb, W, H, D)
        kb, vb = (window_keys(t, W, nb, self.causal) for t in (k, v))  # [B, nb, S, H, D]
        valid = window_keys(mask, W, nb, self.causal)  # [B, nb, S]; False outside [0, L)
        S = kb.size(2)
        allowed = window_allowed(W, self.causal, x.device)[None, None] & valid[:, :, None, :]
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
        w = dropout(w, p=self.attn_dropout, training=self.training)
        out = torch.einsum("bmhrs,bmshd->bmrhd", w[..., :S], vb).reshape(B, nb * W, H, D)[:, :L]
        if K > 0:
            wt = w[..., S:].transpose(2, 3).reshape(B, nb * W, H, K)[:, :L]
            if self.causal:
                out = out + torch.einsum("blhk,blkhd->blhd", wt, vt)
            else:
                out = out + torch.einsum("blhk,bkhd->blhd", wt, vt)
        y = dropout(self.out(out.reshape(B, L, C)), p=self.dropout, training=self.training)
        return y * mask.unsqueeze(-1)

    def _forward_blocks(self, x: Tensor, mask: Tensor) -> Tensor:
        B, L, C = x.shape
        q, k, v = (self._split(t) for t in self.qkv(x).chunk(3, dim=-1))  # [B, L, H, D]
        scores = self.pool(x).view(B, L, self.heads, self.block_tokens)
        out = block_attention(q, k, v, scores, mask, window=self.window,
                              block_size=self.block_size, top_k=self.top_k, causal=self.causal,
                              attn_dropout=self.attn_dropout, training=self.training)
        y = dropout(self.out(out.reshape(B, L, C)), p=self.dropout, training=self.training)
        return y * mask.unsqueeze(-1)

    def __repr__(self) -> str:
        extra = (f", mode=blocks, block_size={self.block_size}, block_tokens={self.block_tokens}, "
                 f"top_k={self.top_k}" if self.mode == "blocks" else "")
        return (f"{self.__class__.__name__}({self.dim}, heads={self.heads}, window={self.window}, "
                f"num_tokens={self.num_tokens}, causal={self.causal}{extra})")
