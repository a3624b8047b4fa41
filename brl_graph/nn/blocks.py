r"""Sliding-window attention with compressed block tokens, on dense ``[B, L, H, D]`` tensors.

The attention core of the ``"blocks"`` mode of :class:`~brl_graph.nn.BRLAttention`
(sequences) and :class:`~brl_graph.nn.BRLConv` (graphs in node order, on the
per-graph dense layout of :mod:`brl_graph.nn.plan`). The layers own the
projections; these functions take the projected queries, keys, values and
pooling scores, so both layers compute exactly the same attention.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from brl_graph.nn.dropout import dropout
from brl_graph.nn.functional import NEG

# Largest number of score/gathered-key elements one query chunk may hold (about
# 16 MiB in float32): bounds memory at L = 8192, and small chunks let causal
# chunks skip the blocks that end after them.
CHUNK_ELEMS = 1 << 22


def check_block_args(window: int, block_size: int, block_tokens: int, top_k: int,
                     unit: str) -> None:
    """Raises ``ValueError`` for block-mode settings that cannot work; ``unit`` names
    what is in order (``"nodes"`` or ``"positions"``) in the message."""
    if block_size < 1 or block_tokens < 1 or top_k < 0:
        raise ValueError(f"blocks mode needs block_size >= 1, block_tokens >= 1 and "
                         f"top_k >= 0, got {block_size}, {block_tokens} and {top_k}")
    if window < block_size:
        raise ValueError(f"blocks mode needs window ({window}) >= block_size ({block_size}): "
                         f"{unit} of the current, unfinished block are reached through the "
                         f"window only")


def window_keys(t: Tensor, W: int, nb: int, causal: bool) -> Tensor:
    """``[B, L, ...]`` -> key tiles ``[B, nb, S, ...]`` for query tiles of ``W``
    positions: tile ``m`` sees positions ``[mW - W, mW + W)`` (causal) or
    ``[mW - W, mW + 2W)``; positions outside ``[0, L)`` are zero (False)."""
    L = t.size(1)
    after = nb * W - L + (0 if causal else W)
    pad = [0, 0] * (t.dim() - 2) + [W, after]
    tp = F.pad(t, pad)
    S = 2 * W if causal else 3 * W
    return tp.unfold(1, S, W).movedim(-1, 2)


def window_allowed(W: int, causal: bool, device: torch.device) -> Tensor:
    """``[W, S]``: which key of a tile (:func:`window_keys`) each query of the
    tile may read: ``0 <= i - j < W`` (causal) or ``|i - j| < W``."""
    S = 2 * W if causal else 3 * W
    dist = (torch.arange(W, device=device)[:, None] + W
            - torch.arange(S, device=device)[None, :])  # query pos - key pos
    return (dist >= 0) & (dist < W) if causal else dist.abs() < W


class Blocks(NamedTuple):
    """The blocks of a sequence and their pooled tokens (see :func:`pool_blocks`)."""
    keys: Tensor     # [B, nb, b, H, D]
    values: Tensor   # [B, nb, b, H, D]
    mask: Tensor     # [B, nb, b], True = real position
    token_keys: Tensor    # [B, nb, c, H, D]
    token_values: Tensor  # [B, nb, c, H, D]
    valid: Tensor    # [B, nb], the block holds a real position


def pool_blocks(k: Tensor, v: Tensor, scores: Tensor, mask: Tensor, block_size: int) -> Blocks:
    r"""Cuts ``k``, ``v`` ``[B, L, H, D]`` into blocks of ``block_size``
    positions and pools each block into :math:`c` tokens per head, with the
    softmax over the block's real positions of ``scores`` ``[B, L, H, c]``."""
    B, L, H, D = k.shape
    b, c = block_size, scores.size(-1)
    nb = -(-L // b)
    pad = nb * b - L
    kb = F.pad(k, (0, 0, 0, 0, 0, pad)).view(B, nb, b, H, D)
    vb = F.pad(v, (0, 0, 0, 0, 0, pad)).view(B, nb, b, H, D)
    mb = F.pad(mask, (0, pad)).view(B, nb, b)
    s = F.pad(scores, (0, 0, 0, 0, 0, pad)).view(B, nb, b, H, c)
    # Padding gets exactly zero pooling weight; an all-padding block pools
    # uniformly over finite garbage and is never read (see ``valid``).
    beta = torch.softmax(s.float().masked_fill(~mb[..., None, None], NEG), dim=2).to(k.dtype)
    kt = torch.einsum("bmjhc,bmjhd->bmchd", beta, kb)
    vt = torch.einsum("bmjhc,bmjhd->bmchd", beta, vb)
    return Blocks(kb, vb, mb, kt, vt, mb.any(dim=-1))


def block_attention(q: Tensor, k: Tensor, v: Tensor, scores: Tensor, mask: Tensor, *,
                    window: int, block_size: int, top_k: int = 0, causal: bool = True,
                    attn_dropout: float = 0.0, training: bool = False) -> Tensor:
    r"""Window plus block-token attention under one softmax.

    Position :math:`i` attends to its window (:math:`0 \le i - j < w` causal,
    :math:`|i - j| < w` otherwise), to the :math:`c` pooled tokens of every
    block it may see (causal: blocks that ended at or before :math:`i`;
    otherwise all) and, with ``top_k`` :math:`= s > 0`, to the positions of the
    :math:`s` visible blocks whose tokens score highest for this query and head
    (:math:`\mathrm{logsumexp}` over the block's tokens), minus those already in
    the window. The selection passes no gradient.

    Args:
        q, k, v: ``[B, L, H, D]``.
        scores: pooling scores ``[B, L, H, c]`` (:func:`pool_blocks`).
        mask: ``[B, L]`` bool, True = real position; padding is never read.
        window: :math:`w`; must be at least ``block_size`` when ``L`` exceeds
            it, so that every earlier position is in the window or in a
            completed block.

    Returns:
        ``[B, L, H, D]``, the attention output before any projection (padded
        positions hold finite values: the caller zeroes them).
    """
    B, L, H, D = q.shape
    W, b = min(window, L), block_size
    c = scores.size(-1)
    scale = 1.0 / math.sqrt(D)
    dev = q.device
    nbw = -(-L // W)  # window tiles of queries
    qb = F.pad(q, (0, 0, 0, 0, 0, nbw * W - L)).view(B, nbw, W, H, D)
    kw, vw = window_keys(k, W, nbw, causal), window_keys(v, W, nbw, causal)  # [B, nbw, S, H, D]
    validw = window_keys(mask, W, nbw, causal)  # [B, nbw, S]
    S = kw.size(2)
    in_win = window_allowed(W, causal, dev)

    kb, vb, mb, kt, vt, bvalid = pool_blocks(k, v, scores, mask, b)
    nb = kb.size(1)
    vt_flat = vt.flatten(1, 2)  # [B, nb * c, H, D]
    block_end = torch.arange(nb, device=dev) * b + (b - 1)
    block_start = torch.arange(nb, device=dev) * b
    offs = torch.arange(b, device=dev)
    # Flat [B * H * nb, b * D] tables: index_select (whose backward is
    # index_add_) gathers the selected blocks 2x faster on CPU than advanced
    # indexing (whose backward is an accumulating index_put_).
    ktab = kb.permute(0, 3, 1, 2, 4).reshape(B * H * nb, b * D)
    vtab = vb.permute(0, 3, 1, 2, 4).reshape(B * H * nb, b * D)
    mtab = mb.reshape(B * nb, b)
    bh_base = (torch.arange(B, device=dev).view(B, 1, 1, 1, 1) * H
               + torch.arange(H, device=dev).view(1, 1, 1, H, 1)) * nb
    b_base = torch.arange(B, device=dev).view(B, 1, 1, 1, 1) * nb
    per_pos = B * H * (S + nb * c + min(top_k, nb) * b * (D + 2))
    tiles = max(1, min(nbw, CHUNK_ELEMS // max(1, per_pos * W)))
    outs = []
    for m0 in range(0, nbw, tiles):
        m1 = min(nbw, m0 + tiles)
        # Causal: blocks ending after this chunk's last query are unusable by
        # all of its queries; leaving them out halves the work over a sequence.
        nbc = min(nb, (m1 * W) // b) if causal else nb
        s_top = min(top_k, nbc)
        qc = qb[:, m0:m1]  # [B, n, W, H, D]
        pos = (torch.arange(m0 * W, m1 * W, device=dev)).view(m1 - m0, W)  # [n, W]
        # Window scores, [B, n, W, H, S].
        lw = torch.einsum("bmrhd,bmshd->bmrhs", qc, kw[:, m0:m1]) * scale
        allow_w = in_win[None, None] & validw[:, m0:m1, None, :]  # [B, n, W, S]
        lw = lw.masked_fill(~allow_w[:, :, :, None], NEG)
        # Block-token scores, [B, n, W, H, nb, c]; a block is usable once it has ended.
        lt = torch.einsum("bmrhd,bnchd->bmrhnc", qc, kt[:, :nbc]) * scale
        usable = bvalid[:, None, None, :nbc].expand(B, m1 - m0, W, nbc)
        if causal:
            usable = usable & (block_end[:nbc] <= pos[:, :, None])
        lt = lt.masked_fill(~usable[:, :, :, None, :, None], NEG)
        parts = [lw, lt.flatten(-2)]
        if s_top > 0:
            # Per query and head: the s blocks whose tokens score highest. The
            # indices carry no gradient; unusable blocks score NEG and, if
            # picked because fewer than s are usable, are masked below.
            score = lt[..., 0] if c == 1 else torch.logsumexp(lt.float(), dim=-1)
            top = score.topk(s_top, dim=-1).indices  # [B, n, W, H, s]
            sel_shape = (*top.shape, b)
            rows = (bh_base + top).reshape(-1)
            ks = ktab.index_select(0, rows).view(*sel_shape, D)  # [B, n, W, H, s, b, D]
            # A multiply-and-sum beats a batched matmul of 1 x D by D x (s b) blocks.
            ls = (qc[:, :, :, :, None, None, :] * ks).sum(-1) * scale
            gap = (pos[None, :, :, None, None, None]
                   - (block_start[top][..., None] + offs))  # query pos - key pos
            ok = (gap >= W) if causal else (gap.abs() >= W)  # not already in window
            sel_usable = usable[:, :, :, None].expand(B, m1 - m0, W, H, nbc).gather(-1, top)
            real = mtab.index_select(0, (b_base + top).reshape(-1)).view(sel_shape)
            ok = ok & real & sel_usable[..., None]
            parts.append(ls.masked_fill(~ok, NEG).flatten(-2))
        w = torch.softmax(torch.cat(parts, dim=-1), dim=-1)
        w = dropout(w, p=attn_dropout, training=training)
        out = torch.einsum("bmrhs,bmshd->bmrhd", w[..., :S], vw[:, m0:m1])
        out = out + torch.einsum("bmrhn,bnhd->bmrhd", w[..., S:S + nbc * c],
                                 vt_flat[:, :nbc * c])
        if s_top > 0:
            vs = vtab.index_select(0, rows).view(*sel_shape, D)
            ws = w[..., S + nbc * c:].unflatten(-1, (s_top, b))
            out = out + (ws[..., None] * vs).sum((-3, -2))
        outs.append(out)
    return torch.cat(outs, dim=1).reshape(B, nbw * W, H, D)[:, :L]
