r"""Functional building blocks of the BRL layers.

* :func:`prefix_softmax_pool`: the causal (prefix) softmax pooling that lets the
  compressed tokens seen by position :math:`i` summarise positions :math:`j \le i`
  only, in linear cost and without overflow (:class:`BRLConv` and
  :class:`BRLAttention` in causal mode).
* :func:`node_scores`, :func:`pool_nodes` and :func:`spread_tokens`: the three
  products between a graph's :math:`K` tokens and its :math:`L` nodes, with the
  node axis split into blocks on accelerators when :math:`L` is large (see
  :func:`node_scores`).
* :func:`attention`: softmax attention where one side has only the :math:`K`
  tokens, on the fastest path for the device. A public helper for models built
  from these parts; the layers themselves compute their reads with batched
  matrix products (``baddbmm``), which the CPU profile favoured.

The padding plan of a batch (:func:`~brl_graph.nn.plan.dense_groups`) lives in
:mod:`brl_graph.nn.plan`.
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import Tensor

from brl_graph.nn.dropout import dropout

# A finite stand-in for -inf: exp(NEG - x) underflows to exactly 0 for any real
# logit, while NEG - NEG stays 0 instead of the NaN that -inf - -inf gives.
NEG = -1e30
# Softmax axes at most this long are reduced away from the last axis on CPU.
SMALL_SOFTMAX = 16
# Node axes at least twice this long are split into blocks of about this many
# rows for the token-node products off the CPU (see node_scores).
SPLIT_ROWS = 2048


def _quadratic_prefix(s: Tensor, v: Tensor) -> Tuple[Tensor, Tensor]:
    """Exact causal softmax pooling over a short last axis, by an explicit mask."""
    L = s.size(-1)
    causal = torch.ones(L, L, dtype=torch.bool, device=s.device).tril()
    S = s.unsqueeze(-2).expand(*s.shape[:-1], L, L).masked_fill(~causal, NEG)
    w = torch.softmax(S, dim=-1)
    return w @ v, torch.logsumexp(S, dim=-1)


def _prefix(s: Tensor, v: Tensor, block: int) -> Tuple[Tensor, Tensor]:
    L = s.size(-1)
    if L <= block:
        return _quadratic_prefix(s, v)
    nb = -(-L // block)
    pad = nb * block - L
    if pad:
        s = torch.nn.functional.pad(s, (0, pad), value=NEG)
        v = torch.nn.functional.pad(v, (0, 0, 0, pad))
    s_blk = s.unflatten(-1, (nb, block))
    v_blk = v.unflatten(-2, (nb, block))
    # Within a block: the exact causal softmax, quadratic in the block size only.
    intra, intra_lse = _quadratic_prefix(s_blk, v_blk)
    # Across blocks: the same problem one level up, on the blocks' summaries
    # (their log-normaliser acts as the logit, their pooled mean as the value).
    blk_out, blk_lse = _prefix(intra_lse[..., -1], intra[..., -1, :], block)
    # Block m may only use blocks < m: shift the inclusive prefix right by one.
    ex_lse = torch.nn.functional.pad(blk_lse[..., :-1], (1, 0), value=NEG)
    ex_out = torch.nn.functional.pad(blk_out[..., :-1, :], (0, 0, 1, 0))
    lse = torch.logaddexp(ex_lse.unsqueeze(-1), intra_lse)
    out = (torch.exp(ex_lse.unsqueeze(-1) - lse).unsqueeze(-1) * ex_out.unsqueeze(-2)
           + torch.exp(intra_lse - lse).unsqueeze(-1) * intra)
    out = out.flatten(-3, -2)[..., :L, :]
    return out, lse.flatten(-2)[..., :L]


def prefix_softmax_pool(
    logits: Tensor,
    values: Tensor,
    mask: Optional[Tensor] = None,
    block: int = 32,
) -> Tensor:
    r"""Causal softmax pooling: for every position :math:`i`,

    .. math::
        \mathbf{o}_i = \sum_{j \le i,\, m_j}
        \frac{\exp(s_j)}{\sum_{j' \le i,\, m_{j'}} \exp(s_{j'})}\, \mathbf{v}_j .

    A plain cumulative sum of :math:`\exp(s_j)` overflows (or underflows to
    :math:`0/0`) as soon as logits differ by a few hundred. Here positions are cut
    into blocks of size ``block``: inside a block the masked softmax is computed
    exactly; across blocks the same routine is applied recursively to the blocks'
    log-normalisers and means, and the two are merged with ``logaddexp``. Every
    step is a max-subtracted softmax, so logits of any scale are safe. The cost is
    :math:`O(L \cdot \text{block})` per row and the computation runs in float32
    even under bf16/fp16 autocast.

    The gradient of :math:`\mathbf{o}_i` with respect to any :math:`s_j` or
    :math:`\mathbf{v}_j` with :math:`j > i` is exactly zero.

    Args:
        logits (torch.Tensor): Scores :math:`s` of shape :obj:`[..., L]`.
        values (torch.Tensor): Values of shape :obj:`[..., L, D]`, broadcastable
            against :obj:`logits` in the leading dimensions.
        mask (torch.Tensor, optional): Boolean :obj:`[..., L]`, :obj:`False` for
            positions that must be ignored (padding). A row whose prefix holds no
            valid position returns a vector carrying no information from valid
            positions. (default: :obj:`None`)
        block (int, optional): Block size. (default: :obj:`32`)

    Returns:
        torch.Tensor: :obj:`[..., L, D]` in the dtype of :obj:`values`.
    """
    if block < 2:
        raise ValueError(f"block must be >= 2, got {block}")
    if logits.size(-1) != values.size(-2):
        raise ValueError(
            f"logits has {logits.size(-1)} positions but values has {values.size(-2)}")
    out_dtype = values.dtype
    s = logits.float()
    v = values.float()
    if mask is not None:
        s = s.masked_fill(~mask, NEG)
    with torch.autocast(device_type=s.device.type, enabled=False):
        out, _ = _prefix(s, v, block)
    return out.to(out_dtype)


def splits(length: int, device: torch.device) -> bool:
    r"""Whether the token-node products split a node axis of ``length`` on
    ``device`` by themselves: off the CPU, once :math:`L \ge 2 \cdot`
    :data:`SPLIT_ROWS`. On the CPU one product already reduces in parallel
    (BRL's layer there stays under twice its twin's time at a million nodes,
    ``benchmarks/results/scaling.json``)."""
    return device.type != "cpu" and length >= 2 * SPLIT_ROWS


def split_length(length: int, device: torch.device) -> int:
    r"""The node-axis length a dense layout pads to on ``device``: ``length``
    rounded up to a multiple of :data:`SPLIT_ROWS` where the products split it
    (:func:`splits`), else ``length``. The blocks then divide the axis, and no
    product pads a copy of the nodes of its own (which autograd would keep)."""
    if not splits(length, device):
        return length
    return -(-length // SPLIT_ROWS) * SPLIT_ROWS


def split_blocks(x: Tensor, block: Optional[int] = None) -> int:
    r"""How many blocks the node axis (``-2``) of ``x`` ``[G, L, C]`` is split
    into: :math:`n_b = \lceil L / b \rceil` for ``block`` :math:`= b`, each of
    :math:`\lceil L / n_b \rceil \le b` rows. ``block=None`` means
    :data:`SPLIT_ROWS` where :func:`splits` says so, and no split (1)
    otherwise."""
    L = x.size(-2)
    if block is None:
        if not splits(L, x.device):
            return 1
        block = SPLIT_ROWS
    if block < 1:
        raise ValueError(f"block must be >= 1, got {block}")
    return max(1, -(-L // block))


def _rows(x: Tensor, nb: int, b: int) -> Tensor:
    """``[G, L, C]`` -> ``[G * nb, b, C]``, zero rows padding ``L`` to ``nb * b``."""
    G, L, C = x.shape
    if nb * b > L:
        x = torch.nn.functional.pad(x, (0, 0, 0, nb * b - L))
    return x.reshape(G * nb, b, C)


def _cols(w: Tensor, nb: int, b: int) -> Tensor:
    """``[G, K, L]`` -> ``[G * nb, K, b]``, zero columns padding ``L`` to ``nb * b``."""
    G, K, L = w.shape
    if nb * b > L:
        w = torch.nn.functional.pad(w, (0, nb * b - L))
    return w.view(G, K, nb, b).transpose(1, 2).reshape(G * nb, K, b)


def _per_block(t: Tensor, nb: int) -> Tensor:
    """``[G, K, C]`` -> ``[G * nb, K, C]``: every block sees its graph's tokens."""
    G, K, C = t.shape
    return t.unsqueeze(1).expand(G, nb, K, C).reshape(G * nb, K, C)


def _plus(t: Tensor, bias: Optional[Tensor]) -> Tensor:
    # in t's dtype, as baddbmm under autocast gives it (a float32 bias would
    # otherwise promote a bf16 [G, K, L] or [G, L, C] result)
    return t if bias is None else t + bias.to(t.dtype)


def node_scores(tokens: Tensor, x: Tensor, bias: Optional[Tensor] = None,
                block: Optional[int] = None) -> Tensor:
    r"""Scores of :math:`K` token-side vectors against every node,
    :math:`\mathbf{S} = \mathbf{T}\mathbf{X}^\top + \mathbf{B}`.

    Of the products between :math:`K` tokens and :math:`L` nodes, this one's
    backward, :func:`pool_nodes` and the backward of :func:`spread_tokens`
    reduce over the nodes: a :math:`K \times C` result summed over
    :math:`L` terms. One such matrix product runs on a handful of thread
    blocks that step through :math:`L` in sequence; on an H200, for a graph
    of a million nodes in float32, that made one BRL layer's forward and
    backward 13.2 times its MPNN twin's, and 1.18 times with the split below
    (``benchmarks/results/scaling_gpu.json``, runs 2 and 3).
    With :math:`n_b` = :func:`split_blocks` :math:`> 1`, the node axis is cut
    into :math:`n_b` blocks that are multiplied as one batch (the tokens
    repeated per block), and the :math:`n_b` partial results are summed:
    the same products, reduced in parallel. A node axis that the blocks do not
    divide is padded with zeros here; the dense layouts of the layers that run
    these products are already padded to whole blocks (:func:`split_length`). With :math:`n_b = 1` (the CPU,
    or :math:`L < 2 \cdot` :data:`SPLIT_ROWS`) this is one :func:`torch.bmm`
    (:func:`torch.baddbmm` with a bias). The pooling of
    :class:`~brl_graph.nn.TokenReservoir` with several heads per token and
    :class:`~brl_graph.nn.BRLAttention`'s token read still run as one product.

    Args:
        tokens (torch.Tensor): :math:`\mathbf{T}` of shape :obj:`[G, K, C]`.
        x (torch.Tensor): Nodes :math:`\mathbf{X}` of shape :obj:`[G, L, C]`.
        bias (torch.Tensor, optional): Added to the scores; broadcasts to
            :obj:`[G, K, L]` (a padding mask :obj:`[G, 1, L]`, a per-token
            shift :obj:`[G, K, 1]`). (default: :obj:`None`)
        block (int, optional): At most this many nodes per block; :obj:`None`
            chooses as :func:`split_blocks` does. (default: :obj:`None`)

    Returns:
        torch.Tensor: :obj:`[G, K, L]`.
    """
    nb = split_blocks(x, block)
    if nb == 1:
        xt = x.transpose(1, 2)
        return torch.bmm(tokens, xt) if bias is None else torch.baddbmm(bias, tokens, xt)
    G, K, L = x.size(0), tokens.size(1), x.size(1)
    b = -(-L // nb)
    s = torch.bmm(_per_block(tokens, nb), _rows(x, nb, b).transpose(1, 2))  # [G * nb, K, b]
    s = s.view(G, nb, K, b).transpose(1, 2).reshape(G, K, nb * b)[..., :L]
    return _plus(s, bias)


def pool_nodes(w: Tensor, x: Tensor, block: Optional[int] = None) -> Tensor:
    r"""Nodes pooled by weights, :math:`\mathbf{W}\mathbf{X}`, split into
    blocks of nodes as :func:`node_scores` says.

    Args:
        w (torch.Tensor): Weights :math:`\mathbf{W}` of shape :obj:`[G, K, L]`.
        x (torch.Tensor): Nodes :math:`\mathbf{X}` of shape :obj:`[G, L, C]`.
        block (int, optional): As in :func:`node_scores`. (default: :obj:`None`)

    Returns:
        torch.Tensor: :obj:`[G, K, C]`.
    """
    nb = split_blocks(x, block)
    if nb == 1:
        return torch.bmm(w, x)
    G, K, L, C = x.size(0), w.size(1), x.size(1), x.size(2)
    b = -(-L // nb)
    return torch.bmm(_cols(w, nb, b), _rows(x, nb, b)).view(G, nb, K, C).sum(1)


def spread_tokens(w: Tensor, values: Tensor, bias: Optional[Tensor] = None,
                  block: Optional[int] = None) -> Tensor:
    r"""Token values spread to the nodes, :math:`\mathbf{W}^\top\mathbf{V} +
    \mathbf{b}`, split into blocks of nodes as :func:`node_scores` says (here
    for the backward's sum over the nodes).

    Args:
        w (torch.Tensor): Weights :math:`\mathbf{W}` of shape :obj:`[G, K, L]`.
        values (torch.Tensor): :math:`\mathbf{V}` of shape :obj:`[G, K, C]`.
        bias (torch.Tensor, optional): Broadcasts to :obj:`[G, L, C]`.
            (default: :obj:`None`)
        block (int, optional): As in :func:`node_scores`. (default: :obj:`None`)

    Returns:
        torch.Tensor: :obj:`[G, L, C]`.
    """
    nb = split_blocks(w.transpose(1, 2), block)
    if nb == 1:
        wt = w.transpose(1, 2)
        return torch.bmm(wt, values) if bias is None else torch.baddbmm(bias, wt, values)
    G, L, C = w.size(0), w.size(2), values.size(2)
    b = -(-L // nb)
    out = torch.bmm(_cols(w, nb, b).transpose(1, 2), _per_block(values, nb))  # [G * nb, b, C]
    return _plus(out.view(G, nb * b, C)[:, :L], bias)


def attention(q: Tensor, k: Tensor, v: Tensor, key_mask: Optional[Tensor] = None,
              dropout_p: float = 0.0) -> Tensor:
    r"""Softmax attention :math:`\mathrm{softmax}(QK^\top/\sqrt{d})V` over
    :obj:`[..., L_q, D]` queries and :obj:`[..., L_k, D]` keys.

    :obj:`key_mask` (bool, :obj:`True` = attend) broadcasts to
    :obj:`[..., L_q, L_k]`. On CUDA, when there are at least as many queries
    as keys (nodes reading the :math:`K` tokens), this is
    :func:`torch.nn.functional.scaled_dot_product_attention` (fused kernels).
    Otherwise the explicit product is used: the fused kernels split work over
    queries, so :math:`K` queries over a million keys ran on a handful of
    blocks (on an H200, one BRL layer's fwd+bwd at 1M nodes took 580 ms through
    SDPA and 294 ms with the explicit product, itself since split into blocks of
    nodes, 26 ms: :func:`node_scores`),
    and on CPU their per-call overhead dominated small batches (about 2 ms per
    call on molecule batches, 3x the cost of the whole MPNN layer). Either way
    the score matrix is :math:`L_q \times L_k` with one side equal to :math:`K`.
    """
    if q.is_cuda and q.size(-2) >= k.size(-2):
        return torch.nn.functional.scaled_dot_product_attention(
            q, k, v, attn_mask=key_mask, dropout_p=dropout_p)
    scale = q.size(-1) ** -0.5
    if k.size(-2) <= SMALL_SOFTMAX:
        # PyTorch's CPU softmax is very slow over a short last axis (17x slower
        # for K=8 than over a middle axis): keep the few keys on axis -2.
        w = (k @ q.transpose(-1, -2)) * scale  # [..., L_k, L_q]
        if key_mask is not None:
            w = w.masked_fill(~key_mask.transpose(-1, -2), NEG)
        w = torch.softmax(w, dim=-2)
        if dropout_p > 0:
            w = dropout(w, p=dropout_p)
        return w.transpose(-1, -2) @ v
    w = (q @ k.transpose(-1, -2)) * scale
    if key_mask is not None:
        w = w.masked_fill(~key_mask, NEG)
    w = torch.softmax(w, dim=-1)
    if dropout_p > 0:
        w = dropout(w, p=dropout_p)
    return w @ v
